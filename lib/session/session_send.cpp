// What the session sends: the handshake, the connect cycle (with its floor), the queued calls
// in one frame, and the deadlines they get.
#include "session/session.hpp"

#include <algorithm>
#include <utility>

#include "session/session_util.hpp"

namespace uvcometd::detail {

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

void session::resume_session(const error& why) {
  if (!active()) return;
  if (client_id_.empty()) {
    enter(phase::handshaking, why);
    send_handshake();
  } else {
    enter(phase::connecting, why);
    send_connect(true);
  }
}

void session::send_handshake() {
  if (!active()) return;
  retry_at_.reset();
  client_id_.clear();
  resubscribes_outstanding_ = 0;
  // A new session has nothing queued anywhere: its first connect is not held, wherever it is.
  moved_ = false;
  // Whatever was sent for an earlier handshake no longer counts (epoch_ moves again when this
  // one succeeds).
  ++epoch_;
  // Negotiation after the handshake picks the preferred type again (so websocket, once it
  // worked, is tried first again).
  const connection_type t = handshake_type();
  if (t != type_) {
    host_.abort(type_);
    fail_all(ledger_.close_all(type_), make_error(errc::transport_error, "connection abandoned"));
    if (!active()) return;
    type_ = t;
  }
  if (phase_ != phase::handshaking) enter(phase::handshaking);
  outgoing m{message_kind::handshake};
  m.channel = "/meta/handshake";
  send_alone(std::move(m), exchanges::slot::handshake);
}

void session::send_connect(bool first) {
  if (!active() || ledger_.busy(exchanges::slot::connect) || client_id_.empty() ||
      resubscribes_outstanding_ > 0) {
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
      const auto delay = std::min(cap, backoff_.delay_for(empty_polls_));
      if (empty_polls_ == 1) {
        host_.log(log_level::warning,
                  "the server answers /meta/connect at once with nothing; "
                  "waiting between connects");
      }
      connect_wanted_ = false;
      retry_at_ = later(host_.now(), delay);
      rearm();
      return;
    }
    empty_polls_ = 0;
  }
  connect_wanted_ = false;
  retry_at_.reset();
  connect_sent_at_ = host_.now();
  data_since_connect_ = 0;
  outgoing m{message_kind::connect};
  m.channel = "/meta/connect";
  m.first_connect = first;
  // A first connect asks to be answered at once (open() completes, a reconnection is reported,
  // without waiting for a poll). The first one on another server of a cluster, continuing the
  // session, is held briefly: that server may have queued messages for it, and one that reads
  // its queue asynchronously (faye-redis) drops what it read for a poll closed meanwhile.
  if (first && moved_) {
    m.hold_ms = static_cast<std::uint32_t>(
        std::min(held_timeout(), std::chrono::milliseconds(resume_hold)).count());
  }
  if (first && phase_ != phase::connected) enter(phase::connecting);
  send_alone(std::move(m), exchanges::slot::connect);
}

void session::send_alone(outgoing&& m, exchanges::slot holds) {
  m.id = next_id();
  m.epoch = epoch_;
  const auto timeout = m.kind == message_kind::connect && m.first_connect
                           ? std::chrono::milliseconds(m.hold_ms) + request_timeout(m.kind, true)
                           : request_timeout(m.kind, m.first_connect);
  std::vector<outgoing> one;
  one.push_back(std::move(m));
  send_request(std::move(one), holds, timeout, true);
}

void session::send_request(std::vector<outgoing>&& sent, exchanges::slot holds,
                           std::chrono::milliseconds timeout, bool alone) {
  const std::uint64_t request = ++last_request_;
  exchanges::request req;
  req.type = type_;
  req.holds = holds;
  const bool stream = !traits().request_response;
  req.stream = stream;
  if (stream) {
    // A stream has no exchange to time out: without a deadline here, a lost reply (the
    // connect's included) left its call waiting forever and the client silent.
    req.deadline = later(host_.now(), timeout);
    req.timeout = timeout;
  }
  std::vector<std::uint64_t> ids;
  ids.reserve(sent.size());
  for (auto& m : sent) {
    m.request = request;
    ids.push_back(m.id);
    if (m.call != 0) {
      if (const auto c = calls_.find(m.call); c != calls_.end()) c->second = m.id;
    }
  }
  ledger_.open(request, std::move(req), std::move(sent));
  if (stream) rearm();
  // The batch's views point into the ledger, where the messages now live.
  outgoing_batch batch;
  batch.context = encode_context{client_id_, type_, &cfg_.connection_types, cfg_.handshake_ext};
  batch.messages.reserve(ids.size());
  for (const auto id : ids) {
    const outgoing* m = ledger_.awaiting(id);
    batch.messages.push_back(
        {m->kind, m->id, m->channel, m->payload, m->first_connect, m->hold_ms, m->ext});
  }
  host_.send(type_, request, batch, timeout, alone);
}

void session::flush() {
  if (queue_.empty() || !active() || client_id_.empty() ||
      ledger_.busy(exchanges::slot::handshake)) {
    return;
  }
  const bool request_response = traits().request_response;
  // Request/response transports keep one exchange besides the held connect; what queues
  // meanwhile leaves together in the next one.
  if (request_response && ledger_.busy(exchanges::slot::normal)) return;
  // An open batch holds what the application queued; a re-subscription after a reconnect is
  // never held (the connect waits for its answer).
  if (batch_depth_ > 0 &&
      std::none_of(queue_.begin(), queue_.end(), [](const outgoing& m) { return m.resubscribe; })) {
    return;
  }
  // Until the connect succeeds only (re)subscriptions leave: publishes wait for a session that
  // is known to work, so they are not thrown at a server that may be gone.
  const bool subscriptions_only = phase_ != phase::connected;
  if (subscriptions_only && std::none_of(queue_.begin(), queue_.end(), [](const outgoing& m) {
        return m.kind != message_kind::publish;
      })) {
    return;
  }
  std::deque<outgoing> held;
  std::vector<outgoing> sent;
  while (!queue_.empty()) {
    outgoing m = std::move(queue_.front());
    queue_.pop_front();
    if (subscriptions_only && m.kind == message_kind::publish) {
      held.push_back(std::move(m));
      continue;
    }
    m.id = next_id();
    m.epoch = epoch_;
    sent.push_back(std::move(m));
  }
  queue_ = std::move(held);
  send_request(std::move(sent), request_response ? exchanges::slot::normal : exchanges::slot::none,
               request_timeout(message_kind::publish, false), false);
}

std::chrono::milliseconds session::held_timeout() const noexcept {
  return advice_.timeout ? std::chrono::milliseconds(*advice_.timeout) : default_server_timeout;
}

std::chrono::milliseconds session::request_timeout(message_kind k, bool first_connect) const {
  // Options may say anything up to milliseconds::max(): the sum saturates, and no transport is
  // asked for a deadline further than 30 days.
  std::chrono::milliseconds t = cfg_.max_network_delay;
  if (k == message_kind::connect && !first_connect) {
    const auto held = held_timeout();
    t = t > longest_request - held ? longest_request : held + t;
  } else if (k == message_kind::disconnect) {
    t = cfg_.disconnect_timeout;
  }
  return std::min(t, longest_request);
}

}  // namespace uvcometd::detail
