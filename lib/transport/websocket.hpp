// Websocket transport internals: knobs the client options do not expose, so tests can turn them
// down. make_websocket_transport() (transport.hpp) uses the defaults.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstddef>
#include <memory>

#include "transport/transport.hpp"

namespace uvcometd::detail {

struct websocket_tuning {
  // A ping goes out this often while the connection is up; no pong or data for two intervals
  // ends the connection with errc::timeout. Zero disables pings and the dead-peer check.
  std::chrono::milliseconds ping_interval{15000};
  // lws reads at most this many bytes from the socket at a time (its per-thread buffer, one per
  // shared context; at least 1024).
  std::size_t rx_chunk_size = 16u * 1024u;
  // Frames queued while the socket is busy are merged up to this size (bytes), so a burst of
  // publishes leaves as a few frames the server can work on while the rest is written.
  std::size_t max_merged_frame = 64u * 1024u;
};

std::unique_ptr<transport> make_websocket_transport(uv_loop_t* loop, transport_config config,
                                                    transport_events& events,
                                                    const websocket_tuning& tuning);

}  // namespace uvcometd::detail
