// Issue 15: the rest of CometD's client API against the real servers: remote calls answered by
// /service/echo (a channel listener on cometd-nodejs-server, a server extension on Faye), meta
// listeners, per-message ext, and messages no subscription matches.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "rigs.hpp"

using namespace std::chrono_literals;
using namespace uvcometd;
using namespace uvcometd::test;

TEST_CASE("a remote call completes with the server's reply, on every server and transport",
          "[integration][calls]") {
  client_rig rig(pick_peer());
  auto& c = rig.client();
  rig.open();
  outcome a, b;
  REQUIRE_FALSE(c.remote_call("echo", R"({"n":1,"text":"ping"})", a.call_cb()));
  REQUIRE_FALSE(c.remote_call("echo", "[1,2,3]", 2s, b.call_cb()));
  REQUIRE(rig.loop.run_until([&] { return a.done() && b.done(); }));
  CHECK(a.calls == 1);
  CHECK_FALSE(a.err);
  CHECK(a.data == R"({"n":1,"text":"ping"})");
  CHECK(a.channel == "/service/echo");
  CHECK_FALSE(b.err);
  CHECK(b.data == "[1,2,3]");
  rig.close();
  CHECK(a.calls == 1);
  CHECK(b.calls == 1);
}

TEST_CASE("a refused remote call completes with the server's error", "[integration][calls]") {
  client_rig rig(pick_peer());
  auto& c = rig.client();
  rig.open();
  outcome r;
  REQUIRE_FALSE(c.remote_call("refuse", "{}", r.call_cb()));
  REQUIRE(rig.loop.run_until([&] { return r.done(); }));
  CHECK(r.calls == 1);
  CHECK(r.err.code == errc::server_error);
  CHECK(r.err.server_code == 403);
  CHECK(r.err.message == "refused by the test server");
}

TEST_CASE("a remote call nobody answers times out after its timeout, once",
          "[integration][calls]") {
  client_rig rig(pick_peer());
  auto& c = rig.client();
  rig.open();
  outcome r;
  const auto start = std::chrono::steady_clock::now();
  REQUIRE_FALSE(c.remote_call("silent", "{}", 700ms, r.call_cb()));
  REQUIRE(rig.loop.run_until([&] { return r.done(); }, 10s));
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK(r.err.code == errc::timeout);
  CHECK(took >= 700ms);
  CHECK(took < 5s);
  rig.close();
  CHECK(r.calls == 1);
}

TEST_CASE(
    "a remote call in flight when the connection drops fails, once, and the client "
    "recovers",
    "[integration][calls]") {
  client_rig rig(pick_peer());
  auto& c = rig.client();
  rig.open();
  outcome r;
  REQUIRE_FALSE(c.remote_call("silent", "{}", 30s, r.call_cb()));
  // Once the call has reached the server (its stats count it), every connection is cut.
  REQUIRE(rig.wait_server([](const nlohmann::json& s) { return s.at("silentCalls") == 1; }));
  rig.srv->control("/control/drop", "{}");
  REQUIRE(rig.loop.run_until([&] { return r.done(); }, 20s));
  CHECK(r.calls == 1);
  CHECK(r.err);
  CHECK(r.err.code != errc::timeout);
  // Later calls work again.
  outcome after;
  REQUIRE(rig.loop.run_until([&] { return c.current_state() == state::connected; }, 20s));
  REQUIRE_FALSE(c.remote_call("echo", "7", after.call_cb()));
  REQUIRE(rig.loop.run_until([&] { return after.done(); }, 20s));
  CHECK_FALSE(after.err);
  CHECK(after.data == "7");
  rig.close();
  CHECK(r.calls == 1);
}

TEST_CASE("close() during a remote call cancels it, once", "[integration][calls]") {
  client_rig rig(pick_peer());
  rig.open();
  outcome r;
  REQUIRE_FALSE(rig.client().remote_call("silent", "{}", 30s, r.call_cb()));
  rig.close();
  CHECK(r.calls == 1);
  CHECK(r.err.code == errc::cancelled);
}

TEST_CASE("remote calls refuse what cannot be a call, synchronously", "[integration][calls]") {
  client_rig rig(default_preference("faye-server.js"));
  auto& c = rig.client();
  outcome r;
  CHECK(c.remote_call("echo", "{}", r.call_cb()) == errc::invalid_state);  // not open
  rig.open();
  CHECK(c.remote_call("", "{}", r.call_cb()) == errc::invalid_channel);
  CHECK(c.remote_call("/echo", "{}", r.call_cb()) == errc::invalid_channel);
  CHECK(c.remote_call("a/*", "{}", r.call_cb()) == errc::invalid_channel);
  CHECK(c.remote_call("echo", "{nope", r.call_cb()) == errc::invalid_argument);
  CHECK(c.remote_call("echo", "{}", 0ms, r.call_cb()) == errc::invalid_argument);
  CHECK(c.remote_call("echo", "{}", 1s, r.call_cb(), {"not an object"}) == errc::invalid_argument);
  rig.close();
  CHECK(r.calls == 0);
}

TEST_CASE("meta listeners see the replies of their channels, and can be removed",
          "[integration][meta]") {
  client_rig rig(pick_peer());
  auto& c = rig.client();
  std::vector<std::string> handshakes, connects, all;
  bool handshake_ok = false;
  std::uint64_t all_id = 0;
  REQUIRE_FALSE(c.on_meta("/meta/handshake", [&](const meta_message& m) {
    handshakes.emplace_back(m.channel);
    handshake_ok =
        m.successful && !m.json.empty() && m.json.find("clientId") != std::string_view::npos;
  }));
  REQUIRE_FALSE(c.on_meta("/meta/connect", [&](const meta_message& m) {
    connects.emplace_back(m.successful ? "ok" : "failed");
  }));
  REQUIRE_FALSE(c.on_meta(
      "/meta/**", [&](const meta_message& m) { all.emplace_back(m.channel); }, &all_id));
  CHECK(c.on_meta("/meta/publish", [](const meta_message&) {}) == errc::invalid_channel);
  CHECK(c.on_meta("/chat", [](const meta_message&) {}) == errc::invalid_channel);
  rig.open();
  CHECK(handshakes == std::vector<std::string>{"/meta/handshake"});
  CHECK(handshake_ok);
  REQUIRE_FALSE(connects.empty());
  CHECK(connects.front() == "ok");
  rig.subscribe("/m/x");
  CHECK(std::count(all.begin(), all.end(), "/meta/subscribe") == 1);
  REQUIRE_FALSE(c.remove_meta_listener(all_id));
  CHECK(c.remove_meta_listener(all_id) == errc::invalid_argument);
  const auto seen = all.size();
  rig.subscribe("/m/y");
  CHECK(all.size() == seen);
  rig.close();
}

TEST_CASE("a meta listener hears a refused subscribe with the server's error",
          "[integration][meta]") {
  client_rig rig(faye_long_polling());
  auto& c = rig.client();
  std::vector<std::string> errors;
  REQUIRE_FALSE(c.on_meta("/meta/subscribe", [&](const meta_message& m) {
    if (!m.successful) errors.emplace_back(m.error);
  }));
  rig.open();
  outcome sub;
  REQUIRE_FALSE(c.subscribe(
      "/private/x", [](const message&) {}, sub.cb()));
  REQUIRE(rig.loop.run_until([&] { return sub.done(); }));
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("Subscription denied") != std::string::npos);
  rig.close();
}

TEST_CASE("publish and subscribe carry their own ext to the server", "[integration][ext]") {
  client_rig rig(pick_faye());
  auto& c = rig.client();
  rig.open();
  outcome sub, pub;
  REQUIRE_FALSE(c.subscribe(
      "/ext/a", [](const message&) {}, sub.cb(), nullptr,
      message_options{R"({"props":{"since":42}})"}));
  REQUIRE(rig.loop.run_until([&] { return sub.done(); }));
  CHECK_FALSE(sub.err);
  REQUIRE_FALSE(c.publish("/ext/a", "1", pub.cb(), message_options{R"({"tag":"p1"})"}));
  REQUIRE(rig.loop.run_until([&] { return pub.done(); }));
  CHECK_FALSE(pub.err);
  const auto seen = server_seen(*rig.srv);
  INFO(seen.dump());
  CHECK(seen["subscribeExt"] == nlohmann::json::parse(R"({"props":{"since":42}})"));
  CHECK(seen["publishExt"] == nlohmann::json::parse(R"({"tag":"p1"})"));
  CHECK(c.publish(
            "/ext/a", "1", [](const error&) {}, message_options{"[1]"}) == errc::invalid_argument);
}

TEST_CASE("messages no subscription matches reach on_unmatched", "[integration][unmatched]") {
  client_rig rig(cometd_long_polling());
  auto& c = rig.client();
  std::vector<std::string> unmatched;
  c.on_unmatched([&](const message& m) {
    unmatched.push_back(std::string(m.channel) + " " + std::string(m.data));
  });
  rig.open();
  auto& got = rig.subscribe("/u/sub");
  rig.srv->control("/control/deliver", R"({"channel":"/service/push","data":{"k":1}})");
  rig.srv->publish("/u/sub", "2");
  REQUIRE(rig.loop.run_until([&] { return !unmatched.empty() && !got.data.empty(); }));
  CHECK(unmatched == std::vector<std::string>{R"(/service/push {"k":1})"});
  CHECK(got.data == std::vector<std::string>{"2"});
}
