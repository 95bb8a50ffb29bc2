// Transport interface: transports move frames (JSON array texts), not meaning. Negotiation,
// retries and advice live in the session.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <uv.h>

#include "uvcometd/error.hpp"
#include "uvcometd/extension.hpp"
#include "uvcometd/options.hpp"

namespace uvcometd::detail {

using uvcometd::header_list;

// What a transport reports. Every call happens on the loop thread, never from inside
// transport::send() or transport::close() (the transport defers instead), so the receiver may
// call back into the transport.
class transport_events {
 public:
  virtual ~transport_events() = default;

  // A frame arrived. `request` is the send() it answers for request/response transports
  // (long-polling: the HTTP response body of that request, any 2xx status); 0 for frames a stream
  // transport receives (websocket). `headers` are the response headers where the transport has them.
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

// Settings a transport needs, derived from the client's options.
struct transport_config {
  std::string url;  // http(s) URL; the websocket transport derives ws(s) from it
  std::vector<std::string> headers;  // "Name: value"
  bool tls_verify = true;
  std::string ca_file;
  std::chrono::milliseconds connect_timeout{10000};  // websocket: open within this or on_down
  std::size_t max_message_size = 16u * 1024u * 1024u;
  std::chrono::milliseconds ping_interval{15000};  // websocket: ping period, dead after two
  std::function<void(log_level, std::string_view)> log;
};

class transport {
 public:
  virtual ~transport() = default;

  virtual connection_type type() const noexcept = 0;

  // Sends one frame. Long-polling: one HTTP POST with `timeout` as its whole deadline; the result
  // is exactly one on_frame(request, ...) or on_request_failed(request, ...). Websocket: queued
  // and written when the connection is up (opening it if needed); `timeout` unused, `request`
  // named in on_down's `unsent` when the frame was never written.
  // A frame not marked `alone` may be merged with other such frames queued while the socket is
  // not writable (they leave together as one JSON array); an `alone` frame (/meta/connect,
  // handshake, disconnect) always travels by itself.
  virtual void send(std::uint64_t request, std::string body, std::chrono::milliseconds timeout,
                    bool alone = false) = 0;

  // Aborts every request in flight / drops the connection without reporting anything for them.
  virtual void abort() = 0;

  // Websocket: stop/resume reading frames (backpressure). Long-polling: no-op.
  virtual void pause_receive(bool paused) { (void)paused; }

  // The "Cookie:" header value the transport holds for `url` (long-polling's cookie jar), so the
  // websocket upgrade carries the handshake's cookies. Empty when none.
  virtual std::string cookie_header() const { return {}; }

  // Replaces the configured request headers (an extension changed them). Long-polling: every
  // request sent from now on carries them; websocket: the next upgrade does. A header whose name
  // or value holds control characters is skipped with a warning.
  virtual void set_headers(const header_list& headers) = 0;

  // Websocket: cookies to send on the upgrade ("a=b; c=d").
  virtual void set_cookie_header(std::string cookies) { (void)cookies; }

  // Closes every handle; in-flight requests are dropped silently. `done` runs once every uv handle
  // of the transport is closed (never synchronously); long-polling: for the last long-polling
  // transport of its loop, also the handles of the loop's shared curl multi. No event is reported
  // after close().
  virtual void close(std::function<void()> done) = 0;
};

// Long-polling over libcurl's multi-socket API on `loop`. The long-polling transports of one loop
// share one curl multi (connection and DNS caches included); each keeps its own cookie jar.
std::unique_ptr<transport> make_long_polling_transport(uv_loop_t* loop, transport_config config,
                                                       transport_events& events);

// Websocket over libwebsockets on `loop` (foreign loop).
std::unique_ptr<transport> make_websocket_transport(uv_loop_t* loop, transport_config config,
                                                    transport_events& events);

}  // namespace uvcometd::detail
