// The failure classifier (lib/session/recovery.*) as a table: what failed, in which situation,
// and the remedy. Each row is one rule of the recovery policy; the session tests show the
// remedies applied.
#include <catch2/catch.hpp>

#include <chrono>
#include <limits>
#include <string>
#include <vector>

#include "session/backoff.hpp"
#include "session/recovery.hpp"

using uvcometd::errc;
using namespace uvcometd::detail;

namespace {

uvcometd::error server(int code) {
  uvcometd::error e{uvcometd::make_error_code(errc::server_error), "refused"};
  e.server_code = code;
  return e;
}
uvcometd::error http(int status) {
  uvcometd::error e{uvcometd::make_error_code(errc::http_error), "HTTP"};
  e.http_status = status;
  return e;
}
uvcometd::error of(errc code) { return {uvcometd::make_error_code(code), "x"}; }

struct row {
  const char* rule;
  failure_kind kind;
  uvcometd::error err;
  reconnect_advice advice;
  bool was_up;
  bool lost_handshake;
  session_facts s;
  remedy want;
};

session_facts opening() {
  session_facts s;
  s.opening = true;
  return s;
}
session_facts running() { return {}; }
session_facts with_auth(session_facts s, bool available) {
  s.has_auth = true;
  s.can_authenticate = available;
  return s;
}
session_facts on_ws(session_facts s, bool hopeless, bool can_fall_back) {
  s.on_websocket = true;
  s.websocket_hopeless = hopeless;
  s.can_fall_back = can_fall_back;
  return s;
}

const char* name(remedy r) {
  switch (r) {
    case remedy::retry: return "retry";
    case remedy::rehandshake: return "rehandshake";
    case remedy::authenticate_then_retry: return "authenticate_then_retry";
    case remedy::fall_back: return "fall_back";
    case remedy::give_up: return "give_up";
  }
  return "?";
}

}  // namespace

TEST_CASE("the failure classifier, rule by rule", "[recovery]") {
  using fk = failure_kind;
  using ra = reconnect_advice;
  const std::vector<row> table = {
      // A refused certificate is final, whatever failed.
      {"certificate, handshake", fk::handshake_failed, of(errc::certificate_error), ra::unspecified,
       false, false, running(), remedy::give_up},
      {"certificate, websocket", fk::connection_lost, of(errc::certificate_error), ra::unspecified,
       false, true, on_ws(running(), true, true), remedy::give_up},
      // Handshake refused by the server.
      {"refused handshake during open()", fk::handshake_refused, server(403), ra::handshake, false,
       false, opening(), remedy::give_up},
      {"refused handshake later", fk::handshake_refused, server(500), ra::handshake, false, false,
       running(), remedy::rehandshake},
      {"refused handshake, advice none", fk::handshake_refused, server(500), ra::none, false, false,
       running(), remedy::give_up},
      {"handshake 401 with auth available", fk::handshake_refused, server(401), ra::handshake,
       false, false, with_auth(opening(), true), remedy::authenticate_then_retry},
      {"handshake 401, auth used", fk::handshake_refused, server(401), ra::handshake, false, false,
       with_auth(opening(), false), remedy::give_up},
      {"handshake 401, advice none", fk::handshake_refused, server(401), ra::none, false, false,
       with_auth(opening(), true), remedy::give_up},
      // Handshake request failed.
      {"handshake lost to the network", fk::handshake_failed, of(errc::transport_error),
       ra::unspecified, false, false, opening(), remedy::rehandshake},
      {"handshake HTTP 404 during open()", fk::handshake_failed, http(404), ra::unspecified, false,
       false, opening(), remedy::give_up},
      {"handshake HTTP 404 later", fk::handshake_failed, http(404), ra::unspecified, false, false,
       running(), remedy::rehandshake},
      {"handshake HTTP 429", fk::handshake_failed, http(429), ra::unspecified, false, false,
       opening(), remedy::rehandshake},
      {"handshake HTTP 408", fk::handshake_failed, http(408), ra::unspecified, false, false,
       opening(), remedy::rehandshake},
      {"handshake HTTP 503", fk::handshake_failed, http(503), ra::unspecified, false, false,
       opening(), remedy::rehandshake},
      {"handshake HTTP 401 with auth", fk::handshake_failed, http(401), ra::unspecified, false,
       false, with_auth(opening(), true), remedy::authenticate_then_retry},
      {"handshake HTTP 401 without auth", fk::handshake_failed, http(401), ra::unspecified, false,
       false, opening(), remedy::give_up},
      // Connect refused.
      {"connect refused, advice retry", fk::connect_refused, server(500), ra::retry, false, false,
       running(), remedy::retry},
      {"connect refused, advice handshake", fk::connect_refused, server(402), ra::handshake, false,
       false, running(), remedy::rehandshake},
      {"connect refused, advice none", fk::connect_refused, server(500), ra::none, false, false,
       running(), remedy::give_up},
      {"connect 403 with auth", fk::connect_refused, server(403), ra::retry, false, false,
       with_auth(running(), true), remedy::authenticate_then_retry},
      {"connect 403 again during open()", fk::connect_refused, server(403), ra::retry, false, false,
       with_auth(opening(), false), remedy::give_up},
      {"connect 403 again later", fk::connect_refused, server(403), ra::retry, false, false,
       with_auth(running(), false), remedy::retry},
      {"connect 401 without auth (Faye's unknown client)", fk::connect_refused, server(401),
       ra::handshake, false, false, running(), remedy::rehandshake},
      // Connect request failed.
      {"connect lost to the network", fk::connect_failed, of(errc::timeout), ra::unspecified, false,
       false, running(), remedy::retry},
      {"connect HTTP 500", fk::connect_failed, http(500), ra::unspecified, false, false, running(),
       remedy::retry},
      {"connect HTTP 401 with auth", fk::connect_failed, http(401), ra::unspecified, false, false,
       with_auth(running(), true), remedy::authenticate_then_retry},
      {"connect HTTP 401, auth used, open()", fk::connect_failed, http(401), ra::unspecified, false,
       false, with_auth(opening(), false), remedy::give_up},
      // A stream connection lost.
      {"websocket never opened, fallback possible", fk::connection_lost, of(errc::transport_error),
       ra::unspecified, false, false, on_ws(opening(), true, true), remedy::fall_back},
      {"websocket broke too often", fk::connection_lost, of(errc::transport_error), ra::unspecified,
       true, false, on_ws(running(), true, true), remedy::fall_back},
      {"websocket broke once", fk::connection_lost, of(errc::transport_error), ra::unspecified,
       true, false, on_ws(running(), false, true), remedy::retry},
      {"websocket only, never opened", fk::connection_lost, of(errc::transport_error),
       ra::unspecified, false, true, on_ws(opening(), true, false), remedy::retry},
      {"websocket only, upgrade 404 during open()", fk::connection_lost, http(404), ra::unspecified,
       false, true, on_ws(opening(), true, false), remedy::give_up},
      {"websocket only, upgrade 404 later", fk::connection_lost, http(404), ra::unspecified, false,
       true, on_ws(running(), true, false), remedy::retry},
      {"upgrade 401 with auth: credentials, not fallback", fk::connection_lost, http(401),
       ra::unspecified, false, false, with_auth(on_ws(opening(), true, true), true),
       remedy::authenticate_then_retry},
      {"upgrade 401 again during open()", fk::connection_lost, http(401), ra::unspecified, false,
       false, with_auth(on_ws(opening(), true, true), false), remedy::give_up},
      {"401 after the connection was up is no upgrade refusal", fk::connection_lost, http(401),
       ra::unspecified, true, false, with_auth(on_ws(running(), false, true), true), remedy::retry},
      // authenticate() failed.
      {"authenticate() failed during open()", fk::auth_failed, of(errc::authentication_failed),
       ra::unspecified, false, false, opening(), remedy::give_up},
      {"authenticate() failed later", fk::auth_failed, of(errc::authentication_failed),
       ra::unspecified, false, false, running(), remedy::retry},
  };
  for (const auto& r : table) {
    failure f;
    f.kind = r.kind;
    f.err = r.err;
    f.advice = r.advice;
    f.was_up = r.was_up;
    f.lost_handshake = r.lost_handshake;
    INFO(r.rule);
    CHECK(std::string(name(classify(f, r.s))) == name(r.want));
  }
}

TEST_CASE("backoff delays double up to the cap, jitter only shortens them, nothing overflows",
          "[recovery]") {
  using ms = std::chrono::milliseconds;
  CHECK(backoff_delay(1, ms(250), ms(30000), 0.5, 0.0) == ms(250));
  CHECK(backoff_delay(2, ms(250), ms(30000), 0.5, 0.0) == ms(500));
  CHECK(backoff_delay(8, ms(250), ms(30000), 0.5, 0.0) == ms(30000));
  CHECK(backoff_delay(1000, ms(250), ms(30000), 0.5, 0.0) == ms(30000));
  CHECK(backoff_delay(1, ms(250), ms(30000), 0.5, 1.0) == ms(125));
  CHECK(backoff_delay(1, ms(250), ms(30000), 1.0, 1.0) == ms(1));  // never below 1 ms
  CHECK(backoff_delay(3, ms::max(), ms::max(), 0.0, 0.0) == ms::max());
  CHECK(backoff_delay(70, ms(1), ms::max(), 0.0, 0.0).count() > 0);
  CHECK(backoff_delay(2, ms(250), ms(30000), std::numeric_limits<double>::quiet_NaN(), 0.7) ==
        ms(500));
  CHECK(backoff_delay(2, ms(-5), ms(-5), 0.0, 0.0) == ms(1));
}
