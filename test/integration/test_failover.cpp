// Issue 14 without a shared-session cluster: two independent Faye servers as options::urls. When
// the first one stops, the client moves to the second, finds its session unknown there, and
// re-handshakes and re-subscribes (the cost the notes describe); a real cluster (Faye + Redis,
// HAProxy) is in test_cluster.cpp.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "client_helpers.hpp"
#include "uvcometd/client.hpp"

using namespace std::chrono_literals;
using namespace uvcometd;
using namespace uvcometd::test;

TEST_CASE("urls: when the server in use dies the client moves to the next and goes on there",
          "[integration][failover]") {
  const peer p = GENERATE(faye_long_polling(), faye_websocket());
  INFO(p.name);
  server_process a(p.script);
  server_process b(p.script);
  log_capture log;
  test_loop loop;
  {
    options o;
    o.urls = {a.url(), b.url()};
    o.connection_types = p.types;
    o.log = log.sink();
    client c(loop.get(), o);
    state_recorder states;
    states.attach(c);
    REQUIRE_FALSE(open_and_wait(loop, c));
    CHECK(c.current_url() == a.url());
    received got;
    subscribe_and_wait(loop, c, "/f/x", got);
    a.publish("/f/x", R"({"n":1})");
    REQUIRE(loop.run_until([&] { return got.data.size() == 1; }));
    const auto mark = states.size();
    a.stop();
    // The session goes on on b: a new handshake there (b does not know it) and the
    // re-subscription, then messages published on b arrive.
    REQUIRE(loop.run_until(
        [&] { return c.current_url() == b.url() && c.current_state() == state::connected; }, 30s));
    INFO(log.tail());
    CHECK(states.saw_then(state::reconnecting, state::connected, mark));
    REQUIRE(wait_server_subscribed(loop, b, "/f/x"));
    b.publish("/f/x", R"({"n":2})");
    REQUIRE(loop.run_until([&] { return got.data.size() == 2; }, 10s));
    CHECK(json_int(got.data[1], "n") == 2);
    close_and_wait(loop, c);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("urls and url together, or a bad one among urls, are refused",
          "[integration][failover]") {
  test_loop loop;
  {
    options o;
    o.url = "http://127.0.0.1:1/x";
    o.urls = {"http://127.0.0.1:2/x"};
    CHECK_THROWS_AS(client(loop.get(), o), std::system_error);
    o.url.clear();
    o.urls.push_back("http://:3/x");
    try {
      client c(loop.get(), o);
      FAIL("accepted");
    } catch (const std::system_error& e) {
      CHECK(std::string(e.what()).find("urls[1]") != std::string::npos);
    }
  }
  loop.run_for(0ms);
  CHECK(loop.close() == 0);
}
