// The façade: wires the sans-I/O session to libuv (one timer, one idle handle) and to the
// transports, and owns the user's callbacks.
#include "uvcometd/client.hpp"

#include <exception>

#include "channel.hpp"
#include "json.hpp"
#include "session.hpp"
#include "transport/transport.hpp"

namespace uvcometd {

std::string_view to_string(connection_type t) noexcept {
  return t == connection_type::websocket ? "websocket" : "long-polling";
}

std::optional<connection_type> parse_connection_type(std::string_view name) noexcept {
  if (name == "websocket") return connection_type::websocket;
  if (name == "long-polling") return connection_type::long_polling;
  return std::nullopt;
}

std::string_view to_string(state s) noexcept {
  switch (s) {
    case state::disconnected: return "disconnected";
    case state::connecting: return "connecting";
    case state::connected: return "connected";
    case state::reconnecting: return "reconnecting";
    case state::disconnecting: return "disconnecting";
    case state::closed: return "closed";
    case state::failed: return "failed";
  }
  return "unknown";
}

namespace detail {
namespace {

session_config make_session_config(const options& o) {
  session_config c;
  c.connection_types = o.connection_types;
  c.connection_timeout = o.connection_timeout;
  c.max_pending_count = o.max_pending_count;
  c.handshake_ext = o.handshake_ext;
  c.max_network_delay = o.max_network_delay;
  c.backoff_initial = o.backoff_initial;
  c.backoff_max = o.backoff_max;
  c.backoff_jitter = o.backoff_jitter;
  c.disconnect_timeout = o.disconnect_timeout;
  c.reconnect_delay = o.reconnect_delay;
  c.queue_while_reconnecting = o.queue_while_reconnecting;
  c.max_queued_messages = o.max_queued_messages;
  c.websocket_failures_before_fallback = o.websocket_failures_before_fallback;
  c.websocket_connect_timeout = o.websocket_connect_timeout;
  return c;
}

const options& validated(const options& o) {
  const auto bad = [](const char* what) {
    throw std::system_error(make_error_code(errc::invalid_argument), what);
  };
  if (o.url.rfind("http://", 0) != 0 && o.url.rfind("https://", 0) != 0) {
    bad("uvcometd: the URL must start with http:// or https://");
  }
  if (o.connection_types.empty()) bad("uvcometd: no connection type allowed");
  if (!o.handshake_ext.empty() && !json::is_object(o.handshake_ext)) {
    bad("uvcometd: handshake_ext must be a JSON object");
  }
  return o;
}

}  // namespace

class client_impl final : public session_host, public std::enable_shared_from_this<client_impl> {
 public:
  client_impl(uv_loop_t* loop, const options& opts)
      : loop_(loop), opts_(validated(opts)), session_(*this, make_session_config(opts_)) {
    uv_timer_init(loop_, &timer_);
    uv_idle_init(loop_, &idle_);
    timer_.data = this;
    idle_.data = this;
  }

  void start() { self_ = shared_from_this(); }  // alive until every handle is closed

  // The client object is gone: no user callback may run any more, and the handles close.
  void detach() {
    session_.silence();
    listener_ = nullptr;
    if (session_.current_state() != state::closed) session_.close({});
  }

  session& sess() noexcept { return session_; }
  void set_listener(state_listener l) { listener_ = std::move(l); }

  // --- session_host ---
  clock::time_point now() override { return clock::now(); }

  void send(connection_type t, std::uint64_t request, std::string&& frame,
            std::chrono::milliseconds timeout, bool alone) override {
    transport_for(t).send(request, std::move(frame), timeout, alone);
  }

  void abort(connection_type t) override {
    if (auto* tr = existing(t)) tr->abort();
  }

  void arm_timer(std::chrono::milliseconds delay) override {
    uv_timer_start(&timer_, &client_impl::on_timer, static_cast<std::uint64_t>(delay.count()), 0);
  }
  void disarm_timer() override { uv_timer_stop(&timer_); }

  void request_run() override {
    if (!closing_handles_) uv_idle_start(&idle_, &client_impl::on_idle);
  }

  void prepare_transport(connection_type t, connection_type from) override {
    // The websocket upgrade must carry the cookies of the handshake (sticky sessions,
    // BAYEUX_BROWSER).
    if (t == connection_type::websocket && from == connection_type::long_polling && lp_) {
      transport_for(t).set_cookie_header(lp_->cookie_header());
    }
  }

  void pause_receive(connection_type t, bool paused) override {
    if (auto* tr = existing(t)) tr->pause_receive(paused);
  }

  void close_transports() override {
    uv_timer_stop(&timer_);
    transports_open_ = 0;
    for (auto* tr : {lp_.get(), ws_.get()}) {
      if (!tr) continue;
      ++transports_open_;
      tr->close([this] {
        if (--transports_open_ == 0) close_handles();
      });
    }
    if (transports_open_ == 0) close_handles();
  }

  void state_changed(state s, connection_type t, const error& why) override {
    if (listener_) listener_(s, t, why);
  }

  void log(log_level level, std::string_view text) override {
    if (opts_.log) {
      try {
        opts_.log(level, text);
      } catch (...) {
      }
    }
  }

 private:
  // Routes one transport's events to the session, tagged with its type.
  struct events_adapter final : transport_events {
    client_impl* self = nullptr;
    connection_type type = connection_type::long_polling;
    void on_frame(std::uint64_t request, std::string&& body, const header_list&) override {
      self->guarded([&] { self->session_.on_frame(type, request, std::move(body)); });
    }
    void on_request_failed(std::uint64_t request, const error& err) override {
      self->guarded([&] { self->session_.on_request_failed(type, request, err); });
    }
    void on_up() override {
      self->guarded([&] { self->session_.on_transport_up(type); });
    }
    void on_down(const error& err, bool was_up) override {
      self->guarded([&] { self->session_.on_transport_down(type, err, was_up); });
    }
  };

  template <typename F>
  void guarded(F&& f) noexcept {
    // Nothing may unwind through libuv, libcurl or libwebsockets frames.
    try {
      f();
    } catch (const std::exception& e) {
      log(log_level::error, std::string("uvcometd internal error: ") + e.what());
    } catch (...) {
      log(log_level::error, "uvcometd internal error");
    }
  }

  transport_config make_transport_config() const {
    transport_config c;
    c.url = opts_.url;
    c.headers = opts_.headers;
    c.tls_verify = opts_.tls_verify;
    c.ca_file = opts_.ca_file;
    c.connect_timeout = opts_.websocket_connect_timeout;
    c.max_message_size = opts_.max_message_size;
    c.ping_interval = opts_.websocket_ping_interval;
    c.log = opts_.log;
    return c;
  }

  transport* existing(connection_type t) noexcept {
    return t == connection_type::websocket ? ws_.get() : lp_.get();
  }

  transport& transport_for(connection_type t) {
    auto& slot = t == connection_type::websocket ? ws_ : lp_;
    if (!slot) {
      auto& ev = t == connection_type::websocket ? ws_events_ : lp_events_;
      ev.self = this;
      ev.type = t;
      slot = t == connection_type::websocket
                 ? make_websocket_transport(loop_, make_transport_config(), ev)
                 : make_long_polling_transport(loop_, make_transport_config(), ev);
    }
    return *slot;
  }

  void close_handles() {
    closing_handles_ = true;
    handles_open_ = 2;
    uv_idle_stop(&idle_);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), &client_impl::on_handle_closed);
    uv_close(reinterpret_cast<uv_handle_t*>(&idle_), &client_impl::on_handle_closed);
  }

  static void on_handle_closed(uv_handle_t* h) {
    auto* self = static_cast<client_impl*>(h->data);
    if (--self->handles_open_ != 0) return;
    // Every handle is closed: the transports can go, then the user hears "closed" last.
    auto keep = std::move(self->self_);
    self->lp_.reset();
    self->ws_.reset();
    self->guarded([&] { self->session_.on_transports_closed(); });
  }

  static void on_timer(uv_timer_t* t) {
    auto* self = static_cast<client_impl*>(t->data);
    self->guarded([&] { self->session_.on_timer(); });
  }

  static void on_idle(uv_idle_t* h) {
    auto* self = static_cast<client_impl*>(h->data);
    uv_idle_stop(h);
    self->guarded([&] { self->session_.run_deferred(); });
  }

  uv_loop_t* loop_;
  options opts_;
  session session_;
  uv_timer_t timer_{};
  uv_idle_t idle_{};
  events_adapter lp_events_, ws_events_;
  std::unique_ptr<transport> lp_, ws_;
  state_listener listener_;
  std::shared_ptr<client_impl> self_;
  int transports_open_ = 0;
  int handles_open_ = 0;
  bool closing_handles_ = false;
};

}  // namespace detail

client::client(uv_loop_t* loop, options opts)
    : impl_(std::make_shared<detail::client_impl>(loop, opts)) {
  impl_->start();
}

client::~client() {
  if (impl_) impl_->detach();
}

std::error_code client::open(completion done) { return impl_->sess().open(std::move(done)); }

std::error_code client::subscribe(std::string_view channel, message_handler on_message,
                                  completion done, subscription* out) {
  std::uint64_t id = 0;
  auto ec = impl_->sess().subscribe(channel, std::move(on_message), std::move(done), &id);
  if (!ec && out) *out = subscription(id, std::string(channel));
  return ec;
}

std::error_code client::unsubscribe(const subscription& sub, completion done) {
  return impl_->sess().unsubscribe(sub.id(), std::move(done));
}

std::error_code client::publish(std::string_view channel, std::string_view json_data,
                                completion done) {
  return impl_->sess().publish(channel, json_data, std::move(done));
}

void client::close(completion done) { impl_->sess().close(std::move(done)); }

std::error_code client::reconnect_now() { return impl_->sess().reconnect_now(); }

void client::on_state(state_listener listener) { impl_->set_listener(std::move(listener)); }

void client::on_subscription_lost(
    std::function<void(const subscription& sub, const error& why)> listener) {
  if (!listener) {
    impl_->sess().on_subscription_lost(nullptr);
    return;
  }
  impl_->sess().on_subscription_lost(
      [l = std::move(listener)](std::uint64_t id, const std::string& pattern, const error& why) {
        l(subscription(id, pattern), why);
      });
}

void client::pause() noexcept { impl_->sess().pause(); }
void client::resume() noexcept {
  try {
    impl_->sess().resume();
  } catch (...) {
  }
}

std::size_t client::pending_count() const noexcept { return impl_->sess().pending_count(); }
state client::current_state() const noexcept { return impl_->sess().current_state(); }
connection_type client::current_connection_type() const noexcept {
  return impl_->sess().current_type();
}
const std::string& client::client_id() const noexcept { return impl_->sess().client_id(); }

}  // namespace uvcometd
