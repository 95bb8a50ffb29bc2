// The client end to end against real Bayeux servers (Faye over long-polling and websocket,
// cometd-nodejs-server over long-polling), started on 127.0.0.1 with ephemeral ports.
#include <catch2/catch.hpp>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "client_helpers.hpp"
#include "loop_helpers.hpp"
#include "server_process.hpp"
#include "uvcometd/client.hpp"

using namespace std::chrono_literals;
using uvcometd::connection_type;
using uvcometd::errc;
using uvcometd::test::server_process;
using uvcometd::test::test_loop;

namespace {

using uvcometd::test::peer;
using uvcometd::test::pick_peer;
using uvcometd::test::received;
using uvcometd::test::open_and_wait;
using uvcometd::test::subscribe_and_wait;
using uvcometd::test::close_and_wait;

uvcometd::options make_options(const server_process& srv, const peer& p) {
  uvcometd::options o;
  o.url = srv.url();
  o.connection_types = p.types;
  o.connection_timeout = 10s;
  return o;
}

}  // namespace

TEST_CASE("a subscriber receives messages the server publishes, then closes cleanly",
          "[integration]") {
  const peer p = pick_peer();
  INFO(p.name);
  server_process srv(p.script);
  test_loop loop;
  {
    uvcometd::client c(loop.get(), make_options(srv, p));
    std::vector<uvcometd::state> states;
    c.on_state([&](uvcometd::state s, connection_type, const uvcometd::error&) { states.push_back(s); });
    const auto err = open_and_wait(loop, c);
    INFO(err.to_string());
    REQUIRE_FALSE(err);
    CHECK(c.current_state() == uvcometd::state::connected);
    CHECK(c.current_connection_type() == p.types.front());
    CHECK_FALSE(c.client_id().empty());

    received got;
    subscribe_and_wait(loop, c, "/news/today", got);
    srv.publish("/news/today", R"({"headline":"hello","n":[1,2,3]})", 3);
    REQUIRE(loop.run_until([&] { return got.data.size() == 3; }));
    CHECK(got.channels[0] == "/news/today");
    CHECK(got.data[0] == R"({"headline":"hello","n":[1,2,3],"seq":0})");
    CHECK(got.data[2] == R"({"headline":"hello","n":[1,2,3],"seq":2})");

    close_and_wait(loop, c);
    REQUIRE(states.size() >= 4);
    CHECK(states.front() == uvcometd::state::connecting);
    CHECK(states[1] == uvcometd::state::connected);
    CHECK(states.back() == uvcometd::state::closed);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("a client receives its own publish and the publish completes successfully",
          "[integration]") {
  const peer p = pick_peer();
  INFO(p.name);
  server_process srv(p.script);
  test_loop loop;
  {
    uvcometd::client c(loop.get(), make_options(srv, p));
    REQUIRE_FALSE(open_and_wait(loop, c));
    received got;
    subscribe_and_wait(loop, c, "/chat/room", got);
    int acks = 0;
    uvcometd::error ack_err;
    for (int i = 0; i < 5; ++i) {
      REQUIRE_FALSE(c.publish("/chat/room", "{\"i\":" + std::to_string(i) + ",\"text\":\"h\\u00e9\\\"\"}",
                              [&](const uvcometd::error& e) {
                                if (e) ack_err = e;
                                ++acks;
                              }));
    }
    REQUIRE(loop.run_until([&] { return acks == 5 && got.data.size() == 5; }));
    INFO(ack_err.to_string());
    CHECK_FALSE(ack_err);
    // Faye forwards the text as published; CometD re-serializes it: compare as JSON values.
    for (int i = 0; i < 5; ++i) {
      const auto sent = nlohmann::json::parse("{\"i\":" + std::to_string(i) + ",\"text\":\"h\\u00e9\\\"\"}");
      CHECK(nlohmann::json::parse(got.data[i]) == sent);
    }
    close_and_wait(loop, c);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("an explicit batch holds publishes over loop iterations, then they all arrive",
          "[integration]") {
  const peer p = pick_peer();
  INFO(p.name);
  server_process srv(p.script);
  test_loop loop;
  {
    uvcometd::client c(loop.get(), make_options(srv, p));
    REQUIRE_FALSE(open_and_wait(loop, c));
    received got;
    subscribe_and_wait(loop, c, "/batch", got);
    int acks = 0;
    c.start_batch();
    for (int i = 0; i < 3; ++i) {
      REQUIRE_FALSE(c.publish("/batch", std::to_string(i), [&](const uvcometd::error& e) {
        CHECK_FALSE(e);
        ++acks;
      }));
      loop.run_for(50ms);  // the next one in a later loop iteration
    }
    CHECK(acks == 0);  // held by the open batch
    CHECK(got.data.empty());
    CHECK_FALSE(c.end_batch());
    CHECK(c.end_batch() == errc::invalid_state);
    REQUIRE(loop.run_until([&] { return acks == 3 && got.data.size() == 3; }));
    CHECK(got.data == std::vector<std::string>{"0", "1", "2"});
    close_and_wait(loop, c);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("wildcard subscriptions receive matching channels once per local subscription",
          "[integration]") {
  const peer p = pick_peer();
  INFO(p.name);
  server_process srv(p.script);
  test_loop loop;
  {
    uvcometd::client c(loop.get(), make_options(srv, p));
    REQUIRE_FALSE(open_and_wait(loop, c));
    received one, deep;
    subscribe_and_wait(loop, c, "/w/*", one);
    subscribe_and_wait(loop, c, "/w/**", deep);
    srv.publish("/w/a", "1");
    srv.publish("/w/a/b", "2");
    srv.publish("/other", "3");
    srv.publish("/w/end", "4");
    REQUIRE(loop.run_until([&] { return one.data.size() >= 2 && deep.data.size() >= 3; }));
    loop.run_for(100ms);
    // cometd-nodejs-server sends one copy per matching server subscription; Faye sends one.
    const bool cometd = std::string(p.script) == "cometd-server.js";
    if (!cometd) {
      CHECK(one.data == std::vector<std::string>{"1", "4"});
      CHECK(deep.data == std::vector<std::string>{"1", "2", "4"});
    } else {
      CHECK(std::count(one.data.begin(), one.data.end(), "2") == 0);
      CHECK(std::count(deep.data.begin(), deep.data.end(), "2") >= 1);
    }
    close_and_wait(loop, c);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("two clients exchange messages through the server", "[integration]") {
  const peer p = pick_peer();
  INFO(p.name);
  server_process srv(p.script);
  test_loop loop;
  {
    uvcometd::client alice(loop.get(), make_options(srv, p));
    uvcometd::client bob(loop.get(), make_options(srv, p));
    REQUIRE_FALSE(open_and_wait(loop, alice));
    REQUIRE_FALSE(open_and_wait(loop, bob));
    CHECK(alice.client_id() != bob.client_id());
    received at_alice, at_bob;
    subscribe_and_wait(loop, alice, "/to/alice", at_alice);
    subscribe_and_wait(loop, bob, "/to/bob", at_bob);
    int acks = 0;
    REQUIRE_FALSE(alice.publish("/to/bob", R"("hi bob")", [&](const uvcometd::error& e) {
      CHECK_FALSE(e);
      ++acks;
    }));
    REQUIRE_FALSE(bob.publish("/to/alice", R"("hi alice")", [&](const uvcometd::error& e) {
      CHECK_FALSE(e);
      ++acks;
    }));
    REQUIRE(loop.run_until([&] { return acks == 2 && at_alice.data.size() == 1 && at_bob.data.size() == 1; }));
    CHECK(at_alice.data[0] == R"("hi alice")");
    CHECK(at_bob.data[0] == R"("hi bob")");
    close_and_wait(loop, alice);
    close_and_wait(loop, bob);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("unsubscribing stops delivery; a shared channel stays until its last handle goes",
          "[integration]") {
  const peer p = pick_peer();
  INFO(p.name);
  server_process srv(p.script);
  test_loop loop;
  {
    uvcometd::client c(loop.get(), make_options(srv, p));
    REQUIRE_FALSE(open_and_wait(loop, c));
    received first, second;
    uvcometd::subscription s1, s2;
    subscribe_and_wait(loop, c, "/u/x", first, &s1);
    subscribe_and_wait(loop, c, "/u/x", second, &s2);
    srv.publish("/u/x", "1");
    REQUIRE(loop.run_until([&] { return first.data.size() == 1 && second.data.size() == 1; }));

    bool unsub1 = false;
    REQUIRE_FALSE(c.unsubscribe(s1, [&](const uvcometd::error& e) {
      CHECK_FALSE(e);
      unsub1 = true;
    }));
    REQUIRE(loop.run_until([&] { return unsub1; }));
    srv.publish("/u/x", "2");
    REQUIRE(loop.run_until([&] { return second.data.size() == 2; }));
    CHECK(first.data.size() == 1);

    bool unsub2 = false;
    REQUIRE_FALSE(c.unsubscribe(s2, [&](const uvcometd::error& e) {
      CHECK_FALSE(e);
      unsub2 = true;
    }));
    REQUIRE(loop.run_until([&] { return unsub2; }));
    CHECK(c.unsubscribe(s2, {}) == errc::invalid_argument);
    srv.publish("/u/x", "3");
    loop.run_for(300ms);
    CHECK(first.data.size() == 1);
    CHECK(second.data.size() == 2);
    close_and_wait(loop, c);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("a forbidden publish and a refused subscription report the server's error",
          "[integration]") {
  const peer p = pick_peer();
  INFO(p.name);
  server_process srv(p.script);
  test_loop loop;
  {
    uvcometd::client c(loop.get(), make_options(srv, p));
    REQUIRE_FALSE(open_and_wait(loop, c));
    bool pub_done = false, sub_done = false;
    uvcometd::error pub_err, sub_err;
    REQUIRE_FALSE(c.publish("/forbidden/zone", "{}", [&](const uvcometd::error& e) {
      pub_err = e;
      pub_done = true;
    }));
    int delivered = 0;
    REQUIRE_FALSE(c.subscribe(
        "/private/diary", [&](const uvcometd::message&) { ++delivered; },
        [&](const uvcometd::error& e) {
          sub_err = e;
          sub_done = true;
        }));
    REQUIRE(loop.run_until([&] { return pub_done && sub_done; }));
    CHECK(pub_err.code == errc::server_error);
    CHECK(pub_err.server_code == 403);
    INFO(pub_err.to_string());
    CHECK_FALSE(pub_err.message.empty());
    CHECK(sub_err.code == errc::server_error);
    CHECK(sub_err.server_code == 403);
    // The client keeps working after both refusals.
    received got;
    subscribe_and_wait(loop, c, "/still/ok", got);
    srv.publish("/still/ok", "true");
    REQUIRE(loop.run_until([&] { return got.data.size() == 1; }));
    srv.publish("/private/diary", "1");
    loop.run_for(100ms);
    CHECK(delivered == 0);
    close_and_wait(loop, c);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("a full pending buffer stops fetching and loses nothing once drained", "[integration]") {
  const peer p = pick_peer();
  INFO(p.name);
  server_process srv(p.script);
  test_loop loop;
  {
    auto o = make_options(srv, p);
    o.max_pending_count = 5;
    uvcometd::client c(loop.get(), o);
    REQUIRE_FALSE(open_and_wait(loop, c));
    received got;
    subscribe_and_wait(loop, c, "/flood", got);
    c.pause();
    srv.publish("/flood", R"({"k":1})", 40);
    REQUIRE(loop.run_until([&] { return c.pending_count() >= 5; }));
    loop.run_for(300ms);
    CHECK(got.data.empty());
    const auto held = c.pending_count();
    CHECK(held >= 5);
    CHECK(c.current_state() == uvcometd::state::connected);
    c.resume();
    REQUIRE(loop.run_until([&] { return got.data.size() == 40; }));
    for (int i = 0; i < 40; ++i) CHECK(got.data[i] == "{\"k\":1,\"seq\":" + std::to_string(i) + "}");
    CHECK(c.pending_count() == 0);
    close_and_wait(loop, c);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("close from inside a message handler completes every call once", "[integration]") {
  const peer p = pick_peer();
  INFO(p.name);
  server_process srv(p.script);
  test_loop loop;
  {
    uvcometd::client c(loop.get(), make_options(srv, p));
    REQUIRE_FALSE(open_and_wait(loop, c));
    int closes = 0, handled = 0, pub_done = 0;
    uvcometd::error pub_err;
    REQUIRE_FALSE(c.subscribe(
        "/bye",
        [&](const uvcometd::message&) {
          ++handled;
          c.close([&](const uvcometd::error&) { ++closes; });
          // Calls after close fail synchronously and never run their callback.
          CHECK(c.publish("/bye", "1", [&](const uvcometd::error&) { FAIL("ran"); }) ==
                errc::invalid_state);
        },
        {}));
    loop.run_for(300ms);
    REQUIRE_FALSE(c.publish("/bye", "2", [&](const uvcometd::error& e) {
      pub_err = e;
      ++pub_done;
    }));
    srv.publish("/bye", "1", 5);
    REQUIRE(loop.run_until([&] { return closes == 1; }));
    loop.run_for(100ms);
    CHECK(handled == 1);
    CHECK(pub_done == 1);
    CHECK(closes == 1);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("calls in the wrong state or with invalid channels fail synchronously", "[integration]") {
  test_loop loop;
  {
    uvcometd::options o;
    o.url = "http://127.0.0.1:9/bayeux";
    uvcometd::client c(loop.get(), o);
    bool ran = false;
    auto never = [&](const uvcometd::error&) { ran = true; };
    CHECK(c.publish("/a", "1", never) == errc::invalid_state);
    CHECK(c.subscribe("/a", [](const uvcometd::message&) {}, never) == errc::invalid_state);
    REQUIRE_FALSE(c.open(never));
    CHECK(c.open(never) == errc::invalid_state);
    CHECK(c.publish("/a/*", "1", never) == errc::invalid_channel);
    CHECK(c.publish("/meta/connect", "1", never) == errc::invalid_channel);
    CHECK(c.publish("no-slash", "1", never) == errc::invalid_channel);
    CHECK(c.publish("/a", "{not json", never) == errc::invalid_argument);
    CHECK(c.subscribe("/a//b", [](const uvcometd::message&) {}, never) == errc::invalid_channel);
    CHECK(c.subscribe("/meta/*", [](const uvcometd::message&) {}, never) == errc::invalid_channel);
    CHECK(c.unsubscribe(uvcometd::subscription{}, never) == errc::invalid_argument);
    bool closed = false;
    c.close([&](const uvcometd::error&) { closed = true; });
    REQUIRE(loop.run_until([&] { return closed; }));
    CHECK(ran);  // the open() completion ran once, with "cancelled"
  }
  CHECK(loop.close() == 0);

  uvcometd::options bad;
  bad.url = "ftp://example/bayeux";
  test_loop loop2;
  CHECK_THROWS_AS(uvcometd::client(loop2.get(), bad), std::system_error);
  CHECK(loop2.close() == 0);
}

TEST_CASE("an unreachable server ends open() with connection_timeout after the timeout",
          "[integration]") {
  test_loop loop;
  {
    uvcometd::options o;
    o.url = "http://127.0.0.1:9/bayeux";  // discard port: nothing listens
    o.connection_timeout = 700ms;
    o.backoff_initial = 50ms;
    uvcometd::client c(loop.get(), o);
    bool done = false;
    uvcometd::error err;
    const auto start = std::chrono::steady_clock::now();
    REQUIRE_FALSE(c.open([&](const uvcometd::error& e) {
      err = e;
      done = true;
    }));
    REQUIRE(loop.run_until([&] { return done; }));
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK(err.code == errc::connection_timeout);
    CHECK(took >= 700ms);
    INFO(err.to_string());
    CHECK(err.message.find("refused") != std::string::npos);
    CHECK(c.current_state() == uvcometd::state::failed);
    close_and_wait(loop, c);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("websocket forced against a long-polling-only server fails open() at once with the "
          "refused upgrade, never trying long-polling", "[integration]") {
  server_process srv("cometd-server.js");
  test_loop loop;
  {
    uvcometd::options o;
    o.url = srv.url();
    o.connection_types = {connection_type::websocket};
    o.connection_timeout = 3s;
    uvcometd::client c(loop.get(), o);
    const auto err = open_and_wait(loop, c);
    INFO(err.to_string());
    CHECK(err.code == errc::http_error);
    CHECK(err.http_status == 400);
    CHECK(err.message.find("websocket upgrade refused") != std::string::npos);
    // No long-polling handshake probe reached the server.
    CHECK(srv.get("/control/stats").find("\"handshakes\":0") != std::string::npos);
    close_and_wait(loop, c);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("the default preference falls back to long-polling on a long-polling-only server",
          "[integration]") {
  server_process srv("cometd-server.js");
  test_loop loop;
  {
    uvcometd::options o;
    o.url = srv.url();
    uvcometd::client c(loop.get(), o);
    REQUIRE_FALSE(open_and_wait(loop, c));
    CHECK(c.current_connection_type() == connection_type::long_polling);
    close_and_wait(loop, c);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("the default preference picks websocket on Faye", "[integration]") {
  server_process srv("faye-server.js");
  test_loop loop;
  {
    uvcometd::options o;
    o.url = srv.url();
    uvcometd::client c(loop.get(), o);
    std::vector<connection_type> seen;
    c.on_state([&](uvcometd::state s, connection_type t, const uvcometd::error&) {
      if (s == uvcometd::state::connected) seen.push_back(t);
    });
    REQUIRE_FALSE(open_and_wait(loop, c));
    CHECK(c.current_connection_type() == connection_type::websocket);
    REQUIRE(seen.size() == 1);
    CHECK(seen[0] == connection_type::websocket);
    close_and_wait(loop, c);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("destroying an open client without close() releases everything", "[integration]") {
  const peer p = pick_peer();
  INFO(p.name);
  server_process srv(p.script);
  test_loop loop;
  {
    auto c = std::make_unique<uvcometd::client>(loop.get(), make_options(srv, p));
    REQUIRE_FALSE(open_and_wait(loop, *c));
    bool ran = false;
    REQUIRE_FALSE(c->publish("/x", "1", [&](const uvcometd::error&) { ran = true; }));
    c.reset();
    loop.run_for(50ms);
    CHECK_FALSE(ran);  // no callback after destruction
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("a pending buffer left full past the session lifetime re-establishes the session and "
          "reports it",
          "[integration]") {
  // Long-polling only: the held buffer stops the connect cycle, so the server expires the session.
  const peer p = GENERATE(uvcometd::test::faye_long_polling(), uvcometd::test::cometd_long_polling());
  INFO(p.name);
  server_process srv(p.script, p.faye() ? std::vector<std::string>{"--timeout", "1"}
                                        : std::vector<std::string>{"--timeout", "1", "--max-interval", "1000"});
  test_loop loop;
  {
    auto o = make_options(srv, p);
    o.max_pending_count = 3;
    uvcometd::client c(loop.get(), o);
    uvcometd::test::state_recorder states;
    states.attach(c);
    REQUIRE_FALSE(open_and_wait(loop, c));
    const std::string first_id = c.client_id();
    received got;
    subscribe_and_wait(loop, c, "/full", got);
    c.pause();
    srv.publish("/full", R"({"k":1})", 10);
    REQUIRE(loop.run_until([&] { return c.pending_count() >= 3; }));
    const auto mark = states.size();
    loop.run_for(3500ms);  // well past the server's session lifetime, nothing fetched
    CHECK(states.size() == mark);  // nothing happens while the application holds the buffer
    c.resume();
    INFO(states.describe(mark));
    REQUIRE(loop.run_until([&] { return states.saw_then(uvcometd::state::reconnecting,
                                                        uvcometd::state::connected, mark); }));
    const auto lost_at = *states.find(uvcometd::state::reconnecting, mark);
    CHECK(states.events[lost_at].why.code == errc::server_error);  // unknown client / session_unknown
    CHECK(c.client_id() != first_id);
    CHECK(got.data.size() >= 3);  // what was held is delivered, never dropped
    // Re-subscribed: the same handler gets what is published now.
    REQUIRE(uvcometd::test::wait_server_subscribed(loop, srv, "/full"));
    const auto before = got.data.size();
    srv.publish("/full", R"("after")");
    REQUIRE(loop.run_until([&] { return got.data.size() > before; }));
    CHECK(got.data.back() == R"("after")");
    close_and_wait(loop, c);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("destroying the client inside its state listener leaves the running listener intact",
          "[integration]") {
  server_process srv("faye-server.js");
  test_loop loop;
  {
    uvcometd::options o;
    o.url = srv.url();
    auto c = std::make_unique<uvcometd::client>(loop.get(), o);
    std::string seen;
    const std::string tag = "a capture long enough to live on the heap, not in the string";
    c->on_state([&c, &seen, tag](uvcometd::state s, uvcometd::connection_type, const uvcometd::error&) {
      if (s == uvcometd::state::connecting && c) {
        c.reset();
        seen = tag;  // reads a capture of the listener being run
      }
    });
    REQUIRE_FALSE(c->open([](const uvcometd::error&) {}));
    CHECK(seen == tag);
  }
  CHECK(loop.close() == 0);  // runs the loop until the destroyed client's handles are gone
}
