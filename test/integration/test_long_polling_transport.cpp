// The long-polling transport alone, against real servers (faye 1.4.3 and cometd-nodejs-server
// 1.2.1 from test/servers): frames in, failures out, cookies, concurrency, timeouts and teardown.
// Every case ends with the transport closed and uv_loop_close() == 0.

#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <uv.h>

#include "server_process.hpp"
#include "transport/transport.hpp"
#include "uvcometd/error.hpp"

namespace {

using namespace std::chrono_literals;
using uvcometd::errc;
using uvcometd::detail::header_list;
using uvcometd::detail::transport;
using uvcometd::detail::transport_config;
using uvcometd::detail::transport_events;
using uvcometd::test::server_process;
using clock_type = std::chrono::steady_clock;

struct event {
  bool is_frame = false;
  std::uint64_t request = 0;
  std::string body;
  header_list headers;
  uvcometd::error err;
  clock_type::time_point at;
};

// Records every event; `hook` runs after recording (to call back into the transport).
struct recorder : transport_events {
  std::vector<event> events;
  std::function<void(const event&)> hook;

  void on_frame(std::uint64_t request, std::string&& body, const header_list& headers) override {
    event e;
    e.is_frame = true;
    e.request = request;
    e.body = std::move(body);
    e.headers = headers;
    e.at = clock_type::now();
    events.push_back(e);
    if (hook) hook(events.back());
  }
  void on_request_failed(std::uint64_t request, const uvcometd::error& err) override {
    event e;
    e.request = request;
    e.err = err;
    e.at = clock_type::now();
    events.push_back(e);
    if (hook) hook(events.back());
  }
  const event* find(std::uint64_t request) const {
    for (const auto& e : events)
      if (e.request == request) return &e;
    return nullptr;
  }
  std::size_t count(std::uint64_t request) const {
    std::size_t n = 0;
    for (const auto& e : events) n += e.request == request;
    return n;
  }
};

// A private loop plus a ticking timer so that run_until() can check its deadline.
struct loop_env {
  uv_loop_t loop{};
  uv_timer_t tick{};
  bool finished = false;

  loop_env() {
    REQUIRE(uv_loop_init(&loop) == 0);
    uv_timer_init(&loop, &tick);
    uv_timer_start(&tick, [](uv_timer_t*) {}, 20, 20);
  }
  ~loop_env() {
    if (!finished) finish();  // after a failed REQUIRE: still release everything
  }

  template <class Pred>
  bool run_until(Pred pred, std::chrono::milliseconds limit = 10s) {
    const auto end = clock_type::now() + limit;
    while (!pred()) {
      if (clock_type::now() >= end) return false;
      uv_run(&loop, UV_RUN_ONCE);
    }
    return true;
  }

  void run_for(std::chrono::milliseconds d) {
    const auto end = clock_type::now() + d;
    run_until([&] { return clock_type::now() >= end; }, d + 1s);
  }

  // Closes the tick timer, runs the loop dry and closes it.
  int finish() {
    finished = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
    uv_run(&loop, UV_RUN_DEFAULT);
    return uv_loop_close(&loop);
  }
};

transport_config config_for(const std::string& url) {
  transport_config c;
  c.url = url;
  return c;
}

// Closes `t` and waits for its done callback.
void close_transport(loop_env& env, transport& t) {
  bool done = false;
  t.close([&] { done = true; });
  CHECK_FALSE(done);  // never synchronous
  REQUIRE(env.run_until([&] { return done; }, 5s));
}

std::string handshake_frame() {
  return R"([{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"],"id":"1"}])";
}

std::string connect_frame(const std::string& client_id, int advice_timeout, const std::string& id) {
  return R"([{"channel":"/meta/connect","clientId":")" + client_id +
         R"(","connectionType":"long-polling","advice":{"timeout":)" + std::to_string(advice_timeout) +
         R"(},"id":")" + id + R"("}])";
}

std::string client_id_of(const std::string& body) {
  const std::string key = R"("clientId":")";
  auto pos = body.find(key);
  if (pos == std::string::npos) return {};
  pos += key.size();
  return body.substr(pos, body.find('"', pos) - pos);
}

// Handshakes on `t` (request id 1) and returns the clientId.
std::string handshake(loop_env& env, transport& t, recorder& rec) {
  t.send(1, handshake_frame(), 5s);
  REQUIRE(env.run_until([&] { return rec.find(1) != nullptr; }));
  const event& e = *rec.find(1);
  INFO(e.err.message);
  REQUIRE(e.is_frame);
  REQUIRE(e.body.find(R"("successful":true)") != std::string::npos);
  std::string id = client_id_of(e.body);
  REQUIRE_FALSE(id.empty());
  return id;
}

// A loopback port nothing listens on: bind an ephemeral port, then release it.
int closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  ::close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace

TEST_CASE("long-polling: handshake to faye yields a frame", "[long_polling][faye]") {
  server_process server("faye-server.js");
  loop_env env;
  recorder rec;
  auto t = uvcometd::detail::make_long_polling_transport(&env.loop, config_for(server.url()), rec);
  REQUIRE(t->type() == uvcometd::connection_type::long_polling);

  t->send(1, handshake_frame(), 5s);
  CHECK(rec.events.empty());  // never reported from inside send()
  REQUIRE(env.run_until([&] { return !rec.events.empty(); }));
  REQUIRE(rec.events.size() == 1);
  const event& e = rec.events[0];
  INFO(e.err.message);
  REQUIRE(e.is_frame);
  CHECK(e.request == 1);
  CHECK(e.body.find(R"("successful":true)") != std::string::npos);
  CHECK_FALSE(client_id_of(e.body).empty());
  bool has_content_type = false;
  for (const auto& [name, value] : e.headers)
    if (name == "Content-Type" || name == "content-type")
      has_content_type = value.find("application/json") != std::string::npos;
  CHECK(has_content_type);

  close_transport(env, *t);
  t.reset();
  REQUIRE(env.finish() == 0);
}

TEST_CASE("long-polling: cometd session cookie is kept per transport", "[long_polling][cometd]") {
  server_process server("cometd-server.js");
  loop_env env;
  recorder rec;
  recorder other_rec;
  auto t = uvcometd::detail::make_long_polling_transport(&env.loop, config_for(server.url()), rec);
  auto other = uvcometd::detail::make_long_polling_transport(&env.loop, config_for(server.url()), other_rec);

  CHECK(t->cookie_header().empty());
  const std::string client_id = handshake(env, *t, rec);
  CHECK(t->cookie_header().find("BAYEUX_BROWSER=") != std::string::npos);
  CHECK(other->cookie_header().empty());  // jars are never shared

  // The server finds the session only with the cookie back.
  t->send(2, connect_frame(client_id, 0, "2"), 5s);
  REQUIRE(env.run_until([&] { return rec.find(2) != nullptr; }));
  const event& e = *rec.find(2);
  INFO(e.err.message);
  REQUIRE(e.is_frame);
  CHECK(e.body.find(R"("channel":"/meta/connect")") != std::string::npos);
  CHECK(e.body.find(R"("successful":true)") != std::string::npos);

  // Same clientId from the other transport (no cookie): the server does not know the session.
  other->send(7, connect_frame(client_id, 0, "2"), 5s);
  REQUIRE(env.run_until([&] { return other_rec.find(7) != nullptr; }));
  REQUIRE(other_rec.find(7)->is_frame);
  CHECK(other_rec.find(7)->body.find(R"("successful":false)") != std::string::npos);

  close_transport(env, *t);
  close_transport(env, *other);
  t.reset();
  other.reset();
  REQUIRE(env.finish() == 0);
}

TEST_CASE("long-polling: connection refused is a transport error", "[long_polling]") {
  loop_env env;
  recorder rec;
  const std::string url = "http://127.0.0.1:" + std::to_string(closed_port()) + "/bayeux";
  auto t = uvcometd::detail::make_long_polling_transport(&env.loop, config_for(url), rec);

  t->send(5, handshake_frame(), 5s);
  CHECK(rec.events.empty());
  REQUIRE(env.run_until([&] { return !rec.events.empty(); }));
  REQUIRE(rec.events.size() == 1);
  const event& e = rec.events[0];
  CHECK_FALSE(e.is_frame);
  CHECK(e.request == 5);
  CHECK(e.err.code == errc::transport_error);
  CHECK(e.err.message.find("connection refused") != std::string::npos);
  CHECK(e.err.server_code == 0);

  close_transport(env, *t);
  t.reset();
  REQUIRE(env.finish() == 0);
}

TEST_CASE("long-polling: a malformed frame gets an HTTP error", "[long_polling][faye]") {
  server_process server("faye-server.js");
  loop_env env;
  recorder rec;
  auto t = uvcometd::detail::make_long_polling_transport(&env.loop, config_for(server.url()), rec);

  t->send(3, "not json", 5s);
  REQUIRE(env.run_until([&] { return !rec.events.empty(); }));
  REQUIRE(rec.events.size() == 1);
  const event& e = rec.events[0];
  CHECK_FALSE(e.is_frame);
  CHECK(e.err.code == errc::http_error);
  CHECK(e.err.server_code == 0);
  CHECK(e.err.message.find("400") != std::string::npos);

  close_transport(env, *t);
  t.reset();
  REQUIRE(env.finish() == 0);
}

TEST_CASE("long-polling: another request completes while a connect is held", "[long_polling][cometd]") {
  server_process server("cometd-server.js");
  loop_env env;
  recorder rec;
  auto t = uvcometd::detail::make_long_polling_transport(&env.loop, config_for(server.url()), rec);
  const std::string client_id = handshake(env, *t, rec);

  const auto start = clock_type::now();
  t->send(10, connect_frame(client_id, 2000, "10"), 10s);
  env.run_for(200ms);  // let the connect reach the server and be held
  REQUIRE(rec.find(10) == nullptr);
  t->send(11,
          R"([{"channel":"/meta/subscribe","clientId":")" + client_id +
              R"(","subscription":"/foo/bar","id":"11"}])",
          5s);

  REQUIRE(env.run_until([&] { return rec.find(11) != nullptr; }));
  CHECK(rec.find(10) == nullptr);  // still held: two requests were in flight at once
  const event& sub = *rec.find(11);
  INFO(sub.err.message);
  REQUIRE(sub.is_frame);
  CHECK(sub.body.find(R"("channel":"/meta/subscribe")") != std::string::npos);
  CHECK(sub.body.find(R"("successful":true)") != std::string::npos);
  CHECK(sub.at - start < 1500ms);

  REQUIRE(env.run_until([&] { return rec.find(10) != nullptr; }, 5s));
  const event& con = *rec.find(10);
  INFO(con.err.message);
  REQUIRE(con.is_frame);
  CHECK(con.body.find(R"("successful":true)") != std::string::npos);
  CHECK(con.at - start >= 1800ms);
  CHECK(rec.events.size() == 3);

  close_transport(env, *t);
  t.reset();
  REQUIRE(env.finish() == 0);
}

TEST_CASE("long-polling: a request past its deadline times out", "[long_polling][cometd]") {
  server_process server("cometd-server.js");
  loop_env env;
  recorder rec;
  auto t = uvcometd::detail::make_long_polling_transport(&env.loop, config_for(server.url()), rec);
  const std::string client_id = handshake(env, *t, rec);

  const auto start = clock_type::now();
  t->send(20, connect_frame(client_id, 2000, "20"), 300ms);
  REQUIRE(env.run_until([&] { return rec.find(20) != nullptr; }, 5s));
  const event& e = *rec.find(20);
  CHECK_FALSE(e.is_frame);
  CHECK(e.err.code == errc::timeout);
  CHECK_FALSE(e.err.message.empty());
  CHECK(e.at - start >= 250ms);
  CHECK(e.at - start < 1500ms);

  close_transport(env, *t);
  t.reset();
  REQUIRE(env.finish() == 0);
}

TEST_CASE("long-polling: close with a request in flight reports nothing", "[long_polling][cometd]") {
  server_process server("cometd-server.js");
  loop_env env;
  recorder rec;
  auto t = uvcometd::detail::make_long_polling_transport(&env.loop, config_for(server.url()), rec);
  const std::string client_id = handshake(env, *t, rec);

  t->send(30, connect_frame(client_id, 2000, "30"), 10s);
  t->send(31, "not json", 10s);  // would fail fast if it were ever reported
  env.run_for(100ms);
  const std::size_t before = rec.events.size();
  bool done = false;
  t->close([&] { done = true; });
  t->send(32, handshake_frame(), 5s);  // after close: ignored
  CHECK_FALSE(done);
  REQUIRE(env.run_until([&] { return done; }, 5s));
  env.run_for(300ms);
  CHECK(rec.events.size() == before);
  CHECK(rec.count(30) == 0);
  CHECK(rec.count(32) == 0);

  t.reset();
  REQUIRE(env.finish() == 0);
}

TEST_CASE("long-polling: the receiver may close the transport from on_frame", "[long_polling][faye]") {
  server_process server("faye-server.js");
  loop_env env;
  recorder rec;
  auto t = uvcometd::detail::make_long_polling_transport(&env.loop, config_for(server.url()), rec);

  bool done = false;
  rec.hook = [&](const event&) {
    t->close([&] { done = true; });
    t->send(41, handshake_frame(), 5s);  // ignored: closed
  };
  t->send(40, handshake_frame(), 5s);
  REQUIRE(env.run_until([&] { return done; }, 5s));
  REQUIRE(rec.events.size() == 1);
  CHECK(rec.events[0].is_frame);
  CHECK(rec.events[0].request == 40);
  env.run_for(200ms);
  CHECK(rec.events.size() == 1);

  t.reset();
  REQUIRE(env.finish() == 0);
}

TEST_CASE("long-polling: the receiver may send and abort from its callbacks", "[long_polling][faye]") {
  server_process server("faye-server.js");
  loop_env env;
  recorder rec;
  auto t = uvcometd::detail::make_long_polling_transport(&env.loop, config_for(server.url()), rec);

  // A chain: each completion sends the next request (reusing the easy handle just released).
  rec.hook = [&](const event& e) {
    if (e.request == 50) t->send(51, "not json", 5s);
    if (e.request == 51) t->send(52, handshake_frame(), 5s);
  };
  t->send(50, handshake_frame(), 5s);
  REQUIRE(env.run_until([&] { return rec.find(52) != nullptr; }));
  REQUIRE(rec.events.size() == 3);
  CHECK(rec.events[0].is_frame);
  CHECK(rec.events[1].err.code == errc::http_error);
  CHECK(rec.events[2].is_frame);

  // abort() from inside a failure report drops the other failing requests.
  server.stop();
  rec.events.clear();
  rec.hook = [&](const event&) { t->abort(); };
  for (std::uint64_t id = 60; id < 64; ++id) t->send(id, handshake_frame(), 5s);
  REQUIRE(env.run_until([&] { return !rec.events.empty(); }));
  env.run_for(300ms);
  CHECK(rec.events.size() == 1);
  CHECK(rec.events[0].err.code == errc::transport_error);

  // abort() from outside: nothing is reported for the dropped requests, the transport stays usable.
  rec.hook = nullptr;
  rec.events.clear();
  server.restart();
  t->send(70, handshake_frame(), 5s);
  t->abort();
  t->send(71, handshake_frame(), 5s);
  REQUIRE(env.run_until([&] { return rec.find(71) != nullptr; }));
  env.run_for(100ms);
  CHECK(rec.count(70) == 0);
  CHECK(rec.find(71)->is_frame);

  close_transport(env, *t);
  t.reset();
  REQUIRE(env.finish() == 0);
}

TEST_CASE("long-polling: destroying an unclosed transport releases every handle", "[long_polling][cometd]") {
  server_process server("cometd-server.js");
  loop_env env;
  recorder rec;
  auto t = uvcometd::detail::make_long_polling_transport(&env.loop, config_for(server.url()), rec);
  const std::string client_id = handshake(env, *t, rec);
  t->send(80, connect_frame(client_id, 2000, "80"), 10s);
  env.run_for(100ms);
  t.reset();  // tolerated: closes silently, the handles finish closing on the loop
  env.run_for(100ms);
  CHECK(rec.count(80) == 0);
  REQUIRE(env.finish() == 0);
}
