// The sans-I/O Bayeux state machine (lib/session.*), driven through a scripted host with a fake
// clock. Server replies reproduce what Faye 1.4.3 and cometd-nodejs-server 1.2.1 really send
// (shared/reference/server-exchanges.md).
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "scripted_host.hpp"

using namespace uvcometd_test;

// ---------------------------------------------------------------------------------------------
// open(): handshake, negotiation, first connect

TEST_CASE("open() sends the handshake alone over long-polling with version, types and advice",
          "[session]") {
  harness h;
  outcome open;
  REQUIRE_FALSE(h.s->open(open.cb()));
  REQUIRE(h.sent_count() == 1);
  const auto& hs = h.last();
  CHECK(hs.type == connection_type::long_polling);
  REQUIRE(hs.size() == 1);
  CHECK(hs.channel() == "/meta/handshake");
  CHECK(hs.get(0, "version") == "1.0");
  CHECK(hs.get(0, "supportedConnectionTypes") == R"(["websocket","long-polling"])");
  CHECK(hs.msg(0)["advice"].IsObject());
  CHECK(hs.msg(0)["advice"].HasMember("timeout"));
  CHECK_FALSE(hs.has(0, "clientId"));
  CHECK_FALSE(hs.has(0, "ext"));
  CHECK_FALSE(hs.id().empty());
  CHECK(hs.timeout == 10000ms);
  CHECK(h.states() == std::vector<state>{state::connecting});
  CHECK(h.host.states.back().type == connection_type::long_polling);
  CHECK(open.calls == 0);
}

TEST_CASE("the handshake carries the configured ext object", "[session]") {
  auto cfg = test_config();
  cfg.handshake_ext = R"({"auth":{"token":"s3cr\"t"}})";
  harness h(cfg);
  outcome open;
  REQUIRE_FALSE(h.s->open(open.cb()));
  CHECK(h.last().get(0, "ext") == R"({"auth":{"token":"s3cr\"t"}})");
}

TEST_CASE("open() twice, or calls before open(), are refused synchronously", "[session]") {
  harness h;
  outcome a, b, c;
  CHECK(h.s->publish("/foo", "1", a.cb()) == errc::invalid_state);
  std::uint64_t id = 0;
  CHECK(h.s->subscribe(
            "/foo", [](const uvcometd::message&) {}, a.cb(), &id) == errc::invalid_state);
  REQUIRE_FALSE(h.s->open(b.cb()));
  CHECK(h.s->open(c.cb()) == errc::invalid_state);
  h.loop();
  CHECK(a.calls == 0);
  CHECK(c.calls == 0);
  CHECK(h.sent_count() == 1);
}

TEST_CASE(
    "Faye offers websocket, so the first connect goes alone over websocket with advice "
    "timeout 0, then open() completes once",
    "[session]") {
  harness h;
  outcome open;
  REQUIRE_FALSE(h.s->open(open.cb()));
  const sent_frame hs = h.last();
  h.reply(hs, faye_handshake_reply(hs.id(), "t1lmkjv"));

  REQUIRE(h.sent_count() == 2);
  const sent_frame first = h.last();
  CHECK(first.type == connection_type::websocket);
  REQUIRE(first.size() == 1);
  CHECK(first.channel() == "/meta/connect");
  CHECK(first.get(0, "clientId") == "t1lmkjv");
  CHECK(first.get(0, "connectionType") == "websocket");
  CHECK(first.get(0, "advice") == R"({"timeout":0})");
  CHECK(open.calls == 0);
  CHECK(h.s->current_state() == state::connecting);

  h.reply(first, ok_replies(first));  // pushed on the websocket
  h.loop();
  CHECK(open.ok_once());
  CHECK(h.s->current_state() == state::connected);
  CHECK(h.s->current_type() == connection_type::websocket);
  CHECK(h.states() == std::vector<state>{state::connecting, state::connected});
  CHECK(h.host.states.back().type == connection_type::websocket);

  // The next connect is held: no advice timeout 0, deadline = server timeout + network delay.
  REQUIRE(h.sent_count() == 3);
  const sent_frame held = h.last();
  CHECK(held.type == connection_type::websocket);
  REQUIRE(held.size() == 1);
  CHECK(held.channel() == "/meta/connect");
  CHECK_FALSE(held.has(0, "advice"));
  CHECK(held.id() != first.id());
  CHECK(held.timeout == 3000ms + 10000ms);

  h.advance(1h);
  CHECK(open.calls == 1);
}

TEST_CASE("CometD offers only long-polling, so the session connects over long-polling",
          "[session]") {
  harness h;
  outcome open;
  REQUIRE_FALSE(h.s->open(open.cb()));
  const sent_frame hs = h.last();
  h.reply(hs, cometd_handshake_reply(hs.id()));
  const sent_frame first = h.last();
  CHECK(first.type == connection_type::long_polling);
  CHECK(first.get(0, "connectionType") == "long-polling");
  CHECK(first.get(0, "advice") == R"({"timeout":0})");
  CHECK(first.get(0, "clientId") == "8d558cfbb86b2fc5037c4a19650eafca65d343a2");
  // CometD's connect reply carries no clientId.
  h.reply(
      first,
      R"([{"id":")" + first.id() +
          R"(","channel":"/meta/connect","successful":true,"advice":{"reconnect":"retry","timeout":3000,"interval":0}}])");
  h.loop();
  CHECK(open.ok_once());
  CHECK(h.s->current_type() == connection_type::long_polling);
  CHECK(h.last().channel() == "/meta/connect");
  CHECK_FALSE(h.last().has(0, "advice"));
  CHECK(h.last().type == connection_type::long_polling);
}

TEST_CASE(
    "forced websocket, the handshake goes over websocket and a long-polling-only server "
    "fails open() with no_common_transport",
    "[session]") {
  auto cfg = test_config();
  cfg.connection_types = {connection_type::websocket};
  harness h(cfg);
  outcome open;
  REQUIRE_FALSE(h.s->open(open.cb()));
  const sent_frame hs = h.last();
  CHECK(hs.type == connection_type::websocket);
  CHECK(hs.get(0, "supportedConnectionTypes") == R"(["websocket"])");

  // CometD answers ["long-polling"] even to a client that asked only for websocket.
  h.reply(hs, cometd_handshake_reply(hs.id()));
  h.loop();
  REQUIRE(open.failed_once(errc::no_common_transport));
  INFO(open.err.message);
  CHECK(contains(open.err.message, "websocket"));
  CHECK(contains(open.err.message, "long-polling"));
  CHECK(h.s->current_state() == state::failed);
  CHECK(h.host.states.back().s == state::failed);
  CHECK(h.host.states.back().why.code == errc::no_common_transport);
  CHECK(h.sent_count() == 1);
  h.advance(1h);
  CHECK(h.sent_count() == 1);
  CHECK(open.calls == 1);
}

TEST_CASE("a refused handshake ends open() with the server's error and is not retried",
          "[session]") {
  harness h;
  outcome open;
  REQUIRE_FALSE(h.s->open(open.cb()));
  const sent_frame hs = h.last();
  h.reply(hs, refusal(hs, 0, "403::denied", R"({"reconnect":"handshake"})"));
  h.loop();
  REQUIRE(open.failed_once(errc::server_error));
  CHECK(open.err.server_code == 403);
  CHECK(open.err.message == "denied");
  CHECK(h.s->current_state() == state::failed);
  h.advance(10min);
  CHECK(h.sent_count() == 1);
  CHECK(open.calls == 1);
}

TEST_CASE(
    "a handshake lost to transport failures is retried with backoff until "
    "connection_timeout",
    "[session]") {
  harness h;  // connection_timeout 10 s, backoff from 250 ms, jitter 0.5
  outcome open;
  REQUIRE_FALSE(h.s->open(open.cb()));
  const auto t0 = h.host.now_;
  h.fail(h.last(), errc::transport_error, "connection refused");
  CHECK(h.s->current_state() == state::connecting);

  h.advance(124ms);  // backoff 250 ms randomised down by at most half
  CHECK(h.sent_count() == 1);
  h.advance(126ms);
  REQUIRE(h.sent_count() == 2);
  CHECK(h.last().channel() == "/meta/handshake");
  CHECK(h.last().size() == 1);

  std::size_t failed = 1;
  for (int i = 0; i < 400 && h.s->current_state() == state::connecting; ++i) {
    while (failed < h.sent_count()) {
      const sent_frame f = h.sent(failed++);
      CHECK(f.channel() == "/meta/handshake");
      h.fail(f, errc::transport_error, "connection refused");
    }
    h.advance(50ms);
  }
  CHECK(h.s->current_state() == state::failed);
  CHECK(h.host.now_ - t0 >= 10000ms);
  CHECK(h.host.now_ - t0 <= 10050ms);
  CHECK(h.sent_count() >= 4);
  REQUIRE(open.failed_once(errc::connection_timeout));
  INFO(open.err.message);
  CHECK(contains(open.err.message, "connection refused"));
  CHECK(h.host.states.back().why.code == errc::connection_timeout);

  const auto sends = h.sent_count();
  h.advance(10min);
  CHECK(h.sent_count() == sends);
  CHECK(open.calls == 1);
}

TEST_CASE("the backoff doubles on each consecutive failure up to backoff_max", "[session]") {
  auto cfg = test_config();
  cfg.backoff_jitter = 0;
  cfg.backoff_max = 1000ms;
  cfg.connection_timeout = 0ms;  // retry forever
  harness h(cfg);
  outcome open;
  REQUIRE_FALSE(h.s->open(open.cb()));
  for (const auto delay : {250ms, 500ms, 1000ms, 1000ms}) {
    INFO("expected delay " << delay.count() << " ms");
    const auto before = h.sent_count();
    h.fail(h.last(), errc::timeout, "request timed out");
    h.advance(delay - 1ms);
    CHECK(h.sent_count() == before);
    h.advance(1ms);
    REQUIRE(h.sent_count() == before + 1);
    CHECK(h.last().channel() == "/meta/handshake");
  }
  CHECK(open.calls == 0);
}

// ---------------------------------------------------------------------------------------------
// advice

TEST_CASE("a connect refused with advice retry reconnects after interval plus backoff",
          "[session]") {
  harness h(long_polling_only());
  outcome open;
  open_cometd(h, open);
  const sent_frame held = h.last();
  h.reply(held, refusal(held, 0, "500::busy", R"({"reconnect":"retry","interval":1000})"));
  h.loop();
  CHECK(h.s->current_state() == state::reconnecting);
  CHECK(h.host.states.back().why.server_code == 500);
  const auto sends = h.sent_count();
  h.advance(1124ms);  // interval 1000 + backoff in [125, 250]
  CHECK(h.sent_count() == sends);
  h.advance(126ms);
  REQUIRE(h.sent_count() == sends + 1);
  const sent_frame again = h.last();
  CHECK(again.channel() == "/meta/connect");
  CHECK(again.size() == 1);
  CHECK(again.get(0, "clientId") == held.get(0, "clientId"));
  h.reply(again, ok_replies(again));
  h.loop();
  CHECK(h.s->current_state() == state::connected);
  CHECK(h.states() == std::vector<state>{state::connecting, state::connected, state::reconnecting,
                                         state::connected});
  CHECK(open.calls == 1);
}

TEST_CASE(
    "Faye's unknown client (advice handshake) re-handshakes, re-subscribes every channel "
    "in one frame, and connects only after the subscribe replies",
    "[session]") {
  harness h;
  outcome open, sub_a, sub_b;
  open_faye(h, open);
  inbox a, b;
  std::uint64_t ida = 0, idb = 0;
  REQUIRE_FALSE(h.s->subscribe("/foo/bar", a.fn(), sub_a.cb(), &ida));
  REQUIRE_FALSE(h.s->subscribe("/chat/*", b.fn(), sub_b.cb(), &idb));
  h.loop();
  const sent_frame subs = h.last();
  REQUIRE(subs.size() == 2);
  h.reply(subs, ok_replies(subs));
  h.loop();
  REQUIRE(sub_a.ok_once());
  REQUIRE(sub_b.ok_once());

  const sent_frame held = h.last_on("/meta/connect");
  h.reply(held, refusal(held, 0, "401:abc:Unknown client", R"({"reconnect":"handshake"})"));
  h.loop();
  CHECK(h.s->current_state() == state::reconnecting);
  CHECK(h.host.states.back().why.server_code == 401);

  const auto before = h.sent_count();
  h.advance(250ms);
  REQUIRE(h.sent_count() == before + 1);
  const sent_frame hs = h.last();
  REQUIRE(hs.channel() == "/meta/handshake");
  CHECK(hs.type == connection_type::long_polling);  // Faye handshakes over HTTP

  h.reply(hs, faye_handshake_reply(hs.id(), "newclient"));
  h.loop();
  REQUIRE(h.sent_count() == before + 2);
  const sent_frame resub = h.last();
  REQUIRE(resub.size() == 2);
  std::vector<std::string> patterns{resub.get(0, "subscription"), resub.get(1, "subscription")};
  std::sort(patterns.begin(), patterns.end());
  CHECK(patterns == std::vector<std::string>{"/chat/*", "/foo/bar"});
  CHECK(resub.channel(0) == "/meta/subscribe");
  CHECK(resub.channel(1) == "/meta/subscribe");
  CHECK(resub.get(0, "clientId") == "newclient");
  CHECK(h.count_on("/meta/connect", before) == 0);
  CHECK(h.s->current_state() == state::reconnecting);

  h.reply(resub, ok_replies(resub));
  h.loop();
  REQUIRE(h.sent_count() == before + 3);
  const sent_frame connect = h.last();
  CHECK(connect.channel() == "/meta/connect");
  CHECK(connect.size() == 1);
  CHECK(connect.get(0, "clientId") == "newclient");
  CHECK(h.s->current_state() == state::reconnecting);

  h.reply(connect, ok_replies(connect));
  h.loop();
  CHECK(h.s->current_state() == state::connected);
  CHECK(h.states() == std::vector<state>{state::connecting, state::connected, state::reconnecting,
                                         state::connected});
  CHECK(sub_a.calls == 1);
  CHECK(sub_b.calls == 1);
  CHECK(open.calls == 1);

  h.push(connection_type::websocket, "[" + data_message("/chat/room", "{\"x\":1}") + "]");
  h.loop();
  CHECK(b.channels == std::vector<std::string>{"/chat/room"});
}

TEST_CASE("CometD's 402 session_unknown connect refusal leads to a new handshake", "[session]") {
  harness h(long_polling_only());
  outcome open;
  open_cometd(h, open);
  const sent_frame held = h.last();
  h.reply(held,
          refusal(held, 0, "402::session_unknown", R"({"reconnect":"handshake","interval":0})"));
  h.loop();
  CHECK(h.s->current_state() == state::reconnecting);
  h.advance(250ms);
  REQUIRE(h.last().channel() == "/meta/handshake");
  const sent_frame hs = h.last();
  h.reply(hs, cometd_handshake_reply(hs.id(), "second"));
  const sent_frame connect = h.last();
  REQUIRE(connect.channel() == "/meta/connect");
  CHECK(connect.get(0, "clientId") == "second");
  h.reply(connect, ok_replies(connect));
  CHECK(h.s->current_state() == state::connected);
  CHECK(h.s->client_id() == "second");
}

TEST_CASE("a connect refused with advice none fails the session and every pending call",
          "[session]") {
  harness h(long_polling_only());
  outcome open, pub, sub;
  open_cometd(h, open);
  const sent_frame held = h.last();
  REQUIRE_FALSE(h.s->publish("/foo/bar", R"({"a":1})", pub.cb()));
  h.loop();
  REQUIRE(h.last().channel() == "/foo/bar");
  std::uint64_t sid = 0;
  REQUIRE_FALSE(h.s->subscribe(
      "/foo/*", [](const uvcometd::message&) {}, sub.cb(), &sid));
  h.loop();  // queued behind the publish on long-polling
  const auto sends = h.sent_count();

  h.reply(held, refusal(held, 0, "403::session ended", R"({"reconnect":"none"})"));
  h.loop();
  CHECK(h.s->current_state() == state::failed);
  CHECK(h.host.states.back().s == state::failed);
  CHECK(h.host.states.back().why.server_code == 403);
  CHECK(pub.calls == 1);
  CHECK(pub.err.server_code == 403);
  CHECK(sub.calls == 1);
  CHECK(sub.err.server_code == 403);
  CHECK(open.calls == 1);

  h.advance(10min);
  CHECK(h.sent_count() == sends);
  outcome late;
  CHECK(h.s->publish("/foo/bar", "1", late.cb()) == errc::invalid_state);
  h.loop();
  CHECK(late.calls == 0);
  CHECK(pub.calls == 1);
  CHECK(sub.calls == 1);
}

TEST_CASE("advice interval on a successful connect delays the next connect", "[session]") {
  harness h(long_polling_only());
  outcome open;
  open_cometd(h, open);
  const sent_frame held = h.last();
  h.reply(
      held,
      R"([{"id":")" + held.id() +
          R"(","channel":"/meta/connect","successful":true,"advice":{"reconnect":"retry","interval":2000,"timeout":3000}}])");
  h.loop();
  const auto sends = h.sent_count();
  h.advance(1999ms);
  CHECK(h.sent_count() == sends);
  h.advance(1ms);
  REQUIRE(h.sent_count() == sends + 1);
  CHECK(h.last().channel() == "/meta/connect");
  CHECK(h.last().size() == 1);
  CHECK_FALSE(h.last().has(0, "advice"));
  CHECK(h.s->current_state() == state::connected);
}

// ---------------------------------------------------------------------------------------------
// replies, batching, delivery

TEST_CASE("a delivered message carrying a pending publish's id does not complete the publish",
          "[session]") {
  auto cfg = long_polling_only();
  harness h(cfg);
  outcome open, sub, pub;
  open_faye(h, open);
  inbox in;
  subscribe_ok(h, "/foo/bar", in.fn(), sub);
  const sent_frame held = h.last_on("/meta/connect");
  REQUIRE_FALSE(h.s->publish("/foo/bar", R"({"hello":"world"})", pub.cb()));
  h.loop();
  const sent_frame p = h.last();
  REQUIRE(p.channel() == "/foo/bar");

  // Faye delivers the published message with the publisher's id, here in the held connect's reply.
  h.reply(held,
          connect_reply_before(held, {data_message("/foo/bar", R"({"hello":"world"})", p.id())}));
  CHECK(pub.calls == 0);
  h.loop();
  CHECK(pub.calls == 0);
  REQUIRE(in.size() == 1);
  CHECK(in.data[0] == R"({"hello":"world"})");
  CHECK(in.ids[0] == p.id());

  h.reply(p, ok_replies(p));
  h.loop();
  CHECK(pub.ok_once());
  CHECK(in.size() == 1);
}

TEST_CASE("publishes issued in one loop iteration leave in one frame", "[session]") {
  harness h(long_polling_only());
  outcome open, a, b, c;
  open_cometd(h, open);
  const auto sends = h.sent_count();
  REQUIRE_FALSE(h.s->publish("/foo/a", "1", a.cb()));
  REQUIRE_FALSE(h.s->publish("/foo/b", R"("two")", b.cb()));
  REQUIRE_FALSE(h.s->publish("/foo/c", R"({"n":3})", c.cb()));
  CHECK(h.sent_count() == sends);  // nothing leaves before the loop runs
  REQUIRE(h.host.run_requested);
  h.loop();
  REQUIRE(h.sent_count() == sends + 1);
  const sent_frame f = h.last();
  CHECK(f.type == connection_type::long_polling);
  REQUIRE(f.size() == 3);
  CHECK(f.channel(0) == "/foo/a");
  CHECK(f.channel(1) == "/foo/b");
  CHECK(f.channel(2) == "/foo/c");
  CHECK(f.get(0, "data") == "1");
  CHECK(f.get(1, "data") == "two");
  CHECK(f.get(2, "data") == R"({"n":3})");
  CHECK(f.get(0, "clientId") == "8d558cfbb86b2fc5037c4a19650eafca65d343a2");
  CHECK(f.timeout == 10000ms);
  h.reply(f, ok_replies(f));
  CHECK(a.ok_once());
  CHECK(b.ok_once());
  CHECK(c.ok_once());
}

TEST_CASE(
    "over long-polling, publishes issued while a frame is in flight leave together in the "
    "next one, and the held connect always travels alone",
    "[session]") {
  harness h(long_polling_only());
  outcome open, a, b, c;
  open_cometd(h, open);
  REQUIRE_FALSE(h.s->publish("/foo/a", "1", a.cb()));
  h.loop();
  const sent_frame first = h.last();
  REQUIRE(first.size() == 1);
  const auto sends = h.sent_count();
  REQUIRE_FALSE(h.s->publish("/foo/b", "2", b.cb()));
  h.loop();
  REQUIRE_FALSE(h.s->publish("/foo/c", "3", c.cb()));
  h.loop();
  CHECK(h.sent_count() == sends);  // one exchange besides the held connect

  h.reply(first, ok_replies(first));
  CHECK(a.ok_once());
  REQUIRE(h.sent_count() == sends + 1);
  const sent_frame second = h.last();
  REQUIRE(second.size() == 2);
  CHECK(second.channel(0) == "/foo/b");
  CHECK(second.channel(1) == "/foo/c");
  h.reply(second, ok_replies(second));
  CHECK(b.ok_once());
  CHECK(c.ok_once());

  // Meanwhile the held connect is answered (once the server held it) and re-sent: each time
  // alone.
  const sent_frame held = h.last_on("/meta/connect");
  h.advance(3000ms);
  h.reply(held, ok_replies(held));
  for (const auto& f : h.host.sends) {
    if (f.carries("/meta/connect") || f.carries("/meta/handshake")) {
      INFO(f.text);
      CHECK(f.size() == 1);
    }
  }
  CHECK(h.count_on("/meta/connect") == 3);
}

TEST_CASE(
    "data messages placed before the replies in a publish response are delivered on the "
    "next loop iteration",
    "[session]") {
  harness h(long_polling_only());
  outcome open, sub, pub;
  open_cometd(h, open);
  inbox in;
  subscribe_ok(h, "/foo/bar", in.fn(), sub);
  REQUIRE_FALSE(h.s->publish("/foo/bar", R"({"hello":"world"})", pub.cb()));
  h.loop();
  const sent_frame p = h.last();
  // CometD: queued messages come back in any response, before the replies, without id/clientId.
  h.reply(p, "[" + data_message("/foo/bar", R"({"hello":"world"})") + "," + ok_reply_object(p, 0) +
                 "]");
  CHECK(pub.ok_once());
  CHECK(in.size() == 0);
  CHECK(h.s->pending_count() == 1);
  h.loop();
  REQUIRE(in.size() == 1);
  CHECK(in.channels[0] == "/foo/bar");
  CHECK(in.data[0] == R"({"hello":"world"})");
  CHECK(in.ids[0].empty());
  CHECK(h.s->pending_count() == 0);
}

// ---------------------------------------------------------------------------------------------
// subscriptions

TEST_CASE("two local subscriptions on one channel make one /meta/subscribe and both complete",
          "[session]") {
  harness h(long_polling_only());
  outcome open, s1, s2;
  open_cometd(h, open);
  inbox i1, i2;
  std::uint64_t id1 = 0, id2 = 0;
  REQUIRE_FALSE(h.s->subscribe("/foo/bar", i1.fn(), s1.cb(), &id1));
  REQUIRE_FALSE(h.s->subscribe("/foo/bar", i2.fn(), s2.cb(), &id2));
  CHECK(id1 != id2);
  h.loop();
  const sent_frame f = h.last();
  REQUIRE(f.size() == 1);
  CHECK(f.channel() == "/meta/subscribe");
  CHECK(f.get(0, "subscription") == "/foo/bar");
  h.reply(f, ok_replies(f));
  h.loop();
  CHECK(s1.ok_once());
  CHECK(s2.ok_once());
  CHECK(h.count_on("/meta/subscribe") == 1);

  // A third one on the already subscribed channel completes without asking the server.
  outcome s3;
  inbox i3;
  std::uint64_t id3 = 0;
  REQUIRE_FALSE(h.s->subscribe("/foo/bar", i3.fn(), s3.cb(), &id3));
  CHECK(s3.calls == 0);
  h.loop();
  CHECK(s3.ok_once());
  CHECK(h.count_on("/meta/subscribe") == 1);
}

TEST_CASE(
    "unsubscribing one of two local subscriptions sends nothing; the last one sends "
    "/meta/unsubscribe and completes on its reply",
    "[session]") {
  harness h(long_polling_only());
  outcome open, s1, s2, u1, u2;
  open_cometd(h, open);
  inbox i1, i2;
  const auto id1 = subscribe_ok(h, "/foo/bar", i1.fn(), s1);
  const auto id2 = subscribe_ok(h, "/foo/bar", i2.fn(), s2);
  const auto sends = h.sent_count();

  REQUIRE_FALSE(h.s->unsubscribe(id1, u1.cb()));
  h.loop();
  CHECK(u1.ok_once());
  CHECK(h.sent_count() == sends);

  // Only the remaining handler receives.
  const sent_frame held = h.last_on("/meta/connect");
  h.reply(held, connect_reply_after(held, {data_message("/foo/bar", "1")}));
  h.loop();
  CHECK(i1.size() == 0);
  CHECK(i2.size() == 1);

  const auto sends2 = h.sent_count();
  REQUIRE_FALSE(h.s->unsubscribe(id2, u2.cb()));
  h.loop();
  REQUIRE(h.sent_count() == sends2 + 1);
  const sent_frame f = h.last();
  REQUIRE(f.size() == 1);
  CHECK(f.channel() == "/meta/unsubscribe");
  CHECK(f.get(0, "subscription") == "/foo/bar");
  CHECK(u2.calls == 0);
  h.reply(f, ok_replies(f));
  h.loop();
  CHECK(u2.ok_once());
  CHECK(s1.calls == 1);
  CHECK(s2.calls == 1);

  outcome again;
  CHECK(h.s->unsubscribe(id2, again.cb()) == errc::invalid_argument);
  h.loop();
  CHECK(again.calls == 0);
}

TEST_CASE("wildcard subscriptions receive the channels they match, each handler once",
          "[session]") {
  harness h(long_polling_only());
  outcome open, s1, s2, s3, s4;
  open_cometd(h, open);
  inbox one, any, exact, root;
  std::uint64_t id = 0;
  REQUIRE_FALSE(h.s->subscribe("/a/*", one.fn(), s1.cb(), &id));
  REQUIRE_FALSE(h.s->subscribe("/a/**", any.fn(), s2.cb(), &id));
  REQUIRE_FALSE(h.s->subscribe("/a/b", exact.fn(), s3.cb(), &id));
  REQUIRE_FALSE(h.s->subscribe("/**", root.fn(), s4.cb(), &id));
  h.loop();
  const sent_frame f = h.last();
  REQUIRE(f.size() == 4);
  h.reply(f, ok_replies(f));
  h.loop();

  const sent_frame held = h.last_on("/meta/connect");
  h.reply(held, connect_reply_after(held, {data_message("/a/b", "1"), data_message("/a/b/c", "2"),
                                           data_message("/a", "3"), data_message("/b/x", "4")}));
  h.loop();
  CHECK(one.channels == std::vector<std::string>{"/a/b"});
  CHECK(any.channels == std::vector<std::string>{"/a/b", "/a/b/c"});
  CHECK(exact.channels == std::vector<std::string>{"/a/b"});
  CHECK(root.channels == std::vector<std::string>{"/a/b", "/a/b/c", "/a", "/b/x"});
}

TEST_CASE(
    "a subscribe refused by the server completes with its error and its handler never "
    "runs",
    "[session]") {
  harness h(long_polling_only());
  outcome open, sub;
  open_cometd(h, open);
  inbox in;
  std::uint64_t id = 0;
  REQUIRE_FALSE(h.s->subscribe("/secret", in.fn(), sub.cb(), &id));
  h.loop();
  const sent_frame f = h.last();
  h.reply(f, refusal(f, 0, "403:/secret:Forbidden channel"));
  h.loop();
  REQUIRE(sub.failed_once(errc::server_error));
  CHECK(sub.err.server_code == 403);
  CHECK(sub.err.args == std::vector<std::string>{"/secret"});
  CHECK(sub.err.message == "Forbidden channel");

  const sent_frame held = h.last_on("/meta/connect");
  h.reply(held, connect_reply_after(held, {data_message("/secret", "1")}));
  h.loop();
  CHECK(in.size() == 0);
  CHECK(sub.calls == 1);
}

TEST_CASE("invalid channels and data fail synchronously and their callbacks never run",
          "[session]") {
  harness h(long_polling_only());
  outcome open, cb;
  open_cometd(h, open);
  const auto sends = h.sent_count();
  inbox in;
  std::uint64_t id = 0;
  CHECK(h.s->subscribe("/meta/connect", in.fn(), cb.cb(), &id) == errc::invalid_channel);
  CHECK(h.s->subscribe("no-slash", in.fn(), cb.cb(), &id) == errc::invalid_channel);
  CHECK(h.s->subscribe("/a/*x", in.fn(), cb.cb(), &id) == errc::invalid_channel);
  CHECK(h.s->publish("/foo/*", "1", cb.cb()) == errc::invalid_channel);
  CHECK(h.s->publish("/meta/xxx", "1", cb.cb()) == errc::invalid_channel);
  CHECK(h.s->publish("/foo", "{bad json", cb.cb()) == errc::invalid_argument);
  CHECK(h.s->publish("/foo", "", cb.cb()) == errc::invalid_argument);
  h.loop();
  h.advance(1min);
  CHECK(cb.calls == 0);
  CHECK(h.count_on("/meta/subscribe", sends) == 0);
  CHECK(h.count_on("/foo/*", sends) + h.count_on("/meta/xxx", sends) + h.count_on("/foo", sends) ==
        0);
}

TEST_CASE("a subscribe issued while the handshake is in flight is sent once", "[session]") {
  harness h(long_polling_only());
  outcome open, sub;
  REQUIRE_FALSE(h.s->open(open.cb()));
  inbox in;
  std::uint64_t id = 0;
  REQUIRE_FALSE(h.s->subscribe("/foo/bar", in.fn(), sub.cb(), &id));
  h.loop();
  CHECK(h.sent_count() == 1);  // nothing but the handshake before a clientId exists
  const sent_frame hs = h.last();
  h.reply(hs, cometd_handshake_reply(hs.id()));
  h.loop();
  CHECK(h.count_on("/meta/subscribe") == 1);
  const sent_frame f = h.last_on("/meta/subscribe");
  h.reply(f, ok_replies(f));
  h.loop();
  CHECK(sub.ok_once());
}

// ---------------------------------------------------------------------------------------------
// exactly-once completions

TEST_CASE(
    "an explicit batch holds calls over several loop iterations and sends them in one "
    "frame; batches nest",
    "[session]") {
  harness h(long_polling_only());
  outcome open, a, sub, c;
  open_cometd(h, open);
  const auto sends = h.sent_count();
  h.s->start_batch();
  REQUIRE_FALSE(h.s->publish("/foo/a", "1", a.cb()));
  h.loop();
  inbox in;
  std::uint64_t sub_id = 0;
  REQUIRE_FALSE(h.s->subscribe("/foo/b", in.fn(), sub.cb(), &sub_id));
  h.loop();
  h.s->start_batch();  // nested
  REQUIRE_FALSE(h.s->publish("/foo/c", "3", c.cb()));
  CHECK(h.s->end_batch());
  h.loop();
  h.advance(1s);
  CHECK(h.sent_count() == sends);  // the outer batch is still open
  CHECK(h.s->end_batch());
  CHECK_FALSE(h.s->end_batch());  // none left open
  h.loop();
  REQUIRE(h.sent_count() == sends + 1);
  const sent_frame f = h.last();
  REQUIRE(f.size() == 3);
  CHECK(f.channel(0) == "/foo/a");
  CHECK(f.channel(1) == "/meta/subscribe");
  CHECK(f.channel(2) == "/foo/c");
  h.reply(f, ok_replies(f));
  CHECK(a.ok_once());
  CHECK(sub.ok_once());
  CHECK(c.ok_once());
}

TEST_CASE("close() with a batch open cancels its held calls once", "[session]") {
  harness h(long_polling_only());
  outcome open, a, b, closed;
  open_cometd(h, open);
  h.s->start_batch();
  REQUIRE_FALSE(h.s->publish("/foo/a", "1", a.cb()));
  REQUIRE_FALSE(h.s->publish("/foo/b", "2", b.cb()));
  h.loop();
  CHECK(h.last().find("/foo/a") == -1);  // held
  h.s->close(closed.cb());
  h.loop();
  const sent_frame bye = h.last();
  REQUIRE(bye.channel() == "/meta/disconnect");
  CHECK(bye.size() == 1);  // the held publishes never leave
  CHECK(a.failed_once(errc::cancelled));
  CHECK(b.failed_once(errc::cancelled));
  h.reply(bye, ok_replies(bye));
  h.s->on_transports_closed();
  h.loop();
  h.advance(1min);
  CHECK(closed.ok_once());
  CHECK(a.calls == 1);
  CHECK(b.calls == 1);
}

TEST_CASE("an open batch never holds the re-subscription after a re-handshake", "[session]") {
  harness h(long_polling_only());
  outcome open, sub, p;
  open_cometd(h, open);
  inbox in;
  subscribe_ok(h, "/foo/bar", in.fn(), sub);
  h.s->start_batch();
  REQUIRE_FALSE(h.s->publish("/foo/x", "1", p.cb()));
  const sent_frame held = h.last_on("/meta/connect");
  h.reply(held,
          refusal(held, 0, "402::session_unknown", R"({"reconnect":"handshake","interval":0})"));
  h.advance(250ms);
  const sent_frame hs = h.last();
  REQUIRE(hs.channel() == "/meta/handshake");
  h.reply(hs, cometd_handshake_reply(hs.id(), "second"));
  h.loop();
  const sent_frame resub = h.last();
  REQUIRE(resub.channel() == "/meta/subscribe");  // not held by the batch
  CHECK(resub.find("/foo/x") == -1);              // publishes wait for a connected session anyway
  h.reply(resub, ok_replies(resub));
  h.loop();
  CHECK(p.calls == 0);
  CHECK(h.s->end_batch());
  h.loop();
  const sent_frame connect = h.last_on("/meta/connect");
  h.reply(connect, ok_replies(connect));
  h.loop();
  const sent_frame pub = h.last_on("/foo/x");
  REQUIRE(pub.find("/foo/x") == 0);
  h.reply(pub, ok_replies(pub));
  CHECK(p.ok_once());
}

TEST_CASE("a response that lacks a message's reply completes it with no_reply", "[session]") {
  harness h(long_polling_only());
  outcome open, a, b;
  open_cometd(h, open);
  REQUIRE_FALSE(h.s->publish("/foo/a", "1", a.cb()));
  REQUIRE_FALSE(h.s->publish("/foo/b", "2", b.cb()));
  h.loop();
  const sent_frame f = h.last();
  REQUIRE(f.size() == 2);
  h.reply(f, "[" + ok_reply_object(f, 0) + "]");
  CHECK(a.ok_once());
  REQUIRE(b.failed_once(errc::no_reply));
  INFO(b.err.message);
  CHECK(contains(b.err.message, "/foo/b"));
  h.loop();
  h.advance(1min);
  CHECK(a.calls == 1);
  CHECK(b.calls == 1);
}

TEST_CASE("a failed request completes every message of its batch once with that error",
          "[session]") {
  harness h(long_polling_only());
  outcome open, sub, p1, p2;
  open_cometd(h, open);
  inbox in;
  std::uint64_t id = 0;
  REQUIRE_FALSE(h.s->subscribe("/foo/bar", in.fn(), sub.cb(), &id));
  REQUIRE_FALSE(h.s->publish("/foo/bar", "1", p1.cb()));
  REQUIRE_FALSE(h.s->publish("/foo/baz", "2", p2.cb()));
  h.loop();
  const sent_frame f = h.last();
  REQUIRE(f.size() == 3);

  SECTION("HTTP 500 with an empty body, reported by the transport") {
    h.fail(f, errc::http_error, "HTTP 500 Internal Server Error (empty body)");
    for (auto* o : {&sub, &p1, &p2}) {
      CHECK(o->failed_once(errc::http_error));
      CHECK(o->err.message == "HTTP 500 Internal Server Error (empty body)");
    }
  }
  SECTION("an empty body handed over as a frame") {
    h.reply(f, "");
    for (auto* o : {&sub, &p1, &p2}) CHECK(o->failed_once(errc::bad_response));
  }
  // The session itself is unharmed, and nothing completes twice.
  h.loop();
  CHECK(h.s->current_state() == state::connected);
  const sent_frame held = h.last_on("/meta/connect");
  h.reply(held, connect_reply_after(held, {data_message("/foo/bar", "1")}));
  h.reply(f, ok_replies(f));  // a late duplicate answer is ignored
  h.loop();
  h.advance(1min);
  CHECK(sub.calls == 1);
  CHECK(p1.calls == 1);
  CHECK(p2.calls == 1);
  CHECK(in.size() == 0);
}

TEST_CASE("a held connect lost to the transport reconnects with a new connect, not a handshake",
          "[session]") {
  harness h(long_polling_only());
  outcome open;
  open_cometd(h, open);
  const sent_frame held = h.last();
  h.fail(held, errc::transport_error, "connection reset by peer");
  CHECK(h.s->current_state() == state::reconnecting);
  h.advance(250ms);
  CHECK(h.last().channel() == "/meta/connect");
  CHECK(h.count_on("/meta/handshake") == 1);
}

// ---------------------------------------------------------------------------------------------
// close()

TEST_CASE(
    "close() when connected sends /meta/disconnect alone, cancels pending calls, and "
    "completes last after the transports closed",
    "[session]") {
  harness h(long_polling_only());
  outcome open, inflight, queued, done;
  open_cometd(h, open);
  std::vector<std::string> order;
  inflight.then = [&] { order.push_back("publish"); };
  done.then = [&] { order.push_back("close"); };
  h.host.on_state = [&](state s, connection_type, const uvcometd::error&) {
    if (s == state::closed) order.push_back("closed");
  };
  REQUIRE_FALSE(h.s->publish("/foo/a", "1", inflight.cb()));
  h.loop();
  REQUIRE_FALSE(h.s->publish("/foo/b", "2", queued.cb()));  // not flushed yet
  const auto sends = h.sent_count();

  h.s->close(done.cb());
  CHECK(h.s->current_state() == state::disconnecting);
  CHECK(queued.failed_once(errc::cancelled));
  REQUIRE(h.sent_count() == sends + 1);
  const sent_frame bye = h.last();
  REQUIRE(bye.size() == 1);
  CHECK(bye.channel() == "/meta/disconnect");
  CHECK(bye.get(0, "clientId") == "8d558cfbb86b2fc5037c4a19650eafca65d343a2");
  CHECK(h.host.close_transports_calls == 0);

  SECTION("the server answers the disconnect") { h.reply(bye, ok_replies(bye)); }
  SECTION("the server never answers: disconnect_timeout") {
    h.advance(1999ms);
    CHECK(h.host.close_transports_calls == 0);
    h.advance(1ms);
  }
  CHECK(h.host.close_transports_calls == 1);
  CHECK(inflight.failed_once(errc::cancelled));
  CHECK(done.calls == 0);
  CHECK(h.s->current_state() == state::disconnecting);

  h.s->on_transports_closed();
  CHECK(h.s->current_state() == state::closed);
  CHECK(done.ok_once());
  CHECK(order == std::vector<std::string>{"publish", "closed", "close"});
  CHECK(h.states() == std::vector<state>{state::connecting, state::connected, state::disconnecting,
                                         state::closed});
  h.loop();
  h.advance(1h);
  CHECK(h.sent_count() == sends + 1);
  CHECK(done.calls == 1);
  CHECK(queued.calls == 1);
  CHECK(inflight.calls == 1);
  CHECK(open.calls == 1);

  outcome after;
  CHECK(h.s->close(after.cb()) == errc::invalid_state);  // like uv_close: never inside the call
  h.loop();
  CHECK(after.calls == 0);
}

TEST_CASE("abandon() while waiting for the disconnect reply closes the transports at once",
          "[session]") {
  harness h(long_polling_only());
  outcome open, done;
  open_cometd(h, open);
  h.s->close(done.cb());
  REQUIRE(h.last().channel() == "/meta/disconnect");
  CHECK(h.host.close_transports_calls == 0);
  h.s->abandon();
  CHECK(h.host.close_transports_calls == 1);
  h.s->on_transports_closed();
  h.loop();
  CHECK(done.ok_once());
}

TEST_CASE("close() during the handshake cancels open() and sends no disconnect", "[session]") {
  harness h;
  outcome open, done, done2;
  REQUIRE_FALSE(h.s->open(open.cb()));
  h.s->close(done.cb());
  h.s->close(done2.cb());
  CHECK(open.failed_once(errc::cancelled));
  CHECK(h.sent_count() == 1);
  CHECK(h.host.close_transports_calls == 1);
  CHECK(done.calls == 0);
  // A late handshake reply changes nothing.
  const sent_frame hs = h.last();
  h.reply(hs, faye_handshake_reply(hs.id()));
  CHECK(h.sent_count() == 1);
  h.s->on_transports_closed();
  CHECK(done.ok_once());
  CHECK(done2.ok_once());
  CHECK(open.calls == 1);
  CHECK(h.s->current_state() == state::closed);
}

TEST_CASE("close() from inside a message handler", "[session]") {
  harness h(long_polling_only());
  outcome open, sub, pub, done;
  open_cometd(h, open);
  inbox in;
  in.then = [&](const uvcometd::message&) { h.s->close(done.cb()); };
  subscribe_ok(h, "/foo/bar", in.fn(), sub);
  REQUIRE_FALSE(h.s->publish("/foo/bar", "0", pub.cb()));
  h.loop();
  const sent_frame held = h.last_on("/meta/connect");
  h.reply(held, connect_reply_after(
                    held, {data_message("/foo/bar", "1"), data_message("/foo/bar", "2")}));
  h.loop();
  CHECK(in.size() == 1);  // delivery stops once the client is closing
  CHECK(h.s->current_state() == state::disconnecting);
  const sent_frame bye = h.last();
  REQUIRE(bye.channel() == "/meta/disconnect");
  h.reply(bye, ok_replies(bye));
  h.s->on_transports_closed();
  h.loop();
  CHECK(done.ok_once());
  CHECK(pub.failed_once(errc::cancelled));
  CHECK(sub.calls == 1);
  CHECK(in.size() == 1);
}

TEST_CASE("close() from inside a publish completion", "[session]") {
  harness h(long_polling_only());
  outcome open, pub, other, done;
  open_cometd(h, open);
  pub.then = [&] { h.s->close(done.cb()); };
  REQUIRE_FALSE(h.s->publish("/foo/a", "1", pub.cb()));
  REQUIRE_FALSE(h.s->publish("/foo/b", "2", other.cb()));
  h.loop();
  const sent_frame f = h.last();
  REQUIRE(f.size() == 2);
  h.reply(f, ok_replies(f));
  CHECK(pub.ok_once());
  CHECK(other.calls == 1);  // answered in the same frame, after close(): completes once either way
  const sent_frame bye = h.last_on("/meta/disconnect");
  h.reply(bye, ok_replies(bye));
  CHECK(h.host.close_transports_calls == 1);
  h.s->on_transports_closed();
  CHECK(done.ok_once());
  CHECK(pub.calls == 1);
  CHECK(other.calls == 1);
}

TEST_CASE("close() from inside the state listener when connected", "[session]") {
  harness h(long_polling_only());
  outcome open, done;
  bool closing = false;
  h.host.on_state = [&](state s, connection_type, const uvcometd::error&) {
    if (s == state::connected && !closing) {
      closing = true;
      h.s->close(done.cb());
    }
  };
  REQUIRE_FALSE(h.s->open(open.cb()));
  const sent_frame hs = h.last();
  h.reply(hs, cometd_handshake_reply(hs.id()));
  const sent_frame first = h.last();
  h.reply(first, ok_replies(first));
  h.loop();
  CHECK(open.calls == 1);
  const sent_frame bye = h.last();
  REQUIRE(bye.channel() == "/meta/disconnect");
  CHECK(h.count_on("/meta/connect") == 1);  // no held connect after close()
  h.reply(bye, ok_replies(bye));
  h.s->on_transports_closed();
  h.loop();
  CHECK(done.ok_once());
  CHECK(open.calls == 1);
  CHECK(h.states() == std::vector<state>{state::connecting, state::connected, state::disconnecting,
                                         state::closed});
}

TEST_CASE(
    "close() from inside the state listener during open() stops everything, "
    "arming no timer after the transports were told to close",
    "[session]") {
  harness h;
  outcome open, done;
  bool closing = false;
  h.host.on_state = [&](state s, connection_type, const uvcometd::error&) {
    if (s == state::connecting && !closing) {
      closing = true;
      h.s->close(done.cb());
    }
  };
  REQUIRE_FALSE(h.s->open(open.cb()));
  CHECK(open.failed_once(errc::cancelled));
  CHECK(h.sent_count() == 0);
  CHECK(h.host.close_transports_calls == 1);
  CHECK(h.host.arms_after_close == 0);
  h.s->on_transports_closed();
  h.advance(1min);
  CHECK(done.ok_once());
  CHECK(open.calls == 1);
  CHECK(h.sent_count() == 0);
  CHECK(h.s->current_state() == state::closed);
}

// ---------------------------------------------------------------------------------------------
// the pending buffer and backpressure

namespace {

// Connected to CometD with max_pending_count 3, paused, and the held connect answered by `frame`
// built from five deliveries on /foo/bar: checks that nothing is dropped, that no connect is sent
// while the buffer is full, and that draining it sends the connect.
void check_backpressure(bool deliveries_first) {
  auto cfg = long_polling_only();
  cfg.max_pending_count = 3;
  harness h(cfg);
  outcome open, sub;
  open_cometd(h, open);
  inbox in;
  subscribe_ok(h, "/foo/bar", in.fn(), sub);
  h.s->pause();
  const sent_frame held = h.last_on("/meta/connect");
  std::vector<std::string> five;
  for (int i = 1; i <= 5; ++i) five.push_back(data_message("/foo/bar", std::to_string(i)));
  const auto sends = h.sent_count();
  h.reply(held,
          deliveries_first ? connect_reply_after(held, five) : connect_reply_before(held, five));
  CHECK(h.s->pending_count() == 5);  // nothing dropped above the cap
  h.loop();
  CHECK(in.size() == 0);  // paused
  CHECK(h.s->pending_count() == 5);
  CHECK(h.count_on("/meta/connect", sends) == 0);  // backpressure: no new fetch while full
  h.advance(1min);
  CHECK(h.count_on("/meta/connect", sends) == 0);
  CHECK(h.s->current_state() == state::connected);

  h.s->resume();
  h.loop();
  CHECK(in.data == std::vector<std::string>{"1", "2", "3", "4", "5"});
  CHECK(h.s->pending_count() == 0);
  CHECK(h.count_on("/meta/connect", sends) == 1);
  CHECK(h.last().channel() == "/meta/connect");
}

}  // namespace

TEST_CASE(
    "a full pending buffer keeps every message and holds the next connect until drained "
    "(CometD order, deliveries before the connect reply)",
    "[session]") {
  check_backpressure(true);
}

TEST_CASE(
    "a full pending buffer keeps every message and holds the next connect until drained "
    "(Faye order, the connect reply before the deliveries)",
    "[session]") {
  check_backpressure(false);
}

TEST_CASE("over websocket a full pending buffer pauses reading until it drains", "[session]") {
  auto cfg = test_config();
  cfg.max_pending_count = 3;
  harness h(cfg);
  outcome open, sub;
  open_faye(h, open);
  inbox in;
  subscribe_ok(h, "/foo/bar", in.fn(), sub);
  std::string frame = "[";
  for (int i = 1; i <= 4; ++i)
    frame += (i > 1 ? "," : "") + data_message("/foo/bar", std::to_string(i));
  h.push(connection_type::websocket, frame + "]");
  CHECK(h.s->pending_count() == 4);
  REQUIRE_FALSE(h.host.receive_pauses.empty());
  CHECK(h.host.receive_pauses.back() == std::make_pair(connection_type::websocket, true));
  h.loop();
  CHECK(in.size() == 4);
  CHECK(h.host.receive_pauses.back() == std::make_pair(connection_type::websocket, false));
}

// ---------------------------------------------------------------------------------------------
// malformed frames

TEST_CASE("a malformed response fails the messages of its request with bad_response", "[session]") {
  harness h(long_polling_only());
  outcome open, pub;
  open_cometd(h, open);
  REQUIRE_FALSE(h.s->publish("/foo/bar", "1", pub.cb()));
  h.loop();
  const sent_frame p = h.last();
  const std::string id = p.id();
  const std::string body = GENERATE_COPY(values<std::string>({
      "Bad request",                                                     // Faye's HTTP 400 text
      R"("hello")",                                                      // not an array
      "42",                                                              // not an array
      R"([{"id":")" + id + R"(","channel":"/foo/bar","successful":tr)",  // truncated
      R"([{"id":")" + id + R"(","channel":"/foo/bar","successful":"yes"}])",  // wrong type
      R"([{"id":")" + id + R"(","channel":42,"successful":true}])",           // wrong type
      R"([{"id":")" + id + R"(","data":{}}])",                                // no channel
      "<html><body>502 Bad Gateway</body></html>",
  }));
  INFO("body: " << body);
  h.reply(p, body);
  REQUIRE(pub.failed_once(errc::bad_response));
  CHECK_FALSE(pub.err.message.empty());
  h.loop();
  h.advance(1min);
  CHECK(pub.calls == 1);
  CHECK(h.s->current_state() == state::connected);
}

TEST_CASE("a malformed connect response reconnects", "[session]") {
  harness h(long_polling_only());
  outcome open;
  open_cometd(h, open);
  const sent_frame held = h.last();
  h.reply(held, "[{\"id\":");
  CHECK(h.s->current_state() == state::reconnecting);
  CHECK(h.host.states.back().why.code == errc::bad_response);
  h.advance(250ms);
  CHECK(h.last().channel() == "/meta/connect");
  CHECK(h.last().request != held.request);
}

TEST_CASE(
    "a malformed websocket frame drops the connection, its calls fail once and the "
    "session reconnects",
    "[session]") {
  harness h;
  outcome open, pub;
  open_faye(h, open);
  REQUIRE_FALSE(h.s->publish("/foo/bar", "1", pub.cb()));
  h.loop();
  REQUIRE(h.last().type == connection_type::websocket);
  h.push(connection_type::websocket, "[{\"channel\":\"/foo/bar\",");
  CHECK(std::find(h.host.aborts.begin(), h.host.aborts.end(), connection_type::websocket) !=
        h.host.aborts.end());
  CHECK(pub.failed_once(errc::bad_response));
  CHECK(h.s->current_state() == state::reconnecting);
  const auto sends = h.sent_count();
  h.advance(250ms);
  REQUIRE(h.sent_count() == sends + 1);
  CHECK(h.last().channel() == "/meta/connect");
  CHECK(h.last().type == connection_type::websocket);
  h.reply(h.last(), ok_replies(h.last()));
  CHECK(h.s->current_state() == state::connected);
  CHECK(pub.calls == 1);
}

// ---------------------------------------------------------------------------------------------
// websocket fallback

TEST_CASE("a websocket that never opens falls back to long-polling", "[session]") {
  harness h;
  outcome open, pub;
  REQUIRE_FALSE(h.s->open(open.cb()));
  const sent_frame hs = h.last();
  h.reply(hs, faye_handshake_reply(hs.id()));
  const sent_frame ws_connect = h.last();
  REQUIRE(ws_connect.type == connection_type::websocket);
  REQUIRE_FALSE(h.s->publish("/foo/bar", "1", pub.cb()));
  h.loop();
  const auto sends = h.sent_count();

  h.s->on_transport_down(connection_type::websocket,
                         uvcometd::error{uvcometd::make_error_code(errc::transport_error),
                                         "websocket upgrade refused: HTTP 400"},
                         false);
  h.loop();
  const auto& ev = h.host.states.back();
  CHECK(ev.type == connection_type::long_polling);
  CHECK(ev.s == state::connecting);
  CHECK(ev.why.message == "websocket upgrade refused: HTTP 400");
  CHECK(h.s->current_type() == connection_type::long_polling);

  REQUIRE(h.sent_count() == sends + 1);
  const sent_frame connect = h.last();
  CHECK(connect.type == connection_type::long_polling);
  REQUIRE(connect.size() == 1);
  CHECK(connect.channel() == "/meta/connect");
  CHECK(connect.get(0, "connectionType") == "long-polling");
  CHECK(connect.get(0, "advice") == R"({"timeout":0})");
  CHECK(connect.get(0, "clientId") == "fo8b7vgpm78obnken0i3zjijvepuho0");
  CHECK(pub.calls == 0);

  h.reply(connect, ok_replies(connect));
  h.loop();
  CHECK(open.ok_once());
  CHECK(h.s->current_state() == state::connected);
  CHECK(h.host.states.back().type == connection_type::long_polling);
  const sent_frame p = h.last_on("/foo/bar");
  CHECK(p.type == connection_type::long_polling);
  h.reply(p, ok_replies(p));
  CHECK(pub.ok_once());
  CHECK(h.last_on("/meta/connect").type == connection_type::long_polling);
  CHECK(h.count_on("/meta/handshake") == 1);
  for (std::size_t i = sends; i < h.sent_count(); ++i) {
    CHECK(h.sent(i).type == connection_type::long_polling);
  }
}

// ---------------------------------------------------------------------------------------------
// re-subscription after a transient failure

TEST_CASE(
    "a re-subscribe lost to a transport failure is sent again, the subscription survives "
    "a network blip",
    "[session]") {
  harness h(long_polling_only());
  outcome open, sub;
  open_cometd(h, open);
  inbox in;
  subscribe_ok(h, "/foo/bar", in.fn(), sub);
  const sent_frame held = h.last_on("/meta/connect");
  h.reply(held,
          refusal(held, 0, "402::session_unknown", R"({"reconnect":"handshake","interval":0})"));
  h.advance(250ms);
  const sent_frame hs = h.last();
  REQUIRE(hs.channel() == "/meta/handshake");
  h.reply(hs, cometd_handshake_reply(hs.id(), "second"));
  h.loop();
  const sent_frame resub = h.last();
  REQUIRE(resub.channel() == "/meta/subscribe");
  const auto mark = h.sent_count();
  h.fail(resub, errc::transport_error, "connection reset by peer");
  h.loop();

  // Play the server for a while: answer every frame sent so far (each answered connect is
  // followed by a new one, answered on the next round), leaving the last connect held.
  std::size_t answered = mark;
  for (int round = 0; round < 20; ++round) {
    const std::size_t upto = h.sent_count();
    while (answered < upto) {
      const sent_frame f = h.sent(answered++);
      h.reply(f, ok_replies(f));
      h.loop();
    }
    h.advance(250ms);
  }
  CHECK(h.count_on("/meta/subscribe", mark) >= 1);
  CHECK(sub.calls == 1);  // the user's subscribe completed long ago; no second completion
  const sent_frame last_connect = h.last_on("/meta/connect");
  h.reply(last_connect, connect_reply_after(last_connect, {data_message("/foo/bar", "1")}));
  h.loop();
  CHECK(in.size() == 1);
}

TEST_CASE(
    "a re-subscribe refused by the server reports the subscription lost once, and its "
    "handler never runs again",
    "[session]") {
  harness h(long_polling_only());
  outcome open, sub;
  open_cometd(h, open);
  inbox in;
  const auto sid = subscribe_ok(h, "/foo/bar", in.fn(), sub);
  std::vector<std::pair<std::uint64_t, std::string>> lost;
  uvcometd::error lost_err;
  h.s->on_subscription_lost(
      [&](std::uint64_t id, const std::string& pattern, const uvcometd::error& e) {
        lost.emplace_back(id, pattern);
        lost_err = e;
      });
  const sent_frame held = h.last_on("/meta/connect");
  h.reply(held,
          refusal(held, 0, "402::session_unknown", R"({"reconnect":"handshake","interval":0})"));
  h.advance(250ms);
  const sent_frame hs = h.last();
  REQUIRE(hs.channel() == "/meta/handshake");
  h.reply(hs, cometd_handshake_reply(hs.id(), "second"));
  h.loop();
  const sent_frame resub = h.last();
  REQUIRE(resub.channel() == "/meta/subscribe");
  h.reply(resub, refusal(resub, 0, "403:/foo/bar:Forbidden channel"));
  h.loop();
  REQUIRE(lost.size() == 1);
  CHECK(lost[0] == std::make_pair(sid, std::string("/foo/bar")));
  CHECK(lost_err.server_code == 403);
  CHECK(sub.calls == 1);  // the original subscribe() completed once, long ago

  const sent_frame connect = h.last();
  REQUIRE(connect.channel() == "/meta/connect");  // the refusal does not block the session
  h.reply(connect, connect_reply_after(connect, {data_message("/foo/bar", "1")}));
  h.loop();
  CHECK(h.s->current_state() == state::connected);
  CHECK(in.size() == 0);
  CHECK(lost.size() == 1);
}

// ---------------------------------------------------------------------------------------------
// before the session is connected, and reconnection policies

TEST_CASE("publishes issued before the first connect succeeds wait for it; subscribes do not",
          "[session]") {
  harness h(long_polling_only());
  outcome open, pub, sub;
  REQUIRE_FALSE(h.s->open(open.cb()));
  REQUIRE_FALSE(h.s->publish("/foo/bar", "1", pub.cb()));
  const sent_frame hs = h.last();
  h.reply(hs, cometd_handshake_reply(hs.id()));
  h.loop();
  const sent_frame first = h.last_on("/meta/connect");
  CHECK(h.count_on("/foo/bar") == 0);
  inbox in;
  std::uint64_t id = 0;
  REQUIRE_FALSE(h.s->subscribe("/foo/*", in.fn(), sub.cb(), &id));
  h.loop();
  const sent_frame s1 = h.last();
  REQUIRE(s1.size() == 1);
  CHECK(s1.channel() == "/meta/subscribe");
  h.reply(s1, ok_replies(s1));
  h.loop();
  CHECK(sub.ok_once());
  CHECK(h.count_on("/foo/bar") == 0);

  h.reply(first, ok_replies(first));
  h.loop();
  CHECK(open.ok_once());
  const sent_frame p = h.last_on("/foo/bar");
  CHECK(p.size() == 1);
  h.reply(p, ok_replies(p));
  CHECK(pub.ok_once());
}

TEST_CASE("max_queued_messages caps the publishes waiting for a connection", "[session]") {
  auto cfg = long_polling_only();
  cfg.max_queued_messages = 2;
  harness h(cfg);
  outcome open, a, b, c;
  REQUIRE_FALSE(h.s->open(open.cb()));
  REQUIRE_FALSE(h.s->publish("/foo", "1", a.cb()));
  REQUIRE_FALSE(h.s->publish("/foo", "2", b.cb()));
  CHECK(h.s->publish("/foo", "3", c.cb()) == errc::queue_full);
  h.loop();
  h.advance(1s);
  CHECK(c.calls == 0);
  CHECK(a.calls == 0);
  CHECK(b.calls == 0);
}

TEST_CASE(
    "with queue_while_reconnecting off, publishes fail with not_connected while "
    "reconnecting",
    "[session]") {
  auto cfg = long_polling_only();
  cfg.queue_while_reconnecting = false;
  harness h(cfg);
  outcome open, queued, late;
  open_cometd(h, open);
  REQUIRE_FALSE(h.s->publish("/foo", "1", queued.cb()));  // still in the queue
  const sent_frame held = h.last();
  h.reply(held, refusal(held, 0, "500::busy", R"({"reconnect":"retry"})"));
  CHECK(h.s->current_state() == state::reconnecting);
  CHECK(queued.failed_once(errc::not_connected));
  CHECK(h.s->publish("/foo", "2", late.cb()) == errc::not_connected);
  h.loop();
  h.advance(1s);
  CHECK(late.calls == 0);
  CHECK(queued.calls == 1);
  CHECK(h.count_on("/foo") == 0);
}

TEST_CASE("an HTTP client error on the first handshake ends open() at once", "[session]") {
  harness h;
  outcome open;
  REQUIRE_FALSE(h.s->open(open.cb()));
  h.fail(h.last(), errc::http_error, "HTTP 404 Not Found", 404);
  REQUIRE(open.failed_once(errc::http_error));
  CHECK(open.err.http_status == 404);
  CHECK(h.s->current_state() == state::failed);
  h.advance(1min);
  CHECK(h.sent_count() == 1);
}

TEST_CASE("HTTP 503, 429 and 408 on the first handshake are retried", "[session]") {
  const int status = GENERATE(503, 429, 408);
  INFO("HTTP " << status);
  harness h;
  outcome open;
  REQUIRE_FALSE(h.s->open(open.cb()));
  h.fail(h.last(), errc::http_error, "HTTP " + std::to_string(status), status);
  CHECK(open.calls == 0);
  CHECK(h.s->current_state() == state::connecting);
  h.advance(250ms);
  CHECK(h.sent_count() == 2);
  CHECK(h.last().channel() == "/meta/handshake");
}

TEST_CASE("reconnect_delay replaces the backoff", "[session]") {
  auto cfg = test_config();
  std::vector<unsigned> attempts;
  cfg.reconnect_delay = [&](unsigned n, ms) {
    attempts.push_back(n);
    return ms(1000 * n);
  };
  harness h(cfg);
  outcome open;
  REQUIRE_FALSE(h.s->open(open.cb()));
  h.fail(h.last(), errc::transport_error, "refused");
  h.advance(999ms);
  CHECK(h.sent_count() == 1);
  h.advance(1ms);
  REQUIRE(h.sent_count() == 2);
  h.fail(h.last(), errc::transport_error, "refused");
  h.advance(1999ms);
  CHECK(h.sent_count() == 2);
  h.advance(1ms);
  CHECK(h.sent_count() == 3);
  CHECK(attempts == std::vector<unsigned>{1, 2});
}

TEST_CASE("reconnect_now() drops the connection and reconnects at once", "[session]") {
  harness h(long_polling_only());
  outcome open, pub;
  open_cometd(h, open);
  REQUIRE_FALSE(h.s->publish("/foo", "1", pub.cb()));
  h.loop();
  const auto sends = h.sent_count();
  REQUIRE_FALSE(h.s->reconnect_now());
  CHECK(std::find(h.host.aborts.begin(), h.host.aborts.end(), connection_type::long_polling) !=
        h.host.aborts.end());
  CHECK(pub.failed_once(errc::transport_error));
  CHECK(h.s->current_state() == state::reconnecting);
  REQUIRE(h.sent_count() == sends + 1);
  const sent_frame c = h.last();
  CHECK(c.channel() == "/meta/connect");
  CHECK(c.get(0, "advice") == R"({"timeout":0})");
  h.reply(c, ok_replies(c));
  h.loop();
  CHECK(h.s->current_state() == state::connected);
  CHECK(pub.calls == 1);
}

TEST_CASE(
    "a websocket that keeps dropping after it worked falls back to long-polling on the "
    "third drop",
    "[session]") {
  harness h;
  outcome open;
  open_faye(h, open);
  REQUIRE(h.s->current_type() == connection_type::websocket);
  for (int drop = 1; drop <= 2; ++drop) {
    INFO("drop " << drop);
    h.down(connection_type::websocket, "connection reset", true);
    CHECK(h.s->current_state() == state::reconnecting);
    CHECK(h.s->current_type() == connection_type::websocket);
    const auto sends = h.sent_count();
    h.advance(1s);
    REQUIRE(h.sent_count() == sends + 1);
    CHECK(h.last().channel() == "/meta/connect");
    CHECK(h.last().type == connection_type::websocket);
  }
  const auto sends = h.sent_count();
  h.down(connection_type::websocket, "connection reset", true);
  CHECK(h.s->current_type() == connection_type::long_polling);
  CHECK(h.host.states.back().type == connection_type::long_polling);
  REQUIRE(h.sent_count() == sends + 1);
  const sent_frame c = h.last();
  CHECK(c.channel() == "/meta/connect");
  CHECK(c.type == connection_type::long_polling);
  h.reply(c, ok_replies(c));
  CHECK(h.s->current_state() == state::connected);
  CHECK(h.count_on("/meta/handshake") == 1);
}

TEST_CASE(
    "a websocket drop sends again what was still queued in the transport and fails what "
    "was written",
    "[session]") {
  harness h;
  outcome open, written, queued;
  open_faye(h, open);
  REQUIRE(h.s->current_type() == connection_type::websocket);
  REQUIRE_FALSE(h.s->publish("/w", "1", written.cb()));
  h.loop();
  const sent_frame first = h.last();
  REQUIRE_FALSE(h.s->publish("/q", "2", queued.cb()));
  h.loop();
  const sent_frame second = h.last();
  REQUIRE(second.channel() == "/q");
  // The transport wrote the first frame; the second was still queued when the connection broke.
  h.s->on_transport_down(connection_type::websocket,
                         uvcometd::error{uvcometd::make_error_code(errc::transport_error), "reset"},
                         true, {second.request});
  CHECK(written.failed_once(errc::transport_error));
  CHECK(queued.calls == 0);
  (void)first;
  const auto sends = h.sent_count();
  h.advance(1s);
  REQUIRE(h.sent_count() > sends);
  const sent_frame c = h.last();
  REQUIRE(c.channel() == "/meta/connect");
  h.reply(c, ok_replies(c));
  h.loop();
  CHECK(h.s->current_state() == state::connected);
  const sent_frame again = h.last_on("/q");
  CHECK(again.request != second.request);
  h.reply(again, ok_replies(again));
  h.loop();
  CHECK(queued.ok_once());
  CHECK(written.calls == 1);
}

TEST_CASE(
    "messages held in the pending buffer keep their escaped strings valid after later "
    "frames arrived",
    "[session]") {
  harness h(long_polling_only());
  outcome open, sub;
  open_cometd(h, open);
  inbox in;
  subscribe_ok(h, "/a/b", in.fn(), sub);
  h.s->pause();
  const sent_frame held = h.last_on("/meta/connect");
  // "\/a\/b" decodes to "/a/b" in the frame's arena; the id too.
  h.reply(held,
          connect_reply_after(held, {R"({"channel":"\/a\/b","data":{"k":"v"},"id":"x\u0041"})"}));
  h.loop();
  const sent_frame next = h.last();
  REQUIRE(next.channel() == "/meta/connect");
  h.reply(next, connect_reply_after(next, {R"({"channel":"\/a\/b","data":2,"id":"y\u0042"})"}));
  h.loop();
  CHECK(h.s->pending_count() == 2);
  h.s->resume();
  h.loop();
  REQUIRE(in.size() == 2);
  CHECK(in.channels[0] == "/a/b");
  CHECK(in.ids[0] == "xA");
  CHECK(in.data[0] == R"({"k":"v"})");
  CHECK(in.ids[1] == "yB");
  CHECK(in.data[1] == "2");
}

// ---------------------------------------------------------------------------------------------
// Hostile values (kept last: before a fix they are undefined behaviour, which UBSan may abort on)

TEST_CASE("a huge advice interval from the server does not overflow the clock", "[session]") {
  harness h(long_polling_only());
  outcome open;
  open_cometd(h, open);
  const sent_frame held = h.last();
  h.reply(held,
          R"([{"id":")" + held.id() +
              R"(","channel":"/meta/connect","successful":true,"advice":{"interval":1e30}}])");
  h.loop();
  const auto sends = h.sent_count();
  REQUIRE_FALSE(h.host.arms.empty());
  CHECK(h.host.arms.back().count() > 60000);
  h.advance(1h);
  CHECK(h.sent_count() == sends);  // a later connect, not an immediate one
  CHECK(h.s->current_state() == state::connected);
}

TEST_CASE("a huge advice timeout from the server gives the held connect a positive deadline",
          "[session]") {
  harness h(long_polling_only());
  outcome open;
  REQUIRE_FALSE(h.s->open(open.cb()));
  const sent_frame hs = h.last();
  h.reply(
      hs,
      R"([{"id":")" + hs.id() +
          R"(","channel":"/meta/handshake","successful":true,"clientId":"c1","version":"1.0","supportedConnectionTypes":["long-polling"],"advice":{"reconnect":"retry","timeout":9223372036854775807,"interval":0}}])");
  const sent_frame first = h.last();
  h.reply(first, R"([{"id":")" + first.id() + R"(","channel":"/meta/connect","successful":true}])");
  h.loop();
  const sent_frame held = h.last();
  REQUIRE(held.channel() == "/meta/connect");
  CHECK(held.timeout.count() >= 10000);
}

TEST_CASE("a meta reply without \"successful\" fails its call with bad_response", "[session]") {
  harness h(long_polling_only());
  outcome open, sub;
  open_cometd(h, open);
  inbox in;
  std::uint64_t id = 0;
  REQUIRE_FALSE(h.s->subscribe("/foo/bar", in.fn(), sub.cb(), &id));
  h.loop();
  const sent_frame f = h.last();
  REQUIRE(f.channel() == "/meta/subscribe");
  h.reply(f,
          R"([{"id":")" + f.id() + R"(","channel":"/meta/subscribe","subscription":"/foo/bar"}])");
  h.loop();
  CHECK(sub.calls == 1);
  CHECK(sub.err.code == errc::bad_response);
}

// ---------------------------------------------------------------------------------------------
// Remote calls, meta listeners, unmatched messages (issue 15)

TEST_CASE(
    "a remote call completes once with its reply's data; a late reply after its timeout "
    "changes nothing",
    "[session][calls]") {
  harness h(long_polling_only());
  outcome open;
  open_cometd(h, open);
  int calls = 0;
  std::string data;
  uvcometd::error err;
  const auto cb = [&](const uvcometd::error& e, const uvcometd::message& reply) {
    ++calls;
    err = e;
    data = std::string(reply.data);
  };
  REQUIRE_FALSE(h.s->remote_call("echo", R"({"q":1})", 1000ms, cb));
  h.loop();
  const sent_frame f = h.last();
  REQUIRE(f.channel() == "/service/echo");
  h.reply(f, R"([{"id":")" + f.id() +
                 R"(","channel":"/service/echo","successful":true,"data":{"a":2}}])");
  h.loop();
  CHECK(calls == 1);
  CHECK_FALSE(err);
  CHECK(data == R"({"a":2})");

  REQUIRE_FALSE(h.s->remote_call("echo", "1", 1000ms, cb));
  h.loop();
  const sent_frame g = h.last();
  h.advance(999ms);
  CHECK(calls == 1);
  h.advance(1ms);
  CHECK(calls == 2);
  CHECK(err.code == errc::timeout);
  h.reply(g,
          R"([{"id":")" + g.id() + R"(","channel":"/service/echo","successful":true,"data":1}])");
  h.loop();
  CHECK(calls == 2);
}

TEST_CASE("a remote call made before the session is up times out while still queued",
          "[session][calls]") {
  harness h(long_polling_only());
  outcome open;
  REQUIRE_FALSE(h.s->open(open.cb()));
  int calls = 0;
  uvcometd::error err;
  REQUIRE_FALSE(
      h.s->remote_call("echo", "1", 500ms, [&](const uvcometd::error& e, const uvcometd::message&) {
        ++calls;
        err = e;
      }));
  h.advance(500ms);
  CHECK(calls == 1);
  CHECK(err.code == errc::timeout);
  const sent_frame hs = h.last();
  h.reply(hs, cometd_handshake_reply(hs.id()));
  h.reply(h.last(), ok_replies(h.last()));
  h.loop();
  CHECK(h.count_on("/service/echo") == 0);  // it never leaves
  CHECK(calls == 1);
}

TEST_CASE("the meta hook hears replies and failures without a reply", "[session][meta]") {
  harness h(long_polling_only());
  std::vector<std::string> seen;
  h.s->on_meta([&](const uvcometd::meta_message& m) {
    seen.push_back(std::string(m.channel) +
                   (m.successful ? " ok" : " failed: " + std::string(m.error)) +
                   (m.json.empty() ? " (no reply)" : ""));
  });
  outcome open;
  open_cometd(h, open);
  REQUIRE(seen.size() >= 2);
  CHECK(seen[0] == "/meta/handshake ok");
  CHECK(seen[1] == "/meta/connect ok");
  const sent_frame held = h.last();
  h.fail(held, errc::transport_error, "connection reset");
  h.loop();
  CHECK(seen.back() == "/meta/connect failed: transport error: connection reset (no reply)");
}

TEST_CASE("a data message no subscription matches goes to the unmatched handler",
          "[session][unmatched]") {
  harness h(long_polling_only());
  outcome open, sub;
  open_cometd(h, open);
  inbox mine, other;
  subscribe_ok(h, "/a", mine.fn(), sub);
  h.s->on_unmatched(other.fn());
  const sent_frame held = h.last_on("/meta/connect");
  h.advance(3000ms);
  h.reply(held,
          connect_reply_after(held, {data_message("/a", "1"), data_message("/service/x", "2")}));
  h.loop();
  CHECK(mine.data == std::vector<std::string>{"1"});
  CHECK(other.channels == std::vector<std::string>{"/service/x"});
}
