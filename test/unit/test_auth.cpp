// The session's authentication rules (scripted host, fake clock): after an authentication
// failure authenticate() runs once (shared by concurrent failures), the failed operation is
// retried once, and a failure that persists reaches the caller without a loop. Also the
// extension-facing hooks: resend() and on_dropped().
#include <catch2/catch.hpp>

#include "scripted_host.hpp"

using namespace uvcometd_test;

namespace {

bool contains_text(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

detail::session_config auth_config() {
  auto c = long_polling_only();
  c.has_auth = true;
  c.backoff_initial = 100ms;
  c.backoff_max = 100ms;
  c.backoff_jitter = 0;
  return c;
}

void connect_ok(harness& h) {
  const sent_frame first = h.last();
  REQUIRE(first.channel() == "/meta/connect");
  h.reply(first, ok_replies(first));
  h.loop();
}

// open(), the handshake accepted, the first connect answered: the session is connected.
void open_connected(harness& h, outcome& open) {
  REQUIRE_FALSE(h.s->open(open.cb()));
  h.reply(h.last(), cometd_handshake_reply(h.last().id()));
  connect_ok(h);
}

}  // namespace

TEST_CASE(
    "a handshake refused with 401 calls authenticate() once and retries it with fresh "
    "credentials",
    "[session][auth]") {
  harness h(auth_config());
  outcome open;
  REQUIRE_FALSE(h.s->open(open.cb()));
  const sent_frame hs = h.last();
  h.reply(hs, refusal(hs, 0, "401::invalid token", R"({"reconnect":"handshake"})"));
  h.loop();
  CHECK(h.host.authenticate_calls == 1);
  CHECK(h.sent_count() == 1);  // nothing is sent while credentials are fetched
  CHECK(open.calls == 0);
  h.s->on_authenticated({});
  const sent_frame retry = h.last();
  REQUIRE(retry.channel() == "/meta/handshake");
  CHECK(retry.id() != hs.id());
  h.reply(retry, cometd_handshake_reply(retry.id()));
  connect_ok(h);
  CHECK(open.ok_once());
  CHECK(h.host.authenticate_calls == 1);
}

TEST_CASE("a handshake refused again after authenticate() ends open() with the server's error",
          "[session][auth]") {
  harness h(auth_config());
  outcome open;
  REQUIRE_FALSE(h.s->open(open.cb()));
  const sent_frame hs = h.last();
  h.reply(hs, refusal(hs, 0, "401::invalid token"));
  h.s->on_authenticated({});
  const sent_frame retry = h.last();
  h.reply(retry, refusal(retry, 0, "401::invalid token"));
  h.loop();
  REQUIRE(open.failed_once(errc::server_error));
  CHECK(open.err.server_code == 401);
  CHECK(open.err.message == "invalid token");
  CHECK(h.host.authenticate_calls == 1);
  CHECK(h.s->current_state() == state::failed);
  h.advance(60s);
  CHECK(h.sent_count() == 2);  // no loop
}

TEST_CASE("authenticate() failing ends open() with authentication_failed", "[session][auth]") {
  harness h(auth_config());
  outcome open;
  REQUIRE_FALSE(h.s->open(open.cb()));
  const sent_frame hs = h.last();
  h.reply(hs, refusal(hs, 0, "403::forbidden"));
  CHECK(h.host.authenticate_calls == 1);
  h.s->on_authenticated(
      uvcometd::error{uvcometd::make_error_code(errc::invalid_argument), "no token service"});
  h.loop();
  REQUIRE(open.failed_once(errc::authentication_failed));
  CHECK(contains_text(open.err.message, "no token service"));
  CHECK(h.sent_count() == 1);
}

TEST_CASE("without an auth extension a 401 handshake ends open() at once", "[session][auth]") {
  auto cfg = auth_config();
  cfg.has_auth = false;
  harness h(cfg);
  outcome open;
  REQUIRE_FALSE(h.s->open(open.cb()));
  const sent_frame hs = h.last();
  h.reply(hs, refusal(hs, 0, "401::invalid token"));
  CHECK(h.host.authenticate_calls == 0);
  CHECK(open.failed_once(errc::server_error));
}

TEST_CASE(
    "concurrent HTTP 401s on the connect and on a publish share one authenticate() and "
    "both are retried once",
    "[session][auth]") {
  harness h(auth_config());
  outcome open;
  REQUIRE_FALSE(h.s->open(open.cb()));
  const sent_frame hs = h.last();
  h.reply(hs, cometd_handshake_reply(hs.id()));
  connect_ok(h);
  REQUIRE(open.ok_once());
  const sent_frame held = h.last();
  REQUIRE(held.channel() == "/meta/connect");
  outcome pub;
  REQUIRE_FALSE(h.s->publish("/a", "1", pub.cb()));
  h.loop();
  const sent_frame pf = h.last();
  REQUIRE(pf.channel() == "/a");
  h.fail(pf, errc::http_error, "HTTP 401", 401);
  h.fail(held, errc::http_error, "HTTP 401", 401);
  h.loop();
  CHECK(h.host.authenticate_calls == 1);
  CHECK(pub.calls == 0);
  const auto before = h.sent_count();
  h.s->on_authenticated({});
  h.loop();
  // The connect goes out again; the publish once the connect succeeded.
  CHECK(h.count_on("/meta/connect", before) == 1);
  CHECK(h.count_on("/a", before) == 0);
  connect_ok(h);
  CHECK(h.s->current_state() == state::connected);
  CHECK(h.count_on("/a", before) == 1);
  const sent_frame again = h.last_on("/a");
  h.fail(again, errc::http_error, "HTTP 401", 401);  // the one retry fails too
  h.loop();
  CHECK(pub.failed_once(errc::http_error));
  CHECK(h.host.authenticate_calls == 1);
}

TEST_CASE(
    "a connect refused with 401 while connected re-authenticates once per success, never in "
    "a tight loop",
    "[session][auth]") {
  harness h(auth_config());
  outcome open;
  open_connected(h, open);
  REQUIRE(open.ok_once());
  // The token expired: the server refuses the connect and asks for a new handshake.
  const sent_frame held = h.last();
  h.reply(held, refusal(held, 0, "401::token expired", R"({"reconnect":"handshake"})"));
  h.loop();
  CHECK(h.s->current_state() == state::reconnecting);
  CHECK(h.host.authenticate_calls == 1);
  h.s->on_authenticated({});
  const sent_frame hs2 = h.last();
  REQUIRE(hs2.channel() == "/meta/handshake");  // at once, no backoff
  // Refused again: back to the backoff, no second authenticate() before it passed.
  h.reply(hs2, refusal(hs2, 0, "401::invalid token", R"({"reconnect":"handshake"})"));
  h.loop();
  CHECK(h.host.authenticate_calls == 1);
  const auto sends = h.sent_count();
  h.advance(50ms);
  CHECK(h.sent_count() == sends);
  h.advance(100ms);
  REQUIRE(h.sent_count() == sends + 1);
  const sent_frame hs3 = h.last();
  REQUIRE(hs3.channel() == "/meta/handshake");
  h.reply(hs3, refusal(hs3, 0, "401::invalid token", R"({"reconnect":"handshake"})"));
  h.loop();
  CHECK(h.host.authenticate_calls == 2);  // a backoff delay passed
  h.s->on_authenticated({});
  const sent_frame hs4 = h.last();
  h.reply(hs4, cometd_handshake_reply(hs4.id()));
  connect_ok(h);
  CHECK(h.s->current_state() == state::connected);
}

TEST_CASE(
    "close() while authenticate() runs cancels what waits for it, and its late answer is "
    "ignored",
    "[session][auth]") {
  harness h(auth_config());
  outcome open;
  open_connected(h, open);
  outcome pub;
  REQUIRE_FALSE(h.s->publish("/a", "1", pub.cb()));
  h.loop();
  h.fail(h.last(), errc::http_error, "HTTP 403", 403);
  CHECK(h.host.authenticate_calls == 1);
  outcome closed;
  h.s->close(closed.cb());
  h.loop();
  CHECK(pub.failed_once(errc::cancelled));
  const auto sends = h.sent_count();
  h.s->on_authenticated({});
  h.loop();
  CHECK(pub.calls == 1);
  CHECK(h.sent_count() == sends);
}

TEST_CASE(
    "a 401 on a publish that was in flight when close() began fails it and asks for no "
    "credentials; the close still ends by its disconnect timeout",
    "[session][auth][close]") {
  // Found by fuzz_session: the publish was held for authenticate(), which armed the connection
  // deadline; that deadline, due first, disarmed the timer without ending the close.
  auto cfg = auth_config();
  cfg.connection_timeout = 1000ms;
  cfg.disconnect_timeout = 2000ms;
  harness h(cfg);
  outcome open;
  open_connected(h, open);
  outcome pub;
  REQUIRE_FALSE(h.s->publish("/a", "1", pub.cb()));
  h.loop();
  const sent_frame pf = h.last();
  REQUIRE(pf.channel() == "/a");
  outcome closed;
  REQUIRE_FALSE(h.s->close(closed.cb()));
  h.loop();
  REQUIRE(h.last().channel() == "/meta/disconnect");
  h.fail(pf, errc::http_error, "HTTP 401", 401);
  h.loop();
  CHECK(pub.failed_once(errc::http_error));  // its own failure: nothing is sent again now
  CHECK(h.host.authenticate_calls == 0);
  h.advance(1500ms);  // past the connection timeout: nothing ends yet
  CHECK(h.host.close_transports_calls == 0);
  h.advance(1000ms);  // past the disconnect timeout: the transports close
  CHECK(h.host.close_transports_calls == 1);
  h.s->on_transports_closed();
  CHECK(closed.ok_once());
}

TEST_CASE(
    "resend(): an extension sends a refused message again once; on_dropped() completes a "
    "dropped one",
    "[session][extensions]") {
  harness h(long_polling_only());
  outcome open;
  open_connected(h, open);
  outcome pub, dropped;
  REQUIRE_FALSE(h.s->publish("/a", "1", pub.cb()));
  REQUIRE_FALSE(h.s->publish("/b", "2", dropped.cb()));
  h.loop();
  const sent_frame f = h.last();
  REQUIRE(f.size() == 2);
  h.s->on_dropped(f.request, std::stoull(f.id(1)),
                  uvcometd::error{uvcometd::make_error_code(errc::dropped_by_extension), "x"});
  CHECK(dropped.failed_once(errc::dropped_by_extension));
  CHECK(h.s->resend(std::stoull(f.id(0))));
  CHECK_FALSE(h.s->resend(std::stoull(f.id(0))));  // no longer awaiting
  h.reply(f, "[]");
  h.loop();
  CHECK(pub.calls == 0);
  const sent_frame again = h.last();
  REQUIRE(again.channel() == "/a");
  CHECK_FALSE(h.s->resend(std::stoull(again.id())));  // at most once
  h.reply(again, ok_replies(again));
  h.loop();
  CHECK(pub.ok_once());
  CHECK(dropped.calls == 1);
  CHECK_FALSE(h.s->resend(999999));  // never sent
}
