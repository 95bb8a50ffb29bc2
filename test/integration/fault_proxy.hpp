// Test helper: a fault-injecting TCP proxy that runs on the test's own libuv loop.
//
// It listens on 127.0.0.1:<ephemeral> and forwards every accepted connection to
// 127.0.0.1:<target_port>, and can cut, refuse or blackhole connections on demand.
//
// Forwarding: the upstream connection is made asynchronously; client bytes read before it is
// established are buffered and written first, in order. Bytes are never dropped or reordered
// except deliberately (blackhole). Half-close is propagated: EOF from one side shuts down the
// other side's write (after the queued bytes); once both directions have ended, the pair is closed
// normally. A read/write/connect error on either side (e.g. ECONNRESET, or the upstream connect
// failing) resets (RST) both sides.
//
// Lifetime: use it from the loop's thread only (not thread-safe). Call close(done) and run the
// loop until `done` ran before destroying the object (asserted in debug builds);
// afterwards the proxy owns no handle, so uv_loop_close() can succeed.
// Not copyable or movable (uv handles point back at it). No exception escapes a uv callback;
// `done` must not throw (std::terminate otherwise).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <string>

#include <uv.h>

namespace uvcometd::test {

class fault_proxy {
 public:
  // Binds 127.0.0.1:0 and starts listening at once. Throws std::runtime_error on failure (run
  // the loop afterwards anyway: the half-made listener is closed on it).
  fault_proxy(uv_loop_t* loop, int target_port);
  // Must be close()d and the loop run until close's callback first (assert in debug builds).
  ~fault_proxy();
  fault_proxy(const fault_proxy&) = delete;
  fault_proxy& operator=(const fault_proxy&) = delete;

  // The proxy's own port (kept across stop_listening()/start_listening()).
  int port() const { return port_; }
  // "http://127.0.0.1:<port>" + path
  std::string url(const std::string& path) const;
  // "ws://127.0.0.1:<port>" + path
  std::string ws_url(const std::string& path) const;

  // Resets (RST, via uv_tcp_close_reset) both sides of every live connection pair, including
  // those whose upstream is still connecting. live_connections() is 0 right after the call.
  void cut_all();
  // While on, new connections are accepted (counted in accepted()) and reset at once: the
  // client's connect succeeds but its first read/write fails with ECONNRESET (or EOF).
  // Existing connections are not affected. stop_listening() is the harder variant.
  void refuse(bool on) { refuse_ = on; }
  // While on, bytes read in either direction are discarded (connections stay open; EOF and
  // errors still propagate). Off again: NEW bytes are forwarded; discarded ones are gone.
  // Client bytes buffered while the upstream connects are not affected.
  void blackhole(bool on) { blackhole_ = on; }
  // Later connections go to 127.0.0.1:<port>; existing ones are left alone.
  void set_target(int port) { target_port_ = port; }
  int target() const { return target_port_; }

  // Closes the listening socket (connections to port() are then refused by the kernel with
  // ECONNREFUSED); existing connections are left alone. No-op when not listening.
  void stop_listening();
  // Listens again on the same port() (SO_REUSEADDR). Returns 0 or a libuv error code
  // (e.g. UV_EADDRINUSE if someone else took the port). No-op (0) when already listening.
  int start_listening();
  bool listening() const { return listener_ != nullptr; }

  // Connection pairs neither cut nor closing.
  std::size_t live_connections() const;
  // Total connections accepted so far (refused ones included).
  std::size_t accepted() const { return accepted_; }
  // Bytes successfully written upstream (client -> target) / downstream (target -> client).
  std::uint64_t bytes_up() const { return bytes_up_; }
  std::uint64_t bytes_down() const { return bytes_down_; }
  // Bytes the black hole discarded (both directions).
  std::uint64_t swallowed() const { return swallowed_; }

  // Closes the listener and every connection (normal close, pending writes cancelled); `done`
  // runs after the last handle's close callback (synchronously if nothing was open). Later
  // calls are ignored: only the first `done` is kept.
  void close(std::function<void()> done);
  bool closed() const { return closing_ && open_handles_ == 0; }

 private:
  struct listener;
  struct conn_pair;
  struct write_req;

  int listen_on(int port);
  void on_connection(listener* l, int status) noexcept;
  void handle_closed() noexcept;

  static void connection_cb(uv_stream_t* server, int status) noexcept;
  static void listener_close_cb(uv_handle_t* h) noexcept;
  static void pair_close_cb(uv_handle_t* h) noexcept;
  static void alloc_cb(uv_handle_t* h, std::size_t suggested, uv_buf_t* buf) noexcept;
  static void read_cb(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept;
  static void connect_cb(uv_connect_t* req, int status) noexcept;
  static void write_cb(uv_write_t* req, int status) noexcept;
  static void shutdown_cb(uv_shutdown_t* req, int status) noexcept;

  // Pair helpers (all noexcept; on allocation failure the pair is reset).
  void forward(conn_pair* p, int from, char* data, std::size_t len) noexcept;
  bool write_to(conn_pair* p, int to, char* data, std::size_t len) noexcept;
  void shutdown_side(conn_pair* p, int side) noexcept;
  void reset_pair(conn_pair* p) noexcept;
  void close_pair(conn_pair* p) noexcept;

  uv_loop_t* loop_;
  int target_port_;
  int port_ = 0;
  listener* listener_ = nullptr;  // freed in its close callback
  std::list<conn_pair> pairs_;    // a pair is erased once all its handles' close callbacks ran
  std::size_t open_handles_ = 0;  // initialised handles whose close callback has not run yet
  std::size_t accepted_ = 0;
  std::uint64_t bytes_up_ = 0;
  std::uint64_t bytes_down_ = 0;
  std::uint64_t swallowed_ = 0;
  bool refuse_ = false;
  bool blackhole_ = false;
  bool closing_ = false;
  std::function<void()> done_;
};

}  // namespace uvcometd::test
