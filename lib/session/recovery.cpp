#include "session/recovery.hpp"

#include "session/auth_gate.hpp"

namespace uvcometd::detail {

bool is_final_refusal(const error& err) noexcept {
  return err.code == errc::http_error && err.http_status >= 400 && err.http_status < 500 &&
         err.http_status != 408 && err.http_status != 429;
}

remedy classify(const failure& f, const session_facts& s) noexcept {
  const error& e = f.err;
  // A certificate the client refuses is a configuration error: retrying cannot help, and
  // another transport would only hide it.
  if (e.code == errc::certificate_error) return remedy::give_up;
  const bool auth = is_auth_failure(e) && s.has_auth;
  switch (f.kind) {
    case failure_kind::handshake_refused:
      if (auth && f.advice != reconnect_advice::none && s.can_authenticate) {
        return remedy::authenticate_then_retry;
      }
      // A refused handshake ends open() at once: no retry loop.
      if (s.opening || f.advice == reconnect_advice::none) return remedy::give_up;
      return remedy::rehandshake;

    case failure_kind::handshake_failed:
      if (auth && s.can_authenticate) return remedy::authenticate_then_retry;
      // A client error on the very first handshake (wrong path, forbidden) will not change by
      // retrying.
      if (s.opening && is_final_refusal(e)) return remedy::give_up;
      return remedy::rehandshake;

    case failure_kind::connect_refused:
      if (f.advice == reconnect_advice::none) return remedy::give_up;
      if (auth) {
        if (s.can_authenticate) return remedy::authenticate_then_retry;
        // Refused again with fresh credentials during open(): the server's answer stands.
        if (s.opening) return remedy::give_up;
      }
      return f.advice == reconnect_advice::handshake ? remedy::rehandshake : remedy::retry;

    case failure_kind::connect_failed:
      // An HTTP 401/403 on the connect asks for credentials like a refused connect.
      if (auth) {
        if (s.can_authenticate) return remedy::authenticate_then_retry;
        if (s.opening) return remedy::give_up;
      }
      return remedy::retry;

    case failure_kind::connection_lost: {
      // An upgrade refused with 401/403 asks for fresh credentials, not for another transport.
      const bool refused_auth = auth && !f.was_up;
      if (s.on_websocket && s.websocket_hopeless && s.can_fall_back && !refused_auth) {
        return remedy::fall_back;
      }
      if (refused_auth) {
        if (s.can_authenticate) return remedy::authenticate_then_retry;
        if (s.opening) return remedy::give_up;
      }
      // Without a fallback, what retrying will not change during open() ends it (a
      // websocket-only client whose upgrade is refused with a client error).
      if (f.lost_handshake && !f.was_up && s.opening && is_final_refusal(e)) {
        return remedy::give_up;
      }
      return remedy::retry;
    }

    case failure_kind::auth_failed: return s.opening ? remedy::give_up : remedy::retry;
  }
  return remedy::retry;
}

}  // namespace uvcometd::detail
