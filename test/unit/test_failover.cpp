// Clusters (issue 14): the endpoint policy on its own, and the session moving between servers:
// continuing its session on the next server, re-handshaking only when that one does not know
// it, advice.hosts, the backoff between full rounds, and failback.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "scripted_host.hpp"
#include "session/endpoints.hpp"

using namespace uvcometd_test;
using uvcometd::detail::endpoint_list;
using uvcometd::detail::host_url;

TEST_CASE("the endpoint policy: two failures move on, round robin, a full round is told",
          "[failover]") {
  endpoint_list e({"http://a/c", "http://b/c", "http://c/c"});
  CHECK(e.current() == "http://a/c");
  CHECK_FALSE(e.failed());
  CHECK(e.failed());  // the retry failed too
  CHECK_FALSE(e.advance());
  CHECK(e.current() == "http://b/c");
  CHECK_FALSE(e.failed());
  e.succeeded();
  CHECK_FALSE(e.failed());  // a success in between: the count starts again
  CHECK(e.failed());
  CHECK_FALSE(e.advance());
  CHECK(e.current() == "http://c/c");
  CHECK_FALSE(e.advance());
  CHECK(e.current() == "http://a/c");
  CHECK(e.advance());  // a, then b, c, a: b again starts a new round
  CHECK(e.current() == "http://b/c");
  endpoint_list one({"http://only/c"});
  CHECK_FALSE(one.failed());
  CHECK_FALSE(one.failed());  // nowhere else to go
}

TEST_CASE("advice.hosts are merged in and tried in order when a re-handshake is due",
          "[failover]") {
  endpoint_list e({"http://a:1/cometd"});
  CHECK_FALSE(e.rehandshake());  // no advice
  e.advise({"b:2", "https://c:3/x", "not a url", "http://a:1/cometd"});
  CHECK(e.all() ==
        std::vector<std::string>{"http://a:1/cometd", "http://b:2/cometd", "https://c:3/x"});
  // The current server is in the advice: it stays.
  CHECK_FALSE(e.rehandshake());
  e.advise({"b:2", "https://c:3/x"});
  CHECK(e.rehandshake());
  CHECK(e.current() == "http://b:2/cometd");
  CHECK(host_url("h:9", "https://x/p?q") == "https://h:9/p?q");
  CHECK(host_url("", "http://x/p").empty());
  CHECK(host_url("ftp://h/", "http://x/p").empty());
}

namespace {

detail::session_config cluster(std::vector<std::string> urls) {
  auto c = long_polling_only();
  c.urls = std::move(urls);
  return c;
}

}  // namespace

TEST_CASE("a broken server is retried once, then the session continues on the next at once",
          "[failover]") {
  harness h(cluster({"http://a/cometd", "http://b/cometd"}));
  outcome open;
  open_cometd(h, open);
  CHECK(h.s->current_url() == "http://a/cometd");
  const auto id = h.s->client_id();
  h.fail(h.last(), errc::transport_error, "connection reset");  // the held connect
  h.advance(250ms);
  const sent_frame retry = h.last();
  REQUIRE(retry.channel() == "/meta/connect");
  CHECK(h.host.endpoints.empty());
  const auto sends = h.sent_count();
  h.fail(retry, errc::transport_error, "connection refused");
  // No backoff delay: the next server is asked at once, with the same clientId.
  REQUIRE(h.host.endpoints == std::vector<std::string>{"http://b/cometd"});
  CHECK(h.s->current_url() == "http://b/cometd");
  REQUIRE(h.sent_count() == sends + 1);
  const sent_frame there = h.last();
  CHECK(there.channel() == "/meta/connect");
  CHECK(there.get(0, "clientId") == id);
  // Held briefly: faye-redis reads the session's queue asynchronously and drops what it read for
  // a poll closed meanwhile (a connect answered at once lost what was queued while away).
  CHECK(there.get(0, "advice") == R"({"timeout":1000})");
  CHECK(retry.get(0, "advice") == R"({"timeout":0})");  // the retry on the same server is not
  h.reply(there, ok_replies(there));
  h.loop();
  CHECK(h.s->current_state() == state::connected);
  CHECK(h.count_on("/meta/handshake") == 1);
  CHECK(h.states() == std::vector<state>{state::connecting, state::connected, state::reconnecting,
                                         state::connected});
}

TEST_CASE(
    "a server that does not know the session gets a new handshake and the "
    "re-subscriptions",
    "[failover]") {
  harness h(cluster({"http://a/cometd", "http://b/cometd"}));
  outcome open, sub;
  open_cometd(h, open);
  inbox in;
  subscribe_ok(h, "/x", in.fn(), sub);
  const sent_frame held = h.last_on("/meta/connect");
  h.fail(held, errc::transport_error, "reset");
  h.advance(250ms);
  h.fail(h.last(), errc::transport_error, "refused");
  REQUIRE(h.s->current_url() == "http://b/cometd");
  const sent_frame there = h.last();
  h.reply(there, refusal(there, 0, "402::session_unknown", R"({"reconnect":"handshake"})"));
  h.loop();
  h.advance(1s);
  const sent_frame hs = h.last();
  REQUIRE(hs.channel() == "/meta/handshake");
  CHECK(h.s->current_url() == "http://b/cometd");  // re-handshake where the session broke
  h.reply(hs, cometd_handshake_reply(hs.id(), "on-b"));
  h.loop();
  const sent_frame resub = h.last();
  REQUIRE(resub.channel() == "/meta/subscribe");
  h.reply(resub, ok_replies(resub));
  h.loop();
  const sent_frame connect = h.last();
  REQUIRE(connect.channel() == "/meta/connect");
  // A new session: nothing can be queued for it, so its first connect is answered at once.
  CHECK(connect.get(0, "advice") == R"({"timeout":0})");
  h.reply(connect, ok_replies(connect));
  h.loop();
  CHECK(h.s->current_state() == state::connected);
  CHECK(h.s->client_id() == "on-b");
}

TEST_CASE(
    "open() on a server list whose first is down handshakes on the next, and its first "
    "connect is not held",
    "[failover]") {
  // Found by test_cluster: the hold meant for a session continuing on another server also held
  // the first connect of a new session there, so open() completed a second late.
  harness h(cluster({"http://a/cometd", "http://b/cometd"}));
  outcome open;
  REQUIRE_FALSE(h.s->open(open.cb()));
  h.fail(h.last(), errc::transport_error, "connection refused");
  h.advance(250ms);
  REQUIRE(h.last().channel() == "/meta/handshake");
  h.fail(h.last(), errc::transport_error, "connection refused");
  h.loop();
  h.advance(250ms);
  REQUIRE(h.s->current_url() == "http://b/cometd");
  const sent_frame hs = h.last();
  REQUIRE(hs.channel() == "/meta/handshake");
  h.reply(hs, cometd_handshake_reply(hs.id(), "on-b"));
  const sent_frame first = h.last();
  REQUIRE(first.channel() == "/meta/connect");
  CHECK(first.get(0, "advice") == R"({"timeout":0})");
  h.reply(first, ok_replies(first));
  h.loop();
  CHECK(open.ok_once());
}

TEST_CASE("when every server failed, the backoff applies before the next round", "[failover]") {
  harness h(cluster({"http://a/cometd", "http://b/cometd"}));
  outcome open;
  REQUIRE_FALSE(h.s->open(open.cb()));
  // a: refused twice (the retry after the backoff), then b at once, refused twice, then the
  // round is over: a again only after a backoff delay.
  h.fail(h.last(), errc::transport_error, "refused");
  h.advance(250ms);
  h.fail(h.last(), errc::transport_error, "refused");
  REQUIRE(h.s->current_url() == "http://b/cometd");
  h.fail(h.last(), errc::transport_error, "refused");
  h.advance(500ms);
  const auto sends = h.sent_count();
  h.fail(h.last(), errc::transport_error, "refused");
  CHECK(h.s->current_url() == "http://a/cometd");
  CHECK(h.sent_count() == sends);  // not at once
  h.advance(2s);
  CHECK(h.sent_count() == sends + 1);
  CHECK(h.last().channel() == "/meta/handshake");
}

TEST_CASE("advice.hosts that do not name the current server are tried on re-handshake",
          "[failover]") {
  harness h(cluster({"http://a:1/cometd"}));
  outcome open;
  REQUIRE_FALSE(h.s->open(open.cb()));
  const sent_frame hs = h.last();
  h.reply(hs,
          R"([{"id":")" + hs.id() +
              R"(","channel":"/meta/handshake","successful":true,"clientId":"c1","version":"1.0",)"
              R"("supportedConnectionTypes":["long-polling"],"advice":{"reconnect":"retry",)"
              R"("interval":0,"timeout":3000,"hosts":["b:2","c:3"]}}])");
  h.reply(h.last(), ok_replies(h.last()));
  h.loop();
  REQUIRE(h.s->current_state() == state::connected);
  CHECK(h.s->current_url() == "http://a:1/cometd");
  const sent_frame held = h.last();
  h.reply(held, refusal(held, 0, "402::session_unknown", R"({"reconnect":"handshake"})"));
  h.loop();
  CHECK(h.host.endpoints == std::vector<std::string>{"http://b:2/cometd"});
  CHECK(h.last().channel() == "/meta/handshake");  // at once, on b
}

TEST_CASE("failback_after returns to the first server at a connect once it elapsed", "[failover]") {
  auto cfg = cluster({"http://a/cometd", "http://b/cometd"});
  cfg.failback_after = 10s;
  harness h(cfg);
  outcome open;
  open_cometd(h, open);
  h.fail(h.last(), errc::transport_error, "reset");
  h.advance(250ms);
  h.fail(h.last(), errc::transport_error, "refused");
  REQUIRE(h.s->current_url() == "http://b/cometd");
  h.reply(h.last(), ok_replies(h.last()));
  h.loop();
  h.advance(3000ms);
  h.reply(h.last(), ok_replies(h.last()));  // a held connect on b, before failback_after
  h.loop();
  CHECK(h.s->current_url() == "http://b/cometd");
  h.advance(8000ms);
  h.reply(h.last(), ok_replies(h.last()));
  h.loop();
  CHECK(h.s->current_url() == "http://a/cometd");
  CHECK(h.host.endpoints.back() == "http://a/cometd");
  CHECK(h.last().channel() == "/meta/connect");
}
