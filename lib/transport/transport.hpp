// Transport interface: transports move frames (JSON array texts), not meaning. Negotiation,
// retries and advice live in the session.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <uv.h>

#include "transport/http_text.hpp"
#include "transport/traits.hpp"
#include "uvcometd/error.hpp"
#include "uvcometd/options.hpp"

namespace uvcometd::detail {

class reactor;
class cookie_jar;

// What a transport reports. Every call happens on the loop thread, never from inside one of the
// transport's own API calls (send, abort, pause_receive, set_headers, close): what would be
// reported there is posted to the client's reactor. So the receiver may call back into the
// transport, or destroy it.
class transport_events {
 public:
  virtual ~transport_events() = default;

  // A frame arrived. `request` is the send() it answers for request/response transports
  // (long-polling: the HTTP response body of that request, any 2xx status); 0 for frames a stream
  // transport receives (websocket). `headers` are the response headers where the transport has
  // them.
  virtual void on_frame(std::uint64_t request, std::string&& body, const header_list& headers) = 0;

  // A request failed without a usable frame (long-polling: connection error, timeout, non-2xx
  // status, empty body). `err.message` says what happened, with the HTTP status and body text.
  virtual void on_request_failed(std::uint64_t request, const error& err) = 0;

  // Stream transports (websocket): the connection is open and frames can flow.
  virtual void on_up() {}

  // Stream transports: the connection is gone (or could not be opened: `was_up` false, e.g. the
  // upgrade was refused or the connect timeout ran out). Frames sent since the last on_up() may
  // or may not have reached the server, except those of `unsent`: the requests whose frames were
  // still queued, never written. A later send() opens a new connection.
  virtual void on_down(const error& err, bool was_up, const std::vector<std::uint64_t>& unsent) {
    (void)err, (void)was_up, (void)unsent;
  }
};

// What the transports of one client share: its loop, its task queue (what a transport must not
// report from inside an API call is posted there), and its cookies. All outlive the transports.
struct transport_env {
  uv_loop_t* loop = nullptr;
  reactor* tasks = nullptr;
  cookie_jar* cookies = nullptr;
};

using log_sink = std::function<void(log_level, std::string_view)>;

// The long-polling transport's settings, filled from the options in one place
// (make_long_polling_config, lib/config.hpp). No defaults of its own: the options have them.
struct long_polling_config {
  std::string url;                 // http(s) URL of the server
  header_list headers;             // validated already (the options' check)
  bool tls_verify = true;          // (safe when not filled)
  std::string ca_file;             // empty: the system's trust store
  std::size_t max_message_size{};  // the largest response body (0: no limit)
  log_sink log;
};

// The websocket transport's settings, likewise (make_websocket_config).
struct websocket_config {
  std::string url;      // http(s) URL of the server; the upgrade goes to ws(s)://same
  header_list headers;  // validated already
  bool tls_verify = true;
  std::string ca_file;
  std::chrono::milliseconds connect_timeout{};  // up within this, or on_down (0: lws's own bound)
  std::size_t max_message_size{};               // the largest incoming message (0: no limit)
  std::chrono::milliseconds ping_interval{};  // ping period; no pong or data for two: dead. 0: off
  log_sink log;
  // Knobs the options do not expose (tests turn them down).
  // lws reads at most this many bytes from the socket at a time (its per-thread buffer, one per
  // shared context; at least 1024).
  std::size_t rx_chunk_size = 16u * 1024u;
  // Frames queued while the socket is busy are merged up to this size (bytes), so a burst of
  // publishes leaves as a few frames the server can work on while the rest is written.
  std::size_t max_merged_frame = 64u * 1024u;
};

class transport {
 public:
  virtual ~transport() = default;

  // What this transport can do (the session asks this, never the connection type).
  virtual transport_traits traits() const noexcept = 0;

  // Sends one frame. Request/response transports (long-polling): one HTTP POST with `timeout` as
  // its whole deadline; the result is exactly one on_frame(request, ...) or
  // on_request_failed(request, ...). Stream transports (websocket): queued and written when the
  // connection is up (opening it if needed); `timeout` unused, `request` named in on_down's
  // `unsent` when the frame was never written. Where traits().merges_frames, a frame not marked
  // `alone` may be merged with other such frames queued while the socket is not writable (they
  // leave together as one JSON array); an `alone` frame (/meta/connect, handshake, disconnect)
  // always travels by itself.
  virtual void send(std::uint64_t request, std::string body, std::chrono::milliseconds timeout,
                    bool alone = false) = 0;

  // Aborts every request in flight / drops the connection without reporting anything for them.
  virtual void abort() = 0;

  // Where traits().pausable: stop/resume reading frames (backpressure). Otherwise a no-op.
  virtual void pause_receive(bool paused) { (void)paused; }

  // Replaces the request headers (an extension changed them; validated by the client).
  // Long-polling: every request sent from now on carries them; websocket: the next upgrade does.
  virtual void set_headers(const header_list& headers) = 0;

  // Closes every handle; in-flight requests are dropped silently, and no event is reported after
  // close(). `done` runs once every uv handle of the transport is closed, never synchronously:
  // for the last transport of its loop to use a shared curl multi or lws context, also once
  // that one's handles are closed. Called again (closing or closed), it runs `done` too, later:
  // with the others while closing, posted to the reactor once closed.
  virtual void close(std::function<void()> done) = 0;
};

// Long-polling over libcurl's multi-socket API on `env.loop`. The long-polling transports of one
// loop share one curl multi (connection and DNS caches included).
std::unique_ptr<transport> make_long_polling_transport(const transport_env& env,
                                                       long_polling_config config,
                                                       transport_events& events);

// Websocket over libwebsockets on `env.loop` (foreign loop).
std::unique_ptr<transport> make_websocket_transport(const transport_env& env,
                                                    websocket_config config,
                                                    transport_events& events);

}  // namespace uvcometd::detail
