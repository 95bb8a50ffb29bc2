// The lws contexts the websocket transports of one uv loop share: one per set of context
// settings, carrying up to users_per_context transports, routing each connection's callbacks to
// the core whose current connection it is, and torn down (lws 4.1's two-step destroy on a
// foreign loop) once its last user let go.
#pragma once

#include <libwebsockets.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

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

// One lws context shared by up to users_per_context websocket transports of one uv loop made with
// equal settings. Created by the first (acquire), torn down once the last releases it; frees
// itself once lws let go of the loop, then tells that last core. Never shared across loops.
// lws calls back with the wsi; each connection's opaque user data is an id this context maps to
// the core whose current connection it is. A wsi whose id maps to no core (aborted, timed out,
// its core closed or freed) is answered without any core and closes.
class ws_context {
 public:
  // A context of `loop` with these settings and room for `user`, made if none has room. Null
  // when lws fails; throws std::bad_alloc.
  static ws_context* acquire(uv_loop_t* loop, const context_settings& settings,
                             websocket_core* user);

  // `user` (whose connection is dropped already) stops using the context. True when it was the
  // last user: user->context_closed() then runs once lws let go of the loop.
  bool release(websocket_core* user);

  lws_context* handle() const noexcept { return ctx_; }
  const context_settings& settings() const noexcept { return settings_; }
  // The TLS settings of the context's wss connections (null unless settings().tls).
  const tls::context* tls() const noexcept { return tls_.get(); }

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

  ws_context(const ws_context&) = delete;
  ws_context& operator=(const ws_context&) = delete;

 private:
  struct registry {
    std::mutex mutex;  // two loops may run on two threads; a context is used by its loop's only
    std::vector<ws_context*> live;
  };
  static registry& contexts() {
    static registry r;
    return r;
  }

  ws_context(uv_loop_t* loop, context_settings settings);
  ~ws_context() = default;

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
  std::vector<char> plaintext_;  // see borrow_plaintext_buffer()
  std::vector<websocket_core*> users_;
  std::unordered_map<std::uint64_t, websocket_core*> routes_;  // id → core of that connection
  std::uint64_t next_id_ = 1;
  // Every wsi this context created: lws 4.1.6 leaves the uv_poll watcher of a connection that
  // failed before the upgrade completed open (never closed, never freed); teardown closes those.
  std::unordered_set<const void*> wsis_;
  websocket_core* last_user_ = nullptr;  // told once the torn-down context let go of the loop
  std::uint64_t teardown_polls_ = 0;
  uv_timer_t teardown_timer_{};
};

}  // namespace uvcometd::detail
