// Issue 15: the rest of CometD's client API against the real servers: remote calls answered by
// /service/echo (a channel listener on cometd-nodejs-server, a server extension on Faye), meta
// listeners, per-message ext, and messages no subscription matches.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "client_helpers.hpp"
#include "uvcometd/client.hpp"

using namespace std::chrono_literals;
using namespace uvcometd;
using namespace uvcometd::test;

namespace {

struct call_outcome {
  int calls = 0;
  error err;
  std::string data;
  std::string channel;
  call_completion cb() {
    return [this](const error& e, const message& reply) {
      ++calls;
      err = e;
      data = std::string(reply.data);
      channel = std::string(reply.channel);
    };
  }
};

options options_for(const peer& p, const server_process& srv, log_capture& log) {
  options o;
  o.url = srv.url();
  o.connection_types = p.types;
  o.log = log.sink();
  return o;
}

}  // namespace

TEST_CASE("a remote call completes with the server's reply, on every server and transport",
          "[integration][calls]") {
  const peer p = pick_peer();
  INFO(p.name);
  server_process srv(p.script);
  log_capture log;
  test_loop loop;
  {
    client c(loop.get(), options_for(p, srv, log));
    REQUIRE_FALSE(open_and_wait(loop, c));
    call_outcome a, b;
    REQUIRE_FALSE(c.remote_call("echo", R"({"n":1,"text":"ping"})", a.cb()));
    REQUIRE_FALSE(c.remote_call("echo", "[1,2,3]", 2s, b.cb()));
    REQUIRE(loop.run_until([&] { return a.calls && b.calls; }));
    INFO(log.tail());
    CHECK(a.calls == 1);
    CHECK_FALSE(a.err);
    CHECK(a.data == R"({"n":1,"text":"ping"})");
    CHECK(a.channel == "/service/echo");
    CHECK_FALSE(b.err);
    CHECK(b.data == "[1,2,3]");
    close_and_wait(loop, c);
    CHECK(a.calls == 1);
    CHECK(b.calls == 1);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("a refused remote call completes with the server's error", "[integration][calls]") {
  const peer p = pick_peer();
  INFO(p.name);
  server_process srv(p.script);
  log_capture log;
  test_loop loop;
  {
    client c(loop.get(), options_for(p, srv, log));
    REQUIRE_FALSE(open_and_wait(loop, c));
    call_outcome r;
    REQUIRE_FALSE(c.remote_call("refuse", "{}", r.cb()));
    REQUIRE(loop.run_until([&] { return r.calls > 0; }));
    CHECK(r.calls == 1);
    CHECK(r.err.code == errc::server_error);
    CHECK(r.err.server_code == 403);
    CHECK(r.err.message == "refused by the test server");
    close_and_wait(loop, c);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("a remote call nobody answers times out after its timeout, once",
          "[integration][calls]") {
  const peer p = pick_peer();
  INFO(p.name);
  server_process srv(p.script);
  log_capture log;
  test_loop loop;
  {
    client c(loop.get(), options_for(p, srv, log));
    REQUIRE_FALSE(open_and_wait(loop, c));
    call_outcome r;
    const auto start = std::chrono::steady_clock::now();
    REQUIRE_FALSE(c.remote_call("silent", "{}", 700ms, r.cb()));
    REQUIRE(loop.run_until([&] { return r.calls > 0; }, 10s));
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK(r.err.code == errc::timeout);
    CHECK(took >= 700ms);
    CHECK(took < 5s);
    close_and_wait(loop, c);
    CHECK(r.calls == 1);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("a remote call in flight when the connection drops fails, once, and the client "
          "recovers", "[integration][calls]") {
  const peer p = pick_peer();
  INFO(p.name);
  server_process srv(p.script);
  log_capture log;
  test_loop loop;
  {
    client c(loop.get(), options_for(p, srv, log));
    REQUIRE_FALSE(open_and_wait(loop, c));
    call_outcome r;
    REQUIRE_FALSE(c.remote_call("silent", "{}", 30s, r.cb()));
    // Once the call has reached the server (its stats count it), every connection is cut.
    REQUIRE(loop.run_until([&] {
      try {
        return json_int(srv.get("/control/stats"), "silentCalls") == 1;
      } catch (...) {
        return false;
      }
    }));
    srv.control("/control/drop", "{}");
    REQUIRE(loop.run_until([&] { return r.calls > 0; }, 20s));
    INFO(log.tail());
    CHECK(r.calls == 1);
    CHECK(r.err);
    CHECK(r.err.code != errc::timeout);
    // Later calls work again.
    call_outcome after;
    REQUIRE(loop.run_until([&] { return c.current_state() == state::connected; }, 20s));
    REQUIRE_FALSE(c.remote_call("echo", "7", after.cb()));
    REQUIRE(loop.run_until([&] { return after.calls > 0; }, 20s));
    CHECK_FALSE(after.err);
    CHECK(after.data == "7");
    close_and_wait(loop, c);
    CHECK(r.calls == 1);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("close() during a remote call cancels it, once", "[integration][calls]") {
  const peer p = pick_peer();
  INFO(p.name);
  server_process srv(p.script);
  log_capture log;
  test_loop loop;
  {
    client c(loop.get(), options_for(p, srv, log));
    REQUIRE_FALSE(open_and_wait(loop, c));
    call_outcome r;
    REQUIRE_FALSE(c.remote_call("silent", "{}", 30s, r.cb()));
    close_and_wait(loop, c);
    CHECK(r.calls == 1);
    CHECK(r.err.code == errc::cancelled);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("remote calls refuse what cannot be a call, synchronously", "[integration][calls]") {
  server_process srv("faye-server.js");
  test_loop loop;
  {
    options o;
    o.url = srv.url();
    client c(loop.get(), o);
    call_outcome r;
    CHECK(c.remote_call("echo", "{}", r.cb()) == errc::invalid_state);  // not open
    REQUIRE_FALSE(open_and_wait(loop, c));
    CHECK(c.remote_call("", "{}", r.cb()) == errc::invalid_channel);
    CHECK(c.remote_call("/echo", "{}", r.cb()) == errc::invalid_channel);
    CHECK(c.remote_call("a/*", "{}", r.cb()) == errc::invalid_channel);
    CHECK(c.remote_call("echo", "{nope", r.cb()) == errc::invalid_argument);
    CHECK(c.remote_call("echo", "{}", 0ms, r.cb()) == errc::invalid_argument);
    CHECK(c.remote_call("echo", "{}", 1s, r.cb(), {"not an object"}) == errc::invalid_argument);
    close_and_wait(loop, c);
    CHECK(r.calls == 0);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("meta listeners see the replies of their channels, and can be removed",
          "[integration][meta]") {
  const peer p = pick_peer();
  INFO(p.name);
  server_process srv(p.script);
  log_capture log;
  test_loop loop;
  {
    client c(loop.get(), options_for(p, srv, log));
    std::vector<std::string> handshakes, connects, all;
    bool handshake_ok = false;
    std::uint64_t all_id = 0;
    REQUIRE_FALSE(c.on_meta("/meta/handshake", [&](const meta_message& m) {
      handshakes.emplace_back(m.channel);
      handshake_ok = m.successful && !m.json.empty() && m.json.find("clientId") != std::string_view::npos;
    }));
    REQUIRE_FALSE(c.on_meta("/meta/connect", [&](const meta_message& m) {
      connects.emplace_back(m.successful ? "ok" : "failed");
    }));
    REQUIRE_FALSE(c.on_meta("/meta/**", [&](const meta_message& m) { all.emplace_back(m.channel); },
                            &all_id));
    CHECK(c.on_meta("/meta/publish", [](const meta_message&) {}) == errc::invalid_channel);
    CHECK(c.on_meta("/chat", [](const meta_message&) {}) == errc::invalid_channel);
    REQUIRE_FALSE(open_and_wait(loop, c));
    CHECK(handshakes == std::vector<std::string>{"/meta/handshake"});
    CHECK(handshake_ok);
    REQUIRE_FALSE(connects.empty());
    CHECK(connects.front() == "ok");
    received got;
    subscribe_and_wait(loop, c, "/m/x", got);
    CHECK(std::count(all.begin(), all.end(), "/meta/subscribe") == 1);
    REQUIRE_FALSE(c.remove_meta_listener(all_id));
    CHECK(c.remove_meta_listener(all_id) == errc::invalid_argument);
    const auto seen = all.size();
    received got2;
    subscribe_and_wait(loop, c, "/m/y", got2);
    CHECK(all.size() == seen);
    close_and_wait(loop, c);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("a meta listener hears a refused subscribe with the server's error",
          "[integration][meta]") {
  server_process srv("faye-server.js");
  log_capture log;
  test_loop loop;
  {
    client c(loop.get(), options_for(faye_long_polling(), srv, log));
    std::vector<std::string> errors;
    REQUIRE_FALSE(c.on_meta("/meta/subscribe", [&](const meta_message& m) {
      if (!m.successful) errors.emplace_back(m.error);
    }));
    REQUIRE_FALSE(open_and_wait(loop, c));
    bool done = false;
    REQUIRE_FALSE(c.subscribe("/private/x", [](const message&) {}, [&](const error&) { done = true; }));
    REQUIRE(loop.run_until([&] { return done; }));
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].find("Subscription denied") != std::string::npos);
    close_and_wait(loop, c);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("publish and subscribe carry their own ext to the server", "[integration][ext]") {
  const peer p = GENERATE(faye_long_polling(), faye_websocket());
  INFO(p.name);
  server_process srv(p.script);
  log_capture log;
  test_loop loop;
  {
    client c(loop.get(), options_for(p, srv, log));
    REQUIRE_FALSE(open_and_wait(loop, c));
    bool subscribed = false;
    REQUIRE_FALSE(c.subscribe(
        "/ext/a", [](const message&) {}, [&](const error& e) { subscribed = !e; }, nullptr,
        message_options{R"({"props":{"since":42}})"}));
    REQUIRE(loop.run_until([&] { return subscribed; }));
    bool published = false;
    REQUIRE_FALSE(c.publish("/ext/a", "1", [&](const error& e) { published = !e; },
                            message_options{R"({"tag":"p1"})"}));
    REQUIRE(loop.run_until([&] { return published; }));
    const std::string seen = srv.get("/control/seen");
    INFO(seen);
    CHECK(seen.find(R"("subscribeExt":{"props":{"since":42}})") != std::string::npos);
    CHECK(seen.find(R"("publishExt":{"tag":"p1"})") != std::string::npos);
    CHECK(c.publish("/ext/a", "1", [](const error&) {}, message_options{"[1]"}) ==
          errc::invalid_argument);
    close_and_wait(loop, c);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("messages no subscription matches reach on_unmatched", "[integration][unmatched]") {
  server_process srv("cometd-server.js");
  log_capture log;
  test_loop loop;
  {
    client c(loop.get(), options_for(cometd_long_polling(), srv, log));
    std::vector<std::string> unmatched;
    c.on_unmatched([&](const message& m) { unmatched.push_back(std::string(m.channel) + " " + std::string(m.data)); });
    REQUIRE_FALSE(open_and_wait(loop, c));
    received got;
    subscribe_and_wait(loop, c, "/u/sub", got);
    srv.control("/control/deliver", R"({"channel":"/service/push","data":{"k":1}})");
    srv.publish("/u/sub", "2");
    REQUIRE(loop.run_until([&] { return !unmatched.empty() && !got.data.empty(); }));
    CHECK(unmatched == std::vector<std::string>{R"(/service/push {"k":1})"});
    CHECK(got.data == std::vector<std::string>{"2"});
    close_and_wait(loop, c);
  }
  CHECK(loop.close() == 0);
}
