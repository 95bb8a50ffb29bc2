// What arrives: frames walked message by message, replies matched to what was sent, calls
// completed, subscriptions reconciled, and data messages dispatched to their handlers.
#include "session/session.hpp"

#include <algorithm>
#include <functional>
#include <utility>

#include "channel.hpp"
#include "session/session_util.hpp"

namespace uvcometd::detail {
namespace {

std::string join_types(const std::vector<std::string>& names) {
  std::string out = "[";
  for (std::size_t i = 0; i < names.size(); ++i) out += (i ? "," : "") + names[i];
  return out + "]";
}

// True when what a queued_message keeps of `m` is all views into `text`, none into the reader's
// arena (which the next message reuses): channel and id are the decoded ones among them (data,
// ext and json are always raw text).
bool views_into(const wire_message& m, std::string_view text) noexcept {
  const std::less_equal<const char*> le;
  const auto in = [&](std::string_view v) {
    return v.empty() ||
           (le(text.data(), v.data()) && le(v.data() + v.size(), text.data() + text.size()));
  };
  return in(m.channel) && in(m.id);
}

}  // namespace

void session::on_frame(connection_type t, std::uint64_t request, std::string&& body) {
  if (phase_ == phase::closed) return;
  // A request/response exchange is answered: its slot is free, the replies are handled below,
  // and what it carried that got no reply fails after them.
  const bool exchange = request != 0 && ledger_.is_open(request);
  if (exchange) ledger_.answered(request);
  // Replies are handled as they are read; data messages are kept as read (up to
  // pending_queue::max_decoded of them, each with its views into the text), and the ones after
  // those are counted and read again one at a time when dispatched.
  auto text = std::make_shared<std::string>(std::move(body));
  frame_reader reader(*text);
  std::vector<queued_message> decoded;
  frame_reader::cursor rest_at;
  std::size_t rest = 0;  // data messages after `decoded`, from rest_at
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
      if (!parse_message_id(m.id, id)) continue;
      const outgoing* out = ledger_.awaiting(id);
      if (!out || (!m.channel.empty() && m.channel != out->channel)) continue;
      handle_reply(m, ledger_.take(id));
      continue;
    }
    if (rest == 0 && decoded.size() < pending_queue::max_decoded && views_into(m, *text)) {
      // One allocation for the frame's messages, not a series of growing ones (every message of
      // a Bayeux frame is at least 20 bytes of text), and none for a frame of replies only.
      if (decoded.empty()) {
        decoded.reserve(std::min(pending_queue::max_decoded, (text->size() - before.pos) / 20 + 1));
      }
      decoded.push_back(queued_message::of(m));
    } else if (rest++ == 0) {
      rest_at = before;
    }
  }
  if (skipped > 3) {
    host_.log(log_level::warning, "skipped " + std::to_string(skipped) + " messages of one frame");
  }
  arena_.reset();
  const std::size_t data = decoded.size() + rest;
  data_since_connect_ += data;
  if (phase_ == phase::connected) data_while_connected_ += data;
  if (data != 0 && active()) {
    // A frame of few long messages does not keep the room it was given for many short ones.
    if (decoded.capacity() > 2 * decoded.size() + 16) decoded.shrink_to_fit();
    pending_.push(std::move(text), std::move(decoded), rest_at, rest);
    if (buffer_full() && host_.traits(type_).pausable) {
      host_.pause_receive(type_, true);
      receive_paused_ = true;
    }
    host_.request_run();
  }
  if (malformed && !exchange) {
    // A stream frame we cannot read to its end may have carried replies: the connection goes.
    on_bad_frame(t, 0, malformed);
    return;
  }
  // What came before a fault was used (a connect reply among it asks for the next connect);
  // what the exchange carried and got no reply fails below.
  if (connect_wanted_ && phase_ == phase::connected) send_connect(false);
  if (malformed) {
    host_.log(log_level::warning, "malformed response: " + malformed.message);
    on_request_failed(t, request, malformed);
    return;
  }
  if (exchange) {
    // Whatever the exchange carried and got no reply never will. When the response skipped a
    // malformed message, that was most likely the reply.
    for (auto& m : ledger_.close(request)) {
      std::string what = "the server's response held no usable reply to " + m.channel + " (id " +
                         std::to_string(m.id) + ")";
      fail_outgoing(std::move(m),
                    first_skip ? make_error(errc::bad_response, what + "; " + first_skip.message)
                               : make_error(errc::no_reply, std::move(what)));
    }
  }
  flush();
}

void session::on_bad_frame(connection_type t, std::uint64_t request, const error& err) {
  if (phase_ == phase::closed) return;
  if (request != 0) {
    on_request_failed(t, request, err);
  } else if (t == type_) {
    // A stream frame we cannot read may have carried replies: the connection is unusable.
    host_.log(log_level::warning, "unusable frame: " + err.message);
    host_.abort(t);
    on_transport_down(t, err, true);
  }
}

void session::on_dropped(std::uint64_t request, std::uint64_t id, const error& err) {
  const outgoing* out = ledger_.awaiting(id);
  if (!out || out->request != request) return;
  fail_outgoing(ledger_.take(id), err);
}

bool session::resend(std::uint64_t id) {
  if (!active()) return false;
  const outgoing* o = ledger_.awaiting(id);
  if (!o || o->resent ||
      (o->kind != message_kind::publish && o->kind != message_kind::subscribe &&
       o->kind != message_kind::unsubscribe)) {
    return false;
  }
  outgoing m = ledger_.take(id);
  m.resent = true;
  m.request = 0;
  queue_.push_front(std::move(m));
  host_.request_run();
  return true;
}

void session::on_request_failed(connection_type t, std::uint64_t request, const error& err) {
  (void)t;
  if (!ledger_.is_open(request)) return;
  for (auto& m : ledger_.close(request)) fail_outgoing(std::move(m), err);
  flush();
}

void session::handle_reply(const wire_message& m, outgoing&& out) {
  error err;
  if (!m.successful.has_value()) {
    err = make_error(errc::bad_response, "reply to " + out.channel + " without \"successful\"");
  } else if (!*m.successful) {
    err = m.error.empty()
              ? make_error(errc::server_error, "refused by the server without an error text")
              : parse_server_error(m.error);
  }
  const bool meta_cycle = out.kind == message_kind::handshake || out.kind == message_kind::connect;
  if (meta_cycle && out.epoch != epoch_) return;  // an earlier handshake's: the session moved on
  if (m.has_advice && meta_cycle) {
    // Advice is the server's word on its own meta replies. Servers forward any field a
    // publisher puts on a message, advice included: taken from data messages, one co-publisher
    // could stop every subscriber of a channel.
    if (m.adv.reconnect != reconnect_advice::unspecified) advice_.reconnect = m.adv.reconnect;
    if (m.adv.interval) advice_.interval = m.adv.interval;
    if (m.adv.timeout) advice_.timeout = m.adv.timeout;
  }
  const std::string channel = out.kind == message_kind::publish ? std::string() : out.channel;
  switch (out.kind) {
    case message_kind::handshake: handle_handshake_reply(m, err); break;
    case message_kind::connect: handle_connect_reply(m, err, !out.first_connect); break;
    case message_kind::subscribe: handle_subscribe_reply(std::move(out), err); break;
    case message_kind::unsubscribe: handle_unsubscribe_reply(std::move(out), err); break;
    case message_kind::publish: complete_publish(out, err, &m); return;
    case message_kind::disconnect: finish_close(); break;
  }
  tell_meta(channel, err, &m);
}

void session::tell_meta(std::string_view channel, const error& err, const wire_message* reply) {
  if (!meta_listener_ || silenced_) return;
  meta_message mm;
  mm.channel = channel;
  std::string text;
  if (reply) {
    mm.successful = reply->successful.value_or(false);
    mm.error = reply->error;
    mm.advice = reply->advice_json;
    mm.ext = reply->ext;
    mm.json = reply->json;
    if (!mm.successful && mm.error.empty() && err) mm.error = text = err.to_string();
  } else {
    mm.error = text = err.to_string();
  }
  invoke([&] { meta_listener_(mm); });
}

void session::handle_handshake_reply(const wire_message& m, const error& reply_err) {
  error err = reply_err;
  if (!active()) return;
  if (!err && m.client_id.empty())
    err = make_error(errc::bad_response, "handshake reply without clientId");
  if (err) {
    failure f;
    f.kind = failure_kind::handshake_refused;
    f.err = std::move(err);
    f.advice = m.adv.reconnect;
    recover(f);
    return;
  }
  client_id_ = std::string(m.client_id);
  server_types_ = decode_string_array(m.connection_types);
  if (m.has_advice && !m.adv.hosts.empty()) {
    const auto hosts = decode_string_array(m.adv.hosts);
    host_.log(log_level::info, "advice.hosts: " + std::to_string(hosts.size()) + " server(s)");
    endpoints_.advise(hosts);
  }
  std::optional<connection_type> chosen;
  for (const auto t : cfg_.connection_types) {
    if (t == connection_type::websocket && websocket_given_up_) continue;
    if (std::find(server_types_.begin(), server_types_.end(), to_string(t)) !=
        server_types_.end()) {
      chosen = t;
      break;
    }
  }
  if (!chosen) {
    std::vector<std::string> mine;
    for (const auto t : cfg_.connection_types) mine.emplace_back(to_string(t));
    fail_session(make_error(errc::no_common_transport, "the client allows " + join_types(mine) +
                                                           ", the server offers " +
                                                           join_types(server_types_)));
    return;
  }
  if (*chosen != type_) {
    type_ = *chosen;
    transport_up_ = false;
    ever_up_on_type_ = false;
    if (type_ == connection_type::websocket && connection_deadline_ &&
        allows(connection_type::long_polling)) {
      // The websocket attempt may use its whole connect timeout before falling back: it must
      // not eat the session's connection_timeout. (Without a fallback, connection_timeout is
      // the whole bound.)
      connection_deadline_ =
          later(later(host_.now(), cfg_.connection_timeout), cfg_.websocket_connect_timeout);
      rearm();
    }
  }
  // A new session: the server knows none of our subscriptions. Re-subscribe all of them in one
  // batch, and connect only once they are answered.
  ++epoch_;
  // Unsent (un)subscribe messages belong to the old session; reconcile below decides anew.
  std::deque<outgoing> keep;
  for (auto& q : queue_) {
    if (q.kind == message_kind::publish) keep.push_back(std::move(q));
  }
  queue_ = std::move(keep);
  resubscribes_outstanding_ = 0;
  subs_.server_forgot_all();
  reconcile_all();
  if (resubscribes_outstanding_ > 0) {
    enter(phase::subscribing);
    flush();
  } else {
    send_connect(true);
  }
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
    failure f;
    f.kind = failure_kind::connect_refused;
    f.err = err;
    f.advice = what;
    recover(f);
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
  moved_ = false;
  if (held) {
    // Only a connect the server held proves the session works: the first connect after a
    // handshake or a failure is answered at once by any server, also by one that fails every
    // held connect. Resetting the backoff on it made such a server a reconnect storm.
    backoff_.reset();
    auth_.rearm();
    websocket_failures_ = 0;
    endpoints_.succeeded();
  }
  if (m.has_advice && !m.adv.hosts.empty()) {
    const auto hosts = decode_string_array(m.adv.hosts);
    host_.log(log_level::info, "advice.hosts: " + std::to_string(hosts.size()) + " server(s)");
    endpoints_.advise(hosts);
  }
  if (phase_ != phase::connected) {
    ever_connected_ = true;
    enter(phase::connected);
    if (!active()) return;
    complete(open_done_, {});
    if (!active()) return;
    // Anything that could not be (re)subscribed while the connection was down goes now.
    reconcile_all();
    flush();
  }
  if (held && cfg_.failback_after.count() > 0 && endpoints_.index() != 0 &&
      host_.now() - arrived_ >= cfg_.failback_after && endpoints_.go_first()) {
    // Back to the preferred server at the next connect; if it fails, failover moves on.
    use_current_endpoint(make_error(errc::transport_error, "failing back"));
    if (!active()) return;
  }
  const auto interval = advice_.interval.value_or(0);
  if (interval > 0) {
    retry_at_ = later(host_.now(), std::chrono::milliseconds(interval));
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
  auto* entry = subs_.find(out.payload);
  if (entry && out.epoch == epoch_) {
    entry->in_flight = false;
    const auto subs = entry->subs;  // callbacks may subscribe/unsubscribe: work on a copy
    // A subscription the server had confirmed before survives a transport failure of its
    // re-subscribe: the next successful connect subscribes it again (not at once, which could
    // spin against a dead server). A refusal, or a failed first subscribe, ends the local
    // subscription with the error.
    const bool refused = err.code == errc::server_error;
    std::vector<sub_ptr> ended;
    if (!err) {
      entry->server_subscribed = true;
    } else {
      for (const auto& sp : subs) {
        if (!sp->alive || (!refused && !sp->done)) continue;
        subs_.drop(sp);
        ended.push_back(sp);
      }
    }
    entry = subs_.find(out.payload);
    if (!err || refused || (entry && entry->subs.empty())) reconcile(out.payload);
    // Callbacks last: the bookkeeping above is complete whatever they do.
    for (const auto& sp : (err ? ended : subs)) {
      if (!err) {
        if (sp->alive && sp->done) complete(sp->done, {});
      } else if (sp->done) {
        complete(sp->done, err);
      } else {
        host_.log(log_level::warning,
                  "re-subscribe to " + out.payload + " refused: " + err.to_string());
        if (subscription_lost_ && !silenced_)
          invoke([&] { subscription_lost_(sp->id, sp->pattern, err); });
      }
    }
  }
  if (counted && resubscribes_outstanding_ == 0) send_connect(true);
}

void session::handle_unsubscribe_reply(outgoing&& out, const error& err) {
  auto* entry = subs_.find(out.payload);
  if (!entry || out.epoch != epoch_) return;
  entry->in_flight = false;
  // Even a failed unsubscribe ends our interest: no local handler is left for the channel.
  entry->server_subscribed = false;
  auto waiters = std::exchange(entry->unsub_waiters, {});
  reconcile(out.payload);
  for (auto& w : waiters) complete(w, err);
}

void session::fail_outgoing(outgoing&& out, const error& err) {
  // Held for fresh credentials only while the session lives: once closing, nothing is sent
  // again, and an authenticate() started then would outlive the close.
  if (active() && is_auth_failure(err) && auth_.enabled() &&
      (out.kind == message_kind::publish || out.kind == message_kind::subscribe ||
       out.kind == message_kind::unsubscribe) &&
      !out.auth_retried && auth_.available()) {
    // HTTP 401/403: fresh credentials, then the same message once more. Held until
    // authenticate() answers (release_auth_held puts them back in their order).
    out.auth_retried = true;
    auth_.held.push_back(std::move(out));
    authenticate_then([](const error&) {});
    return;
  }
  if (out.kind != message_kind::publish) tell_meta(out.channel, err, nullptr);
  switch (out.kind) {
    case message_kind::publish: complete_publish(out, err); break;
    case message_kind::subscribe: handle_subscribe_reply(std::move(out), err); break;
    case message_kind::unsubscribe: handle_unsubscribe_reply(std::move(out), err); break;
    case message_kind::disconnect: finish_close(); break;
    case message_kind::handshake:
    case message_kind::connect: {
      if (!active() || out.epoch != epoch_) break;
      failure f;
      f.kind = out.kind == message_kind::handshake ? failure_kind::handshake_failed
                                                   : failure_kind::connect_failed;
      f.err = err;
      recover(f);
      break;
    }
  }
}

void session::fail_all(std::vector<outgoing>&& messages, const error& err) {
  // The connect and the handshake of an abandoned connection are dropped silently: whoever
  // abandoned it decides what comes next.
  for (auto& m : messages) {
    if (m.kind == message_kind::connect || m.kind == message_kind::handshake) continue;
    fail_outgoing(std::move(m), err);
  }
}

void session::expire_request(std::uint64_t request) {
  const auto* req = ledger_.find(request);
  if (!req) return;
  std::string what = "/meta/connect";
  for (const auto id : req->ids) {
    if (const outgoing* m = ledger_.awaiting(id)) {
      what = m->channel;
      break;
    }
  }
  const error timed_out =
      make_error(errc::timeout,
                 "no reply to " + what + " within " + std::to_string(req->timeout.count()) + " ms");
  if (req->holds == exchanges::slot::connect || req->holds == exchanges::slot::handshake ||
      req->holds == exchanges::slot::disconnect) {
    // The connection carries the session: a lost connect reply means it is dead (or the server
    // lost us). Drop it and recover as from any broken connection.
    host_.log(log_level::warning, timed_out.message + "; dropping the connection");
    const connection_type t = req->type;
    host_.abort(t);
    on_transport_down(t, timed_out, transport_up_);
    return;
  }
  // A lost reply to a publish or a subscription fails that call, as over long-polling.
  for (auto& m : ledger_.close(request)) fail_outgoing(std::move(m), timed_out);
}

void session::reconcile_all() {
  for (const auto& p : subs_.patterns()) reconcile(p);
}

void session::reconcile(const std::string& pattern) {
  std::vector<completion_fn> waiters;
  const auto* entry = subs_.find(pattern);
  // Only an active session asks the server for anything; what cannot be asked now is asked
  // when the session is back (reconcile_all after a connect).
  if (entry && !entry->in_flight && (!entry->subs.empty() != entry->server_subscribed) &&
      !active()) {
    return;
  }
  switch (subs_.reconcile(pattern, waiters)) {
    case subscription_table::action::none: return;
    case subscription_table::action::forgotten:
      for (auto& w : waiters) defer(std::move(w), {});
      return;
    case subscription_table::action::subscribe: {
      outgoing m{message_kind::subscribe};
      m.channel = "/meta/subscribe";
      m.payload = pattern;
      if (const auto* e = subs_.find(pattern)) m.ext = e->ext;  // also on a re-subscription
      // After a new handshake the connect waits for these answers.
      if (!client_id_.empty() && ever_connected_ && phase_ != phase::connected &&
          !ledger_.busy(exchanges::slot::connect)) {
        m.resubscribe = true;
        ++resubscribes_outstanding_;
      }
      queue_.push_back(std::move(m));
      host_.request_run();
      return;
    }
    case subscription_table::action::unsubscribe: {
      outgoing m{message_kind::unsubscribe};
      m.channel = "/meta/unsubscribe";
      m.payload = pattern;
      queue_.push_back(std::move(m));
      host_.request_run();
      return;
    }
  }
}

bool session::buffer_full() const noexcept {
  return cfg_.max_pending_count != 0 && pending_.size() >= cfg_.max_pending_count;
}

void session::dispatch() {
  std::size_t n = 0;
  queued_message m;
  std::shared_ptr<const std::string> hold;  // a handler may close() the client: keep the text
  while (!paused_ && n < cfg_.dispatch_batch && active() && pending_.take(m, hold)) {
    ++n;
    const message msg{m.channel, m.data, m.id, m.ext, m.json};
    subs_.collect(msg.channel, match_buf_);
    if (match_buf_.empty() && unmatched_ && !silenced_) {
      // A message nobody subscribed to: a service reply, a /service/** push, a direct delivery.
      invoke([&] { unmatched_(msg); });
    }
    // A handler may unsubscribe others or close the client: each is checked just before its
    // call, on a copy of the list.
    auto targets = std::move(match_buf_);
    for (const auto& s : targets) {
      if (!s->alive || silenced_ || !active()) continue;
      invoke([&] { s->handler(msg); });
    }
    targets.clear();
    if (match_buf_.capacity() < targets.capacity()) match_buf_.swap(targets);
    if (cfg_.notify_delivered && !silenced_ && active()) host_.delivered(msg);
  }
  pending_.release_scratch();
  if (!paused_ && !pending_.empty() && active()) host_.request_run();
  if (!buffer_full()) {
    if (receive_paused_) {
      receive_paused_ = false;
      host_.pause_receive(type_, false);
    }
    if (connect_wanted_ && phase_ == phase::connected) send_connect(false);
  }
}

}  // namespace uvcometd::detail
