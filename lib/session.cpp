#include "session.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <exception>

#include "channel.hpp"
#include "json.hpp"

namespace uvcometd::detail {
namespace {

constexpr std::chrono::milliseconds default_server_timeout{60000};

error make_error(errc code, std::string text) { return error{make_error_code(code), std::move(text)}; }

bool parse_id(std::string_view text, std::uint64_t& out) noexcept {
  if (text.empty()) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

// `now + d`, saturating: a delay from the server, the options or reconnect_delay can be anything
// up to milliseconds::max(), which would overflow the clock.
clock::time_point later(clock::time_point now, std::chrono::milliseconds d) noexcept {
  if (d.count() <= 0) return now;
  const auto room = std::chrono::duration_cast<std::chrono::milliseconds>(
      clock::time_point::max() - now);
  return d >= room ? clock::time_point::max() : now + d;
}

std::string join_types(const std::vector<std::string>& names) {
  std::string out = "[";
  for (std::size_t i = 0; i < names.size(); ++i) out += (i ? "," : "") + names[i];
  return out + "]";
}

}  // namespace

session::session(session_host& host, session_config config)
    : host_(host), cfg_(std::move(config)) {
  rng_ = cfg_.random_seed != 0
             ? cfg_.random_seed
             : static_cast<std::uint64_t>(clock::now().time_since_epoch().count()) | 1u;
}

session::~session() = default;

// ---------------------------------------------------------------------------------------------
// user calls

std::error_code session::open(completion_fn done) {
  if (state_ != state::disconnected) return errc::invalid_state;
  if (cfg_.connection_types.empty()) return errc::invalid_argument;
  open_done_ = std::move(done);
  type_ = handshake_type();
  set_state(state::connecting);
  if (!active()) return {};  // the listener closed the client
  start_connection_deadline();
  send_handshake();
  return {};
}

std::error_code session::subscribe(std::string_view channel, handler_fn on_message,
                                   completion_fn done, std::uint64_t* sub_id) {
  if (!active()) return errc::invalid_state;
  if (auto ec = check_subscribe_channel(channel)) return ec;
  if (!on_message) return errc::invalid_argument;
  auto sub = std::make_shared<local_sub>();
  sub->id = ++last_sub_id_;
  sub->pattern = std::string(channel);
  sub->handler = std::move(on_message);
  auto [it, inserted] = patterns_.try_emplace(sub->pattern);
  if (inserted && is_wildcard(channel)) ++wildcard_patterns_;
  pattern_entry& e = it->second;
  if (e.server_subscribed && !e.in_flight) {
    defer(std::move(done), {});  // the server already delivers this channel
  } else {
    sub->done = std::move(done);
    if (!sub->done) sub->done = [](const error&) {};
  }
  e.subs.push_back(sub);
  subs_.emplace(sub->id, sub);
  if (sub_id) *sub_id = sub->id;
  reconcile(sub->pattern);
  return {};
}

std::error_code session::unsubscribe(std::uint64_t sub_id, completion_fn done) {
  if (state_ == state::closed || state_ == state::disconnecting) return errc::invalid_state;
  const auto it = subs_.find(sub_id);
  if (it == subs_.end()) return errc::invalid_argument;
  const std::shared_ptr<local_sub> sub = it->second;
  subs_.erase(it);
  sub->alive = false;
  if (sub->done) {
    defer(std::move(sub->done), make_error(errc::cancelled, "unsubscribed before the server answered"));
    sub->done = nullptr;
  }
  auto pit = patterns_.find(sub->pattern);
  if (pit == patterns_.end()) {
    defer(std::move(done), {});
    return {};
  }
  auto& subs = pit->second.subs;
  subs.erase(std::remove(subs.begin(), subs.end(), sub), subs.end());
  if (subs.empty()) {
    pit->second.unsub_waiters.push_back(std::move(done));
    reconcile(sub->pattern);
  } else {
    defer(std::move(done), {});
  }
  return {};
}

std::error_code session::publish(std::string_view channel, std::string_view json_data,
                                 completion_fn done) {
  if (!active()) return errc::invalid_state;
  if (auto ec = check_publish_channel(channel)) return ec;
  if (!json::is_valid(json_data)) return errc::invalid_argument;
  if (state_ != state::connected) {
    if (state_ == state::reconnecting && !cfg_.queue_while_reconnecting) return errc::not_connected;
    if (cfg_.max_queued_messages != 0 && queue_.size() >= cfg_.max_queued_messages) {
      return errc::queue_full;
    }
  }
  outgoing m{kind::publish};
  m.channel = std::string(channel);
  m.payload = std::string(json_data);
  m.done = std::move(done);
  queue_.push_back(std::move(m));
  host_.request_run();
  return {};
}

void session::close(completion_fn done) {
  if (state_ == state::closed) {
    // Nothing is left to wait for; the host's handles may be gone, so answer now.
    if (done && !silenced_) invoke([&] { done({}); });
    return;
  }
  close_dones_.push_back(std::move(done));
  if (state_ == state::disconnecting) return;
  const state prev = state_;
  set_state(state::disconnecting);
  retry_at_.reset();
  connection_deadline_.reset();
  const error cancelled = make_error(errc::cancelled, "the client was closed");
  complete(open_done_, cancelled);
  while (!queue_.empty()) {
    outgoing m = std::move(queue_.front());
    queue_.pop_front();
    fail_outgoing(std::move(m), cancelled);
  }
  cancel_auth_waiters(cancelled);
  pending_.clear();
  pending_count_ = 0;
  if (prev == state::connected && !client_id_.empty()) {
    // Best effort: tell the server, but never wait longer than disconnect_timeout.
    outgoing m{kind::disconnect};
    m.channel = "/meta/disconnect";
    send_alone(std::move(m));
    disconnect_deadline_ = later(host_.now(), cfg_.disconnect_timeout);
    rearm();
  } else {
    finish_close();
  }
}

void session::pause() noexcept { paused_ = true; }

void session::resume() {
  paused_ = false;
  if (!pending_.empty()) host_.request_run();
}

void session::silence() noexcept { silenced_ = true; }

void session::abandon() {
  // Waiting for the server's /meta/disconnect reply is a courtesy nobody waits for any more.
  if (state_ == state::disconnecting) finish_close();
}

// ---------------------------------------------------------------------------------------------
// sending

bool session::allows(connection_type t) const noexcept {
  return std::find(cfg_.connection_types.begin(), cfg_.connection_types.end(), t) !=
         cfg_.connection_types.end();
}

connection_type session::handshake_type() const noexcept {
  // Every server speaks long-polling, so the handshake uses it unless websocket is the only type
  // allowed (websocket-only servers exist): then nothing ever goes over long-polling.
  return allows(connection_type::long_polling) ? connection_type::long_polling
                                               : connection_type::websocket;
}

bool session::active() const noexcept {
  return state_ == state::connecting || state_ == state::connected ||
         state_ == state::reconnecting;
}

void session::send_handshake() {
  if (!active()) return;
  retry_at_.reset();
  client_id_.clear();
  // Whatever was sent for an earlier handshake no longer counts (epoch_ moves again when this
  // one succeeds).
  ++epoch_;
  resubscribes_outstanding_ = 0;
  // Negotiation after the handshake picks the preferred type again (so websocket, once it
  // worked, is tried first again).
  const connection_type t = handshake_type();
  if (t != type_) {
    host_.abort(type_);
    drop_requests_of(type_);
    type_ = t;
  }
  outgoing m{kind::handshake};
  m.channel = "/meta/handshake";
  send_alone(std::move(m));
}

void session::send_connect(bool first) {
  if (!active() || connect_request_ != 0 || client_id_.empty() || resubscribes_outstanding_ > 0) {
    return;
  }
  if (!first && buffer_full()) {
    connect_wanted_ = true;  // backpressure: fetch again once the application drained the buffer
    return;
  }
  if (!first && check_empty_poll_) {
    check_empty_poll_ = false;
    if (data_since_connect_ == 0) {
      // The floor between connects: without it one client sent thousands per second to a
      // server answering every connect at once.
      ++empty_polls_;
      const auto cap = std::min(cfg_.backoff_max, std::chrono::milliseconds(2000));
      const auto delay = std::min(cap, scaled_backoff(empty_polls_));
      if (empty_polls_ == 1) {
        host_.log(log_level::warning, "the server answers /meta/connect at once with nothing; "
                                      "waiting between connects");
      }
      connect_wanted_ = false;
      retry_at_ = later(host_.now(), delay);
      retry_is_handshake_ = false;
      rearm();
      return;
    }
    empty_polls_ = 0;
  }
  connect_wanted_ = false;
  retry_at_.reset();
  connect_sent_at_ = host_.now();
  data_since_connect_ = 0;
  outgoing m{kind::connect};
  m.channel = "/meta/connect";
  m.first_connect = first;
  send_alone(std::move(m));
}

void session::send_alone(outgoing&& m) {
  m.id = next_id();
  m.epoch = epoch_;
  const std::uint64_t request = ++last_request_;
  m.request = request;
  std::string frame;
  frame.reserve(256);
  frame += '[';
  encode(m, frame);
  frame += ']';
  const auto timeout = request_timeout(m);
  in_flight_request req;
  req.type = type_;
  req.ids = {m.id};
  req.remaining = 1;
  switch (m.k) {
    case kind::connect: connect_request_ = request; break;
    case kind::handshake: handshake_request_ = request; break;
    case kind::disconnect: disconnect_request_ = request; break;
    default: break;
  }
  track(request, std::move(req), timeout);
  awaiting_.emplace(m.id, std::move(m));
  host_.send(type_, request, std::move(frame), timeout, true);
}

std::chrono::milliseconds session::held_timeout() const noexcept {
  return advice_.timeout ? std::chrono::milliseconds(*advice_.timeout) : default_server_timeout;
}

bool session::end_batch() {
  if (batch_depth_ == 0) return false;
  if (--batch_depth_ == 0 && !queue_.empty()) host_.request_run();  // flushed from the loop
  return true;
}

void session::flush() {
  if (queue_.empty() || !active() || client_id_.empty() || handshake_request_ != 0) return;
  // Long-polling keeps one exchange besides the held connect; what queues meanwhile leaves
  // together in the next one.
  if (type_ == connection_type::long_polling && normal_request_ != 0) return;
  // Until the connect succeeds only (re)subscriptions leave: publishes wait for a session that
  // is known to work, so they are not thrown at a server that may be gone.
  // An open batch holds what the application queued; a re-subscription after a reconnect is
  // never held (the connect waits for its answer).
  if (batch_depth_ > 0 &&
      std::none_of(queue_.begin(), queue_.end(), [](const outgoing& m) { return m.resubscribe; })) {
    return;
  }
  const bool subscriptions_only = state_ != state::connected;
  if (subscriptions_only &&
      std::none_of(queue_.begin(), queue_.end(), [](const outgoing& m) { return m.k != kind::publish; })) {
    return;
  }
  const std::uint64_t request = ++last_request_;
  in_flight_request req;
  req.type = type_;
  std::string frame;
  frame.reserve(64 + queue_.size() * 128);
  frame += '[';
  std::deque<outgoing> held;
  while (!queue_.empty()) {
    outgoing m = std::move(queue_.front());
    queue_.pop_front();
    if (subscriptions_only && m.k == kind::publish) {
      held.push_back(std::move(m));
      continue;
    }
    m.id = next_id();
    m.epoch = epoch_;
    m.request = request;
    if (req.ids.size()) frame += ',';
    encode(m, frame);
    req.ids.push_back(m.id);
    awaiting_.emplace(m.id, std::move(m));
  }
  frame += ']';
  queue_ = std::move(held);
  req.remaining = req.ids.size();
  if (type_ == connection_type::long_polling) normal_request_ = request;
  const auto timeout = request_timeout(outgoing{kind::publish});
  track(request, std::move(req), timeout);
  host_.send(type_, request, std::move(frame), timeout, false);
}

void session::encode(const outgoing& m, std::string& f) const {
  f += "{\"channel\":";
  json::append_string(f, m.channel);
  f += ",\"id\":\"";
  f += std::to_string(m.id);
  f += '"';
  if (m.k != kind::handshake) {
    f += ",\"clientId\":";
    json::append_string(f, client_id_);
  }
  switch (m.k) {
    case kind::handshake:
      f += ",\"version\":\"1.0\",\"minimumVersion\":\"1.0\",\"supportedConnectionTypes\":[";
      for (std::size_t i = 0; i < cfg_.connection_types.size(); ++i) {
        if (i) f += ',';
        json::append_string(f, to_string(cfg_.connection_types[i]));
      }
      f += "],\"advice\":{\"timeout\":60000,\"interval\":0}";
      if (!cfg_.handshake_ext.empty()) {
        f += ",\"ext\":";
        f += cfg_.handshake_ext;
      }
      break;
    case kind::connect:
      f += ",\"connectionType\":";
      json::append_string(f, to_string(type_));
      if (m.first_connect) f += ",\"advice\":{\"timeout\":0}";
      break;
    case kind::subscribe:
    case kind::unsubscribe:
      f += ",\"subscription\":";
      json::append_string(f, m.payload);
      break;
    case kind::publish:
      f += ",\"data\":";
      f += m.payload;
      break;
    case kind::disconnect: break;
  }
  f += '}';
}

std::chrono::milliseconds session::request_timeout(const outgoing& m) const {
  // Options may say anything up to milliseconds::max(): the sum saturates, and no transport is
  // asked for a deadline further than 30 days (libcurl adds it to its clock).
  constexpr std::chrono::milliseconds longest = std::chrono::hours(24 * 30);
  std::chrono::milliseconds t = cfg_.max_network_delay;
  if (m.k == kind::connect && !m.first_connect) {
    const auto held = held_timeout();
    t = t > longest - held ? longest : held + t;
  } else if (m.k == kind::disconnect) {
    t = cfg_.disconnect_timeout;
  }
  return std::min(t, longest);
}

// ---------------------------------------------------------------------------------------------
// events

void session::on_frame(connection_type t, std::uint64_t request, std::string&& body) {
  if (state_ == state::closed) return;
  in_flight_request req;
  bool have_req = false;
  if (request != 0) {
    const auto it = requests_.find(request);
    if (it != requests_.end()) {
      req = std::move(it->second);
      requests_.erase(it);
      have_req = true;
      release_request_slot(request);
    }
  }
  // Replies are handled as they are read; data messages are counted, and read again one at a
  // time when dispatched.
  auto text = std::make_shared<std::string>(std::move(body));
  frame_reader reader(*text);
  pending_frame data{text, {}, 0};
  std::size_t skipped = 0;
  error first_skip;
  error malformed;
  for (;;) {
    const frame_reader::cursor before = reader.save();
    wire_message m;
    error why;
    const auto st = reader.next(m, arena_, why);
    if (st == frame_reader::status::end) break;
    if (st == frame_reader::status::malformed) {
      malformed = std::move(why);
      break;
    }
    if (st == frame_reader::status::skipped) {
      // One bad message (a co-publisher's, a server bug) never costs the valid ones beside it.
      if (++skipped <= 3) host_.log(log_level::warning, "skipped a message: " + why.message);
      if (!first_skip) first_skip = std::move(why);
      continue;
    }
    if (m.is_reply()) {
      // Faye keeps the publisher's id on delivered messages: a reply must match id and channel.
      std::uint64_t id;
      if (!parse_id(m.id, id)) continue;
      const auto it = awaiting_.find(id);
      if (it == awaiting_.end() || (!m.channel.empty() && m.channel != it->second.channel)) {
        continue;
      }
      handle_reply(m, take_awaiting(it));
      continue;
    }
    if (data.remaining++ == 0) data.at = before;
  }
  if (skipped > 3) {
    host_.log(log_level::warning, "skipped " + std::to_string(skipped) + " messages of one frame");
  }
  arena_.reset();
  data_since_connect_ += data.remaining;
  if (data.remaining != 0 && active()) {
    pending_count_ += data.remaining;
    pending_.push_back(std::move(data));
    if (buffer_full() && type_ == connection_type::websocket) {
      host_.pause_receive(type_, true);
      receive_paused_ = true;
    }
    host_.request_run();
  }
  if (malformed) {
    // What came before the fault was used; the rest of the exchange is lost.
    if (have_req) requests_.emplace(request, std::move(req));
    on_bad_frame(t, have_req ? request : 0, malformed);
    return;
  }
  if (connect_wanted_ && state_ == state::connected) send_connect(false);
  if (have_req) {
    // A request/response exchange is over: whatever it carried and got no reply never will.
    for (const auto id : req.ids) {
      const auto it = awaiting_.find(id);
      if (it == awaiting_.end()) continue;
      outgoing m = std::move(it->second);
      awaiting_.erase(it);
      // When the response skipped a malformed message, that was most likely the reply.
      std::string text = "the server's response held no usable reply to " + m.channel + " (id " +
                         std::to_string(id) + ")";
      fail_outgoing(std::move(m), first_skip ? make_error(errc::bad_response,
                                                           text + "; " + first_skip.message)
                                             : make_error(errc::no_reply, std::move(text)));
    }
  }
  flush();
}

void session::on_bad_frame(connection_type t, std::uint64_t request, const error& err) {
  if (state_ == state::closed) return;
  if (request != 0) {
    on_request_failed(t, request, err);
  } else if (t == type_) {
    // A stream frame we cannot read may have carried replies: the connection is unusable.
    host_.log(log_level::warning, "unusable frame: " + err.message);
    host_.abort(t);
    on_transport_down(t, err, true);
  }
}

void session::on_dropped(std::uint64_t request, std::string_view id_text, const error& err) {
  std::uint64_t id;
  if (!parse_id(id_text, id)) return;
  const auto it = awaiting_.find(id);
  if (it == awaiting_.end() || it->second.request != request) return;
  fail_outgoing(take_awaiting(it), err);
}

bool session::in_flight(std::uint64_t request) const noexcept { return requests_.count(request) != 0; }

bool session::resend(std::string_view id_text) {
  std::uint64_t id;
  if (!parse_id(id_text, id) || !active()) return false;
  const auto it = awaiting_.find(id);
  if (it == awaiting_.end()) return false;
  const outgoing& o = it->second;
  if (o.resent || (o.k != kind::publish && o.k != kind::subscribe && o.k != kind::unsubscribe)) {
    return false;
  }
  outgoing m = take_awaiting(it);
  m.resent = true;
  m.request = 0;
  queue_.push_front(std::move(m));
  host_.request_run();
  return true;
}

void session::on_request_failed(connection_type t, std::uint64_t request, const error& err) {
  (void)t;
  const auto it = requests_.find(request);
  if (it == requests_.end()) return;
  in_flight_request req = std::move(it->second);
  requests_.erase(it);
  release_request_slot(request);
  for (const auto id : req.ids) {
    const auto a = awaiting_.find(id);
    if (a == awaiting_.end()) continue;
    outgoing m = std::move(a->second);
    awaiting_.erase(a);
    fail_outgoing(std::move(m), err);
  }
  flush();
}

void session::on_transport_up(connection_type t) {
  if (t == type_) transport_up_ = true;
}

void session::on_transport_down(connection_type t, const error& err, bool was_up,
                                const std::vector<std::uint64_t>& unsent) {
  if (t != type_) return;
  transport_up_ = false;
  const bool lp_allowed = allows(connection_type::long_polling);
  const bool server_has_lp =
      server_types_.empty() ||
      std::find(server_types_.begin(), server_types_.end(), "long-polling") != server_types_.end();
  // Collect what was in flight on this connection, oldest first.
  std::vector<std::uint64_t> ids;
  for (auto it = requests_.begin(); it != requests_.end();) {
    if (it->second.type == t) {
      ids.insert(ids.end(), it->second.ids.begin(), it->second.ids.end());
      it = requests_.erase(it);
    } else {
      ++it;
    }
  }
  std::sort(ids.begin(), ids.end());
  connect_request_ = handshake_request_ = normal_request_ = 0;
  if (t == connection_type::websocket && was_up) ++websocket_failures_;
  // Fall back when websocket never came up, or keeps breaking while HTTP may work.
  const bool ws_hopeless = (!was_up && !ever_up_on_type_) ||
                           (cfg_.websocket_failures_before_fallback != 0 &&
                            websocket_failures_ >= cfg_.websocket_failures_before_fallback);
  // An upgrade refused with 401/403 asks for fresh credentials, not for another transport.
  const bool auth_failure = !was_up && is_auth_failure(err) && cfg_.has_auth;
  const bool auth = auth_failure && can_authenticate();
  // A refused certificate is a configuration error, not a websocket problem: no fallback.
  const bool fallback = t == connection_type::websocket && ws_hopeless && lp_allowed &&
                        server_has_lp && active() && !auth_failure &&
                        err.code != errc::certificate_error;
  // Take everything out first, decide, and run the completions last: each may call back into
  // the session (close(), reconnect_now()) and change these tables.
  std::vector<outgoing> failed;
  bool lost_handshake = false;
  bool lost_disconnect = false;
  std::size_t resent = 0;
  for (auto id = ids.rbegin(); id != ids.rend(); ++id) {
    const auto a = awaiting_.find(*id);
    if (a == awaiting_.end()) continue;
    outgoing m = std::move(a->second);
    awaiting_.erase(a);
    switch (m.k) {
      case kind::connect: break;
      case kind::handshake: lost_handshake = true; break;
      case kind::disconnect: lost_disconnect = true; break;
      default:
        // Frames that never left (the connection never opened, or they were still queued) are
        // sent again on the next one: the server cannot have seen them. While closing nothing
        // is sent again: they are cancelled with the rest.
        if (active() &&
            (!was_up || std::find(unsent.begin(), unsent.end(), m.request) != unsent.end())) {
          queue_.push_front(std::move(m));  // newest first: the queue keeps their order
          ++resent;
        } else {
          failed.push_back(std::move(m));
        }
    }
  }
  std::reverse(failed.begin(), failed.end());
  const error cancelled = make_error(errc::cancelled, "the client was closed");
  const auto fail_taken = [&] {
    const bool closing = !active();
    for (auto& m : failed) fail_outgoing(std::move(m), closing ? cancelled : err);
    failed.clear();
  };
  if (lost_disconnect || !active()) {
    fail_taken();
    if (lost_disconnect) finish_close();
    return;
  }
  if (resent != 0) host_.request_run();
  recover_after_down(t, err, was_up, lost_handshake, fallback, auth_failure, auth);
  fail_taken();
}

void session::recover_after_down(connection_type t, const error& err, bool was_up,
                                 bool lost_handshake, bool fallback, bool auth_failure,
                                 bool auth) {
  (void)t;
  if (fallback) {
    host_.log(log_level::info, "websocket unavailable (" + err.message + "); falling back to long-polling");
    host_.prepare_transport(connection_type::long_polling, connection_type::websocket);
    type_ = connection_type::long_polling;
    websocket_failures_ = 0;
    websocket_given_up_ = true;
    // Falling back is progress: long-polling gets a full connection_timeout of its own.
    connection_deadline_.reset();
    start_connection_deadline();
    if (state_ == state::connected) enter_reconnecting(err);
    else set_state(state_, err, true);  // the listener learns about the transport change
    if (client_id_.empty()) {
      send_handshake();
    } else {
      send_connect(true);
      flush();
    }
    return;
  }
  if (auth) {
    last_failure_ = err;
    enter_reconnecting(err);
    if (!active()) return;
    retry_at_.reset();
    authenticate_then([this, gen = epoch_](const error& e) {
      // The session moved on meanwhile (re-established, or handshaking anew): the failure
      // this answer was for is gone.
      if (!active() || epoch_ != gen) return;
      if (e) {
        if (!ever_connected_) fail_session(e);
        else connection_lost(e);
      } else if (client_id_.empty()) {
        send_handshake();  // the one retry with fresh credentials
      } else {
        send_connect(true);
        flush();
      }
    });
    return;
  }
  if (auth_failure && !ever_connected_) {
    fail_session(err);  // refused again with fresh credentials: the server's answer stands
    return;
  }
  // A websocket-only client stays websocket-only: what fails is retried over websocket, except
  // what retrying will not change during open() (an upgrade refused with a client error).
  if (lost_handshake && !was_up && !ever_connected_ && state_ == state::connecting &&
      is_final_refusal(err)) {
    fail_session(err);
    return;
  }
  connection_lost(err);
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
    fail_session(make_error(errc::connection_timeout, std::move(text)));
    return;
  }
  for (auto due = next_request_deadline(); due && now >= *due && active();
       due = next_request_deadline()) {
    const std::uint64_t request = deadlines_.top().second;
    deadlines_.pop();
    expire_request(request);
  }
  if (state_ == state::closed || transports_closing_) return;
  if (retry_at_ && now >= *retry_at_) {
    retry_at_.reset();
    auth_used_ = false;  // a backoff delay passed: a new failure may ask for credentials again
    if (retry_is_handshake_ || client_id_.empty()) send_handshake();
    else send_connect(state_ != state::connected);
  }
  rearm();
}

void session::run_deferred() {
  auto ready = std::move(deferred_);
  deferred_.clear();
  for (auto& [done, err] : ready) complete(done, err);
  flush();
  dispatch();
}

void session::on_transports_closed() {
  if (state_ == state::closed) return;
  set_state(state::closed);
  auto ready = std::move(deferred_);
  deferred_.clear();
  for (auto& [done, err] : ready) complete(done, err);
  auto dones = std::move(close_dones_);
  close_dones_.clear();
  for (auto& d : dones) complete(d, {});
}

// ---------------------------------------------------------------------------------------------
// replies

session::outgoing session::take_awaiting(std::unordered_map<std::uint64_t, outgoing>::iterator it) {
  outgoing out = std::move(it->second);
  awaiting_.erase(it);
  // A stream request is over once every message it carried has been answered (or taken back).
  const auto r = requests_.find(out.request);
  if (r != requests_.end() && r->second.type != connection_type::long_polling &&
      --r->second.remaining == 0) {
    release_request_slot(r->first);
    requests_.erase(r);
  }
  return out;
}

void session::track(std::uint64_t request, in_flight_request req,
                    std::chrono::milliseconds timeout) {
  const bool stream = req.type == connection_type::websocket;
  if (stream) {
    // A stream has no exchange to time out: without a deadline here, a lost reply (the
    // connect's included) left its call waiting forever and the client silent.
    req.deadline = later(host_.now(), timeout);
    req.timeout = timeout;
    deadlines_.emplace(*req.deadline, request);
  }
  requests_.emplace(request, std::move(req));
  if (stream) rearm();
}

std::optional<clock::time_point> session::next_request_deadline() {
  while (!deadlines_.empty()) {
    const auto [at, request] = deadlines_.top();
    const auto it = requests_.find(request);
    if (it != requests_.end() && it->second.deadline == at) return at;
    deadlines_.pop();  // answered (or given up) since
  }
  return std::nullopt;
}

void session::expire_request(std::uint64_t request) {
  const auto it = requests_.find(request);
  if (it == requests_.end()) return;
  std::string what = "/meta/connect";
  for (const auto id : it->second.ids) {
    const auto a = awaiting_.find(id);
    if (a != awaiting_.end()) {
      what = a->second.channel;
      break;
    }
  }
  const error timed_out = make_error(
      errc::timeout, "no reply to " + what + " within " +
                         std::to_string(it->second.timeout.count()) + " ms");
  if (request == connect_request_ || request == handshake_request_ ||
      request == disconnect_request_) {
    // The connection carries the session: a lost connect reply means it is dead (or the server
    // lost us). Drop it and recover as from any broken connection.
    host_.log(log_level::warning, timed_out.message + "; dropping the connection");
    const connection_type t = it->second.type;
    host_.abort(t);
    on_transport_down(t, timed_out, transport_up_);
    return;
  }
  // A lost reply to a publish or a subscription fails that call, as over long-polling.
  in_flight_request req = std::move(it->second);
  requests_.erase(it);
  release_request_slot(request);
  std::vector<outgoing> victims;
  for (const auto id : req.ids) {
    const auto a = awaiting_.find(id);
    if (a == awaiting_.end()) continue;
    victims.push_back(std::move(a->second));
    awaiting_.erase(a);
  }
  for (auto& m : victims) fail_outgoing(std::move(m), timed_out);
}

void session::release_request_slot(std::uint64_t request) noexcept {
  if (request == normal_request_) normal_request_ = 0;
  if (request == connect_request_) connect_request_ = 0;
  if (request == handshake_request_) handshake_request_ = 0;
  if (request == disconnect_request_) disconnect_request_ = 0;
}

void session::drop_requests_of(connection_type t) {
  // Take everything out first: each completion may call back into the session (close(),
  // reconnect_now()) and change these tables.
  std::vector<outgoing> victims;
  for (auto it = requests_.begin(); it != requests_.end();) {
    if (it->second.type != t) {
      ++it;
      continue;
    }
    for (const auto id : it->second.ids) {
      const auto a = awaiting_.find(id);
      if (a == awaiting_.end()) continue;
      if (a->second.k != kind::connect && a->second.k != kind::handshake) {
        victims.push_back(std::move(a->second));
      }
      awaiting_.erase(a);
    }
    release_request_slot(it->first);
    it = requests_.erase(it);
  }
  std::sort(victims.begin(), victims.end(),
            [](const outgoing& a, const outgoing& b) { return a.id < b.id; });
  for (auto& m : victims) {
    fail_outgoing(std::move(m), make_error(errc::transport_error, "connection abandoned"));
  }
}

void session::handle_reply(const wire_message& m, outgoing&& out) {
  error err;
  if (!m.successful.has_value()) {
    err = make_error(errc::bad_response, "reply to " + out.channel + " without \"successful\"");
  } else if (!*m.successful) {
    err = m.error.empty() ? make_error(errc::server_error, "refused by the server without an error text")
                          : parse_server_error(m.error);
  }
  if (m.has_advice && (out.k == kind::handshake || out.k == kind::connect)) {
    // Advice is the server's word on its own meta replies. Servers forward any field a
    // publisher puts on a message, advice included: taken from data messages, one co-publisher
    // could stop every subscriber of a channel.
    if (m.adv.reconnect != reconnect_advice::unspecified) advice_.reconnect = m.adv.reconnect;
    if (m.adv.interval) advice_.interval = m.adv.interval;
    if (m.adv.timeout) advice_.timeout = m.adv.timeout;
  }
  switch (out.k) {
    case kind::handshake:
      if (out.epoch == epoch_) handle_handshake_reply(m, err);  // else a superseded attempt
      break;
    case kind::connect:
      // A connect of an earlier handshake (or handshake attempt) answers for a session that is
      // gone: accepting it could report "connected" without a clientId.
      if (out.epoch == epoch_) handle_connect_reply(m, err, !out.first_connect);
      break;
    case kind::subscribe: handle_subscribe_reply(std::move(out), err); break;
    case kind::unsubscribe: handle_unsubscribe_reply(std::move(out), err); break;
    case kind::publish: complete(out.done, err); break;
    case kind::disconnect: finish_close(); break;
  }
}

void session::handle_handshake_reply(const wire_message& m, error err) {
  if (!active()) return;
  if (!err && m.client_id.empty()) err = make_error(errc::bad_response, "handshake reply without clientId");
  if (err) {
    last_failure_ = err;
    if (is_auth_failure(err) && m.adv.reconnect != reconnect_advice::none &&
        authenticate_then([this, gen = epoch_](const error& e) {
          // The session moved on meanwhile (re-established, or handshaking anew): the failure
          // this answer was for is gone.
          if (!active() || epoch_ != gen) return;
          if (e) handshake_refused(reconnect_advice::handshake, e);
          else send_handshake();  // the one retry with fresh credentials
        })) {
      return;
    }
    handshake_refused(m.adv.reconnect, err);
    return;
  }
  client_id_ = std::string(m.client_id);
  server_types_ = decode_string_array(m.connection_types);
  std::optional<connection_type> chosen;
  for (const auto t : cfg_.connection_types) {
    if (t == connection_type::websocket && websocket_given_up_) continue;
    if (std::find(server_types_.begin(), server_types_.end(), to_string(t)) != server_types_.end()) {
      chosen = t;
      break;
    }
  }
  if (!chosen) {
    std::vector<std::string> mine;
    for (const auto t : cfg_.connection_types) mine.emplace_back(to_string(t));
    fail_session(make_error(errc::no_common_transport,
                            "the client allows " + join_types(mine) + ", the server offers " +
                                join_types(server_types_)));
    return;
  }
  if (*chosen != type_) {
    host_.prepare_transport(*chosen, type_);
    type_ = *chosen;
    transport_up_ = false;
    ever_up_on_type_ = false;
    if (type_ == connection_type::websocket && connection_deadline_ &&
        allows(connection_type::long_polling)) {
      // The websocket attempt may use its whole connect timeout before falling back: it must
      // not eat the session's connection_timeout. (Without a fallback, connection_timeout is
      // the whole bound.)
      connection_deadline_ = later(later(host_.now(), cfg_.connection_timeout), cfg_.websocket_connect_timeout);
      rearm();
    }
  }
  // A new session: the server knows none of our subscriptions. Re-subscribe all of them in one
  // batch, and connect only once they are answered.
  ++epoch_;
  // Unsent (un)subscribe messages belong to the old session; reconcile below decides anew.
  std::deque<outgoing> keep;
  for (auto& q : queue_) {
    if (q.k == kind::publish) keep.push_back(std::move(q));
  }
  queue_ = std::move(keep);
  resubscribes_outstanding_ = 0;
  for (auto& [pattern, e] : patterns_) {
    e.server_subscribed = false;
    e.in_flight = false;
  }
  reconcile_all();
  if (resubscribes_outstanding_ > 0) flush();
  else send_connect(true);
}

void session::handshake_refused(reconnect_advice advised, const error& err) {
  last_failure_ = err;
  if (state_ == state::connecting && !ever_connected_) {
    fail_session(err);  // a refused handshake ends open() at once: no retry loop
    return;
  }
  follow_advice(advised == reconnect_advice::none ? reconnect_advice::none : reconnect_advice::handshake,
                err);
}

void session::connect_refused(reconnect_advice what, const error& err) {
  last_failure_ = err;
  if (what != reconnect_advice::none && is_auth_failure(err) && can_authenticate()) {
    enter_reconnecting(err);
    if (!active()) return;
    if (what == reconnect_advice::handshake) client_id_.clear();
    retry_at_.reset();
    const bool started = authenticate_then([this, gen = epoch_](const error& e) {
      // The session moved on meanwhile (re-established, or handshaking anew): the failure
      // this answer was for is gone.
      if (!active() || epoch_ != gen) return;
      if (e) {
        last_failure_ = e;
        if (!ever_connected_) fail_session(e);
        else schedule_retry(client_id_.empty());
        return;
      }
      // The one retry with fresh credentials.
      if (client_id_.empty()) send_handshake();
      else send_connect(true);
    });
    if (started) return;
  }
  if (is_auth_failure(err) && cfg_.has_auth && !ever_connected_ && what != reconnect_advice::none) {
    fail_session(err);  // refused again with fresh credentials during open()
    return;
  }
  follow_advice(what, err);
}

void session::handle_connect_reply(const wire_message& m, const error& err, bool held) {
  if (!active() || client_id_.empty()) return;
  if (err) {
    auto what = m.adv.reconnect;
    if (what == reconnect_advice::unspecified) {
      // Unknown-client errors (Faye 401, CometD 402) mean a new handshake whatever the advice.
      what = (err.server_code == 401 || err.server_code == 402) ? reconnect_advice::handshake
                                                                 : advice_.reconnect;
    }
    connect_refused(what, err);
    return;
  }
  if (m.adv.reconnect == reconnect_advice::none) {
    // "none" MUST NOT be retried, even when it comes with a successful connect.
    fail_session(make_error(errc::session_ended, "the server advised reconnect \"none\""));
    return;
  }
  last_failure_ = {};
  connection_deadline_.reset();
  ever_up_on_type_ = true;
  if (held) {
    // Only a connect the server held proves the session works: the first connect after a
    // handshake or a failure is answered at once by any server, also by one that fails every
    // held connect. Resetting the backoff on it made such a server a reconnect storm.
    failures_ = 0;
    auth_used_ = false;
    websocket_failures_ = 0;
  }
  if (state_ != state::connected) {
    ever_connected_ = true;
    set_state(state::connected);
    if (!active()) return;
    complete(open_done_, {});
    if (!active()) return;
    // Anything that could not be (re)subscribed while the connection was down goes now.
    reconcile_all();
    flush();
  }
  const auto interval = advice_.interval.value_or(0);
  if (interval > 0) {
    retry_at_ = later(host_.now(), std::chrono::milliseconds(interval));
    retry_is_handshake_ = false;
    rearm();
  } else {
    // Sent once the whole frame is handled: its data messages may fill the pending buffer.
    connect_wanted_ = true;
    // A held connect answered at once with nothing, with no interval asked for, is a server
    // that does not hold: the next connect waits (checked once the frame's data is counted).
    const auto window = std::max(std::chrono::milliseconds(100), held_timeout() / 2);
    check_empty_poll_ = held && host_.now() - connect_sent_at_ < window;
  }
}

void session::handle_subscribe_reply(outgoing&& out, const error& err) {
  const bool counted = out.resubscribe && out.epoch == epoch_ && resubscribes_outstanding_ > 0;
  if (counted) --resubscribes_outstanding_;
  const auto it = patterns_.find(out.payload);
  if (it != patterns_.end() && out.epoch == epoch_) {
    it->second.in_flight = false;
    const auto subs = it->second.subs;  // callbacks may subscribe/unsubscribe: work on a copy
    // A subscription the server had confirmed before survives a transport failure of its
    // re-subscribe: the next successful connect subscribes it again (not at once, which could
    // spin against a dead server). A refusal, or a failed first subscribe, ends the local
    // subscription with the error.
    const bool refused = err.code == errc::server_error;
    std::vector<std::shared_ptr<local_sub>> ended;
    if (!err) {
      it->second.server_subscribed = true;
    } else {
      auto& v = it->second.subs;
      for (const auto& sp : subs) {
        if (!sp->alive || (!refused && !sp->done)) continue;
        sp->alive = false;
        subs_.erase(sp->id);
        v.erase(std::remove(v.begin(), v.end(), sp), v.end());
        ended.push_back(sp);
      }
    }
    if (!err || refused || it->second.subs.empty()) reconcile(out.payload);
    // Callbacks last: the bookkeeping above is complete whatever they do.
    for (const auto& sp : (err ? ended : subs)) {
      if (!err) {
        if (sp->alive && sp->done) complete(sp->done, {});
      } else if (sp->done) {
        complete(sp->done, err);
      } else {
        host_.log(log_level::warning, "re-subscribe to " + out.payload + " refused: " + err.to_string());
        if (subscription_lost_ && !silenced_) invoke([&] { subscription_lost_(sp->id, sp->pattern, err); });
      }
    }
  }
  if (counted && resubscribes_outstanding_ == 0) send_connect(true);
}

void session::handle_unsubscribe_reply(outgoing&& out, const error& err) {
  const auto it = patterns_.find(out.payload);
  if (it == patterns_.end() || out.epoch != epoch_) return;
  pattern_entry& e = it->second;
  e.in_flight = false;
  // Even a failed unsubscribe ends our interest: no local handler is left for the channel.
  e.server_subscribed = false;
  auto waiters = std::move(e.unsub_waiters);
  e.unsub_waiters.clear();
  reconcile(out.payload);
  for (auto& w : waiters) complete(w, err);
}

void session::fail_outgoing(outgoing&& out, const error& err) {
  if (is_auth_failure(err) && cfg_.has_auth && out.k != kind::disconnect) {
    // HTTP 401/403: fresh credentials, then the same message once more.
    if (out.k == kind::handshake) {
      if (authenticate_then([this, gen = epoch_](const error& e) {
            // The session moved on meanwhile (re-established, or handshaking anew): the failure
            // this answer was for is gone.
            if (!active() || epoch_ != gen) return;
            if (e) handshake_refused(reconnect_advice::handshake, e);
            else send_handshake();
          })) {
        return;
      }
    } else if (out.k == kind::connect) {
      connect_refused(reconnect_advice::retry, err);
      return;
    } else if (!out.auth_retried && can_authenticate()) {
      // Held until authenticate() answers (on_authenticated puts them back in their order).
      out.auth_retried = true;
      auth_held_.push_back(std::move(out));
      authenticate_then([](const error&) {});
      return;
    }
  }
  switch (out.k) {
    case kind::publish: complete(out.done, err); break;
    case kind::subscribe: handle_subscribe_reply(std::move(out), err); break;
    case kind::unsubscribe: handle_unsubscribe_reply(std::move(out), err); break;
    case kind::disconnect: finish_close(); break;
    case kind::handshake:
      // A client error status on the very first handshake (wrong path, forbidden) will not
      // change by retrying: end open() with it.
      if (state_ == state::connecting && !ever_connected_ && is_final_refusal(err)) {
        fail_session(err);
        break;
      }
      connection_lost(err);
      break;
    case kind::connect: connection_lost(err); break;
  }
}

// ---------------------------------------------------------------------------------------------
// reconnection

void session::follow_advice(reconnect_advice what, const error& why) {
  if (!active()) return;
  switch (what) {
    case reconnect_advice::none:
      fail_session(why);
      return;
    case reconnect_advice::handshake:
      client_id_.clear();
      enter_reconnecting(why);
      if (active()) schedule_retry(true);
      return;
    case reconnect_advice::retry:
    case reconnect_advice::unspecified:
      enter_reconnecting(why);
      if (active()) schedule_retry(false);
      return;
  }
}

bool session::is_final_refusal(const error& err) noexcept {
  // 408 and 429 are worth another try; other client errors say the request itself is wrong.
  return err.code == errc::http_error && err.http_status >= 400 && err.http_status < 500 &&
         err.http_status != 408 && err.http_status != 429;
}

void session::connection_lost(const error& why) {
  if (!active()) return;
  if (why.code == errc::certificate_error) {
    // A certificate the client refuses is a configuration error: retrying cannot help.
    fail_session(why);
    return;
  }
  last_failure_ = why;
  resubscribes_outstanding_ = 0;
  enter_reconnecting(why);
  if (!active()) return;
  schedule_retry(client_id_.empty());
}

void session::enter_reconnecting(const error& why) {
  if (state_ != state::connected) return;
  set_state(state::reconnecting, why);
  if (cfg_.queue_while_reconnecting || !active()) return;
  // The application asked not to wait: what was queued fails now.
  std::deque<outgoing> keep;
  std::vector<outgoing> failed;
  for (auto& m : queue_) (m.k == kind::publish ? failed.emplace_back(std::move(m)) : keep.emplace_back(std::move(m)));
  queue_ = std::move(keep);
  const error e = make_error(errc::not_connected, "connection lost: " + why.to_string());
  for (auto& m : failed) complete(m.done, e);
}

std::error_code session::reconnect_now() {
  if (!active()) return errc::invalid_state;
  host_.abort(type_);
  drop_requests_of(type_);
  transport_up_ = false;
  resubscribes_outstanding_ = 0;
  const error why = make_error(errc::transport_error, "reconnect requested by the application");
  last_failure_ = why;
  enter_reconnecting(why);
  if (!active()) return {};
  failures_ = 0;
  retry_at_.reset();
  start_connection_deadline();
  if (client_id_.empty()) send_handshake();
  else send_connect(true);
  return {};
}

void session::schedule_retry(bool handshake) {
  ++failures_;
  const auto delay = later(host_.now(), std::chrono::milliseconds(advice_.interval.value_or(0)));
  retry_at_ = later(delay, backoff_delay());
  retry_is_handshake_ = handshake;
  start_connection_deadline();
  rearm();
  // Every failed attempt is worth a line: a client that retries in silence looks hung.
  const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(*retry_at_ - host_.now());
  host_.log(log_level::info, std::string(handshake ? "handshake" : "connect") + " attempt " +
                                 std::to_string(failures_) + " failed" +
                                 (last_failure_ ? " (" + last_failure_.to_string() + ")" : "") +
                                 "; retrying in " + std::to_string(wait.count()) + " ms");
}

std::chrono::milliseconds session::scaled_backoff(unsigned n) {
  const auto initial = std::max<std::int64_t>(1, cfg_.backoff_initial.count());
  const auto cap = std::max<std::int64_t>(initial, cfg_.backoff_max.count());
  const unsigned shift = std::min(n > 0 ? n - 1 : 0u, 30u);
  const std::int64_t base = initial > (cap >> shift) ? cap : std::min(cap, initial << shift);
  // xorshift64*: cheap, deterministic under a fixed seed (tests).
  rng_ ^= rng_ >> 12;
  rng_ ^= rng_ << 25;
  rng_ ^= rng_ >> 27;
  const double unit = static_cast<double>((rng_ * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
  const double jitter = std::isfinite(cfg_.backoff_jitter) ? std::clamp(cfg_.backoff_jitter, 0.0, 1.0) : 0.0;
  const auto ms = static_cast<std::int64_t>(static_cast<double>(base) * (1.0 - jitter * unit));
  return std::chrono::milliseconds(std::max<std::int64_t>(1, ms));
}

std::chrono::milliseconds session::backoff_delay() {
  auto delay = scaled_backoff(failures_);
  if (cfg_.reconnect_delay) {
    try {
      delay = std::max(std::chrono::milliseconds(0), cfg_.reconnect_delay(failures_, delay));
    } catch (...) {
      host_.log(log_level::error, "reconnect_delay threw; using the default backoff");
    }
  }
  return delay;
}

void session::fail_session(const error& why) {
  if (!active()) return;
  retry_at_.reset();
  connection_deadline_.reset();
  set_state(state::failed, why);
  host_.abort(type_);
  if (type_ != connection_type::long_polling) host_.abort(connection_type::long_polling);
  rearm();
  complete(open_done_, why);
  cancel_everything(why);
}

void session::start_connection_deadline() {
  if (cfg_.connection_timeout.count() <= 0 || connection_deadline_) return;
  connection_deadline_ = later(host_.now(), cfg_.connection_timeout);
  rearm();
}

void session::rearm() {
  if (transports_closing_ || state_ == state::closed) return;
  std::optional<clock::time_point> next;
  for (const auto& t : {retry_at_, connection_deadline_, disconnect_deadline_,
                        active() ? next_request_deadline() : std::nullopt}) {
    if (t && (!next || *t < *next)) next = t;
  }
  if (!next) {
    host_.disarm_timer();
    return;
  }
  const auto now = host_.now();
  auto delay = std::chrono::ceil<std::chrono::milliseconds>(*next - now);
  if (delay.count() < 0) delay = std::chrono::milliseconds(0);
  // A far deadline is armed a day at a time (on_timer finds nothing due and arms again): no
  // host has to add a near-infinite delay to its clock.
  host_.arm_timer(std::min(delay, std::chrono::milliseconds(std::chrono::hours(24))));
}

// ---------------------------------------------------------------------------------------------
// subscriptions and dispatch

void session::reconcile_all() {
  // reconcile() may erase entries: walk a copy of the keys.
  std::vector<std::string> patterns;
  patterns.reserve(patterns_.size());
  for (const auto& p : patterns_) patterns.push_back(p.first);
  for (const auto& p : patterns) reconcile(p);
}

void session::reconcile(const std::string& pattern) {
  const auto it = patterns_.find(pattern);
  if (it == patterns_.end()) return;
  pattern_entry& e = it->second;
  if (e.in_flight) return;
  if (!e.subs.empty() && !e.server_subscribed) {
    if (!active()) return;
    e.in_flight = true;
    outgoing m{kind::subscribe};
    m.channel = "/meta/subscribe";
    m.payload = pattern;
    // After a new handshake the connect waits for these answers.
    if (state_ == state::reconnecting && !client_id_.empty() && connect_request_ == 0) {
      m.resubscribe = true;
      ++resubscribes_outstanding_;
    }
    queue_.push_back(std::move(m));
    host_.request_run();
  } else if (e.subs.empty() && e.server_subscribed) {
    if (!active()) return;
    e.in_flight = true;
    outgoing m{kind::unsubscribe};
    m.channel = "/meta/unsubscribe";
    m.payload = pattern;
    queue_.push_back(std::move(m));
    host_.request_run();
  } else if (e.subs.empty()) {
    auto waiters = std::move(e.unsub_waiters);
    if (is_wildcard(pattern) && wildcard_patterns_ > 0) --wildcard_patterns_;
    patterns_.erase(it);
    for (auto& w : waiters) defer(std::move(w), {});
  }
}

bool session::buffer_full() const noexcept {
  return cfg_.max_pending_count != 0 && pending_count_ >= cfg_.max_pending_count;
}

void session::collect_matches(std::string_view channel) {
  match_buf_.clear();
  auto add = [this](const std::string& key) {
    const auto it = patterns_.find(key);
    if (it == patterns_.end()) return;
    for (const auto& s : it->second.subs) match_buf_.push_back(s);
  };
  match_key_.assign(channel.data(), channel.size());
  add(match_key_);
  if (wildcard_patterns_ == 0) return;
  // "/a/b/c" is matched by "/a/b/*", "/a/b/**", "/a/**" and "/**".
  auto slash = channel.rfind('/');
  bool last = true;
  while (slash != std::string_view::npos) {
    match_key_.assign(channel.data(), slash + 1);
    if (last) {
      match_key_ += '*';
      add(match_key_);
      match_key_ += '*';
    } else {
      match_key_ += "**";
    }
    add(match_key_);
    last = false;
    if (slash == 0) break;
    slash = channel.rfind('/', slash - 1);
  }
}

void session::dispatch() {
  std::size_t n = 0;
  while (!paused_ && !pending_.empty() && n < cfg_.dispatch_batch && active()) {
    pending_frame& f = pending_.front();
    const std::shared_ptr<const std::string> text = f.text;  // a handler may close() the client
    frame_reader reader(*text, f.at);
    wire_message m;
    error why;
    frame_reader::status st;
    do {
      st = reader.next(m, dispatch_arena_, why);
    } while (st == frame_reader::status::skipped ||
             (st == frame_reader::status::message && m.is_reply()));
    // The bookkeeping first: the handlers may do anything.
    --pending_count_;
    f.at = reader.save();
    if (--f.remaining == 0) pending_.pop_front();
    ++n;
    if (st != frame_reader::status::message) continue;  // the walk that counted it found it
    const message msg{m.channel, m.data, m.id, m.ext, m.json};
    collect_matches(msg.channel);
    // A handler may unsubscribe others or close the client: each is checked just before its
    // call.
    auto targets = std::move(match_buf_);
    match_buf_.clear();
    for (const auto& s : targets) {
      if (!s->alive || silenced_ || !active()) continue;
      invoke([&] { s->handler(msg); });
    }
    targets.clear();
    if (match_buf_.capacity() < targets.capacity()) match_buf_.swap(targets);
    if (cfg_.notify_delivered && !silenced_ && active()) host_.delivered(msg);
  }
  dispatch_arena_.reset();
  if (!paused_ && !pending_.empty() && active()) host_.request_run();
  if (!buffer_full()) {
    if (receive_paused_) {
      receive_paused_ = false;
      host_.pause_receive(type_, false);
    }
    if (connect_wanted_ && state_ == state::connected) send_connect(false);
  }
}

// ---------------------------------------------------------------------------------------------
// completion

template <typename F>
void session::invoke(F&& f) noexcept {
  // No exception may cross into the event loop's C frames.
  try {
    f();
  } catch (const std::exception& e) {
    host_.log(log_level::error, std::string("a callback threw: ") + e.what());
  } catch (...) {
    host_.log(log_level::error, "a callback threw a non-std exception");
  }
}

void session::complete(completion_fn& done, const error& err) {
  if (!done) return;
  completion_fn f = std::move(done);
  done = nullptr;
  if (!silenced_) invoke([&] { f(err); });
}

void session::defer(completion_fn done, error err) {
  if (!done) return;
  deferred_.emplace_back(std::move(done), std::move(err));
  host_.request_run();
}

bool session::is_auth_failure(const error& err) noexcept {
  return (err.code == errc::server_error && (err.server_code == 401 || err.server_code == 403)) ||
         (err.code == errc::http_error && (err.http_status == 401 || err.http_status == 403));
}

bool session::authenticate_then(std::function<void(const error&)> then) {
  if (!cfg_.has_auth) return false;
  if (!auth_in_flight_) {
    if (auth_used_) return false;  // once per success or backoff delay: never a tight loop
    auth_used_ = true;
    auth_in_flight_ = true;
    // An authenticate() that never answers ends at connection_timeout like any other outage.
    start_connection_deadline();
    auth_waiters_.push_back(std::move(then));
    host_.log(log_level::info, "authentication failure: asking the auth extension for credentials");
    host_.authenticate();
    return true;
  }
  auth_waiters_.push_back(std::move(then));
  return true;
}

void session::on_authenticated(const error& err) {
  if (!auth_in_flight_) return;
  auth_in_flight_ = false;
  error e;
  if (err) {
    e = err;
    if (e.code != errc::authentication_failed) {
      e = make_error(errc::authentication_failed, "authenticate() failed: " + err.to_string());
    }
  }
  release_auth_held(e);
  auto waiters = std::move(auth_waiters_);
  auth_waiters_.clear();
  for (auto& w : waiters) w(e);
}

void session::release_auth_held(const error& err) {
  if (auth_held_.empty()) return;
  auto held = std::move(auth_held_);
  auth_held_.clear();
  std::sort(held.begin(), held.end(), [](const outgoing& a, const outgoing& b) { return a.id < b.id; });
  if (err || !active()) {
    const error e = err ? err : make_error(errc::cancelled, "the client was closed");
    for (auto& m : held) fail_outgoing(std::move(m), e);
    return;
  }
  for (auto it = held.rbegin(); it != held.rend(); ++it) {
    // A (un)subscribe of a session that has ended since: the re-handshake re-subscribed anew.
    if (it->k != kind::publish && it->epoch != epoch_) continue;
    it->request = 0;
    queue_.push_front(std::move(*it));
  }
  host_.request_run();
}

void session::cancel_auth_waiters(const error& err) {
  release_auth_held(err);
  if (auth_waiters_.empty()) return;
  auth_in_flight_ = false;  // its answer, when it comes, is ignored
  auto waiters = std::move(auth_waiters_);
  auth_waiters_.clear();
  for (auto& w : waiters) w(err);
}

void session::cancel_everything(const error& err) {
  cancel_auth_waiters(err);
  // Take everything out first: each completion may call back into the session.
  std::vector<outgoing> victims;
  for (auto& [id, m] : awaiting_) victims.push_back(std::move(m));
  awaiting_.clear();
  requests_.clear();
  connect_request_ = handshake_request_ = normal_request_ = disconnect_request_ = 0;
  while (!queue_.empty()) {
    victims.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  std::sort(victims.begin(), victims.end(),
            [](const outgoing& a, const outgoing& b) { return a.id < b.id; });
  auto patterns = std::move(patterns_);
  patterns_.clear();
  subs_.clear();
  wildcard_patterns_ = 0;
  pending_.clear();
  pending_count_ = 0;
  for (auto& m : victims) {
    if (m.k == kind::publish) complete(m.done, err);
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
  if (state_ == state::closed || transports_closing_) return;
  transports_closing_ = true;
  retry_at_.reset();
  connection_deadline_.reset();
  disconnect_deadline_.reset();
  host_.disarm_timer();
  cancel_everything(make_error(errc::cancelled, "the client was closed"));
  host_.close_transports();
}

void session::set_state(state s, const error& why, bool force) {
  if (s == state_ && !force) return;
  state_ = s;
  if (!silenced_) invoke([&] { host_.state_changed(s, type_, why); });
}

}  // namespace uvcometd::detail
