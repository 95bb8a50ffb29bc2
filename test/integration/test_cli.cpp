// uvcometd-cli end to end: the binary (path in env UVCOMETD_CLI) runs as a child process with
// its stdout and stderr on pipes, against real servers; checks exit codes and output.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "server_process.hpp"

using namespace std::chrono_literals;
using uvcometd::test::server_process;
using steady = std::chrono::steady_clock;

namespace {

const char* cli_path() { return uvcometd::test::env_path("UVCOMETD_CLI"); }
using uvcometd::test::lines_of;

// One run of the CLI with `args`.
class cli_process : public uvcometd::test::child_process {
 public:
  explicit cli_process(const std::vector<std::string>& args) : child_process(with_cli(args)) {}

 private:
  static std::vector<std::string> with_cli(const std::vector<std::string>& args) {
    std::vector<std::string> argv{cli_path()};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
};

// The number of subscribers of `pattern` in the server's /control/stats, or -1.
long subscribers(server_process& srv, const std::string& pattern) {
  std::string stats;
  try {
    stats = srv.get("/control/stats");
  } catch (const std::exception&) {
    return -1;
  }
  const std::string needle = "\"" + pattern + "\":";
  const auto pos = stats.find(needle);
  if (pos == std::string::npos) return 0;
  return std::strtol(stats.c_str() + pos + needle.size(), nullptr, 10);
}

bool has_line(const std::string& text, const std::string& line) {
  for (const auto& l : lines_of(text)) {
    if (l == line) return true;
  }
  return false;
}

#define SKIP_WITHOUT_CLI()                                   \
  if (cli_path() == nullptr) {                               \
    WARN("UVCOMETD_CLI is not set: uvcometd-cli not tested"); \
    return;                                                  \
  }

}  // namespace

TEST_CASE("uvcometd-cli exits 3 when the connection timeout runs out", "[integration][cli]") {
  SKIP_WITHOUT_CLI();
  // The discard port: nothing listens, every attempt is refused.
  cli_process cli({"--connection-timeout", "1", "http://127.0.0.1:9/bayeux"});
  const auto start = steady::now();
  REQUIRE(cli.wait(30s));
  INFO(cli.describe());
  CHECK(cli.exit_code() == 3);
  CHECK(steady::now() - start >= 1s);
  CHECK(cli.out().empty());
  CHECK(cli.err().find("uvcometd-cli:") != std::string::npos);
  CHECK(cli.err().find("connection") != std::string::npos);
}

TEST_CASE("uvcometd-cli exits 1 with the server's error for a forbidden publish",
          "[integration][cli]") {
  SKIP_WITHOUT_CLI();
  server_process srv("faye-server.js");
  cli_process cli({"-p", "/forbidden/x={}", srv.url()});
  REQUIRE(cli.wait(30s));
  INFO(cli.describe());
  CHECK(cli.exit_code() == 1);
  CHECK(cli.out().empty());
  CHECK(cli.err().find("403") != std::string::npos);
  CHECK(cli.err().find("Forbidden channel") != std::string::npos);
  CHECK(cli.err().find("/forbidden/x") != std::string::npos);
}

TEST_CASE("uvcometd-cli exits 2 on a usage error", "[integration][cli]") {
  SKIP_WITHOUT_CLI();
  const std::vector<std::vector<std::string>> cases = {
      {},                                                 // no URL
      {"--no-such-option", "http://127.0.0.1:9/bayeux"},  // unknown option
      {"-n", "2", "http://127.0.0.1:9/bayeux"},           // -n without -s
      {"-p", "/x=not json", "http://127.0.0.1:9/bayeux"},  // not JSON
      {"-t", "carrier-pigeon", "http://127.0.0.1:9/bayeux"},
  };
  for (const auto& args : cases) {
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    INFO("args: " << joined);
    cli_process cli(args);
    REQUIRE(cli.wait(15s));
    INFO(cli.describe());
    CHECK(cli.exit_code() == 2);
    CHECK(cli.out().empty());
    CHECK(cli.err().find("uvcometd-cli:") != std::string::npos);
  }
}

TEST_CASE("uvcometd-cli -v names the transport on stderr", "[integration][cli]") {
  SKIP_WITHOUT_CLI();
  server_process srv("faye-server.js");
  SECTION("websocket by default against Faye") {
    cli_process cli({"-v", srv.url()});
    REQUIRE(cli.wait(30s));
    INFO(cli.describe());
    CHECK(cli.exit_code() == 0);
    CHECK(cli.out().empty());
    CHECK(has_line(cli.err(), "state=connected transport=websocket"));
  }
  SECTION("long-polling with -t long-polling") {
    cli_process cli({"-v", "-t", "long-polling", srv.url()});
    REQUIRE(cli.wait(30s));
    INFO(cli.describe());
    CHECK(cli.exit_code() == 0);
    CHECK(has_line(cli.err(), "state=connected transport=long-polling"));
    CHECK(cli.err().find("transport=websocket") == std::string::npos);
  }
}

TEST_CASE("uvcometd-cli -s /x -n 2 prints two JSON lines and exits 0", "[integration][cli]") {
  SKIP_WITHOUT_CLI();
  server_process srv("faye-server.js");
  cli_process cli({"-s", "/x", "-n", "2", srv.url()});
  // Publish once the subscription reached the server.
  const auto deadline = steady::now() + 20s;
  bool subscribed = false;
  while (!subscribed && steady::now() < deadline) {
    cli.pump(50ms);
    subscribed = subscribers(srv, "/x") > 0;
  }
  INFO(cli.describe());
  REQUIRE(subscribed);
  srv.publish("/x", R"({"k":"v"})", 2);
  REQUIRE(cli.wait(30s));
  INFO(cli.describe());
  CHECK(cli.exit_code() == 0);
  const auto lines = lines_of(cli.out());
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] == R"({"channel":"/x","data":{"k":"v","seq":0}})");
  CHECK(lines[1] == R"({"channel":"/x","data":{"k":"v","seq":1}})");
  CHECK(cli.out().back() == '\n');
}

TEST_CASE("uvcometd-cli --ext reaches the server in the handshake and -H on every request",
          "[integration][cli]") {
  SKIP_WITHOUT_CLI();
  for (const char* type : {"long-polling", "websocket"}) {
    INFO(type);
    server_process srv("faye-server.js");
    cli_process cli({"-t", type, "--ext", R"({"app":{"v":7}})", "-H", "X-Test-Header: from-cli",
                     "-p", "/cli/ext={\"k\":1}", srv.url()});
    REQUIRE(cli.wait(30s));
    INFO(cli.describe());
    CHECK(cli.exit_code() == 0);
    const std::string seen = srv.get("/control/seen");
    INFO(seen);
    CHECK(seen.find(R"("handshakeExt":{"app":{"v":7}})") != std::string::npos);
    CHECK(seen.find(R"("x-test-header":"from-cli")") != std::string::npos);
    CHECK(seen.find("/cli/ext") != std::string::npos);
  }
}
