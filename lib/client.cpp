// The façade: wires the sans-I/O session to libuv (one timer, one idle handle) and to the
// transports, and owns the user's callbacks.
#include "uvcometd/client.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <exception>

#include "channel.hpp"
#include "codec.hpp"
#include "extension_pipeline.hpp"
#include "json.hpp"
#include "uvcometd/checks.hpp"
#include "uvcometd/extension.hpp"
#include "session/session.hpp"
#include "transport/http_text.hpp"
#include "transport/transport.hpp"
#include "url.hpp"

namespace uvcometd {

bool is_valid_json(std::string_view text) noexcept { return detail::json::is_valid(text); }

std::string options_problem(const options& o) {
  std::string why;
  if (!o.url.empty() && !o.urls.empty()) return "set url or urls, not both";
  if (o.urls.empty()) {
    if (!detail::parse_server_url(o.url, why)) return why;
  }
  for (std::size_t i = 0; i < o.urls.size(); ++i) {
    if (!detail::parse_server_url(o.urls[i], why)) {
      return "urls[" + std::to_string(i) + "]: " + why;
    }
  }
  if (o.failback_after.count() < 0) return "failback_after must not be negative";
  if (o.connection_types.empty()) return "no connection type allowed";
  if (!o.handshake_ext.empty() && !detail::json::is_object(o.handshake_ext)) {
    return "handshake_ext must be a JSON object";
  }
  if (!std::isfinite(o.backoff_jitter) || o.backoff_jitter < 0 || o.backoff_jitter > 1) {
    return "backoff_jitter must be a number from 0 to 1";
  }
  const std::pair<const char*, std::chrono::milliseconds> durations[] = {
      {"connection_timeout", o.connection_timeout},
      {"max_network_delay", o.max_network_delay},
      {"websocket_connect_timeout", o.websocket_connect_timeout},
      {"backoff_initial", o.backoff_initial},
      {"backoff_max", o.backoff_max},
      {"websocket_ping_interval", o.websocket_ping_interval},
      {"disconnect_timeout", o.disconnect_timeout},
  };
  for (const auto& [name, d] : durations) {
    if (d.count() < 0) return std::string(name) + " must not be negative";
  }
  for (std::size_t i = 0; i < o.headers.size(); ++i) {
    // The text itself is not quoted: a header may carry a secret.
    const std::string_view line = o.headers[i];
    const auto colon = line.find(':');
    const std::string which = "header " + std::to_string(i + 1);
    if (colon == std::string_view::npos) return which + " is not \"Name: value\"";
    if (!detail::is_token(detail::trim_ows(line.substr(0, colon)))) {
      return which + " has an invalid name";
    }
    if (detail::has_ctl(line)) return which + " holds a line break or NUL";
  }
  if (!o.ca_file.empty() && ::access(o.ca_file.c_str(), R_OK) != 0) {
    return "ca_file " + o.ca_file + " cannot be read: " + std::strerror(errno);
  }
  return {};
}

namespace detail {
namespace {

session_config make_session_config(const options& o) {
  session_config c;
  c.urls = o.urls.empty() ? std::vector<std::string>{o.url} : o.urls;
  c.failback_after = o.failback_after;
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
  c.has_auth = static_cast<bool>(o.auth);
  c.notify_delivered = c.has_auth || std::any_of(o.extensions.begin(), o.extensions.end(),
                                                 [](const auto& e) { return e != nullptr; });
  return c;
}

// Options are checked once, here: what the client would only find out on the network (a URL
// without host, an unreadable CA file) or could not compute with (a NaN jitter, a negative delay)
// is refused when the client is made.
const options& validated(const options& o) {
  if (std::string why = options_problem(o); !why.empty()) {
    throw std::system_error(make_error_code(errc::invalid_argument), "uvcometd: " + why);
  }
  return o;
}

// "Name: value" lines as {name, value} pairs (lines without a colon are kept whole as a name, and
// the transports skip them as malformed).
header_list parse_header_lines(const std::vector<std::string>& lines) {
  header_list out;
  for (const auto& line : lines) {
    const auto colon = line.find(':');
    std::string_view name = std::string_view(line).substr(0, colon);
    std::string_view value = colon == std::string::npos ? std::string_view{} : std::string_view(line).substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
    out.emplace_back(std::string(name), std::string(value));
  }
  return out;
}


}  // namespace

class client_impl final : public session_host, public std::enable_shared_from_this<client_impl> {
  // Bounds of one incoming batch handed to the extensions (see received()).
  static constexpr std::size_t max_batch_messages = 1024;
  static constexpr std::size_t max_batch_bytes = 256 * 1024;

 public:
  client_impl(uv_loop_t* loop, const options& opts)
      : loop_(loop), opts_(validated(opts)), session_(*this, make_session_config(opts_)) {
    url_ = session_.current_url();
    base_headers_ = parse_header_lines(opts_.headers);
    if (std::any_of(opts_.extensions.begin(), opts_.extensions.end(), [](const auto& e) { return e != nullptr; }) ||
        opts_.auth) {
      pipeline_ = std::make_unique<extension_pipeline>(
          opts_.extensions, opts_.auth, [this](log_level l, std::string_view t) { log(l, t); });
    }
    applied_headers_[0] = applied_headers_[1] = base_headers_;
    uv_timer_init(loop_, &timer_);
    uv_idle_init(loop_, &idle_);
    timer_.data = this;
    idle_.data = this;
  }

  void start() { self_ = shared_from_this(); }  // alive until every handle is closed

  // The client object is gone: no user callback may run any more, and the handles close.
  void detach() {
    // Extensions may reference the client object: never call them again. Frames bypass the
    // pipeline from now on; a continuation still held by an extension becomes a no-op.
    pipeline_.reset();
    session_.silence();
    listener_ = nullptr;
    // Destroyed while already closing (a second Ctrl-C): the disconnect wait ends now.
    const bool was_closing = session_.current_state() == state::disconnecting;
    if (session_.current_state() != state::closed) session_.close({});
    if (was_closing) session_.abandon();
  }

  session& sess() noexcept { return session_; }

  std::error_code add_meta_listener(std::string_view channel, meta_listener listener,
                                    std::uint64_t* id) {
    static constexpr std::string_view known[] = {"/meta/handshake", "/meta/connect",
                                                 "/meta/subscribe", "/meta/unsubscribe",
                                                 "/meta/disconnect", "/meta/*", "/meta/**"};
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
  void set_listener(state_listener l) { listener_ = std::move(l); }

  // --- session_host ---
  clock::time_point now() override { return clock::now(); }

  void send(connection_type t, std::uint64_t request, const outgoing_batch& batch,
            std::chrono::milliseconds timeout, bool alone) override {
    if (!pipeline_) {
      send_frame(t, request, batch.encode(), timeout, alone, nullptr);
      return;
    }
    // Extensions see structured messages; each is tagged with its id, which survives whatever
    // they edit, so drops are told to the session by id. The text is encoded once, after them.
    message_batch b;
    b.transport = t;
    b.headers = base_headers_;
    b.messages.reserve(batch.messages.size());
    std::vector<std::uint64_t> ids;
    ids.reserve(batch.messages.size());
    std::string text;
    for (const auto& m : batch.messages) {
      text.clear();
      encode_message(text, m.kind, m.channel, m.id, m.payload, m.first_connect, batch.context,
                     m.ext);
      bayeux_message bm = bayeux_message::parse(text);  // our own encoding: valid
      message_access::set_tag(bm, m.id);
      b.messages.push_back(std::move(bm));
      ids.push_back(m.id);
    }
    pipeline_->push(direction::outgoing, std::move(b), static_cast<std::uint64_t>(t),
                    [this, t, request, timeout, alone, ids = std::move(ids)](message_batch&& done,
                                                                             const error& err) {
                      finish_outgoing(t, request, timeout, alone, ids, std::move(done), err);
                    });
  }

  void abort(connection_type t) override {
    if (pipeline_) {
      pipeline_->cancel(direction::outgoing, static_cast<std::uint64_t>(t));
      // Failures and up/down events of the exchanges given up are stale: they must not reach the
      // session after it started anew on this transport. Frames still go through (their data
      // messages arrived; replies to forgotten requests are ignored).
      pipeline_->cancel(direction::incoming, static_cast<std::uint64_t>(t), true);
    }
    if (auto* tr = existing(t)) tr->abort();
  }

  void authenticate() override {
    // Never from inside the session's call: it may finish at once.
    post([this] {
      if (!pipeline_) return;  // the client object is gone
      std::weak_ptr<client_impl> weak = self_;
      auto done = [this, weak, called = std::make_shared<bool>(false)](const error& err) {
        if (weak.expired() || *called) return;
        *called = true;
        post([this, err] { session_.on_authenticated(err); });
      };
      try {
        opts_.auth->authenticate(done);
      } catch (const std::exception& e) {
        done(error(make_error_code(errc::authentication_failed), std::string("authenticate() threw: ") + e.what()));
      } catch (...) {
        done(error(make_error_code(errc::authentication_failed), "authenticate() threw"));
      }
    });
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

  void delivered(const message& msg) override {
    const auto tell = [&](extension& e) {
      try {
        e.delivered(msg);
      } catch (const std::exception& ex) {
        log(log_level::error, std::string("an extension's delivered() threw: ") + ex.what());
      } catch (...) {
        log(log_level::error, "an extension's delivered() threw");
      }
    };
    for (const auto& e : opts_.extensions) {
      if (e) tell(*e);
    }
    if (opts_.auth) tell(*opts_.auth);
  }

  void close_transports() override {
    if (pipeline_) pipeline_->cancel_all();
    uv_timer_stop(&timer_);
    closing_transports_ = true;
    for (auto* slot : {&lp_, &ws_}) {
      if (*slot) retire(std::move(*slot));
    }
    if (retired_.empty()) close_handles();
  }

  void use_endpoint(const std::string& url) override {
    if (url == url_) return;
    url_ = url;
    // The transports of the old server close; new ones are made for this one when needed.
    // (Cookies are per transport, so a server's cookies never go to another.)
    for (auto* slot : {&lp_, &ws_}) {
      if (*slot) retire(std::move(*slot));
    }
    applied_headers_[0] = applied_headers_[1] = base_headers_;
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
        self->in_order(type, [s = self, t = type, request, err] { s->session_.on_request_failed(t, request, err); });
      });
    }
    void on_up() override {
      self->guarded([&] { self->in_order(type, [s = self, t = type] { s->session_.on_transport_up(t); }); });
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
    if (!pipeline_) {
      f();
      return;
    }
    const event_scope scope(*this);
    pipeline_->push(direction::incoming, std::nullopt, static_cast<std::uint64_t>(t),
                    [this, f = std::move(f)](message_batch&&, const error&) { deliver(f); });
  }

  // Marks a transport event in progress (the session may be entered directly).
  struct event_scope {
    explicit event_scope(client_impl& c) : c_(c), prev_(c.in_event_) { c.in_event_ = true; }
    ~event_scope() { c_.in_event_ = prev_; }
    client_impl& c_;
    bool prev_;
  };

  // From a transport event with nothing posted before: now. From a late extension continuation
  // (the session is not re-entrant for frames), or behind earlier posted work: on the next loop
  // iteration, in order.
  void deliver(const std::function<void()>& f) {
    if (in_event_ && posted_.empty()) f();
    else post(f);
  }

  void received(connection_type t, std::uint64_t request, std::string&& body, const header_list& headers) {
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
    if (!pipeline_) {
      session_.on_frame(t, request, std::move(body));
      return;
    }
    // The extensions see the frame's messages in consecutive batches of bounded size, each
    // made when its turn comes (by the same reader, with the same rules, as the session's) and
    // handed on to the session as its own frame: a huge frame of tiny messages never exists as
    // one vector of bayeux_message objects (their fields cost several times the text). The
    // frame's text is let go once its last batch is made.
    struct walk {
      std::shared_ptr<const std::string> text;
      frame_reader::cursor at;
      error malformed;
      bool ended = false;
    };
    auto w = std::make_shared<walk>();
    w->text = std::make_shared<const std::string>(std::move(body));
    auto make = [this, w, t, headers](message_batch& b) {
      b.transport = t;
      b.headers = headers;
      frame_reader reader(*w->text, w->at);
      std::size_t bytes = 0;
      while (b.messages.size() < max_batch_messages && bytes < max_batch_bytes) {
        wire_message m;
        error why;
        const auto st = reader.next(m, scratch_, why);
        if (st == frame_reader::status::end || st == frame_reader::status::malformed) {
          w->malformed = std::move(why);
          w->ended = true;
          break;
        }
        if (st == frame_reader::status::skipped) {
          log(log_level::warning, "skipped a message: " + why.message);
          continue;
        }
        b.messages.push_back(bayeux_message::parse(m.json));  // the reader's rules are parse()'s
        bytes += m.json.size();
      }
      scratch_.reset();
      w->at = reader.save();
      if (w->ended) w->text.reset();
      return !w->ended;
    };
    const event_scope scope(*this);
    pipeline_->push_lazy(direction::incoming, std::move(make), static_cast<std::uint64_t>(t),
                         [this, w, t, request](message_batch&& b, const error& err) {
                           // Replies are matched by id whatever frame carries them; only the
                           // last batch ends the request (what it carried and got no reply never
                           // will), unless the frame turned out broken.
                           const bool last = w->ended || err;
                           if (last && w->malformed) {
                             finish_incoming(t, 0, std::move(b), err);
                             log(log_level::warning, "malformed frame: " + w->malformed.message);
                             deliver([this, t, request, bad = w->malformed] {
                               session_.on_bad_frame(t, request, bad);
                             });
                             return;
                           }
                           finish_incoming(t, last ? request : 0, std::move(b), err);
                         });
  }

  void finish_incoming(connection_type t, std::uint64_t request, message_batch&& b, const error& err) {
    if (err) {
      log(log_level::error, "an incoming extension failed: " + err.to_string());
      deliver([this, t, request, err] { session_.on_bad_frame(t, request, err); });
      return;
    }
    auto batch = std::make_shared<message_batch>(std::move(b));
    deliver([this, t, request, batch] {
      // Replies whose message goes out again are not reported. Each resend goes to the front of
      // the queue: the last first keeps their order.
      auto& messages = batch->messages;
      const auto& resends = message_access::resends(*batch);
      for (auto it = resends.rbegin(); it != resends.rend(); ++it) {
        const std::uint64_t id = *it;
        if (!session_.resend(id)) continue;
        messages.erase(std::remove_if(messages.begin(), messages.end(),
                                      [&](const bayeux_message& m) {
                                        std::uint64_t reply_id = 0;
                                        const auto text = m.string_field("id");
                                        return is_reply(m.channel(), m.successful().has_value()) &&
                                               text && parse_message_id(*text, reply_id) &&
                                               reply_id == id;
                                      }),
                       messages.end());
      }
      session_.on_frame(t, request, join_frame(messages));
    });
  }

  void finish_outgoing(connection_type t, std::uint64_t request, std::chrono::milliseconds timeout,
                       bool alone, const std::vector<std::uint64_t>& ids, message_batch&& b,
                       const error& err) {
    // The session may have given the request up while an extension held it (connection lost,
    // aborted): sending it now would duplicate what the session sends again, or reopen a
    // transport it left.
    if (!session_.in_flight(request)) return;
    if (err) {
      post([this, t, request, err] { session_.on_request_failed(t, request, err); });
      return;
    }
    const error dropped(make_error_code(errc::dropped_by_extension), "an outgoing extension dropped the message");
    if (b.messages.empty()) {
      post([this, t, request, dropped] { session_.on_request_failed(t, request, dropped); });
      return;
    }
    std::vector<std::uint64_t> kept;
    kept.reserve(b.messages.size());
    for (const auto& m : b.messages) kept.push_back(message_access::tag(m));
    for (const auto id : ids) {
      if (std::find(kept.begin(), kept.end(), id) != kept.end()) continue;
      post([this, request, id, dropped] { session_.on_dropped(request, id, dropped); });
    }
    send_frame(t, request, join_frame(b.messages), timeout, alone, &b.headers);
  }

  void send_frame(connection_type t, std::uint64_t request, std::string&& frame,
                  std::chrono::milliseconds timeout, bool alone, const header_list* headers) {
    transport& tr = transport_for(t);
    if (headers) {
      auto& applied = applied_headers_[t == connection_type::websocket ? 1 : 0];
      if (*headers != applied) {
        applied = *headers;
        tr.set_headers(applied);
      }
    }
    if (opts_.frame_encoder) {
      std::string wire;
      const error err = run_codec(opts_.frame_encoder, frame, wire, errc::invalid_argument, "encoder");
      if (err) {
        post([this, t, request, err] { session_.on_request_failed(t, request, err); });
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
      return error(make_error_code(on_throw), std::string("the frame ") + which + " threw: " + e.what());
    } catch (...) {
      return error(make_error_code(on_throw), std::string("the frame ") + which + " threw");
    }
  }

  // Runs `f` on the next loop iteration, before the session's deferred work.
  void post(std::function<void()> f) {
    posted_.push_back(std::move(f));
    request_run();
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
      post([this, raw] {
        retired_.erase(std::remove_if(retired_.begin(), retired_.end(),
                                      [&](const auto& p) { return p.get() == raw; }),
                       retired_.end());
        if (closing_transports_ && retired_.empty() && !closing_handles_) close_handles();
      });
    });
  }

  transport_config make_transport_config() const {
    transport_config c;
    c.url = url_;
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
    self->retired_.clear();
    self->guarded([&] { self->session_.on_transports_closed(); });
  }

  static void on_timer(uv_timer_t* t) {
    auto* self = static_cast<client_impl*>(t->data);
    self->guarded([&] { self->session_.on_timer(); });
  }

  static void on_idle(uv_idle_t* h) {
    auto* self = static_cast<client_impl*>(h->data);
    uv_idle_stop(h);
    if (!self->posted_.empty()) {
      auto posted = std::move(self->posted_);
      self->posted_.clear();
      for (auto& f : posted) {
        if (self->closing_handles_) break;
        self->guarded(f);
      }
    }
    self->guarded([&] { self->session_.run_deferred(); });
  }

  void tell_meta(const meta_message& m) {
    // Listeners may add or remove listeners: each is looked up again just before its call.
    std::vector<std::uint64_t> ids;
    for (const auto& e : meta_listeners_) {
      if (e.pattern == m.channel || detail::channel_matches(e.pattern, m.channel)) ids.push_back(e.id);
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
  uv_timer_t timer_{};
  uv_idle_t idle_{};
  events_adapter lp_events_, ws_events_;
  std::unique_ptr<transport> lp_, ws_;
  std::vector<std::unique_ptr<transport>> retired_;  // closing (an old server's, or at close)
  std::string url_;                                   // the server in use
  bool closing_transports_ = false;
  std::unique_ptr<extension_pipeline> pipeline_;  // null without extensions: frames bypass it
  header_list base_headers_;                      // options::headers as pairs
  header_list applied_headers_[2];                // last given to long-polling, websocket
  std::vector<std::function<void()>> posted_;
  string_arena scratch_;                          // decoded strings while walking a frame
  bool in_event_ = false;                         // inside a transport's frame event
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
  auto ec = impl_->sess().subscribe(channel, std::move(on_message), std::move(done), &id, fields.ext);
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

void client::on_unmatched(message_handler handler) { impl_->sess().on_unmatched(std::move(handler)); }

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
