// The C API end to end, compiled as C: c_api_client.c runs one scenario per process against a
// real server (Faye over both transports, cometd-nodejs-server over long-polling), and
// samples/c-chat.c does what nlohmann-chat does. Paths in env UVCOMETD_C_API_CLIENT and
// UVCOMETD_C_CHAT_SAMPLE.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "server_process.hpp"

using namespace std::chrono_literals;
using uvcometd::test::child_process;
using uvcometd::test::child_stdio;
using uvcometd::test::env_path;
using uvcometd::test::lines_of;
using uvcometd::test::server_process;

namespace {

const char* c_client() { return env_path("UVCOMETD_C_API_CLIENT"); }
const char* c_chat() { return env_path("UVCOMETD_C_CHAT_SAMPLE"); }

struct peer {
  const char* script;
  const char* transport;
};

// Faye over each transport and cometd-nodejs-server (long-polling only).
peer any_peer() {
  return GENERATE(peer{"faye-server.js", "websocket"}, peer{"faye-server.js", "long-polling"},
                  peer{"cometd-server.js", "long-polling"});
}

// Runs one scenario to its end; the program's own checks decide, its output explains.
void run_scenario(const std::string& scenario, const std::string& url,
                  const std::string& transport) {
  REQUIRE(c_client() != nullptr);
  child_process r({c_client(), scenario, url, transport});
  r.wait(60s);
  INFO(scenario << " over " << transport << "\n" << r.describe());
  CHECK_FALSE(r.timed_out());
  CHECK(r.exit_code() == 0);
  CHECK(r.err().find("FAIL") == std::string::npos);
  CHECK(r.err().find("runtime error") == std::string::npos);  // UBSan, when it does not halt
}

bool server_has_no_client(server_process& srv) {
  const std::string stats = srv.get("/control/stats");
  INFO("stats: " << stats);
  return stats.find(R"("clients":0,)") != std::string::npos;
}

}  // namespace

TEST_CASE("C: options, names and version need no server and leave the loop clean",
          "[integration][c_api]") {
  run_scenario("options", "http://127.0.0.1:9/bayeux", "any");
}

TEST_CASE("C: open, two subscriptions on one channel, publish, receive, unsubscribe, close",
          "[integration][c_api]") {
  const peer p = any_peer();
  server_process srv(p.script);
  REQUIRE(c_client() != nullptr);
  child_stdio io;
  io.stdin_pipe = true;
  child_process r({c_client(), "roundtrip", srv.url(), p.transport, "/c/room", "hold"}, io);
  // Once both local subscriptions ended, the server holds none for the channel.
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (r.out().find("UNSUBSCRIBED\n") == std::string::npos && !r.exited() &&
         r.term_signal() == 0 && std::chrono::steady_clock::now() < deadline) {
    r.pump(100ms);
  }
  INFO(p.script << " over " << p.transport << "\n" << r.describe());
  REQUIRE(r.out().find("UNSUBSCRIBED\n") != std::string::npos);
  const std::string stats = srv.get("/control/stats");
  INFO("stats while subscribed to nothing: " << stats);
  CHECK(stats.find(R"("clients":1,)") != std::string::npos);
  CHECK(stats.find(R"("/c/room":1)") == std::string::npos);
  r.close_stdin();
  r.wait(30s);
  CHECK(r.exit_code() == 0);
  CHECK(r.err().find("FAIL") == std::string::npos);
  CHECK(r.err().find("runtime error") == std::string::npos);
  // It left by /meta/disconnect.
  CHECK(server_has_no_client(srv));
}

TEST_CASE(
    "C: a refused subscribe and publish give UVCOMETD_ESERVER_ERROR with the server's "
    "code; bad calls fail at once and never call back",
    "[integration][c_api]") {
  const peer p = any_peer();
  server_process srv(p.script);
  run_scenario("errors", srv.url(), p.transport);
}

TEST_CASE(
    "C: websocket forced on a long-polling-only server fails open with "
    "UVCOMETD_EHTTP_ERROR and the refused upgrade's status",
    "[integration][c_api]") {
  server_process srv("cometd-server.js");
  run_scenario("upgrade-refused", srv.url(), "websocket");
}

TEST_CASE(
    "C: an unreachable server ends open with UVCOMETD_ECONNECTION_TIMEOUT and the log "
    "callback hears the attempts",
    "[integration][c_api]") {
  std::string url;
  {
    server_process srv("faye-server.js");
    url = srv.url();
  }  // stopped: nothing listens on its port any more
  run_scenario("unreachable", url, "any");
}

TEST_CASE(
    "C: close from a message callback cancels or completes each publish once and "
    "delivers nothing more",
    "[integration][c_api]") {
  const peer p = any_peer();
  server_process srv(p.script);
  run_scenario("close-in-message", srv.url(), p.transport);
  CHECK(server_has_no_client(srv));
}

TEST_CASE("C: close from open's callback, twice, runs both completions", "[integration][c_api]") {
  const peer p = any_peer();
  server_process srv(p.script);
  run_scenario("close-in-open", srv.url(), p.transport);
}

TEST_CASE("C: destroying the client in its message or state callback runs no further callback",
          "[integration][c_api]") {
  const peer p = any_peer();
  server_process srv(p.script);
  run_scenario("destroy-in-message", srv.url(), p.transport);
  run_scenario("destroy-in-state", srv.url(), p.transport);
}

TEST_CASE("C: remote calls answered, refused and timed out; meta listeners; ext; current URL",
          "[integration][c_api][calls]") {
  const peer p = any_peer();
  server_process srv(p.script);
  run_scenario("calls", srv.url(), p.transport);
  CHECK(server_has_no_client(srv));
}

TEST_CASE("C: a message the server delivers to the session reaches the unmatched callback",
          "[integration][c_api][calls]") {
  server_process srv("cometd-server.js");
  REQUIRE(c_client() != nullptr);
  child_process r({c_client(), "calls", srv.url(), "long-polling", "/c/calls", "hold"});
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (r.out().find("READY\n") == std::string::npos && !r.exited() && r.term_signal() == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    r.pump(100ms);
  }
  INFO(r.describe());
  REQUIRE(r.out().find("READY\n") != std::string::npos);
  srv.control("/control/deliver", R"({"channel":"/service/push","data":{"k":1}})");
  r.wait(30s);
  INFO(r.describe());
  CHECK(r.exit_code() == 0);
  CHECK(r.out().find("unmatched /service/push {\"k\":1}\n") != std::string::npos);
  CHECK(r.err().find("FAIL") == std::string::npos);
  CHECK(server_has_no_client(srv));
}

TEST_CASE("c-chat receives every message it published to its channel, then exits 0",
          "[integration][c_api][samples]") {
  REQUIRE(c_chat() != nullptr);
  server_process srv("faye-server.js");
  child_process r({c_chat(), srv.url(), "/chat/c", "4"});
  r.wait(30s);
  INFO(r.describe());
  CHECK(r.exit_code() == 0);
  CHECK(r.err().empty());
  auto lines = lines_of(r.out());
  std::sort(lines.begin(), lines.end());  // the sample does not promise an order
  CHECK(lines ==
        std::vector<std::string>{R"({"text":"hello","seq":0})", R"({"text":"hello","seq":1})",
                                 R"({"text":"hello","seq":2})", R"({"text":"hello","seq":3})"});
  CHECK(server_has_no_client(srv));
}

TEST_CASE("c-chat reports a refused subscription and exits 1; a usage error exits 2",
          "[integration][c_api][samples]") {
  REQUIRE(c_chat() != nullptr);
  server_process srv("faye-server.js");
  {
    child_process r({c_chat(), srv.url(), "/private/c", "2"});
    r.wait(30s);
    INFO(r.describe());
    CHECK(r.exit_code() == 1);
    CHECK(r.err().find("c-chat: subscribe: refused by the server") != std::string::npos);
  }
  const std::vector<std::vector<std::string>> usage = {{},
                                                       {srv.url()},
                                                       {srv.url(), "/chat", "zero"},
                                                       {srv.url(), "/chat", "0"},
                                                       {"ftp://127.0.0.1:9/bayeux", "/chat"}};
  for (const auto& args : usage) {
    std::vector<std::string> argv{c_chat()};
    argv.insert(argv.end(), args.begin(), args.end());
    child_process r(argv);
    r.wait(15s);
    INFO(r.describe());
    CHECK(r.exit_code() == 2);
    CHECK(r.out().empty());
    CHECK(r.err().find("c-chat") != std::string::npos);
  }
}
