// After a failure: classify it (recovery.hpp), then retry, re-handshake, authenticate, fall
// back or give up. Read top to bottom, recover() is the whole policy.
#include "session/session.hpp"

#include <algorithm>
#include <utility>

#include "session/session_util.hpp"

namespace uvcometd::detail {

void session::on_transport_up(connection_type t) {
  if (t == type_) transport_up_ = true;
}

void session::on_transport_down(connection_type t, const error& err, bool was_up,
                                const std::vector<std::uint64_t>& unsent) {
  if (t != type_) return;
  transport_up_ = false;
  if (t == connection_type::websocket && was_up) ++websocket_failures_;
  // Take everything out first, decide, and run the completions last: each may call back into
  // the session (close(), reconnect_now()) and change these tables.
  std::vector<outgoing> failed;
  bool lost_handshake = false;
  bool lost_disconnect = false;
  std::size_t resent = 0;
  auto lost = ledger_.close_all(t);
  for (auto it = lost.rbegin(); it != lost.rend(); ++it) {
    outgoing& m = *it;
    switch (m.kind) {
      case message_kind::connect: tell_meta(m.channel, err, nullptr); break;
      case message_kind::handshake:
        lost_handshake = true;
        tell_meta(m.channel, err, nullptr);
        break;
      case message_kind::disconnect: lost_disconnect = true; break;
      default:
        // Frames that never left (the connection never opened, or they were still queued) are
        // sent again on the next one: the server cannot have seen them. While closing nothing
        // is sent again: they are cancelled with the rest.
        if (active() &&
            (!was_up || std::find(unsent.begin(), unsent.end(), m.request) != unsent.end())) {
          m.request = 0;
          queue_.push_front(std::move(m));  // newest first: the queue keeps their order
          ++resent;
        } else {
          failed.push_back(std::move(m));
        }
    }
  }
  std::reverse(failed.begin(), failed.end());
  if (lost_disconnect || !active()) {
    for (auto& m : failed) fail_outgoing(std::move(m), active() ? err : closed_error());
    if (lost_disconnect) finish_close();
    return;
  }
  if (resent != 0) host_.request_run();
  failure f;
  f.kind = failure_kind::connection_lost;
  f.err = err;
  f.was_up = was_up;
  f.lost_handshake = lost_handshake;
  recover(f);
  for (auto& m : failed) fail_outgoing(std::move(m), active() ? err : closed_error());
}

session_facts session::facts(const failure& f) const {
  session_facts s;
  s.opening = opening();
  s.has_auth = auth_.enabled();
  s.can_authenticate = auth_.available();
  s.on_websocket = type_ == connection_type::websocket;
  // Websocket never came up, or keeps breaking while HTTP may work.
  s.websocket_hopeless = (!f.was_up && !ever_up_on_type_) ||
                         (cfg_.websocket_failures_before_fallback != 0 &&
                          websocket_failures_ >= cfg_.websocket_failures_before_fallback);
  s.can_fall_back = allows(connection_type::long_polling) &&
                    (server_types_.empty() || std::find(server_types_.begin(), server_types_.end(),
                                                        "long-polling") != server_types_.end());
  return s;
}

void session::recover(const failure& f) {
  if (!active()) return;
  last_failure_ = f.err;
  if (phase_ == phase::connected &&
      (data_while_connected_ > 0 || host_.now() - connected_at_ >= stable_after)) {
    // The connection worked (messages came, or it lasted): this failure starts a new count. Only
    // a held connect resets it otherwise, and a connection cut more often than the server holds
    // its connects (every 1-3 s against Faye's 5 s) climbed to backoff_max while every
    // reconnection worked.
    backoff_.reset();
    endpoints_.succeeded();
  }
  switch (classify(f, facts(f))) {
    case remedy::give_up: fail_session(f.err); return;
    case remedy::fall_back: fall_back(f.err); return;
    case remedy::authenticate_then_retry: authenticate_then_retry(f.err, f.advice); return;
    case remedy::rehandshake:
      client_id_.clear();
      // advice.hosts not naming this server: the spec asks to try them in order, at once.
      if (endpoints_.rehandshake()) {
        use_current_endpoint(f.err);
        return resume_elsewhere(f.err);
      }
      [[fallthrough]];
    case remedy::retry:
      // The retry on this server failed too: the next server, at once, until a whole round
      // was tried; then the backoff.
      if (endpoints_.failed()) {
        const bool round_over = endpoints_.advance();
        use_current_endpoint(f.err);
        if (!round_over) return resume_elsewhere(f.err);
      }
      back_off(f.err);
      return;
  }
}

void session::use_current_endpoint(const error& why) {
  const std::string& url = endpoints_.current();
  host_.log(log_level::info, "moving to " + url + (why ? " (" + why.to_string() + ")" : ""));
  host_.abort(type_);
  transport_up_ = false;
  ever_up_on_type_ = false;
  resubscribes_outstanding_ = 0;
  fail_all(ledger_.close_all(type_), make_error(errc::transport_error, "moved to " + url));
  if (!active()) return;
  arrived_ = host_.now();
  moved_ = true;
  host_.use_endpoint(url);
}

void session::resume_elsewhere(const error& why) {
  if (!active()) return;
  retry_at_.reset();
  start_connection_deadline();
  resume_session(why);
  flush();
}

void session::back_off(const error& why) {
  resubscribes_outstanding_ = 0;
  enter(phase::backing_off, why);
  if (!active()) return;  // the listener closed the client
  const auto delay = backoff_.next();
  if (backoff_.hook_failed())
    host_.log(log_level::error, "reconnect_delay threw; using the default backoff");
  retry_at_ =
      later(later(host_.now(), std::chrono::milliseconds(advice_.interval.value_or(0))), delay);
  start_connection_deadline();
  rearm();
  // Every failed attempt is worth a line: a client that retries in silence looks hung.
  const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(*retry_at_ - host_.now());
  host_.log(log_level::info, "attempt " + std::to_string(backoff_.failures()) + " failed" +
                                 (why ? " (" + why.to_string() + ")" : "") + "; " +
                                 (client_id_.empty() ? "a new handshake" : "the next connect") +
                                 " on " + endpoints_.current() + " in " +
                                 std::to_string(wait.count()) + " ms");
}

void session::fall_back(const error& why) {
  host_.log(log_level::info,
            "websocket unavailable (" + why.message + "); falling back to long-polling");
  type_ = connection_type::long_polling;
  websocket_failures_ = 0;
  websocket_given_up_ = true;
  // Falling back is progress: long-polling gets a full connection_timeout of its own.
  connection_deadline_.reset();
  start_connection_deadline();
  const state before = current_state();
  resume_session(why);
  if (!active()) return;
  if (current_state() == before) notify(why);  // the listener learns about the transport change
  flush();
}

void session::authenticate_then_retry(const error& why, reconnect_advice advice) {
  if (advice == reconnect_advice::handshake) client_id_.clear();
  enter(phase::authenticating, why);
  if (!active()) return;
  retry_at_.reset();
  const bool asked = authenticate_then([this, gen = epoch_](const error& e) {
    // The session moved on meanwhile (re-established, or handshaking anew): the failure this
    // answer was for is gone.
    if (!active() || epoch_ != gen) return;
    if (e) {
      failure f;
      f.kind = failure_kind::auth_failed;
      f.err = e;
      recover(f);
      return;
    }
    resume_session();  // the one retry with fresh credentials
    flush();
  });
  if (!asked) back_off(why);
}

void session::fail_session(const error& why) {
  if (!active()) return;
  retry_at_.reset();
  connection_deadline_.reset();
  enter(phase::failed, why);
  host_.abort(type_);
  if (type_ != connection_type::long_polling) host_.abort(connection_type::long_polling);
  rearm();
  complete(open_done_, why);
  cancel_everything(why);
}

void session::on_authenticated(const error& err) {
  error e;
  if (err) {
    e = err.code == errc::authentication_failed
            ? err
            : make_error(errc::authentication_failed, "authenticate() failed: " + err.to_string());
  }
  if (!auth_.in_flight()) return;
  auto waiters = auth_.answered();
  release_auth_held(e);
  for (auto& w : waiters) w(e);
}

bool session::authenticate_then(auth_gate::waiter then) {
  bool start = false;
  if (!auth_.ask(std::move(then), start)) return false;
  if (start) {
    // An authenticate() that never answers ends at connection_timeout like any other outage.
    start_connection_deadline();
    host_.log(log_level::info, "authentication failure: asking the auth extension for credentials");
    host_.authenticate();
  }
  return true;
}

void session::release_auth_held(const error& err) {
  if (auth_.held.empty()) return;
  auto held = std::exchange(auth_.held, {});
  std::sort(held.begin(), held.end(),
            [](const outgoing& a, const outgoing& b) { return a.id < b.id; });
  if (err || !active()) {
    const error& e = err ? err : closed_error();
    for (auto& m : held) fail_outgoing(std::move(m), e);
    return;
  }
  for (auto it = held.rbegin(); it != held.rend(); ++it) {
    // A (un)subscribe of a session that has ended since: the re-handshake re-subscribed anew.
    if (it->kind != message_kind::publish && it->epoch != epoch_) continue;
    it->request = 0;
    queue_.push_front(std::move(*it));
  }
  host_.request_run();
}

void session::cancel_auth_waiters(const error& err) {
  release_auth_held(err);
  auto waiters = auth_.cancel();
  for (auto& w : waiters) w(err);
}

}  // namespace uvcometd::detail
