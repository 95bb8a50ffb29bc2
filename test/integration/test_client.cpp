// The client end to end against real Bayeux servers (Faye over long-polling and websocket,
// cometd-nodejs-server over long-polling), started on 127.0.0.1 with ephemeral ports.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rigs.hpp"

using namespace std::chrono_literals;
using uvcometd::connection_type;
using uvcometd::errc;
using uvcometd::state;
using uvcometd::test::client_rig;
using uvcometd::test::pick_peer;
using uvcometd::test::quiet_period;

TEST_CASE("a subscriber receives messages the server publishes, then closes cleanly",
          "[integration]") {
  client_rig rig(pick_peer());
  auto& c = rig.client();
  rig.open();
  CHECK(c.current_state() == state::connected);
  CHECK(c.current_connection_type() == rig.p.types.front());
  CHECK_FALSE(c.client_id().empty());

  auto& got = rig.subscribe("/news/today");
  rig.srv->publish("/news/today", R"({"headline":"hello","n":[1,2,3]})", 3);
  REQUIRE(rig.loop.run_until([&] { return got.data.size() == 3; }));
  CHECK(got.channels[0] == "/news/today");
  CHECK(got.data[0] == R"({"headline":"hello","n":[1,2,3],"seq":0})");
  CHECK(got.data[2] == R"({"headline":"hello","n":[1,2,3],"seq":2})");

  rig.close();
  const auto& states = rig.states.events;
  REQUIRE(states.size() >= 4);
  CHECK(states.front().s == state::connecting);
  CHECK(states[1].s == state::connected);
  CHECK(states.back().s == state::closed);
}

TEST_CASE("a client receives its own publish and the publish completes successfully",
          "[integration]") {
  client_rig rig(pick_peer());
  auto& c = rig.client();
  rig.open();
  auto& got = rig.subscribe("/chat/room");
  const auto text = [](int i) {
    return "{\"i\":" + std::to_string(i) + ",\"text\":\"h\\u00e9\\\"\"}";
  };
  int acks = 0;
  uvcometd::error ack_err;
  for (int i = 0; i < 5; ++i) {
    REQUIRE_FALSE(c.publish("/chat/room", text(i), [&](const uvcometd::error& e) {
      if (e) ack_err = e;
      ++acks;
    }));
  }
  REQUIRE(rig.loop.run_until([&] { return acks == 5 && got.data.size() == 5; }));
  INFO(ack_err.to_string());
  CHECK_FALSE(ack_err);
  // Faye forwards the text as published; CometD re-serializes it: compare as JSON values.
  for (int i = 0; i < 5; ++i) {
    CHECK(nlohmann::json::parse(got.data[i]) == nlohmann::json::parse(text(i)));
  }
}

TEST_CASE("an explicit batch holds publishes over loop iterations, then they all arrive",
          "[integration]") {
  client_rig rig(pick_peer());
  auto& c = rig.client();
  rig.open();
  auto& got = rig.subscribe("/batch");
  int acks = 0;
  c.start_batch();
  for (int i = 0; i < 3; ++i) {
    REQUIRE_FALSE(c.publish("/batch", std::to_string(i), [&](const uvcometd::error& e) {
      CHECK_FALSE(e);
      ++acks;
    }));
    rig.loop.turn();  // the next one in a later loop iteration
  }
  rig.loop.run_for(quiet_period);
  CHECK(acks == 0);  // held by the open batch
  CHECK(got.data.empty());
  CHECK_FALSE(c.end_batch());
  CHECK(c.end_batch() == errc::invalid_state);
  REQUIRE(rig.loop.run_until([&] { return acks == 3 && got.data.size() == 3; }));
  CHECK(got.data == std::vector<std::string>{"0", "1", "2"});
}

TEST_CASE("wildcard subscriptions receive matching channels once per local subscription",
          "[integration]") {
  client_rig rig(pick_peer());
  rig.open();
  auto& one = rig.subscribe("/w/*");
  auto& deep = rig.subscribe("/w/**");
  rig.srv->publish("/w/a", "1");
  rig.srv->publish("/w/a/b", "2");
  rig.srv->publish("/other", "3");
  rig.srv->publish("/w/end", "4");
  REQUIRE(rig.loop.run_until([&] { return one.data.size() >= 2 && deep.data.size() >= 3; }));
  rig.loop.run_for(quiet_period);
  // cometd-nodejs-server sends one copy per matching server subscription; Faye sends one.
  if (rig.p.faye()) {
    CHECK(one.data == std::vector<std::string>{"1", "4"});
    CHECK(deep.data == std::vector<std::string>{"1", "2", "4"});
  } else {
    CHECK(std::count(one.data.begin(), one.data.end(), "2") == 0);
    CHECK(std::count(deep.data.begin(), deep.data.end(), "2") >= 1);
  }
}

TEST_CASE("two clients exchange messages through the server", "[integration]") {
  client_rig rig(pick_peer());
  auto& alice = rig.client();
  auto& bob = rig.start();
  rig.open(alice);
  rig.open(bob);
  CHECK(alice.client_id() != bob.client_id());
  auto& at_alice = rig.subscribe(alice, "/to/alice");
  auto& at_bob = rig.subscribe(bob, "/to/bob");
  int acks = 0;
  REQUIRE_FALSE(alice.publish("/to/bob", R"("hi bob")", [&](const uvcometd::error& e) {
    CHECK_FALSE(e);
    ++acks;
  }));
  REQUIRE_FALSE(bob.publish("/to/alice", R"("hi alice")", [&](const uvcometd::error& e) {
    CHECK_FALSE(e);
    ++acks;
  }));
  REQUIRE(rig.loop.run_until(
      [&] { return acks == 2 && at_alice.data.size() == 1 && at_bob.data.size() == 1; }));
  CHECK(at_alice.data[0] == R"("hi alice")");
  CHECK(at_bob.data[0] == R"("hi bob")");
}

TEST_CASE("unsubscribing stops delivery; a shared channel stays until its last handle goes",
          "[integration]") {
  client_rig rig(pick_peer());
  rig.open();
  uvcometd::subscription s1, s2;
  auto& first = rig.subscribe("/u/x", &s1);
  auto& second = rig.subscribe("/u/x", &s2);
  rig.srv->publish("/u/x", "1");
  REQUIRE(rig.loop.run_until([&] { return first.data.size() == 1 && second.data.size() == 1; }));

  rig.unsubscribe(s1);
  rig.srv->publish("/u/x", "2");
  REQUIRE(rig.loop.run_until([&] { return second.data.size() == 2; }));
  CHECK(first.data.size() == 1);

  rig.unsubscribe(s2);
  CHECK(rig.client().unsubscribe(s2, {}) == errc::invalid_argument);
  rig.srv->publish("/u/x", "3");
  rig.loop.run_for(quiet_period);
  CHECK(first.data.size() == 1);
  CHECK(second.data.size() == 2);
}

TEST_CASE("a forbidden publish and a refused subscription report the server's error",
          "[integration]") {
  client_rig rig(pick_peer());
  auto& c = rig.client();
  rig.open();
  uvcometd::test::outcome pub, sub;
  REQUIRE_FALSE(c.publish("/forbidden/zone", "{}", pub.cb()));
  int delivered = 0;
  REQUIRE_FALSE(c.subscribe(
      "/private/diary", [&](const uvcometd::message&) { ++delivered; }, sub.cb()));
  REQUIRE(rig.loop.run_until([&] { return pub.done() && sub.done(); }));
  CHECK(pub.err.code == errc::server_error);
  CHECK(pub.err.server_code == 403);
  INFO(pub.err.to_string());
  CHECK_FALSE(pub.err.message.empty());
  CHECK(sub.err.code == errc::server_error);
  CHECK(sub.err.server_code == 403);
  // The client keeps working after both refusals.
  auto& got = rig.subscribe("/still/ok");
  rig.srv->publish("/still/ok", "true");
  REQUIRE(rig.loop.run_until([&] { return got.data.size() == 1; }));
  rig.srv->publish("/private/diary", "1");
  rig.loop.run_for(quiet_period);
  CHECK(delivered == 0);
}

TEST_CASE("a full pending buffer stops fetching and loses nothing once drained", "[integration]") {
  client_rig rig(pick_peer());
  auto o = rig.options();
  o.max_pending_count = 5;
  auto& c = rig.start(o);
  rig.open();
  auto& got = rig.subscribe("/flood");
  c.pause();
  rig.srv->publish("/flood", R"({"k":1})", 40);
  REQUIRE(rig.loop.run_until([&] { return c.pending_count() >= 5; }));
  rig.loop.run_for(quiet_period);
  CHECK(got.data.empty());
  const auto held = c.pending_count();
  CHECK(held >= 5);
  CHECK(c.current_state() == state::connected);
  c.resume();
  REQUIRE(rig.loop.run_until([&] { return got.data.size() == 40; }));
  for (int i = 0; i < 40; ++i) CHECK(got.data[i] == "{\"k\":1,\"seq\":" + std::to_string(i) + "}");
  CHECK(c.pending_count() == 0);
}

TEST_CASE("close from inside a message handler completes every call once", "[integration]") {
  client_rig rig(pick_peer());
  auto& c = rig.client();
  rig.open();
  int closes = 0, handled = 0;
  uvcometd::test::outcome pub;
  REQUIRE_FALSE(c.subscribe("/bye",
                            [&](const uvcometd::message&) {
                              ++handled;
                              c.close([&](const uvcometd::error&) { ++closes; });
                              // Calls after close fail synchronously and never run their callback.
                              CHECK(c.publish("/bye", "1", [&](const uvcometd::error&) {
                                FAIL("ran");
                              }) == errc::invalid_state);
                            },
                            {}));
  REQUIRE(rig.wait_subscribed("/bye"));
  REQUIRE_FALSE(c.publish("/bye", "2", pub.cb()));
  rig.srv->publish("/bye", "1", 5);
  REQUIRE(rig.loop.run_until([&] { return closes == 1; }));
  rig.loop.run_for(quiet_period);
  CHECK(handled == 1);
  CHECK(pub.calls == 1);
  CHECK(closes == 1);
}

TEST_CASE("calls in the wrong state or with invalid channels fail synchronously", "[integration]") {
  client_rig rig(uvcometd::test::unreachable());
  auto& c = rig.client();
  bool ran = false;
  auto never = [&](const uvcometd::error&) { ran = true; };
  CHECK(c.publish("/a", "1", never) == errc::invalid_state);
  CHECK(c.subscribe(
            "/a", [](const uvcometd::message&) {}, never) == errc::invalid_state);
  REQUIRE_FALSE(c.open(never));
  CHECK(c.open(never) == errc::invalid_state);
  CHECK(c.publish("/a/*", "1", never) == errc::invalid_channel);
  CHECK(c.publish("/meta/connect", "1", never) == errc::invalid_channel);
  CHECK(c.publish("no-slash", "1", never) == errc::invalid_channel);
  CHECK(c.publish("/a", "{not json", never) == errc::invalid_argument);
  CHECK(c.subscribe(
            "/a//b", [](const uvcometd::message&) {}, never) == errc::invalid_channel);
  CHECK(c.subscribe(
            "/meta/*", [](const uvcometd::message&) {}, never) == errc::invalid_channel);
  CHECK(c.unsubscribe(uvcometd::subscription{}, never) == errc::invalid_argument);
  rig.close();
  CHECK(ran);  // the open() completion ran once, with "cancelled"

  // A URL the client cannot use throws, leaving nothing on the loop (the rig checks it).
  auto bad = rig.options();
  bad.url = "ftp://example/bayeux";
  CHECK_THROWS_AS(uvcometd::client(rig.loop.get(), bad), std::system_error);
}

TEST_CASE("an unreachable server ends open() with connection_timeout after the timeout",
          "[integration]") {
  client_rig rig(uvcometd::test::unreachable());
  auto o = rig.options();
  o.connection_timeout = 700ms;
  auto& c = rig.start(o);
  const auto start = std::chrono::steady_clock::now();
  const auto err = rig.open_result();
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK(err.code == errc::connection_timeout);
  CHECK(took >= 700ms);
  INFO(err.to_string());
  CHECK(err.message.find("refused") != std::string::npos);
  CHECK(c.current_state() == state::failed);
}

TEST_CASE(
    "websocket forced against a long-polling-only server fails open() at once with the "
    "refused upgrade, never trying long-polling",
    "[integration]") {
  client_rig rig({"cometd-server.js", {connection_type::websocket}, "cometd websocket", "/cometd"});
  auto o = rig.options();
  o.connection_timeout = 3s;
  rig.start(o);
  const auto err = rig.open_result();
  INFO(err.to_string());
  CHECK(err.code == errc::http_error);
  CHECK(err.http_status == 400);
  CHECK(err.message.find("websocket upgrade refused") != std::string::npos);
  // No long-polling handshake probe reached the server.
  CHECK(uvcometd::test::server_stats(*rig.srv)["handshakes"] == 0);
}

TEST_CASE("the default preference falls back to long-polling on a long-polling-only server",
          "[integration]") {
  client_rig rig(uvcometd::test::default_preference("cometd-server.js"));
  rig.open();
  CHECK(rig.client().current_connection_type() == connection_type::long_polling);
}

TEST_CASE("the default preference picks websocket on Faye", "[integration]") {
  client_rig rig(uvcometd::test::default_preference("faye-server.js"));
  rig.open();
  CHECK(rig.client().current_connection_type() == connection_type::websocket);
  REQUIRE(rig.states.count(state::connected) == 1);
  CHECK(rig.states.events[*rig.states.find(state::connected)].t == connection_type::websocket);
}

TEST_CASE("destroying an open client without close() releases everything", "[integration]") {
  client_rig rig(pick_peer());
  rig.open();
  bool ran = false;
  REQUIRE_FALSE(rig.client().publish("/x", "1", [&](const uvcometd::error&) { ran = true; }));
  rig.destroy_client();
  REQUIRE(rig.loop.drain());  // every handle of the destroyed client closed
  CHECK_FALSE(ran);           // no callback after destruction
}

TEST_CASE(
    "a pending buffer left full past the session lifetime re-establishes the session and "
    "reports it",
    "[integration]") {
  // Long-polling only: the held buffer stops the connect cycle, so the server expires the session.
  const auto p = uvcometd::test::pick_long_polling();
  client_rig rig(p, p.faye()
                        ? std::vector<std::string>{"--timeout", "1"}
                        : std::vector<std::string>{"--timeout", "1", "--max-interval", "1000"});
  auto o = rig.options();
  o.max_pending_count = 3;
  auto& c = rig.start(o);
  rig.open();
  const std::string first_id = c.client_id();
  auto& got = rig.subscribe("/full");
  c.pause();
  rig.srv->publish("/full", R"({"k":1})", 10);
  REQUIRE(rig.loop.run_until([&] { return c.pending_count() >= 3; }));
  const auto mark = rig.states.size();
  // Nothing is fetched: the server expires the session.
  REQUIRE(rig.wait_server([](const nlohmann::json& s) { return s.at("clients") == 0; }));
  CHECK(rig.states.size() == mark);  // nothing happens while the application holds the buffer
  c.resume();
  INFO(rig.states.describe(mark));
  REQUIRE(rig.wait_reconnected(mark));
  const auto lost_at = *rig.states.find(state::reconnecting, mark);
  CHECK(rig.states.events[lost_at].why.code ==
        errc::server_error);  // unknown client / session_unknown
  CHECK(c.client_id() != first_id);
  CHECK(got.data.size() >= 3);  // what was held is delivered, never dropped
  // Re-subscribed: the same handler gets what is published now.
  REQUIRE(rig.wait_subscribed("/full"));
  const auto before = got.data.size();
  rig.srv->publish("/full", R"("after")");
  REQUIRE(rig.loop.run_until([&] { return got.data.size() > before; }));
  CHECK(got.data.back() == R"("after")");
}

TEST_CASE("destroying the client inside its state listener leaves the running listener intact",
          "[integration]") {
  client_rig rig(uvcometd::test::default_preference("faye-server.js"));
  auto& c = rig.client();
  std::string seen;
  bool destroyed = false;
  const std::string tag = "a capture long enough to live on the heap, not in the string";
  c.on_state([&rig, &seen, &destroyed, tag](state s, connection_type, const uvcometd::error&) {
    if (s == state::connecting && !destroyed) {
      destroyed = true;
      rig.destroy_client();
      seen = tag;  // reads a capture of the listener being run
    }
  });
  REQUIRE_FALSE(c.open([](const uvcometd::error&) {}));
  CHECK(seen == tag);
}  // the rig runs the loop until the destroyed client's handles are gone
