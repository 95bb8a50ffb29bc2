// The lws contexts the websocket transports of one uv loop share: one per set of context
// settings, carrying up to ws_context::capacity transports, routing each connection's callbacks to
// the core whose current connection it is, and torn down (lws 4.1's two-step destroy on a
// foreign loop) once its last user let go.
#pragma once

#include <libwebsockets.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "transport/loop_owned.hpp"
#include "transport/loop_shared.hpp"
#include "transport/tls_client.hpp"
#include "uvcometd/options.hpp"

namespace uvcometd::detail {

class websocket_core;

// The name of the protocol our RAW connections use (one per context).
inline constexpr const char* protocol_name = "uvcometd-bayeux";
// Zero hangup time disables lws's own ping/idle-hangup ("validity") for our connections.
inline const lws_retry_bo_t no_validity_policy = {};

// The answer to a callback of a wsi that is no connection's current one (aborted, timed out,
// its transport closed): close it where lws lets the callback do so, else let lws go on closing.
int stray_answer(lws_callback_reasons reason);

// What an lws context is made with; transports share a context only when these are equal.
struct context_settings {
  bool tls = false;          // wss: the context has an SSL_CTX for its connections
  std::string ca_file;       // its trust store (empty: the system's)
  unsigned buffer_size = 0;  // pt_serv_buf_size
  unsigned timeout_s = 20;   // timeout_secs and connect_timeout_secs

  bool operator==(const context_settings& o) const {
    return tls == o.tls && ca_file == o.ca_file && buffer_size == o.buffer_size &&
           timeout_s == o.timeout_s;
  }
};

// One lws context shared by up to `capacity` websocket transports of one uv loop made with equal
// settings (loop_shared). Created by the first user, torn down once the last let go; loop_owned,
// it lives until lws let go of the loop. Never shared across loops.
// lws calls back with the wsi; each connection's opaque user data is an id this context maps to
// the core whose current connection it is. A wsi whose id maps to no core (aborted, timed out,
// its core closed or freed) is answered without any core and closes. The cores of one context may
// belong to different clients: each reports to its own client (its own reactor), so a callback
// of one connection never runs another client's code.
class ws_context final : public loop_owned<ws_context> {
 public:
  using shared = loop_shared<ws_context, context_settings>;
  // The transports one shared context carries; the next one of the same loop and settings gets
  // another context. lws needs one fd-table slot per socket: a transport's connection and a
  // previous one still closing, plus the event pipe (lws adds its own two). Without a limit lws
  // would size its tables from `ulimit -n`. Past the limit lws refuses the socket (a connection
  // error). With a limit below `ulimit -n` lws finds a wsi from its fd by scanning the table (up
  // to the live sockets), so the limit is kept moderate rather than one context per loop.
  static constexpr std::size_t capacity = 256;

  // loop_shared's interface. create() is null when lws fails; throws std::bad_alloc.
  static std::shared_ptr<ws_context> create(uv_loop_t* loop, const context_settings& settings);
  void tear_down(std::function<void()> closed);
  // loop_owned's: lws let go of the loop and the teardown timer is closed.
  void all_closed();

  ws_context(uv_loop_t* loop, context_settings settings);
  ~ws_context() = default;
  ws_context(const ws_context&) = delete;
  ws_context& operator=(const ws_context&) = delete;

  lws_context* handle() const noexcept { return ctx_; }
  const context_settings& settings() const noexcept { return settings_; }
  // The TLS settings of the context's wss connections (null unless settings().tls).
  const tls::context* tls() const noexcept { return tls_.get(); }
  // Where the context's own messages go (the log of its latest user).
  void set_log(std::function<void(log_level, std::string_view)> log) { log_ = std::move(log); }

  // A buffer for decrypted bytes, lent for one receive: the transports of a context run on its
  // loop's thread, one lws callback at a time. Empty when it is lent already.
  std::vector<char> borrow_plaintext_buffer() {
    std::vector<char> b;
    b.swap(plaintext_);
    return b;
  }
  void return_plaintext_buffer(std::vector<char>&& b) noexcept {
    if (plaintext_.empty()) plaintext_.swap(b);
  }

  // A new connection id whose callbacks go to `core` until forget(id).
  std::uint64_t route(websocket_core* core);
  void forget(std::uint64_t id) noexcept;
  void saw_wsi(const lws* wsi);

 private:
  int dispatch(lws* wsi, lws_callback_reasons reason, void* in, std::size_t len);
  bool lws_handles_remain() const;
  void close_orphaned_watchers();
  void finish_teardown();
  void log(log_level level, std::string_view msg) const;

  static int lws_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                          std::size_t len);
  static void on_teardown_timer(uv_timer_t* t);
  static void on_teardown_poll(uv_timer_t* t);

  uv_loop_t* loop_;
  context_settings settings_;
  lws_protocols protocols_[2];
  lws_context* ctx_ = nullptr;  // also lws's pcontext: lws clears it when the context is freed
  std::unique_ptr<tls::context> tls_;
  std::vector<char> plaintext_;                                // see borrow_plaintext_buffer()
  std::unordered_map<std::uint64_t, websocket_core*> routes_;  // id → core of that connection
  std::uint64_t next_id_ = 1;
  // Every wsi this context created: lws 4.1.6 leaves the uv_poll watcher of a connection that
  // failed before the upgrade completed open (never closed, never freed); teardown closes those.
  std::unordered_set<const void*> wsis_;
  std::function<void(log_level, std::string_view)> log_;
  std::function<void()> closed_;  // the last user's, once torn down
  std::uint64_t teardown_polls_ = 0;
  uv_timer_t teardown_timer_{};
};

}  // namespace uvcometd::detail
