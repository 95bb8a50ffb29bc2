// The websocket transport alone, against real peers: Faye 1.4.3 (websocket on /bayeux), the
// CometD Node.js server (refuses the upgrade) and a raw websocket peer (test/servers/
// ws-fragment-server.js) for what a library would not do. Every test ends with uv_loop_close()==0.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "server_process.hpp"
#include "transport/transport.hpp"
#include "transport/websocket.hpp"

using namespace std::chrono_literals;
using nlohmann::json;
using uvcometd::errc;
using uvcometd::error;
using uvcometd::detail::header_list;
using uvcometd::detail::make_websocket_transport;
using uvcometd::detail::transport;
using uvcometd::detail::transport_config;
using uvcometd::detail::transport_events;
using uvcometd::detail::websocket_tuning;
using uvcometd::test::server_process;

namespace {

std::string handshake_with_id(int id) {
  return R"([{"channel":"/meta/handshake","version":"1.0",)"
         R"("supportedConnectionTypes":["websocket"],"id":")" +
         std::to_string(id) + R"("}])";
}

const std::string handshake_frame = handshake_with_id(1);

// The certificate ws-fragment-server.js serves with --tls 1 (self-signed, CA, IP 127.0.0.1).
const char* const test_cert_pem = R"(-----BEGIN CERTIFICATE-----
MIIBmzCCAUGgAwIBAgIUV0uINHGhtS4JTozU8sJC7WlnhFEwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJMTI3LjAuMC4xMCAXDTI2MTEyNzIxMjIxNFoYDzIxMjYxMTAz
MjEyMjE0WjAUMRIwEAYDVQQDDAkxMjcuMC4wLjEwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAARU0T/uSmSEp3Vl2dEw3fCG5p7cZIW0NDCJF0aEZantldKp1Cm2tg2d
UYnA9FTnZjMYDr8Y4RnwTwKiAPs4oyhNo28wbTAdBgNVHQ4EFgQU0n+Qk9dRkA2J
MBdxhvQ0cuOAUB4wHwYDVR0jBBgwFoAU0n+Qk9dRkA2JMBdxhvQ0cuOAUB4wGgYD
VR0RBBMwEYcEfwAAAYIJbG9jYWxob3N0MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZI
zj0EAwIDSAAwRQIhAM0XXVcccYZ1vEYSim3Co0e+QaxJu2I6R0DTNKVDcNsaAiBt
ViusKJ+z3DzA6115uo7OUrLdA/G5WzoClIdEPpv0vw==
-----END CERTIFICATE-----
)";

struct down_event {
  error err;
  bool was_up;
};

// Records what the transport reports; hooks let a test act from inside a callback.
struct recorder : transport_events {
  std::vector<std::string> frames;
  std::vector<down_event> downs;
  int ups = 0;
  int failed_requests = 0;
  bool inside_api = false;  // set by tests around their calls: events must not arrive then
  bool event_inside_api = false;
  std::function<void(const std::string&)> frame_hook;
  std::function<void()> up_hook;
  std::function<void()> down_hook;

  void on_frame(std::uint64_t request, std::string&& body, const header_list&) override {
    event_inside_api |= inside_api;
    CHECK(request == 0);
    frames.push_back(std::move(body));
    if (frame_hook) frame_hook(frames.back());
  }
  void on_request_failed(std::uint64_t, const error&) override { ++failed_requests; }
  void on_up() override {
    event_inside_api |= inside_api;
    ++ups;
    if (up_hook) up_hook();
  }
  void on_down(const error& err, bool was_up, const std::vector<std::uint64_t>&) override {
    event_inside_api |= inside_api;
    downs.push_back({err, was_up});
    if (down_hook) down_hook();
  }
};

// Runs the loop until `pred` holds or `limit` passes; returns pred().
bool run_until(uv_loop_t* loop, const std::function<bool()>& pred,
               std::chrono::milliseconds limit = 10s) {
  struct state {
    const std::function<bool()>* pred;
    std::uint64_t deadline;
  } st{&pred, uv_now(loop) + static_cast<std::uint64_t>(limit.count())};
  uv_timer_t check;
  uv_timer_init(loop, &check);
  check.data = &st;
  uv_timer_start(
      &check,
      [](uv_timer_t* t) {
        auto* s = static_cast<state*>(t->data);
        if ((*s->pred)() || uv_now(t->loop) >= s->deadline) uv_stop(t->loop);
      },
      2, 2);
  if (!pred()) uv_run(loop, UV_RUN_DEFAULT);
  uv_close(reinterpret_cast<uv_handle_t*>(&check), nullptr);
  uv_run(loop, UV_RUN_NOWAIT);
  return pred();
}

// Runs the loop for `d` whatever happens.
void run_for(uv_loop_t* loop, std::chrono::milliseconds d) {
  run_until(
      loop, [] { return false; }, d);
}

transport_config config_for(const std::string& url) {
  transport_config c;
  c.url = url;
  c.connect_timeout = 5000ms;
  return c;
}

// Closes the transport, runs the loop dry and checks that nothing is left on it.
void close_and_finish(uv_loop_t* loop, std::unique_ptr<transport>& t) {
  bool done = false;
  t->close([&] { done = true; });
  CHECK_FALSE(done);  // never synchronously
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK(done);
  t.reset();
  REQUIRE(uv_loop_close(loop) == 0);
}

json reply_of(const std::string& frame) {
  json j = json::parse(frame);
  REQUIRE(j.is_array());
  REQUIRE(!j.empty());
  return j[0];
}

}  // namespace

TEST_CASE("websocket: handshake and connect over websocket to Faye", "[websocket]") {
  server_process server("faye-server.js");
  uv_loop_t loop;
  uv_loop_init(&loop);
  recorder rec;
  auto t = make_websocket_transport(&loop, config_for(server.url()), rec);
  CHECK(t->type() == uvcometd::connection_type::websocket);

  rec.inside_api = true;
  t->send(0, handshake_frame, 5s);
  rec.inside_api = false;
  REQUIRE(run_until(&loop, [&] { return rec.frames.size() == 1 || !rec.downs.empty(); }));
  REQUIRE(rec.downs.empty());
  CHECK(rec.ups == 1);
  const json hs = reply_of(rec.frames[0]);
  CHECK(hs["channel"] == "/meta/handshake");
  CHECK(hs["successful"] == true);
  const std::string client_id = hs["clientId"];

  t->send(0,
          R"([{"channel":"/meta/connect","clientId":")" + client_id +
              R"(","connectionType":"websocket","advice":{"timeout":0},"id":"2"}])",
          5s);
  REQUIRE(run_until(&loop, [&] { return rec.frames.size() == 2 || !rec.downs.empty(); }));
  const json connect = reply_of(rec.frames[1]);
  CHECK(connect["channel"] == "/meta/connect");
  CHECK(connect["id"] == "2");
  CHECK(connect["successful"] == true);
  CHECK(rec.downs.empty());
  CHECK(rec.ups == 1);
  CHECK_FALSE(rec.event_inside_api);
  close_and_finish(&loop, t);
  CHECK(rec.downs.empty());  // close() reports nothing
}

TEST_CASE("websocket: frames sent before the connection is up all arrive", "[websocket]") {
  server_process server("faye-server.js");
  uv_loop_t loop;
  uv_loop_init(&loop);
  recorder rec;
  auto t = make_websocket_transport(&loop, config_for(server.url()), rec);
  for (int id = 1; id <= 5; ++id) t->send(0, handshake_with_id(id), 5s, /*alone=*/true);
  REQUIRE(run_until(&loop, [&] { return rec.frames.size() == 5 || !rec.downs.empty(); }));
  REQUIRE(rec.downs.empty());
  std::vector<std::string> ids;
  for (const auto& f : rec.frames) {
    const json r = reply_of(f);
    CHECK(r["successful"] == true);
    ids.push_back(r["id"]);
  }
  std::sort(ids.begin(), ids.end());
  CHECK(ids == std::vector<std::string>{"1", "2", "3", "4", "5"});
  close_and_finish(&loop, t);
}

TEST_CASE("websocket: frames queued while the socket is not writable leave together, except "
          "those sent alone",
          "[websocket]") {
  server_process server("faye-server.js");
  uv_loop_t loop;
  uv_loop_init(&loop);
  recorder rec;
  auto t = make_websocket_transport(&loop, config_for(server.url()), rec);
  t->send(0, handshake_frame, 5s, true);
  REQUIRE(run_until(&loop, [&] { return rec.frames.size() == 1 || !rec.downs.empty(); }));
  REQUIRE(rec.downs.empty());
  const std::string client_id = reply_of(rec.frames[0])["clientId"];
  auto publish = [&](const char* id) {
    return R"([{"channel":"/merge/x","clientId":")" + client_id + R"(","data":1,"id":")" + id +
           R"("}])";
  };
  // All in one go: nothing is written before the loop runs again.
  t->send(0, publish("p1"), 5s);
  t->send(0, publish("p2"), 5s);
  t->send(0, R"([{"channel":"/meta/connect","clientId":")" + client_id +
                 R"(","connectionType":"websocket","advice":{"timeout":0},"id":"c1"}])",
          5s, true);
  t->send(0, publish("p3"), 5s);
  REQUIRE(run_until(&loop, [&] { return rec.frames.size() >= 4 || !rec.downs.empty(); }, 3s));
  run_for(&loop, 200ms);
  REQUIRE(rec.downs.empty());
  // Faye answers each frame with one frame of replies: p1+p2 merged, the connect alone, p3.
  REQUIRE(rec.frames.size() == 4);
  const json merged = json::parse(rec.frames[1]);
  REQUIRE(merged.size() == 2);
  CHECK(merged[0]["id"] == "p1");
  CHECK(merged[1]["id"] == "p2");
  // Faye may answer these two in either order; each came in a frame of its own.
  const json a = json::parse(rec.frames[2]);
  const json b = json::parse(rec.frames[3]);
  REQUIRE(a.size() == 1);
  REQUIRE(b.size() == 1);
  std::vector<std::string> ids{a[0]["id"], b[0]["id"]};
  std::sort(ids.begin(), ids.end());
  CHECK(ids == std::vector<std::string>{"c1", "p3"});
  close_and_finish(&loop, t);
}

TEST_CASE("websocket: a refused upgrade reports the HTTP status", "[websocket]") {
  server_process server("cometd-server.js");
  uv_loop_t loop;
  uv_loop_init(&loop);
  recorder rec;
  auto t = make_websocket_transport(&loop, config_for(server.url()), rec);
  t->send(0, handshake_frame, 5s);
  REQUIRE(run_until(&loop, [&] { return !rec.downs.empty(); }));
  CHECK(rec.ups == 0);
  CHECK(rec.frames.empty());
  REQUIRE(rec.downs.size() == 1);
  CHECK(rec.downs[0].err.code == errc::http_error);
  CHECK(rec.downs[0].err.http_status == 400);
  CHECK_FALSE(rec.downs[0].was_up);
  CHECK_THAT(rec.downs[0].err.message, Catch::Contains("websocket upgrade refused: HTTP 400"));
  run_for(&loop, 50ms);
  CHECK(rec.downs.size() == 1);  // exactly once
  close_and_finish(&loop, t);
}

TEST_CASE("websocket: a connection error is reported, never from inside send()", "[websocket]") {
  // A port nobody listens on: find one by binding and closing.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t alen = sizeof addr;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &alen) == 0);
  const int port = ntohs(addr.sin_port);
  ::close(fd);

  uv_loop_t loop;
  uv_loop_init(&loop);
  recorder rec;
  auto t = make_websocket_transport(
      &loop, config_for("http://127.0.0.1:" + std::to_string(port) + "/bayeux"), rec);
  rec.inside_api = true;
  t->send(0, handshake_frame, 5s);
  rec.inside_api = false;
  REQUIRE(run_until(&loop, [&] { return !rec.downs.empty(); }));
  CHECK_FALSE(rec.event_inside_api);
  CHECK(rec.downs[0].err.code == errc::transport_error);
  CHECK_FALSE(rec.downs[0].was_up);

  SECTION("an invalid URL too") {
    recorder rec2;
    auto t2 = make_websocket_transport(&loop, config_for("ftp://example.invalid/x"), rec2);
    rec2.inside_api = true;
    t2->send(0, handshake_frame, 5s);
    rec2.inside_api = false;
    CHECK(rec2.downs.empty());
    REQUIRE(run_until(&loop, [&] { return !rec2.downs.empty(); }));
    CHECK_FALSE(rec2.event_inside_api);
    CHECK(rec2.downs[0].err.code == errc::transport_error);
    CHECK_THAT(rec2.downs[0].err.message, Catch::Contains("scheme"));
    bool done2 = false;
    t2->close([&] { done2 = true; });
    run_until(&loop, [&] { return done2; });
    CHECK(done2);
  }
  close_and_finish(&loop, t);
}

TEST_CASE("websocket: a peer that never answers the upgrade times out", "[websocket]") {
  // A listener that never accepts: the kernel completes the TCP handshake, nobody answers.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(fd, 4) == 0);
  socklen_t alen = sizeof addr;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &alen) == 0);
  const int port = ntohs(addr.sin_port);

  uv_loop_t loop;
  uv_loop_init(&loop);
  recorder rec;
  auto config = config_for("http://127.0.0.1:" + std::to_string(port) + "/bayeux");
  config.connect_timeout = 300ms;
  auto t = make_websocket_transport(&loop, config, rec);
  const auto start = std::chrono::steady_clock::now();
  t->send(0, handshake_frame, 5s);
  REQUIRE(run_until(
      &loop, [&] { return !rec.downs.empty(); }, 5s));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(elapsed >= 290ms);
  CHECK(elapsed < 2s);
  REQUIRE(rec.downs.size() == 1);
  CHECK(rec.downs[0].err.code == errc::timeout);
  CHECK_FALSE(rec.downs[0].was_up);
  CHECK(rec.ups == 0);
  close_and_finish(&loop, t);
  ::close(fd);
}

TEST_CASE("websocket: an oversized message ends the connection", "[websocket]") {
  SECTION("a Faye reply above max_message_size") {
    server_process server("faye-server.js");
    uv_loop_t loop;
    uv_loop_init(&loop);
    recorder rec;
    auto config = config_for(server.url());
    config.max_message_size = 64;
    auto t = make_websocket_transport(&loop, config, rec);
    t->send(0, handshake_frame, 5s);
    REQUIRE(run_until(&loop, [&] { return !rec.downs.empty(); }));
    CHECK(rec.frames.empty());
    CHECK(rec.ups == 1);
    CHECK(rec.downs[0].err.code == errc::message_too_large);
    CHECK(rec.downs[0].was_up);

    // The transport is usable again: a later send opens a new connection.
    rec.downs.clear();
    auto t2 = make_websocket_transport(&loop, config_for(server.url()), rec);
    t2->send(0, handshake_frame, 5s);
    REQUIRE(run_until(&loop, [&] { return rec.frames.size() == 1 || !rec.downs.empty(); }));
    CHECK(rec.downs.empty());
    bool done2 = false;
    t2->close([&] { done2 = true; });
    close_and_finish(&loop, t);
    CHECK(done2);
  }
  SECTION("a frame header claiming 1 TiB is refused without allocating it") {
    server_process server("ws-fragment-server.js");
    uv_loop_t loop;
    uv_loop_init(&loop);
    recorder rec;
    auto t = make_websocket_transport(&loop, config_for(server.base_url() + "/huge"), rec);
    t->send(0, "[]", 5s);
    REQUIRE(run_until(&loop, [&] { return !rec.downs.empty(); }));
    CHECK(rec.frames.empty());
    CHECK(rec.downs[0].err.code == errc::message_too_large);
    CHECK(rec.downs[0].was_up);
    close_and_finish(&loop, t);
  }
}

TEST_CASE("websocket: wss:// reads frames like ws://: an oversized header is refused at once, a "
          "masked server frame is a protocol error", "[websocket]") {
  // Over lws 4.1's websocket role, wss waited for a 1 TiB frame to fill lws's buffer (until the
  // ping timeout, 30 s) and accepted masked server frames.
  server_process server("ws-fragment-server.js", {"--tls", "1"});
  const std::string base = "https://127.0.0.1:" + std::to_string(server.port());
  uv_loop_t loop;
  uv_loop_init(&loop);
  recorder rec;
  SECTION("a frame header claiming 1 TiB, alone: message_too_large from the announced length") {
    auto config = config_for(base + "/huge-header");
    config.tls_verify = false;
    config.connect_timeout = 30s;  // OpenSSL's start-up is slow under valgrind
    auto t = make_websocket_transport(&loop, config, rec);
    std::chrono::steady_clock::time_point up;
    rec.up_hook = [&] { up = std::chrono::steady_clock::now(); };
    t->send(0, "[]", 5s);
    REQUIRE(run_until(&loop, [&] { return !rec.downs.empty(); }, 40s));
    REQUIRE(rec.ups == 1);
    // The header arrives with the 101: refused at once, not at the ping timeout (30 s).
    CHECK(std::chrono::steady_clock::now() - up < 5s);
    CHECK(rec.frames.empty());
    CHECK(rec.downs[0].err.code == errc::message_too_large);
    CHECK_THAT(rec.downs[0].err.message, Catch::Contains("1099511627776"));
    CHECK(rec.downs[0].was_up);
    close_and_finish(&loop, t);
  }
  SECTION("a masked frame from the server") {
    auto config = config_for(base + "/masked");
    config.tls_verify = false;
    config.connect_timeout = 30s;
    auto t = make_websocket_transport(&loop, config, rec);
    t->send(0, "[]", 5s);
    REQUIRE(run_until(&loop, [&] { return !rec.downs.empty() || !rec.frames.empty(); }, 40s));
    CHECK(rec.frames.empty());
    REQUIRE(rec.downs.size() == 1);
    CHECK(rec.downs[0].was_up);
    CHECK(rec.downs[0].err.code == errc::transport_error);
    CHECK_THAT(rec.downs[0].err.message, Catch::Contains("masked frame"));
    close_and_finish(&loop, t);
  }
}

TEST_CASE("websocket: fragmented messages are reassembled", "[websocket]") {
  SECTION("continuation frames with a ping in between") {
    server_process server("ws-fragment-server.js");
    uv_loop_t loop;
    uv_loop_init(&loop);
    recorder rec;
    auto t = make_websocket_transport(&loop, config_for(server.base_url() + "/fragment"), rec);
    t->send(0, "[]", 5s);
    REQUIRE(run_until(&loop, [&] { return !rec.frames.empty() || !rec.downs.empty(); }));
    REQUIRE(rec.downs.empty());
    REQUIRE(rec.frames.size() == 1);
    const json m = reply_of(rec.frames[0]);
    CHECK(m["channel"] == "/frag");
    CHECK(m["data"] == std::string(3000, 'x'));
    CHECK(m["parts"] == 3);
    close_and_finish(&loop, t);
  }
  SECTION("a message larger than one read, fragments straddling reads") {
    server_process server("ws-fragment-server.js");
    uv_loop_t loop;
    uv_loop_init(&loop);
    recorder rec;
    websocket_tuning tuning;
    tuning.rx_chunk_size = 1024;  // the smallest read: the 3000-byte message takes 3 or more
    auto t = make_websocket_transport(&loop, config_for(server.base_url() + "/fragment"), rec,
                                      tuning);
    t->send(0, "[]", 5s);
    REQUIRE(run_until(&loop, [&] { return !rec.frames.empty() || !rec.downs.empty(); }));
    REQUIRE(rec.downs.empty());
    REQUIRE(rec.frames.size() == 1);
    const json m = reply_of(rec.frames[0]);
    CHECK(m["data"] == std::string(3000, 'x'));
    CHECK(m["parts"] == 3);
    close_and_finish(&loop, t);
  }
}

TEST_CASE("websocket: close() ends a live connection and frees everything", "[websocket]") {
  server_process server("faye-server.js");
  uv_loop_t loop;
  uv_loop_init(&loop);
  recorder rec;
  auto t = make_websocket_transport(&loop, config_for(server.url()), rec);

  SECTION("from outside any callback") {
    t->send(0, handshake_frame, 5s);
    REQUIRE(run_until(&loop, [&] { return rec.frames.size() == 1; }));
    close_and_finish(&loop, t);
    CHECK(rec.downs.empty());
  }
  SECTION("from inside on_frame, with frames still queued") {
    bool done = false;
    rec.frame_hook = [&](const std::string&) {
      if (done || rec.frames.size() > 1) return;
      t->send(0, handshake_with_id(7), 5s);  // dropped by the close below
      t->close([&] { done = true; });
      CHECK_FALSE(done);
    };
    t->send(0, handshake_frame, 5s);
    uv_run(&loop, UV_RUN_DEFAULT);  // returns once the transport has closed every handle
    CHECK(done);
    CHECK(rec.frames.size() == 1);
    CHECK(rec.downs.empty());
    t.reset();
    REQUIRE(uv_loop_close(&loop) == 0);
  }
  SECTION("before the connection is up") {
    t->send(0, handshake_frame, 5s);
    close_and_finish(&loop, t);
    CHECK(rec.ups == 0);
    CHECK(rec.frames.empty());
    CHECK(rec.downs.empty());
  }
  SECTION("without ever connecting") { close_and_finish(&loop, t); }
  SECTION("by destroying the transport: it still closes its handles") {
    t->send(0, handshake_frame, 5s);
    REQUIRE(run_until(&loop, [&] { return rec.frames.size() == 1; }));
    t.reset();
    uv_run(&loop, UV_RUN_DEFAULT);
    REQUIRE(uv_loop_close(&loop) == 0);
  }
}

TEST_CASE("websocket: a server that goes away is reported, and send() reconnects", "[websocket]") {
  server_process server("faye-server.js");
  uv_loop_t loop;
  uv_loop_init(&loop);
  recorder rec;
  auto t = make_websocket_transport(&loop, config_for(server.url()), rec);
  t->send(0, handshake_frame, 5s);
  REQUIRE(run_until(&loop, [&] { return rec.frames.size() == 1; }));

  server.stop();
  REQUIRE(run_until(&loop, [&] { return !rec.downs.empty(); }));
  REQUIRE(rec.downs.size() == 1);
  CHECK(rec.downs[0].err.code == errc::transport_error);
  CHECK(rec.downs[0].was_up);

  server.restart();
  t->send(0, handshake_frame, 5s);
  REQUIRE(run_until(&loop, [&] { return rec.frames.size() == 2 || rec.downs.size() > 1; }));
  CHECK(rec.ups == 2);
  CHECK(reply_of(rec.frames[1])["successful"] == true);
  close_and_finish(&loop, t);
}

TEST_CASE("websocket: send() from inside on_down opens a new connection", "[websocket]") {
  server_process server("faye-server.js");
  uv_loop_t loop;
  uv_loop_init(&loop);
  recorder rec;
  auto t = make_websocket_transport(&loop, config_for(server.url()), rec);
  rec.down_hook = [&] {
    if (rec.downs.size() == 1) t->send(0, handshake_with_id(2), 5s);
  };
  t->send(0, handshake_frame, 5s);
  REQUIRE(run_until(&loop, [&] { return rec.frames.size() == 1; }));
  server.control("/control/drop", "{}");  // cuts every TCP connection, the server stays up
  REQUIRE(run_until(&loop, [&] { return rec.frames.size() == 2 || rec.downs.size() > 1; }));
  REQUIRE(rec.downs.size() == 1);
  CHECK(rec.downs[0].was_up);
  CHECK(rec.ups == 2);
  CHECK(reply_of(rec.frames[1])["id"] == "2");
  close_and_finish(&loop, t);
}

TEST_CASE("websocket: a close frame from the server is reported with its code", "[websocket]") {
  server_process server("ws-fragment-server.js");
  uv_loop_t loop;
  uv_loop_init(&loop);
  recorder rec;
  auto t = make_websocket_transport(&loop, config_for(server.base_url() + "/close"), rec);
  t->send(0, "[]", 5s);
  REQUIRE(run_until(&loop, [&] { return !rec.downs.empty(); }));
  CHECK(rec.downs[0].was_up);
  CHECK(rec.downs[0].err.code == errc::transport_error);
  CHECK_THAT(rec.downs[0].err.message, Catch::Contains("4000") && Catch::Contains("bye"));
  close_and_finish(&loop, t);
}

TEST_CASE("websocket: frames leave masked; a server ping gets its pong", "[websocket]") {
  // ws-fragment-server's /ping unmasks every frame the client sends and describes it back.
  server_process server("ws-fragment-server.js");
  uv_loop_t loop;
  uv_loop_init(&loop);
  recorder rec;
  auto t = make_websocket_transport(&loop, config_for(server.base_url() + "/ping"), rec);
  // 7-bit, 16-bit and 64-bit length forms, each a JSON array as the session sends.
  const std::vector<std::string> bodies = {
      "[1]", "[\"" + std::string(300, 'a') + "\"]", "[\"" + std::string(70000, 'b') + "\"]"};
  for (const auto& b : bodies) t->send(0, b, 5s, true);
  REQUIRE(run_until(&loop, [&] { return rec.frames.size() == 4 || !rec.downs.empty(); }));
  REQUIRE(rec.downs.empty());
  std::vector<std::string> texts;
  std::string pong;
  for (const auto& f : rec.frames) {
    const json m = reply_of(f);
    CHECK(m["channel"] == "/seen");
    CHECK(m["masked"] == true);
    if (m["op"] == 10) {
      pong = m["data"];
    } else {
      CHECK(m["op"] == 1);
      texts.push_back(m["data"]);
    }
  }
  CHECK(pong == "are-you-there");
  CHECK(texts == bodies);
  close_and_finish(&loop, t);
}

TEST_CASE("websocket: a server that breaks the protocol is refused with the reason", "[websocket]") {
  server_process server("ws-fragment-server.js");
  uv_loop_t loop;
  uv_loop_init(&loop);
  recorder rec;
  SECTION("a wrong Sec-WebSocket-Accept") {
    auto t = make_websocket_transport(&loop, config_for(server.base_url() + "/bad-accept"), rec);
    t->send(0, "[]", 5s);
    REQUIRE(run_until(&loop, [&] { return !rec.downs.empty(); }));
    CHECK(rec.ups == 0);
    CHECK_FALSE(rec.downs[0].was_up);
    CHECK(rec.downs[0].err.code == errc::transport_error);
    CHECK_THAT(rec.downs[0].err.message, Catch::Contains("Sec-WebSocket-Accept"));
    close_and_finish(&loop, t);
  }
  SECTION("a masked frame from the server") {
    auto t = make_websocket_transport(&loop, config_for(server.base_url() + "/masked"), rec);
    t->send(0, "[]", 5s);
    REQUIRE(run_until(&loop, [&] { return !rec.downs.empty(); }));
    CHECK(rec.frames.empty());
    CHECK(rec.downs[0].was_up);
    CHECK(rec.downs[0].err.code == errc::transport_error);
    CHECK_THAT(rec.downs[0].err.message, Catch::Contains("masked frame"));
    close_and_finish(&loop, t);
  }
}

TEST_CASE("websocket: pings keep a quiet connection up; a silent peer times out", "[websocket]") {
  websocket_tuning tuning;
  tuning.ping_interval = 100ms;
  SECTION("Faye answers pings") {
    server_process server("faye-server.js");
    uv_loop_t loop;
    uv_loop_init(&loop);
    recorder rec;
    auto t = make_websocket_transport(&loop, config_for(server.url()), rec, tuning);
    t->send(0, handshake_frame, 5s);
    REQUIRE(run_until(&loop, [&] { return rec.frames.size() == 1; }));
    run_for(&loop, 700ms);  // 7 intervals without data
    CHECK(rec.downs.empty());
    close_and_finish(&loop, t);
  }
  SECTION("a peer that never answers") {
    server_process server("ws-fragment-server.js");
    uv_loop_t loop;
    uv_loop_init(&loop);
    recorder rec;
    auto t =
        make_websocket_transport(&loop, config_for(server.base_url() + "/silent"), rec, tuning);
    t->send(0, "[]", 5s);
    REQUIRE(run_until(&loop, [&] { return rec.ups == 1; }));
    const auto start = std::chrono::steady_clock::now();
    REQUIRE(run_until(
        &loop, [&] { return !rec.downs.empty(); }, 3s));
    CHECK(std::chrono::steady_clock::now() - start < 1s);
    CHECK(rec.downs[0].err.code == errc::timeout);
    CHECK(rec.downs[0].was_up);
    close_and_finish(&loop, t);
  }
}

TEST_CASE("websocket: abort() drops the connection silently", "[websocket]") {
  server_process server("faye-server.js");
  uv_loop_t loop;
  uv_loop_init(&loop);
  recorder rec;
  auto t = make_websocket_transport(&loop, config_for(server.url()), rec);
  t->send(0, handshake_frame, 5s);
  REQUIRE(run_until(&loop, [&] { return rec.frames.size() == 1; }));

  SECTION("from outside a callback, then a new connection") {
    t->abort();
    run_for(&loop, 100ms);
    CHECK(rec.downs.empty());
    t->send(0, handshake_with_id(2), 5s);
    REQUIRE(run_until(&loop, [&] { return rec.frames.size() == 2 || !rec.downs.empty(); }));
    CHECK(rec.ups == 2);
    CHECK(reply_of(rec.frames[1])["id"] == "2");
  }
  SECTION("from inside on_frame, then send() from the same callback") {
    rec.frame_hook = [&](const std::string&) {
      if (rec.frames.size() != 2) return;
      t->abort();
      t->send(0, handshake_with_id(3), 5s);
    };
    t->send(0, handshake_with_id(2), 5s);
    REQUIRE(run_until(&loop, [&] { return rec.frames.size() == 3 || !rec.downs.empty(); }));
    CHECK(rec.downs.empty());
    CHECK(rec.ups == 2);
    CHECK(reply_of(rec.frames[2])["id"] == "3");
  }
  close_and_finish(&loop, t);
  CHECK(rec.downs.empty());
}

TEST_CASE("websocket: pause_receive holds frames back until resumed", "[websocket]") {
  server_process server("faye-server.js");
  uv_loop_t loop;
  uv_loop_init(&loop);
  recorder rec;
  auto t = make_websocket_transport(&loop, config_for(server.url()), rec);
  t->send(0, handshake_frame, 5s);
  REQUIRE(run_until(&loop, [&] { return rec.frames.size() == 1; }));
  t->pause_receive(true);
  t->send(0, handshake_with_id(2), 5s);
  run_for(&loop, 300ms);
  CHECK(rec.frames.size() == 1);
  t->pause_receive(false);
  REQUIRE(run_until(
      &loop, [&] { return rec.frames.size() == 2 || !rec.downs.empty(); }, 2s));
  CHECK(reply_of(rec.frames[1])["id"] == "2");
  close_and_finish(&loop, t);
}

namespace {

// Runs `fn` once from a uv_idle callback, as the session's dispatch does.
struct idle_call {
  uv_idle_t idle{};
  std::function<void()> fn;
  idle_call(uv_loop_t* loop, std::function<void()> f) : fn(std::move(f)) {
    uv_idle_init(loop, &idle);
    idle.data = this;
    uv_idle_start(&idle, [](uv_idle_t* h) {
      uv_idle_stop(h);
      static_cast<idle_call*>(h->data)->fn();
    });
  }
  void close() { uv_close(reinterpret_cast<uv_handle_t*>(&idle), nullptr); }
};

int n_of(const std::string& frame) { return reply_of(frame)["n"]; }

}  // namespace

TEST_CASE("websocket: a pause from on_frame holds the rest of a read, in order, until resumed",
          "[websocket]") {
  // ws-fragment-server's bursts put several messages in one write, so one read holds them all.
  // Each section runs over ws:// and wss:// (uvcometd's framing over TLS).
  const bool tls = GENERATE(false, true);
  server_process server("ws-fragment-server.js", tls ? std::vector<std::string>{"--tls", "1"}
                                                     : std::vector<std::string>{});
  const std::string base =
      std::string(tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(server.port());
  auto config = [&](const std::string& path) {
    auto c = config_for(base + path);
    c.tls_verify = false;
    c.connect_timeout = 30s;  // OpenSSL's start-up is slow under valgrind
    return c;
  };
  uv_loop_t loop;
  uv_loop_init(&loop);
  recorder rec;
  INFO((tls ? "wss" : "ws"));
  SECTION("resumed from outside the loop") {
    auto t = make_websocket_transport(&loop, config("/burst"), rec);
    rec.frame_hook = [&](const std::string&) { if (rec.frames.size() == 1) t->pause_receive(true); };
    t->send(0, "[]", 5s);
    REQUIRE(run_until(&loop, [&] { return rec.frames.size() == 1; }, 40s));
    run_for(&loop, 300ms);
    CHECK(rec.frames.size() == 1);
    rec.frame_hook = nullptr;
    t->pause_receive(false);
    REQUIRE(run_until(&loop, [&] { return rec.frames.size() == 5 || !rec.downs.empty(); }, 3s));
    for (int i = 0; i < 5; ++i) CHECK(n_of(rec.frames[i]) == i + 1);
    close_and_finish(&loop, t);
  }
  SECTION("resumed from an idle callback after the server ended the connection") {
    auto t = make_websocket_transport(&loop, config("/burst-end"), rec);
    rec.frame_hook = [&](const std::string&) { if (rec.frames.size() == 1) t->pause_receive(true); };
    t->send(0, "[]", 5s);
    REQUIRE(run_until(&loop, [&] { return rec.frames.size() == 1; }, 40s));
    run_for(&loop, 400ms);  // the server's FIN has arrived meanwhile
    CHECK(rec.frames.size() == 1);
    CHECK(rec.downs.empty());
    rec.frame_hook = nullptr;
    idle_call ic(&loop, [&] { t->pause_receive(false); });
    REQUIRE(run_until(&loop, [&] { return !rec.downs.empty(); }, 3s));
    ic.close();
    CHECK(rec.frames.size() == 5);  // every message before the end, none lost
    close_and_finish(&loop, t);
  }
  SECTION("resume, pause, resume before the held bytes are parsed: each pause still holds") {
    auto t = make_websocket_transport(&loop, config("/burst"), rec);
    rec.frame_hook = [&](const std::string&) { t->pause_receive(true); };
    t->send(0, "[]", 5s);
    REQUIRE(run_until(&loop, [&] { return rec.frames.size() == 1; }, 40s));
    run_for(&loop, 300ms);
    REQUIRE(rec.frames.size() == 1);
    t->pause_receive(false);
    t->pause_receive(true);
    t->pause_receive(false);
    run_for(&loop, 300ms);
    CHECK(rec.frames.size() == 2);  // on_frame paused again after the second
    rec.frame_hook = nullptr;
    t->pause_receive(false);
    REQUIRE(run_until(&loop, [&] { return rec.frames.size() == 5 || !rec.downs.empty(); }, 3s));
    for (int i = 0; i < 5; ++i) CHECK(n_of(rec.frames[i]) == i + 1);
    close_and_finish(&loop, t);
  }
  SECTION("close() from on_frame while held messages are delivered") {
    auto t = make_websocket_transport(&loop, config("/burst"), rec);
    bool closed = false;
    rec.frame_hook = [&](const std::string&) {
      if (rec.frames.size() == 1) t->pause_receive(true);
      if (rec.frames.size() == 3) t->close([&] { closed = true; });
    };
    t->send(0, "[]", 5s);
    REQUIRE(run_until(&loop, [&] { return rec.frames.size() == 1; }, 40s));
    run_for(&loop, 300ms);
    idle_call ic(&loop, [&] { t->pause_receive(false); });
    run_until(&loop, [&] { return closed; }, 3s);
    ic.close();
    CHECK(closed);
    CHECK(rec.frames.size() == 3);
    uv_run(&loop, UV_RUN_DEFAULT);
    t.reset();
    REQUIRE(uv_loop_close(&loop) == 0);
  }
}

TEST_CASE("websocket: held bytes (ws://): a ping is answered and a violation ends the connection "
          "once resumed", "[websocket]") {
  server_process server("ws-fragment-server.js");
  uv_loop_t loop;
  uv_loop_init(&loop);
  recorder rec;
  SECTION("a ping between held messages") {
    auto t = make_websocket_transport(&loop, config_for(server.base_url() + "/burst-ping"), rec);
    rec.frame_hook = [&](const std::string&) { if (rec.frames.size() == 1) t->pause_receive(true); };
    t->send(0, "[]", 5s);
    REQUIRE(run_until(&loop, [&] { return rec.frames.size() == 1; }));
    run_for(&loop, 200ms);
    CHECK(rec.frames.size() == 1);
    rec.frame_hook = nullptr;
    t->pause_receive(false);
    REQUIRE(run_until(&loop, [&] { return rec.frames.size() == 2 || !rec.downs.empty(); }, 3s));
    CHECK(n_of(rec.frames[1]) == 2);
    CHECK(rec.downs.empty());
    close_and_finish(&loop, t);
  }
  SECTION("a masked frame among held messages") {
    auto t = make_websocket_transport(&loop, config_for(server.base_url() + "/burst-masked"), rec);
    rec.frame_hook = [&](const std::string&) { if (rec.frames.size() == 1) t->pause_receive(true); };
    t->send(0, "[]", 5s);
    REQUIRE(run_until(&loop, [&] { return rec.frames.size() == 1; }));
    run_for(&loop, 200ms);
    rec.frame_hook = nullptr;
    idle_call ic(&loop, [&] { t->pause_receive(false); });
    REQUIRE(run_until(&loop, [&] { return !rec.downs.empty(); }, 3s));
    ic.close();
    CHECK(rec.frames.size() == 2);
    CHECK_THAT(rec.downs[0].err.message, Catch::Contains("masked"));
    t->send(0, "[]", 5s);  // a new connection
    REQUIRE(run_until(&loop, [&] { return rec.ups == 2; }, 3s));
    close_and_finish(&loop, t);
  }
}

TEST_CASE("websocket: a write the peer does not take stops reading, without a false timeout",
          "[websocket]") {
  // /flood-noread never reads and sends a message every 2 ms. An 8 MiB frame cannot leave, and
  // lws 4.1 reads nothing while it holds part of one: the transport stops reading (instead of
  // letting lws spin on the readable socket) and does not count the silence as a dead peer.
  server_process server("ws-fragment-server.js");
  uv_loop_t loop;
  uv_loop_init(&loop);
  recorder rec;
  websocket_tuning tuning;
  tuning.ping_interval = 100ms;  // a dead peer would be declared after 200 ms
  auto t = make_websocket_transport(&loop, config_for(server.base_url() + "/flood-noread"), rec,
                                    tuning);
  t->send(0, "[]", 5s, true);
  REQUIRE(run_until(&loop, [&] { return !rec.frames.empty(); }));
  t->send(0, "[\"" + std::string(8u << 20, 'z') + "\"]", 5s, true);
  run_for(&loop, 1000ms);
  CHECK(rec.downs.empty());
  close_and_finish(&loop, t);
}

TEST_CASE("websocket: ws:// and wss:// go through an http_proxy from the environment",
          "[websocket]") {
  const bool tls = GENERATE(false, true);
  INFO((tls ? "wss" : "ws"));
  server_process proxy("connect-proxy.js");
  server_process server("ws-fragment-server.js", tls ? std::vector<std::string>{"--tls", "1"}
                                                     : std::vector<std::string>{});
  const std::string authority = "127.0.0.1:" + std::to_string(server.port());
  const std::string via = "http://127.0.0.1:" + std::to_string(proxy.port());
  ::setenv("http_proxy", via.c_str(), 1);  // read when the transport creates its lws context
  uv_loop_t loop;
  uv_loop_init(&loop);
  recorder rec;
  auto config = config_for(std::string(tls ? "https" : "http") + "://" + authority + "/headers");
  config.tls_verify = false;
  config.connect_timeout = 30s;  // OpenSSL's start-up is slow under valgrind
  auto t = make_websocket_transport(&loop, config, rec);
  t->send(0, "[]", 5s);
  const bool got =
      run_until(&loop, [&] { return !rec.frames.empty() || !rec.downs.empty(); }, 40s);
  ::unsetenv("http_proxy");
  REQUIRE(got);
  REQUIRE(rec.downs.empty());
  CHECK(json::parse(rec.frames[0])["host"] == authority);
  // The proxy saw the tunnel: its CONNECT count (connect-proxy.js counts them).
  CHECK(json::parse(proxy.get("/control/stats"))["connects"] == 1);
  close_and_finish(&loop, t);
}

TEST_CASE("websocket: a proxy that refuses the tunnel is reported with its status", "[websocket]") {
  server_process proxy("connect-proxy.js");
  server_process server("ws-fragment-server.js");
  const std::string via = "http://127.0.0.1:" + std::to_string(proxy.port());
  ::setenv("http_proxy", via.c_str(), 1);
  uv_loop_t loop;
  uv_loop_init(&loop);
  recorder rec;
  // connect-proxy.js refuses a tunnel to port 1 with 403.
  auto t = make_websocket_transport(&loop, config_for("http://127.0.0.1:1/headers"), rec);
  t->send(0, "[]", 5s);
  const bool got = run_until(&loop, [&] { return !rec.downs.empty(); });
  ::unsetenv("http_proxy");
  REQUIRE(got);
  CHECK(rec.downs[0].err.code == errc::transport_error);
  CHECK_THAT(rec.downs[0].err.message,
             Catch::Contains("refused the tunnel to 127.0.0.1:1: HTTP 403"));
  CHECK_FALSE(rec.downs[0].was_up);
  close_and_finish(&loop, t);
}

TEST_CASE("websocket: the upgrade carries the configured headers and cookies", "[websocket]") {
  server_process server("ws-fragment-server.js");
  uv_loop_t loop;
  uv_loop_init(&loop);
  recorder rec;
  auto config = config_for(server.base_url() + "/headers?x=1");
  config.headers = {"X-Test: one", "Authorization: Bearer abc", "malformed line"};
  auto t = make_websocket_transport(&loop, config, rec);
  t->set_cookie_header("BAYEUX_BROWSER=123; other=x");
  t->send(0, "[]", 5s);
  REQUIRE(run_until(&loop, [&] { return !rec.frames.empty() || !rec.downs.empty(); }));
  REQUIRE(rec.frames.size() == 1);
  const json h = json::parse(rec.frames[0]);
  CHECK(h["x-test"] == "one");
  CHECK(h["authorization"] == "Bearer abc");
  CHECK(h["cookie"] == "BAYEUX_BROWSER=123; other=x");
  CHECK(h["host"] == "127.0.0.1:" + std::to_string(server.port()));
  close_and_finish(&loop, t);
}

TEST_CASE("websocket: wss verifies the server certificate unless told not to", "[websocket]") {
  server_process server("ws-fragment-server.js", {"--tls", "1"});
  const std::string url = "https://127.0.0.1:" + std::to_string(server.port()) + "/headers";
  uv_loop_t loop;
  uv_loop_init(&loop);
  recorder rec;
  auto config = config_for(url);
  config.connect_timeout = 30s;  // OpenSSL's start-up is slow under valgrind

  SECTION("a self-signed certificate is refused by default") {
    auto t = make_websocket_transport(&loop, config, rec);
    t->send(0, "[]", 5s);
    REQUIRE(run_until(
        &loop, [&] { return !rec.downs.empty() || !rec.frames.empty(); }, 40s));
    CHECK(rec.frames.empty());
    REQUIRE(rec.downs.size() == 1);
    CHECK(rec.downs[0].err.code == errc::certificate_error);
    CHECK_FALSE(rec.downs[0].was_up);
    CHECK_THAT(rec.downs[0].err.message, Catch::Contains("self-signed certificate"));
    close_and_finish(&loop, t);
  }
  SECTION("tls_verify = false accepts it") {
    config.tls_verify = false;
    auto t = make_websocket_transport(&loop, config, rec);
    t->send(0, "[]", 5s);
    REQUIRE(run_until(
        &loop, [&] { return !rec.downs.empty() || !rec.frames.empty(); }, 40s));
    REQUIRE(rec.frames.size() == 1);
    CHECK(json::parse(rec.frames[0])["host"] == "127.0.0.1:" + std::to_string(server.port()));
    close_and_finish(&loop, t);
  }
  SECTION("ca_file makes it trusted, with verification on") {
    char path[] = "/tmp/uvcometd-ws-ca-XXXXXX";
    const int fd = ::mkstemp(path);
    REQUIRE(fd >= 0);
    const std::string pem = test_cert_pem;
    REQUIRE(::write(fd, pem.data(), pem.size()) == static_cast<ssize_t>(pem.size()));
    ::close(fd);
    config.ca_file = path;
    auto t = make_websocket_transport(&loop, config, rec);
    t->send(0, "[]", 5s);
    REQUIRE(run_until(
        &loop, [&] { return !rec.downs.empty() || !rec.frames.empty(); }, 40s));
    ::unlink(path);
    CHECK(rec.downs.empty());
    CHECK(rec.frames.size() == 1);
    close_and_finish(&loop, t);
  }
}

TEST_CASE("websocket: host names are resolved off the loop", "[websocket]") {
  server_process server("faye-server.js");
  uv_loop_t loop;
  uv_loop_init(&loop);
  recorder rec;
  const std::string port = std::to_string(server.port());

  SECTION("localhost") {
    auto t =
        make_websocket_transport(&loop, config_for("http://localhost:" + port + "/bayeux"), rec);
    t->send(0, handshake_frame, 5s);
    REQUIRE(run_until(&loop, [&] { return !rec.frames.empty() || !rec.downs.empty(); }));
    REQUIRE(rec.frames.size() == 1);
    CHECK(reply_of(rec.frames[0])["successful"] == true);
    close_and_finish(&loop, t);
  }
  SECTION("a name that does not resolve") {
    auto t = make_websocket_transport(&loop, config_for("http://nonexistent.invalid/bayeux"), rec);
    rec.inside_api = true;
    t->send(0, handshake_frame, 5s);
    rec.inside_api = false;
    REQUIRE(run_until(&loop, [&] { return !rec.downs.empty(); }));
    CHECK_FALSE(rec.event_inside_api);
    CHECK(rec.downs[0].err.code == errc::transport_error);
    CHECK_FALSE(rec.downs[0].was_up);
    CHECK_THAT(rec.downs[0].err.message, Catch::Contains("resolve"));
    close_and_finish(&loop, t);
  }
  SECTION("close() while resolving") {
    auto t =
        make_websocket_transport(&loop, config_for("http://localhost:" + port + "/bayeux"), rec);
    t->send(0, handshake_frame, 5s);
    close_and_finish(&loop, t);
    CHECK(rec.downs.empty());
  }
}

// ---- transports sharing one loop's lws context ----------------------------------------------

namespace {

int open_handles(uv_loop_t* loop) {
  int n = 0;
  uv_walk(
      loop,
      [](uv_handle_t* h, void* arg) {
        if (!uv_is_closing(h)) ++*static_cast<int*>(arg);
      },
      &n);
  return n;
}

// One transport with its recorder, handshaken with Faye.
struct faye_client {
  recorder rec;
  std::unique_ptr<transport> t;
  std::string client_id;
};

std::string connect_frame(const std::string& client_id, const std::string& id) {
  return R"([{"channel":"/meta/connect","clientId":")" + client_id +
         R"(","connectionType":"websocket","advice":{"timeout":0},"id":")" + id + R"("}])";
}

// Handshakes every client at once; each must get its own reply (the id names the client).
void handshake_all(uv_loop_t* loop, std::vector<std::unique_ptr<faye_client>>& clients,
                   const std::string& url) {
  for (std::size_t i = 0; i < clients.size(); ++i) {
    auto& c = *clients[i];
    c.t = make_websocket_transport(loop, config_for(url), c.rec);
    c.t->send(0, handshake_with_id(static_cast<int>(100 + i)), 5s);
  }
  REQUIRE(run_until(loop, [&] {
    return std::all_of(clients.begin(), clients.end(), [](const auto& c) {
      return !c->rec.frames.empty() || !c->rec.downs.empty();
    });
  }));
  for (std::size_t i = 0; i < clients.size(); ++i) {
    auto& c = *clients[i];
    REQUIRE(c.rec.downs.empty());
    REQUIRE(c.rec.frames.size() == 1);
    const json hs = reply_of(c.rec.frames[0]);
    CHECK(hs["id"] == std::to_string(100 + i));
    CHECK(hs["successful"] == true);
    c.client_id = hs["clientId"];
  }
}

// A /meta/connect of `c` answered on its own transport, and only there.
void check_still_works(uv_loop_t* loop, faye_client& c, const std::string& id) {
  const std::size_t before = c.rec.frames.size();
  c.t->send(0, connect_frame(c.client_id, id), 5s);
  REQUIRE(run_until(loop, [&] { return c.rec.frames.size() > before || !c.rec.downs.empty(); }));
  REQUIRE(c.rec.downs.empty());
  const json r = reply_of(c.rec.frames.back());
  CHECK(r["channel"] == "/meta/connect");
  CHECK(r["id"] == id);
  CHECK(r["successful"] == true);
}

}  // namespace

TEST_CASE("websocket: transports of one loop share one lws context; each gets only its own frames",
          "[websocket]") {
  server_process server("faye-server.js");
  uv_loop_t loop;
  uv_loop_init(&loop);
  std::vector<std::unique_ptr<faye_client>> clients;
  clients.push_back(std::make_unique<faye_client>());
  handshake_all(&loop, clients, server.url());
  const int with_one = open_handles(&loop);

  clients.push_back(std::make_unique<faye_client>());
  clients.push_back(std::make_unique<faye_client>());
  for (std::size_t i = 1; i < 3; ++i) {
    auto& c = *clients[i];
    c.t = make_websocket_transport(&loop, config_for(server.url()), c.rec);
    c.t->send(0, handshake_with_id(static_cast<int>(100 + i)), 5s);
  }
  REQUIRE(run_until(&loop, [&] {
    return clients[1]->rec.frames.size() + clients[2]->rec.frames.size() == 2;
  }));
  // Each more transport adds its own three timers and its socket's watcher, and no lws handles
  // (a context of its own would add lws's idle, timer and event-pipe handles).
  CHECK(open_handles(&loop) == with_one + 2 * 4);

  for (std::size_t i = 1; i < 3; ++i) {
    auto& c = *clients[i];
    REQUIRE(c.rec.frames.size() == 1);
    CHECK(reply_of(c.rec.frames[0])["id"] == std::to_string(100 + i));
    c.client_id = reply_of(c.rec.frames[0])["clientId"];
  }
  // Interleaved: every publish is acknowledged on the transport that sent it.
  auto replies = [&](std::size_t i) {
    std::vector<json> all;
    for (std::size_t f = 1; f < clients[i]->rec.frames.size(); ++f) {
      for (const auto& r : json::parse(clients[i]->rec.frames[f])) all.push_back(r);
    }
    return all;
  };
  for (int round = 0; round < 3; ++round) {
    for (std::size_t i = 0; i < clients.size(); ++i) {
      clients[i]->t->send(0,
                          R"([{"channel":"/shared/x","clientId":")" + clients[i]->client_id +
                              R"(","data":1,"id":"p)" + std::to_string(i) + "-" +
                              std::to_string(round) + R"("}])",
                          5s, /*alone=*/true);
    }
  }
  REQUIRE(run_until(&loop, [&] {
    for (std::size_t i = 0; i < clients.size(); ++i) {
      if (replies(i).size() < 3) return false;
    }
    return true;
  }));
  run_for(&loop, 100ms);
  for (std::size_t i = 0; i < clients.size(); ++i) {
    CHECK(clients[i]->rec.downs.empty());
    CHECK(clients[i]->rec.ups == 1);
    const auto all = replies(i);
    REQUIRE(all.size() == 3);
    for (int round = 0; round < 3; ++round) {
      CHECK(all[round]["id"] == "p" + std::to_string(i) + "-" + std::to_string(round));
      CHECK(all[round]["successful"] == true);
    }
  }
  for (std::size_t i = 0; i + 1 < clients.size(); ++i) {
    bool done = false;
    clients[i]->t->close([&] { done = true; });
    CHECK(run_until(&loop, [&] { return done; }));
  }
  close_and_finish(&loop, clients.back()->t);
}

TEST_CASE("websocket: closing, aborting or destroying one transport leaves the others of the "
          "context working; the last close leaves the loop clean",
          "[websocket]") {
  server_process server("faye-server.js");
  uv_loop_t loop;
  uv_loop_init(&loop);
  std::vector<std::unique_ptr<faye_client>> clients;
  for (int i = 0; i < 4; ++i) clients.push_back(std::make_unique<faye_client>());
  handshake_all(&loop, clients, server.url());
  faye_client& survivor = *clients[3];

  SECTION("from outside any callback") {
    clients[0]->t->abort();
    bool closed = false;
    clients[1]->t->close([&] { closed = true; });
    clients[2]->t.reset();
    // A close that is not the last one completes without waiting for the shared context.
    REQUIRE(run_until(&loop, [&] { return closed; }));
    clients[1]->t.reset();
    CHECK(clients[0]->rec.downs.empty());  // abort reports nothing
    check_still_works(&loop, survivor, "after");
    // The aborted transport connects again on the same context.
    check_still_works(&loop, *clients[0], "again");
  }
  SECTION("from inside another transport's on_frame") {
    bool closed = false;
    survivor.rec.frame_hook = [&](const std::string&) {
      if (survivor.rec.frames.size() != 2) return;
      clients[0]->t->abort();
      clients[1]->t->close([&] { closed = true; });
      clients[2]->t.reset();
      survivor.t->send(0, connect_frame(survivor.client_id, "from-hook"), 5s);
    };
    survivor.t->send(0, connect_frame(survivor.client_id, "first"), 5s);
    REQUIRE(run_until(&loop, [&] { return survivor.rec.frames.size() == 3 && closed; }));
    clients[1]->t.reset();
    CHECK(reply_of(survivor.rec.frames[2])["id"] == "from-hook");
    check_still_works(&loop, survivor, "after");
    check_still_works(&loop, *clients[0], "again");
  }
  SECTION("a transport closing itself from its own on_frame") {
    bool closed = false;
    clients[0]->rec.frame_hook = [&](const std::string&) {
      clients[0]->t->close([&] { closed = true; });
    };
    clients[0]->t->send(0, connect_frame(clients[0]->client_id, "last"), 5s);
    REQUIRE(run_until(&loop, [&] { return closed; }));
    clients[0]->t.reset();
    CHECK(clients[0]->rec.frames.size() == 2);
    check_still_works(&loop, survivor, "after");
    check_still_works(&loop, *clients[1], "after");
  }
  for (auto& c : clients) CHECK(c->rec.downs.empty());
  CHECK(survivor.rec.ups == 1);

  // The last close: its done runs once the context let go of the loop, so nothing is left then.
  std::vector<std::unique_ptr<transport>> open;
  for (auto& c : clients) {
    if (c->t) open.push_back(std::move(c->t));
  }
  int done = 0;
  for (auto& t : open) {
    t->close([&] {
      if (++done == static_cast<int>(open.size())) uv_stop(&loop);
    });
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(done == static_cast<int>(open.size()));
  open.clear();
  REQUIRE(uv_loop_close(&loop) == 0);
}

TEST_CASE("websocket: the context outlives a destroyed transport whose connection lws still "
          "closes",
          "[websocket]") {
  // Destroyed while its connection is being made and while it is up: lws calls back for those
  // wsis after the core is gone; the context must route them nowhere.
  server_process server("faye-server.js");
  uv_loop_t loop;
  uv_loop_init(&loop);
  std::vector<std::unique_ptr<faye_client>> clients;
  for (int i = 0; i < 2; ++i) clients.push_back(std::make_unique<faye_client>());
  handshake_all(&loop, clients, server.url());
  recorder early_rec;
  auto early = make_websocket_transport(&loop, config_for(server.url()), early_rec);
  early->send(0, handshake_frame, 5s);  // connecting, not up yet
  early.reset();
  clients[0]->t.reset();  // up
  check_still_works(&loop, *clients[1], "after");
  run_for(&loop, 100ms);
  check_still_works(&loop, *clients[1], "later");
  CHECK(early_rec.ups == 0);
  CHECK(early_rec.frames.empty());
  close_and_finish(&loop, clients[1]->t);
}

TEST_CASE("websocket: transports with different context settings coexist on one loop",
          "[websocket]") {
  server_process faye("faye-server.js");
  server_process tls("ws-fragment-server.js", {"--tls", "1"});
  const std::string wss_url = "https://127.0.0.1:" + std::to_string(tls.port()) + "/headers";
  uv_loop_t loop;
  uv_loop_init(&loop);
  recorder ws_rec, wss_rec, verify_rec;
  auto ws = make_websocket_transport(&loop, config_for(faye.url()), ws_rec);
  auto wss_config = config_for(wss_url);
  wss_config.connect_timeout = 30s;  // OpenSSL's start-up is slow under valgrind
  wss_config.tls_verify = false;
  auto wss = make_websocket_transport(&loop, wss_config, wss_rec);
  // Same context settings as `wss` (tls_verify is per connection): it still verifies.
  wss_config.tls_verify = true;
  auto verifying = make_websocket_transport(&loop, wss_config, verify_rec);

  ws->send(0, handshake_frame, 5s);
  wss->send(0, "[]", 5s);
  verifying->send(0, "[]", 5s);
  REQUIRE(run_until(
      &loop,
      [&] {
        return (!ws_rec.frames.empty() || !ws_rec.downs.empty()) &&
               (!wss_rec.frames.empty() || !wss_rec.downs.empty()) && !verify_rec.downs.empty();
      },
      40s));
  REQUIRE(ws_rec.downs.empty());
  REQUIRE(wss_rec.downs.empty());
  CHECK(reply_of(ws_rec.frames[0])["successful"] == true);
  REQUIRE(wss_rec.frames.size() == 1);
  CHECK(json::parse(wss_rec.frames[0])["host"] == "127.0.0.1:" + std::to_string(tls.port()));
  CHECK(verify_rec.frames.empty());
  REQUIRE(verify_rec.downs.size() == 1);
  CHECK_FALSE(verify_rec.downs[0].was_up);

  // Closing the wss ones (the last users of their context) leaves the ws one working.
  bool wss_closed = false, verifying_closed = false;
  wss->close([&] { wss_closed = true; });
  verifying->close([&] { verifying_closed = true; });
  REQUIRE(run_until(&loop, [&] { return wss_closed && verifying_closed; }));
  const std::string client_id = reply_of(ws_rec.frames[0])["clientId"];
  ws->send(0, connect_frame(client_id, "2"), 5s);
  REQUIRE(run_until(&loop, [&] { return ws_rec.frames.size() == 2 || !ws_rec.downs.empty(); }));
  CHECK(reply_of(ws_rec.frames[1])["id"] == "2");
  wss.reset();
  verifying.reset();
  close_and_finish(&loop, ws);
}

TEST_CASE("websocket: more transports than one context carries get another context",
          "[websocket]") {
  server_process server("ws-fragment-server.js");
  uv_loop_t loop;
  uv_loop_init(&loop);
  constexpr int count = 300;  // a context carries 256
  std::vector<std::unique_ptr<recorder>> recs;
  std::vector<std::unique_ptr<transport>> ts;
  for (int i = 0; i < count; ++i) {
    recs.push_back(std::make_unique<recorder>());
    auto c = config_for(server.base_url() + "/headers?n=" + std::to_string(i));
    c.connect_timeout = 30s;
    ts.push_back(make_websocket_transport(&loop, c, *recs.back()));
    ts.back()->send(0, "[]", 5s);
  }
  REQUIRE(run_until(
      &loop,
      [&] {
        return std::all_of(recs.begin(), recs.end(),
                           [](const auto& r) { return !r->frames.empty() || !r->downs.empty(); });
      },
      60s));
  for (const auto& r : recs) {
    CHECK(r->downs.empty());
    CHECK(r->frames.size() == 1);
  }
  // Closing the first ones (the first context's users) leaves the rest working.
  int closed = 0;
  for (int i = 0; i < 256; ++i) ts[i]->close([&] { ++closed; });
  REQUIRE(run_until(&loop, [&] { return closed == 256; }));
  for (int i = 256; i < count; ++i) ts[i]->abort();
  ts[count - 1]->send(0, "[]", 5s);
  REQUIRE(run_until(&loop, [&] { return recs[count - 1]->frames.size() == 2; }));
  int done = 0;
  for (int i = 256; i < count; ++i) ts[i]->close([&] { ++done; });
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(done == count - 256);
  ts.clear();
  REQUIRE(uv_loop_close(&loop) == 0);
}
