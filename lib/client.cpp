// The façade: wires the sans-I/O session to libuv (one timer, one reactor) and to the
// transports of the server in use, and owns the user's callbacks. Extensions, when configured,
// sit between the session and the transports (extension_bridge).
#include "uvcometd/client.hpp"

#include <algorithm>
#include <array>
#include <exception>
#include <optional>

#include "channel.hpp"
#include "codec.hpp"
#include "config.hpp"
#include "extension_bridge.hpp"
#include "json.hpp"
#include "reactor.hpp"
#include "session/session.hpp"
#include "transport/cookie_jar.hpp"
#include "transport/http_text.hpp"
#include "transport/transport.hpp"
#include "uvcometd/checks.hpp"

namespace uvcometd {
namespace detail {

class client_impl final : public session_host, public std::enable_shared_from_this<client_impl> {
 public:
  client_impl(uv_loop_t* loop, const options& opts)
      : loop_(loop),
        opts_(validated(opts)),
        session_(*this, make_session_config(opts_)),
        reactor_(loop, [this](std::string_view text) { log(log_level::error, text); }) {
    url_ = session_.current_url();
    base_headers_ = parse_header_lines(opts_.headers);
    if (std::any_of(opts_.extensions.begin(), opts_.extensions.end(),
                    [](const auto& e) { return e != nullptr; }) ||
        opts_.auth) {
      bridge_.emplace(session_, reactor_, opts_.extensions, opts_.auth, base_headers_,
                      [this](log_level l, std::string_view t) { log(l, t); });
    }
    for (auto& sl : slots_) sl.applied_headers = base_headers_;
    reactor_.set_drain([this] { session_.run_deferred(); });
    uv_timer_init(loop_, &timer_);
    timer_.data = this;
  }

  void start() { self_ = shared_from_this(); }  // alive until every handle is closed

  // The client object is gone: no user callback may run any more, and the handles close.
  void detach() {
    // Extensions may reference the client object: never call them again. Frames bypass them
    // from now on; a continuation still held by an extension becomes a no-op.
    bridge_.reset();
    session_.silence();
    listener_ = nullptr;
    // Destroyed while already closing (a second Ctrl-C): the disconnect wait ends now.
    const bool was_closing = session_.current_state() == state::disconnecting;
    if (session_.current_state() != state::closed) (void)session_.close({});
    if (was_closing) session_.abandon();
  }

  session& sess() noexcept { return session_; }
  void set_listener(state_listener l) { listener_ = std::move(l); }

  std::error_code add_meta_listener(std::string_view channel, meta_listener listener,
                                    std::uint64_t* id) {
    static constexpr std::string_view known[] = {
        "/meta/handshake",  "/meta/connect", "/meta/subscribe", "/meta/unsubscribe",
        "/meta/disconnect", "/meta/*",       "/meta/**"};
    if (std::find(std::begin(known), std::end(known), channel) == std::end(known)) {
      return errc::invalid_channel;
    }
    if (!listener) return errc::invalid_argument;
    if (meta_listeners_.empty()) {
      session_.on_meta([this](const meta_message& m) { tell_meta(m); });
    }
    meta_listeners_.push_back({++last_meta_id_, std::string(channel), std::move(listener)});
    if (id) *id = last_meta_id_;
    return {};
  }

  std::error_code remove_meta_listener(std::uint64_t id) {
    const auto it = std::find_if(meta_listeners_.begin(), meta_listeners_.end(),
                                 [&](const meta_entry& e) { return e.id == id; });
    if (it == meta_listeners_.end()) return errc::invalid_argument;
    meta_listeners_.erase(it);
    return {};
  }

  // --- session_host ---
  clock::time_point now() override { return clock::now(); }

  void send(connection_type t, std::uint64_t request, const outgoing_batch& batch,
            std::chrono::milliseconds timeout, bool alone) override {
    if (!bridge_) {
      send_frame(t, request, batch.encode(), timeout, alone, nullptr);
      return;
    }
    bridge_->outgoing(
        t, request, batch,
        [this, t, request, timeout, alone](std::string&& frame, const header_list& h) {
          send_frame(t, request, std::move(frame), timeout, alone, &h);
        });
  }

  void abort(connection_type t) override {
    if (bridge_) bridge_->abort(t);
    if (auto* tr = existing(t)) tr->abort();
  }

  void authenticate() override {
    // Never from inside the session's call: it may finish at once.
    reactor_.post([this] {
      if (!bridge_) return;  // the client object is gone
      std::weak_ptr<client_impl> weak = self_;
      auto done = [this, weak, called = std::make_shared<bool>(false)](const error& err) {
        if (weak.expired() || *called) return;
        *called = true;
        reactor_.post([this, err] { session_.on_authenticated(err); });
      };
      try {
        opts_.auth->authenticate(done);
      } catch (const std::exception& e) {
        done(error(make_error_code(errc::authentication_failed),
                   std::string("authenticate() threw: ") + e.what()));
      } catch (...) {
        done(error(make_error_code(errc::authentication_failed), "authenticate() threw"));
      }
    });
  }

  void arm_timer(std::chrono::milliseconds delay) override {
    uv_timer_start(&timer_, &client_impl::on_timer, static_cast<std::uint64_t>(delay.count()), 0);
  }
  void disarm_timer() override { uv_timer_stop(&timer_); }

  void request_run() override { reactor_.request_drain(); }

  transport_traits traits(connection_type t) override { return transport_for(t).traits(); }

  void pause_receive(connection_type t, bool paused) override {
    if (auto* tr = existing(t)) tr->pause_receive(paused);
  }

  void delivered(const message& msg) override {
    if (bridge_) bridge_->delivered(msg);
  }

  void close_transports() override {
    if (bridge_) bridge_->cancel_all();
    uv_timer_stop(&timer_);
    closing_transports_ = true;
    for (auto& sl : slots_) {
      if (sl.t) retire(std::move(sl.t));
    }
    if (retired_.empty()) close_handles();
  }

  void use_endpoint(const std::string& url) override {
    if (url == url_) return;
    url_ = url;
    // The transports of the old server close; new ones are made for this one when needed.
    // (The jar keeps cookies per server, so a server's cookies never go to another.)
    for (auto& sl : slots_) {
      if (sl.t) retire(std::move(sl.t));
      sl.applied_headers = base_headers_;
    }
  }

  void state_changed(state s, connection_type t, const error& why) override {
    // A copy: the listener may destroy the client, which lets go of listener_.
    if (const state_listener l = listener_) l(s, t, why);
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
  // Routes one transport's events to the session, tagged with its type. With extensions, every
  // event queues behind the frames before it, so none overtakes a frame an extension holds.
  struct events_adapter final : transport_events {
    client_impl* self = nullptr;
    connection_type type = connection_type::long_polling;
    void on_frame(std::uint64_t request, std::string&& body, const header_list& headers) override {
      self->guarded([&] { self->received(type, request, std::move(body), headers); });
    }
    void on_request_failed(std::uint64_t request, const error& err) override {
      self->guarded([&] {
        self->in_order(type, [s = self, t = type, request, err] {
          s->session_.on_request_failed(t, request, err);
        });
      });
    }
    void on_up() override {
      self->guarded(
          [&] { self->in_order(type, [s = self, t = type] { s->session_.on_transport_up(t); }); });
    }
    void on_down(const error& err, bool was_up, const std::vector<std::uint64_t>& unsent) override {
      self->guarded([&] {
        self->in_order(type, [s = self, t = type, err, was_up, unsent] {
          s->session_.on_transport_down(t, err, was_up, unsent);
        });
      });
    }
  };

  // Runs `f` now, or (with extensions) once the incoming frames queued before it are through.
  void in_order(connection_type t, std::function<void()> f) {
    if (bridge_)
      bridge_->event(t, std::move(f));
    else
      f();
  }

  void received(connection_type t, std::uint64_t request, std::string&& body,
                const header_list& headers) {
    if (opts_.frame_decoder) {
      std::string json;
      const error err = run_codec(opts_.frame_decoder, body, json, errc::bad_response, "decoder");
      if (err) {
        log(log_level::warning, "the frame decoder failed: " + err.to_string());
        in_order(t, [this, t, request, err] { session_.on_bad_frame(t, request, err); });
        return;
      }
      body = std::move(json);
    }
    if (bridge_)
      bridge_->incoming(t, request, std::move(body), headers);
    else
      session_.on_frame(t, request, std::move(body));
  }

  void send_frame(connection_type t, std::uint64_t request, std::string&& frame,
                  std::chrono::milliseconds timeout, bool alone, const header_list* headers) {
    transport& tr = transport_for(t);
    if (headers) {
      auto& applied = slots_[index_of(t)].applied_headers;
      if (*headers != applied) {
        applied = *headers;
        // Checked here, once, by the options' rule: the transports take headers as they are.
        header_list valid;
        for (const auto& [name, value] : applied) {
          if (valid_header(name, value))
            valid.emplace_back(name, value);
          else
            log(log_level::warning,
                "ignoring the malformed header '" + name + "' an extension set");
        }
        tr.set_headers(valid);
      }
    }
    if (opts_.frame_encoder) {
      std::string wire;
      const error err =
          run_codec(opts_.frame_encoder, frame, wire, errc::invalid_argument, "encoder");
      if (err) {
        reactor_.post([this, t, request, err] { session_.on_request_failed(t, request, err); });
        return;
      }
      frame = std::move(wire);
    }
    tr.send(request, std::move(frame), timeout, alone);
  }

  // Runs a frame encoder or decoder; what it throws becomes an error of code `on_throw`.
  template <typename Codec>
  static error run_codec(const Codec& codec, std::string_view in, std::string& out, errc on_throw,
                         const char* which) {
    try {
      return codec(in, out);
    } catch (const std::exception& e) {
      return error(make_error_code(on_throw),
                   std::string("the frame ") + which + " threw: " + e.what());
    } catch (...) {
      return error(make_error_code(on_throw), std::string("the frame ") + which + " threw");
    }
  }

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

  // Closes a transport no longer used; it is destroyed once its handles are closed (from the
  // loop, never inside its own callback), and the client's handles close after the last one.
  void retire(std::unique_ptr<transport> tr) {
    transport* raw = tr.get();
    retired_.push_back(std::move(tr));
    raw->close([this, raw] {
      reactor_.post([this, raw] {
        retired_.erase(std::remove_if(retired_.begin(), retired_.end(),
                                      [&](const auto& p) { return p.get() == raw; }),
                       retired_.end());
        if (closing_transports_ && retired_.empty() && !closing_handles_) close_handles();
      });
    });
  }

  // One connection type's transport (made when first needed) and what the client gave it.
  struct slot {
    events_adapter events;
    std::unique_ptr<transport> t;
    header_list applied_headers;  // the request headers it was given last
  };
  static std::size_t index_of(connection_type t) noexcept {
    return t == connection_type::websocket ? 1 : 0;
  }

  transport* existing(connection_type t) noexcept { return slots_[index_of(t)].t.get(); }

  transport& transport_for(connection_type t) {
    slot& sl = slots_[index_of(t)];
    if (!sl.t) {
      sl.events.self = this;
      sl.events.type = t;
      const transport_env env{loop_, &reactor_, &cookies_};
      sl.t = t == connection_type::websocket
                 ? make_websocket_transport(env, make_websocket_config(opts_, url_, base_headers_),
                                            sl.events)
                 : make_long_polling_transport(
                       env, make_long_polling_config(opts_, url_, base_headers_), sl.events);
    }
    return *sl.t;
  }

  void close_handles() {
    closing_handles_ = true;
    handles_open_ = 2;
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), &client_impl::on_handle_closed);
    reactor_.close([this] { handle_closed(); });
  }

  static void on_handle_closed(uv_handle_t* h) {
    static_cast<client_impl*>(h->data)->handle_closed();
  }

  void handle_closed() {
    if (--handles_open_ != 0) return;
    // Every handle is closed: the transports can go, then the user hears "closed" last.
    auto keep = std::move(self_);
    for (auto& sl : slots_) sl.t.reset();
    retired_.clear();
    guarded([&] { session_.on_transports_closed(); });
  }

  static void on_timer(uv_timer_t* t) {
    auto* self = static_cast<client_impl*>(t->data);
    self->guarded([&] { self->session_.on_timer(); });
  }

  void tell_meta(const meta_message& m) {
    // Listeners may add or remove listeners: each is looked up again just before its call.
    std::vector<std::uint64_t> ids;
    for (const auto& e : meta_listeners_) {
      if (e.pattern == m.channel || detail::channel_matches(e.pattern, m.channel))
        ids.push_back(e.id);
    }
    for (const auto id : ids) {
      const auto it = std::find_if(meta_listeners_.begin(), meta_listeners_.end(),
                                   [&](const meta_entry& e) { return e.id == id; });
      if (it == meta_listeners_.end()) continue;
      const meta_listener l = it->listener;  // a copy: it may remove itself
      try {
        l(m);
      } catch (const std::exception& e) {
        log(log_level::error, std::string("a meta listener threw: ") + e.what());
      } catch (...) {
        log(log_level::error, "a meta listener threw");
      }
    }
  }

  struct meta_entry {
    std::uint64_t id;
    std::string pattern;
    meta_listener listener;
  };
  std::vector<meta_entry> meta_listeners_;
  std::uint64_t last_meta_id_ = 0;

  uv_loop_t* loop_;
  options opts_;
  session session_;
  reactor reactor_;
  cookie_jar cookies_;  // both transports', every server's (kept apart per server)
  uv_timer_t timer_{};
  std::array<slot, 2> slots_;                        // long-polling, websocket (index_of)
  std::vector<std::unique_ptr<transport>> retired_;  // closing (an old server's, or at close)
  std::string url_;                                  // the server in use
  bool closing_transports_ = false;
  std::optional<extension_bridge> bridge_;  // none without extensions: frames bypass it
  header_list base_headers_;                // options::headers as pairs
  state_listener listener_;
  std::shared_ptr<client_impl> self_;
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

namespace {

// An "ext" of message_options: empty, or a JSON object.
bool valid_ext(const message_options& f) noexcept {
  return f.ext.empty() || detail::json::is_object(f.ext);
}

}  // namespace

std::error_code client::publish(std::string_view channel, std::string_view json_data,
                                completion done, const message_options& fields) {
  if (!valid_ext(fields)) return errc::invalid_argument;
  return impl_->sess().publish(channel, json_data, std::move(done), fields.ext);
}

std::error_code client::subscribe(std::string_view channel, message_handler on_message,
                                  completion done, subscription* out,
                                  const message_options& fields) {
  if (!valid_ext(fields)) return errc::invalid_argument;
  std::uint64_t id = 0;
  auto ec =
      impl_->sess().subscribe(channel, std::move(on_message), std::move(done), &id, fields.ext);
  if (!ec && out) *out = subscription(id, std::string(channel));
  return ec;
}

std::error_code client::remote_call(std::string_view target, std::string_view json_data,
                                    call_completion done) {
  return remote_call(target, json_data, std::chrono::seconds(5), std::move(done));
}

std::error_code client::remote_call(std::string_view target, std::string_view json_data,
                                    std::chrono::milliseconds timeout, call_completion done,
                                    const message_options& fields) {
  if (!valid_ext(fields)) return errc::invalid_argument;
  return impl_->sess().remote_call(target, json_data, timeout, std::move(done), fields.ext);
}

std::error_code client::on_meta(std::string_view channel, meta_listener listener,
                                std::uint64_t* id) {
  return impl_->add_meta_listener(channel, std::move(listener), id);
}

std::error_code client::remove_meta_listener(std::uint64_t id) {
  return impl_->remove_meta_listener(id);
}

void client::on_unmatched(message_handler handler) {
  impl_->sess().on_unmatched(std::move(handler));
}

void client::start_batch() { impl_->sess().start_batch(); }

std::error_code client::end_batch() {
  return impl_->sess().end_batch() ? std::error_code{} : make_error_code(errc::invalid_state);
}

std::error_code client::close(completion done) { return impl_->sess().close(std::move(done)); }

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
const std::string& client::current_url() const noexcept { return impl_->sess().current_url(); }

}  // namespace uvcometd
