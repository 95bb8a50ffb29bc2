// The session's life: its phases, the user's calls, the timer, closing and completions.
// Sending is in session_send.cpp, what arrives in session_receive.cpp, failures in
// session_recover.cpp.
#include "session/session.hpp"

#include <algorithm>
#include <utility>

#include "channel.hpp"
#include "json.hpp"
#include "session/session_util.hpp"

namespace uvcometd::detail {

session::session(session_host& host, session_config config)
    : host_(host),
      cfg_(std::move(config)),
      backoff_(cfg_.backoff_initial, cfg_.backoff_max, cfg_.backoff_jitter,
               cfg_.random_seed != 0
                   ? cfg_.random_seed
                   : static_cast<std::uint64_t>(clock::now().time_since_epoch().count()) | 1u,
               cfg_.reconnect_delay),
      endpoints_(cfg_.urls),
      auth_(cfg_.has_auth) {}

session::~session() = default;

bool session::active() const noexcept {
  switch (phase_) {
    case phase::handshaking:
    case phase::subscribing:
    case phase::connecting:
    case phase::connected:
    case phase::backing_off:
    case phase::authenticating: return true;
    default: return false;
  }
}

state session::current_state() const noexcept {
  switch (phase_) {
    case phase::idle: return state::disconnected;
    case phase::connected: return state::connected;
    case phase::disconnecting:
    case phase::closing: return state::disconnecting;
    case phase::closed: return state::closed;
    case phase::failed: return state::failed;
    default: return ever_connected_ ? state::reconnecting : state::connecting;
  }
}

void session::enter(phase p, const error& why) {
  const bool lost = phase_ == phase::connected && p != phase::connected;
  if (p == phase::connected && phase_ != phase::connected) {
    connected_at_ = host_.now();
    data_while_connected_ = 0;
  }
  phase_ = p;
  const state s = current_state();
  if (s != reported_) {
    reported_ = s;
    if (!silenced_) invoke([&] { host_.state_changed(s, type_, why); });
  }
  if (lost && active() && !cfg_.queue_while_reconnecting) {
    // The application asked not to wait: what was queued fails now.
    std::deque<outgoing> keep;
    std::vector<outgoing> failed;
    for (auto& m : queue_) {
      (m.kind == message_kind::publish ? failed.emplace_back(std::move(m))
                                       : keep.emplace_back(std::move(m)));
    }
    queue_ = std::move(keep);
    const error e = make_error(errc::not_connected, "connection lost: " + why.to_string());
    for (auto& m : failed) complete_publish(m, e);
  }
}

std::error_code session::open(completion_fn done) {
  if (phase_ != phase::idle) return errc::invalid_state;
  if (cfg_.connection_types.empty()) return errc::invalid_argument;
  open_done_ = std::move(done);
  type_ = handshake_type();
  enter(phase::handshaking);
  if (!active()) return {};  // the listener closed the client
  start_connection_deadline();
  send_handshake();
  return {};
}

std::error_code session::subscribe(std::string_view channel, handler_fn on_message,
                                   completion_fn done, std::uint64_t* sub_id,
                                   std::string_view ext) {
  if (!active()) return errc::invalid_state;
  if (auto ec = check_subscribe_channel(channel)) return ec;
  if (!on_message) return errc::invalid_argument;
  bool server_has_it = false;
  const sub_ptr sub = subs_.add(channel, std::move(on_message), ext, server_has_it);
  if (server_has_it) {
    defer(std::move(done), {});  // the server already delivers this channel
  } else {
    sub->done = done ? std::move(done) : [](const error&) {};
  }
  if (sub_id) *sub_id = sub->id;
  reconcile(sub->pattern);
  return {};
}

std::error_code session::unsubscribe(std::uint64_t sub_id, completion_fn done) {
  if (!active() && phase_ != phase::idle && phase_ != phase::failed) return errc::invalid_state;
  const sub_ptr sub = subs_.remove(sub_id);
  if (!sub) return errc::invalid_argument;
  if (sub->done) {
    defer(std::exchange(sub->done, nullptr),
          make_error(errc::cancelled, "unsubscribed before the server answered"));
  }
  auto* p = subs_.find(sub->pattern);
  if (p && p->subs.empty()) {
    p->unsub_waiters.push_back(std::move(done));
    reconcile(sub->pattern);
  } else {
    defer(std::move(done), {});
  }
  return {};
}

std::error_code session::publish(std::string_view channel, std::string_view json_data,
                                 completion_fn done, std::string_view ext) {
  if (!active()) return errc::invalid_state;
  if (auto ec = check_publish_channel(channel)) return ec;
  if (!json::is_valid(json_data)) return errc::invalid_argument;
  if (phase_ != phase::connected) {
    if (ever_connected_ && !cfg_.queue_while_reconnecting) return errc::not_connected;
    if (cfg_.max_queued_messages != 0 && queue_.size() >= cfg_.max_queued_messages) {
      return errc::queue_full;
    }
  }
  outgoing m{message_kind::publish};
  m.channel = std::string(channel);
  m.payload = std::string(json_data);
  m.done = std::move(done);
  m.ext = std::string(ext);
  queue_.push_back(std::move(m));
  host_.request_run();
  return {};
}

std::error_code session::remote_call(std::string_view target, std::string_view json_data,
                                     std::chrono::milliseconds timeout, call_fn done,
                                     std::string_view ext) {
  if (target.empty() || target.front() == '/') return errc::invalid_channel;
  const std::string channel = "/service/" + std::string(target);
  if (!done) return errc::invalid_argument;
  if (timeout.count() <= 0) return errc::invalid_argument;
  // The same rules as a publish (a call is one), and the same queueing while reconnecting.
  if (auto ec = publish(channel, json_data, nullptr, ext)) return ec;
  outgoing& m = queue_.back();
  m.call_done = std::move(done);
  m.call = ++last_call_;
  calls_.emplace(m.call, 0);
  call_deadlines_.emplace(later(host_.now(), timeout), m.call);
  rearm();
  return {};
}

bool session::end_batch() {
  if (batch_depth_ == 0) return false;
  if (--batch_depth_ == 0 && !queue_.empty()) host_.request_run();  // flushed from the loop
  return true;
}

std::error_code session::close(completion_fn done) {
  // Like uv_close() on a closed handle: a synchronous failure, and `done` never runs.
  if (phase_ == phase::closed) return errc::invalid_state;
  close_dones_.push_back(std::move(done));
  if (phase_ == phase::disconnecting || phase_ == phase::closing) return {};
  const bool say_goodbye = phase_ == phase::connected && !client_id_.empty();
  enter(phase::disconnecting);
  retry_at_.reset();
  connection_deadline_.reset();
  complete(open_done_, closed_error());
  while (!queue_.empty()) {
    outgoing m = std::move(queue_.front());
    queue_.pop_front();
    fail_outgoing(std::move(m), closed_error());
  }
  cancel_auth_waiters(closed_error());
  pending_.clear();
  if (phase_ != phase::disconnecting) return {};  // a completion finished the close already
  if (say_goodbye) {
    // Best effort: tell the server, but never wait longer than disconnect_timeout.
    outgoing m{message_kind::disconnect};
    m.channel = "/meta/disconnect";
    send_alone(std::move(m), exchanges::slot::disconnect);
    disconnect_deadline_ = later(host_.now(), cfg_.disconnect_timeout);
    rearm();
  } else {
    finish_close();
  }
  return {};
}

void session::resume() {
  paused_ = false;
  if (!pending_.empty()) host_.request_run();
}

void session::abandon() {
  // Waiting for the server's /meta/disconnect reply is a courtesy nobody waits for any more.
  if (phase_ == phase::disconnecting) finish_close();
}

std::error_code session::reconnect_now() {
  if (!active()) return errc::invalid_state;
  host_.abort(type_);
  fail_all(ledger_.close_all(type_), make_error(errc::transport_error, "connection abandoned"));
  if (!active()) return {};
  transport_up_ = false;
  resubscribes_outstanding_ = 0;
  const error why = make_error(errc::transport_error, "reconnect requested by the application");
  last_failure_ = why;
  retry_at_.reset();
  backoff_.reset();
  start_connection_deadline();
  resume_session(why);
  return {};
}

void session::on_timer() {
  const auto now = host_.now();
  if (disconnect_deadline_ && now >= *disconnect_deadline_) {
    disconnect_deadline_.reset();
    finish_close();
    return;
  }
  if (connection_deadline_ && now >= *connection_deadline_) {
    connection_deadline_.reset();
    std::string text = "the session could not be established within " +
                       std::to_string(cfg_.connection_timeout.count()) + " ms";
    if (last_failure_) text += "; last failure: " + last_failure_.to_string();
    if (active()) {
      fail_session(make_error(errc::connection_timeout, std::move(text)));
      return;
    }
    // Closing already: only the disconnect deadline is left to wait for.
  }
  for (auto due = ledger_.next_deadline(); due && now >= due->first && active();
       due = ledger_.next_deadline()) {
    expire_request(due->second);
  }
  expire_calls(now);
  if (phase_ == phase::closing || phase_ == phase::closed) return;
  if (retry_at_ && now >= *retry_at_ && active()) {
    retry_at_.reset();
    auth_.rearm();  // a delay passed: a new failure may ask for credentials again
    if (phase_ == phase::connected)
      send_connect(false);  // advice interval, or the floor
    else
      resume_session();
  }
  rearm();
}

void session::run_deferred() {
  auto ready = std::exchange(deferred_, {});
  for (auto& [done, err] : ready) complete(done, err);
  flush();
  dispatch();
}

void session::on_transports_closed() {
  if (phase_ == phase::closed) return;
  enter(phase::closed);
  auto ready = std::exchange(deferred_, {});
  for (auto& [done, err] : ready) complete(done, err);
  auto dones = std::exchange(close_dones_, {});
  for (auto& d : dones) complete(d, {});
}

void session::notify(const error& why) {
  if (!silenced_) invoke([&] { host_.state_changed(current_state(), type_, why); });
}

void session::start_connection_deadline() {
  if (!active() || cfg_.connection_timeout.count() <= 0 || connection_deadline_) return;
  connection_deadline_ = later(host_.now(), cfg_.connection_timeout);
  rearm();
}

void session::rearm() {
  if (phase_ == phase::closing || phase_ == phase::closed) return;
  std::optional<clock::time_point> next;
  std::optional<clock::time_point> request_deadline;
  if (active()) {
    if (const auto due = ledger_.next_deadline()) request_deadline = due->first;
  }
  const auto call_deadline = next_call_deadline();
  for (const auto& t :
       {retry_at_, connection_deadline_, disconnect_deadline_, request_deadline, call_deadline}) {
    if (t && (!next || *t < *next)) next = t;
  }
  if (!next) {
    host_.disarm_timer();
    return;
  }
  auto delay = std::chrono::ceil<std::chrono::milliseconds>(*next - host_.now());
  if (delay.count() < 0) delay = std::chrono::milliseconds(0);
  // A far deadline is armed a day at a time (on_timer finds nothing due and arms again): no
  // host has to add a near-infinite delay to its clock.
  host_.arm_timer(std::min(delay, std::chrono::milliseconds(std::chrono::hours(24))));
}

std::optional<clock::time_point> session::next_call_deadline() {
  while (!call_deadlines_.empty()) {
    const auto [at, call] = call_deadlines_.top();
    if (calls_.count(call) != 0) return at;
    call_deadlines_.pop();  // answered since
  }
  return std::nullopt;
}

void session::expire_calls(clock::time_point now) {
  for (auto due = next_call_deadline(); due && now >= *due; due = next_call_deadline()) {
    const std::uint64_t call = call_deadlines_.top().second;
    call_deadlines_.pop();
    const std::uint64_t id = calls_[call];
    // Wherever the call is (queued, sent, held for credentials), it ends now; a reply that
    // comes later finds nothing awaiting it.
    std::optional<outgoing> m;
    if (id != 0 && ledger_.awaiting(id)) {
      m.emplace(ledger_.take(id));
    } else {
      for (auto* list : {&queue_}) {
        const auto it = std::find_if(list->begin(), list->end(),
                                     [&](const outgoing& o) { return o.call == call; });
        if (it != list->end()) {
          m.emplace(std::move(*it));
          list->erase(it);
        }
      }
      auto& held = auth_.held;
      const auto it =
          std::find_if(held.begin(), held.end(), [&](const outgoing& o) { return o.call == call; });
      if (!m && it != held.end()) {
        m.emplace(std::move(*it));
        held.erase(it);
      }
    }
    if (!m) {
      calls_.erase(call);
      continue;
    }
    complete_publish(
        *m, make_error(errc::timeout, "no reply to the remote call on " + m->channel + " in time"));
  }
}

void session::complete_publish(outgoing& m, const error& err, const wire_message* reply) {
  if (!m.call_done) {
    complete(m.done, err);
    return;
  }
  if (calls_.erase(m.call) == 0) return;  // timed out already
  call_fn f = std::exchange(m.call_done, nullptr);
  const message msg =
      reply ? message{reply->channel, reply->data, reply->id, reply->ext, reply->json} : message{};
  if (!silenced_) invoke([&] { f(err, msg); });
}

void session::complete(completion_fn& done, const error& err) {
  if (!done) return;
  completion_fn f = std::exchange(done, nullptr);
  if (!silenced_) invoke([&] { f(err); });
}

void session::defer(completion_fn done, error err) {
  if (!done) return;
  deferred_.emplace_back(std::move(done), std::move(err));
  host_.request_run();
}

void session::cancel_everything(const error& err) {
  cancel_auth_waiters(err);
  // Take everything out first: each completion may call back into the session.
  std::vector<outgoing> victims = ledger_.take_everything();
  while (!queue_.empty()) {
    victims.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  std::sort(victims.begin(), victims.end(),
            [](const outgoing& a, const outgoing& b) { return a.id < b.id; });
  auto patterns = subs_.take_all();
  pending_.clear();
  for (auto& m : victims) {
    if (m.kind == message_kind::publish) complete_publish(m, err);
  }
  for (auto& [p, e] : patterns) {
    for (auto& s : e.subs) {
      s->alive = false;
      complete(s->done, err);
    }
    for (auto& w : e.unsub_waiters) complete(w, err);
  }
}

void session::finish_close() {
  if (phase_ == phase::closed || phase_ == phase::closing) return;
  enter(phase::closing);
  retry_at_.reset();
  connection_deadline_.reset();
  disconnect_deadline_.reset();
  host_.disarm_timer();
  cancel_everything(closed_error());
  host_.close_transports();
}

}  // namespace uvcometd::detail
