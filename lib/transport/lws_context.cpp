#include "transport/lws_context.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "transport/websocket_core.hpp"

#if LWS_LIBRARY_VERSION_MAJOR < 4 || \
    (LWS_LIBRARY_VERSION_MAJOR == 4 && LWS_LIBRARY_VERSION_MINOR < 1)
#error "uvcometd needs libwebsockets 4.1 or later"
#endif

// 4.1.x on a foreign loop never finishes a single lws_context_destroy(); see
// ws_context::on_teardown_timer.
#if LWS_LIBRARY_VERSION_MAJOR == 4 && LWS_LIBRARY_VERSION_MINOR == 1
#define UVCOMETD_LWS_TWO_STEP_DESTROY 1
#else
#define UVCOMETD_LWS_TWO_STEP_DESTROY 0
#endif

namespace uvcometd::detail {
namespace {

// The most lws hands to one send() (the protocol's tx_packet_size).
constexpr std::size_t max_send = 1u << 20;
constexpr unsigned fd_limit = 2 * ws_context::capacity + 4;
// How often close() looks whether lws's uv handles are gone (4.1 two-step destroy).
constexpr std::uint64_t teardown_poll_ms = 5;

void lws_log_nowhere(int, const char*) {}

// lws 4.1 logs to stderr by default (a notice on every context creation) and its log settings are
// process-global. Once, when the first context is created, errors-only to a sink that drops them:
// the library prints nothing, and lws's log level cannot be routed per client anyway.
void quiet_lws_logging() {
  static std::once_flag once;
  std::call_once(once, [] {
    // UVCOMETD_LWS_DEBUG set: lws's own log, down to info, on stderr (for debugging lws itself).
    if (std::getenv("UVCOMETD_LWS_DEBUG") != nullptr) {
      lws_set_log_level(LLL_ERR | LLL_WARN | LLL_NOTICE | LLL_INFO, nullptr);
    } else {
      lws_set_log_level(LLL_ERR, lws_log_nowhere);
    }
  });
}

// The lws callbacks of a connection; lws's other callbacks (protocol, vhost, ...) are ignored.
bool is_connection_reason(lws_callback_reasons reason) {
  switch (reason) {
    case LWS_CALLBACK_RAW_CONNECTED:
    case LWS_CALLBACK_RAW_WRITEABLE:
    case LWS_CALLBACK_RAW_RX:
    case LWS_CALLBACK_RAW_CLOSE:
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
    case LWS_CALLBACK_WSI_DESTROY: return true;
    default: return false;
  }
}

}  // namespace

int stray_answer(lws_callback_reasons reason) {
  switch (reason) {
    case LWS_CALLBACK_RAW_CONNECTED:
    case LWS_CALLBACK_RAW_WRITEABLE:
    case LWS_CALLBACK_RAW_RX: return -1;
    default: return 0;
  }
}

// ---- the shared lws context ---------------------------------------------------------------------

ws_context::ws_context(uv_loop_t* loop, context_settings settings)
    : loop_(loop), settings_(std::move(settings)) {
  std::memset(protocols_, 0, sizeof protocols_);
  protocols_[0].name = protocol_name;
  protocols_[0].callback = &ws_context::lws_callback;
  // lws writes at most this much of a frame per send() (its default is the 16 KiB read buffer):
  // a merged frame leaves in one call when the socket takes it, rather than stalling reading for
  // several loop iterations while lws drains the rest.
  protocols_[0].tx_packet_size = max_send;
}

std::shared_ptr<ws_context> ws_context::create(uv_loop_t* loop, const context_settings& settings) {
  auto c = std::make_shared<ws_context>(loop, settings);
  if (settings.tls) c->tls_ = std::make_unique<tls::context>(settings.ca_file);
  quiet_lws_logging();
  lws_context_creation_info info;
  std::memset(&info, 0, sizeof info);
  info.options = LWS_SERVER_OPTION_LIBUV;
  // The transport tunnels through http_proxy itself; an empty address keeps lws from reading the
  // variable and tunnelling every RAW connection it makes (lws then logs an error nobody sees).
  info.http_proxy_address = "";
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.protocols = c->protocols_;
  void* loops[1] = {loop};
  info.foreign_loops = loops;
  info.pcontext = &c->ctx_;
  info.user = c.get();
  info.pt_serv_buf_size = settings.buffer_size;
  info.fd_limit_per_thread = fd_limit;
  info.count_threads = 1;
  info.timeout_secs = settings.timeout_s;
  info.connect_timeout_secs = settings.timeout_s;
  c->ctx_ = lws_create_context(&info);
  if (!c->ctx_) return nullptr;
  uv_timer_init(loop, &c->teardown_timer_);
  c->teardown_timer_.data = c.get();
  c->opened();
  return c;
}

void ws_context::tear_down(std::function<void()> closed) {
  closed_ = std::move(closed);
  // lws_context_destroy must not run inside an lws callback: start from our own uv callback.
  uv_timer_start(&teardown_timer_, &ws_context::on_teardown_timer, 0, 0);
}

void ws_context::all_closed() {
  // Lets the last user finish its close; the context is freed when this returns.
  if (auto closed = std::move(closed_)) closed();
}

std::uint64_t ws_context::route(websocket_core* core) {
  const std::uint64_t id = next_id_++;
  routes_.emplace(id, core);
  return id;
}

void ws_context::forget(std::uint64_t id) noexcept { routes_.erase(id); }

void ws_context::saw_wsi(const lws* wsi) {
  try {
    wsis_.insert(wsi);
  } catch (...) {
    // Out of memory: at worst a watcher lws leaves open is not closed at teardown.
  }
}

void ws_context::log(log_level level, std::string_view msg) const {
  if (!log_) return;
  try {
    log_(level, msg);
  } catch (...) {
  }
}

int ws_context::lws_callback(lws* wsi, lws_callback_reasons reason, void*, void* in,
                             std::size_t len) {
  if (!wsi || !is_connection_reason(reason)) return 0;
  lws_context* cx = lws_get_context(wsi);
  auto* self = cx ? static_cast<ws_context*>(lws_context_user(cx)) : nullptr;
  if (!self) return 0;
  return self->dispatch(wsi, reason, in, len);
}

int ws_context::dispatch(lws* wsi, lws_callback_reasons reason, void* in, std::size_t len) {
  saw_wsi(wsi);
  const auto id =
      static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(lws_get_opaque_user_data(wsi)));
  const auto it = id == 0 ? routes_.end() : routes_.find(id);
  if (it == routes_.end()) return stray_answer(reason);
  return it->second->on_lws_callback(wsi, id, reason, in, len);  // catches everything
}

// lws 4.1.6 on a foreign loop (checked with valgrind and ASan on Debian's 4.1.6-3):
// - one lws_context_destroy() closes lws's uv handles but never frees the context (4.1 calls the
//   last destroy stage only for loops lws owns);
// - a second one after those handles have closed frees it synchronously (ctx_ becomes null);
// - a second one while their close callbacks are pending crashes (the plugin holding the callbacks
//   is unloaded).
// So, once the last user is gone: first destroy from our own uv callback, then poll until no
// handle on the loop has data == context (lws's idle and timer handles do; a private 4.1 detail),
// then destroy again.

void ws_context::on_teardown_timer(uv_timer_t* t) {
  auto* self = static_cast<ws_context*>(t->data);
  if (self->ctx_) lws_context_destroy(self->ctx_);
  if (!self->ctx_) {
    self->finish_teardown();
    return;
  }
  uv_timer_start(&self->teardown_timer_, &ws_context::on_teardown_poll, teardown_poll_ms,
                 teardown_poll_ms);
}

void ws_context::on_teardown_poll(uv_timer_t* t) {
  auto* self = static_cast<ws_context*>(t->data);
#if UVCOMETD_LWS_TWO_STEP_DESTROY
  if (self->ctx_ && !self->lws_handles_remain()) lws_context_destroy(self->ctx_);
#endif
  if (self->ctx_) {
    // Waiting on lws; a context that never lets go would keep the loop alive, so say so.
    if (++self->teardown_polls_ == 5000 / teardown_poll_ms) {
      self->log(log_level::warning,
                "websocket: libwebsockets context still not destroyed after 5 s");
    }
    return;
  }
  uv_timer_stop(&self->teardown_timer_);
  self->finish_teardown();
}

bool ws_context::lws_handles_remain() const {
  struct probe {
    const void* ctx;
    bool found;
  } p{ctx_, false};
  uv_walk(
      loop_,
      [](uv_handle_t* h, void* arg) {
        auto* pr = static_cast<probe*>(arg);
        if (h->data == pr->ctx) pr->found = true;
      },
      &p);
  return p.found;
}

void ws_context::close_orphaned_watchers() {
  // Runs once the context is destroyed, so lws will never touch these handles again. A watcher
  // lws still used would be active; the orphans are stopped, not closing, and point at one of our
  // (dead) wsis. lws allocated them with its realloc-based allocator: free() releases them.
  // The current connections of the loop's other contexts are left alone: one of them may have
  // been allocated where a dead wsi of this context was, and its watcher is stopped while paused.
  std::unordered_set<const void*> live;
  shared::for_each(loop_, [&](const ws_context& c) {
    for (const auto& route : c.routes_) {
      if (const lws* w = route.second->current_wsi()) live.insert(w);
    }
  });
  struct probe {
    const std::unordered_set<const void*>* wsis;
    const std::unordered_set<const void*>* live;
    std::vector<uv_handle_t*> found;
  } p{&wsis_, &live, {}};
  uv_walk(
      loop_,
      [](uv_handle_t* h, void* arg) {
        auto* pr = static_cast<probe*>(arg);
        if (h->type == UV_POLL && !uv_is_closing(h) && !uv_is_active(h) &&
            pr->wsis->count(h->data) && !pr->live->count(h->data)) {
          pr->found.push_back(h);
        }
      },
      &p);
  for (uv_handle_t* h : p.found) uv_close(h, [](uv_handle_t* closed) { std::free(closed); });
  if (!p.found.empty()) {
    log(log_level::debug, "websocket: closed " + std::to_string(p.found.size()) +
                              " watcher(s) libwebsockets left open");
  }
  wsis_.clear();
}

// Closes the teardown timer; all_closed() follows (loop_owned).
void ws_context::finish_teardown() {
#if UVCOMETD_LWS_TWO_STEP_DESTROY
  try {
    if (!ctx_) close_orphaned_watchers();
  } catch (...) {
    // Out of memory: the orphans stay (as if lws had not left them); the teardown goes on.
  }
#endif
  uv_close(reinterpret_cast<uv_handle_t*>(&teardown_timer_),
           [](uv_handle_t* h) { static_cast<ws_context*>(h->data)->closed_one(); });
}

}  // namespace uvcometd::detail
