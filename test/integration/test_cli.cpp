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
#include <ctime>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "child_process.hpp"
#include "rigs.hpp"

using namespace std::chrono_literals;
using json = nlohmann::json;
using uvcometd::test::child_stdio;
using uvcometd::test::server_process;
using uvcometd::test::server_seen;
using uvcometd::test::server_stats;
using uvcometd::test::server_subscribers;
using steady = std::chrono::steady_clock;

namespace {

// The CLI's path; a test fails without it (meson test sets UVCOMETD_CLI).
std::string cli_path() {
  const char* path = uvcometd::test::env_path("UVCOMETD_CLI");
  INFO("UVCOMETD_CLI is not set (meson test sets it)");
  REQUIRE(path != nullptr);
  return path;
}
using uvcometd::test::lines_of;

// One run of the CLI with `args`.
class cli_process : public uvcometd::test::child_process {
 public:
  explicit cli_process(const std::vector<std::string>& args, const child_stdio& io = {})
      : child_process(with_cli(args), io) {}

  // Reads output until `done()` holds, at most `limit`; returns whether it held.
  bool pump_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 20s) {
    const auto deadline = steady::now() + limit;
    while (!done()) {
      if (steady::now() >= deadline) return false;
      pump(20ms);
    }
    return true;
  }

 private:
  static std::vector<std::string> with_cli(const std::vector<std::string>& args) {
    std::vector<std::string> argv{cli_path()};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
};

bool has_line(const std::string& text, const std::string& line) {
  for (const auto& l : lines_of(text)) {
    if (l == line) return true;
  }
  return false;
}

// The Bayeux channels the scripted cli-hostile.js server has received, in order.
std::vector<std::string> hostile_seen(server_process& srv) {
  std::vector<std::string> out;
  try {
    const json seen = server_seen(srv);
    for (const auto& c : seen["channels"]) {
      out.push_back(c.is_string() ? c.get<std::string>() : "");
    }
  } catch (const std::exception&) {
  }
  return out;
}

bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

// The number of handshakes Faye / cometd-nodejs-server has received.
long handshakes(server_process& srv) { return server_stats(srv)["handshakes"].get<long>(); }

// The first byte offset at which `text` could change a terminal's state, or npos: a control
// character other than '\n', DEL, invalid UTF-8, a C1 control, a bidirectional formatting
// character or a line/paragraph separator.
std::size_t terminal_hazard(const std::string& text) {
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if ((c < 0x20 && c != '\n') || c == 0x7f) return i;
      ++i;
      continue;
    }
    std::size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    if (len == 0 || c > 0xF4 || i + len > text.size()) return i;
    unsigned cp = c & (len == 2 ? 0x1Fu : len == 3 ? 0x0Fu : 0x07u);
    for (std::size_t k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(text[i + k]);
      if ((b & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (b & 0x3Fu);
    }
    const unsigned min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    if (cp <= 0x9F || cp == 0x061C || cp == 0x200E || cp == 0x200F ||
        (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0x2028 ||
        cp == 0x2029) {
      return i;
    }
    i += len;
  }
  return std::string::npos;
}

// Checks that the CLI's stderr is safe for a terminal and still holds the hostile server's whole
// text (what follows its NUL included), shown as escapes.
void check_escaped(const std::string& err) {
  const auto at = terminal_hazard(err);
  INFO("hazard at " << at << ": " << (at == std::string::npos ? "" : err.substr(at, 16)));
  CHECK(at == std::string::npos);
  CHECK(err.find("\\e]0;owned\\x07") != std::string::npos);
  CHECK(err.find("\\e[2J") != std::string::npos);
}

// A JSON nesting of `depth` arrays: deeper than 257 the library refuses it.
std::string nested(int depth) {
  return std::string(static_cast<std::size_t>(depth), '[') +
         std::string(static_cast<std::size_t>(depth), ']');
}

// A file in the temporary directory, removed at the end of the scope.
class temp_file {
 public:
  explicit temp_file(const std::string& content) {
    char name[] = "/tmp/uvcometd-cli-test-XXXXXX";
    const int fd = ::mkstemp(name);
    if (fd < 0) throw std::runtime_error("mkstemp failed");
    path_ = name;
    std::size_t done = 0;
    while (done < content.size()) {
      const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
    ::close(fd);
  }
  ~temp_file() { ::unlink(path_.c_str()); }
  temp_file(const temp_file&) = delete;
  temp_file& operator=(const temp_file&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Long enough for "fails at once" to be told from the 10 s the old retries took.
constexpr auto at_once = 5s;

}  // namespace

TEST_CASE("uvcometd-cli exits 3 when the connection timeout runs out", "[integration][cli]") {
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
  const std::vector<std::vector<std::string>> cases = {
      {},                                                  // no URL
      {"--no-such-option", "http://127.0.0.1:9/bayeux"},   // unknown option
      {"-n", "2", "http://127.0.0.1:9/bayeux"},            // -n without -s
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
  server_process srv("faye-server.js");
  cli_process cli({"-s", "/x", "-n", "2", srv.url()});
  // Publish once the subscription reached the server.
  const bool subscribed = cli.pump_until([&] { return server_subscribers(srv, "/x") > 0; });
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

// ---------------------------------------------------------------------------------------------
// Hostile text: what the server says reaches stderr escaped, stdout stays one JSON value per line.

TEST_CASE("uvcometd-cli shows a refused handshake's error text escaped, NUL and all",
          "[integration][cli]") {
  server_process srv("cli-hostile.js");
  cli_process cli({srv.base_url() + "/refuse"});
  REQUIRE(cli.wait(30s));
  INFO(cli.describe());
  CHECK(cli.exit_code() == 1);
  CHECK(cli.out().empty());
  check_escaped(cli.err());
  CHECK(cli.err().find("403") != std::string::npos);
  CHECK(cli.err().find("\\x00after-nul \\u009b1m \xef\xbf\xbd\xef\xbf\xbd \\u202e end") !=
        std::string::npos);
}

TEST_CASE("uvcometd-cli shows an HTTP error body escaped", "[integration][cli]") {
  server_process srv("cli-hostile.js");
  cli_process cli({srv.base_url() + "/http-error"});
  REQUIRE(cli.wait(30s));
  INFO(cli.describe());
  CHECK(cli.exit_code() == 1);
  check_escaped(cli.err());
  CHECK(cli.err().find("HTTP 400") != std::string::npos);
  CHECK(cli.err().find("\\x00after-nul") != std::string::npos);
}

TEST_CASE("uvcometd-cli shows a websocket close reason escaped, in -v lines and the final error",
          "[integration][cli]") {
  server_process srv("cli-hostile.js");
  cli_process cli(
      {"-v", "-t", "websocket", "--connection-timeout", "1", srv.base_url() + "/ws-close"});
  REQUIRE(cli.wait(30s));
  INFO(cli.describe());
  CHECK(cli.exit_code() == 3);
  check_escaped(cli.err());
  CHECK(cli.err().find("state=failed transport=websocket error=") != std::string::npos);
  CHECK(cli.err().find("close code 4000: bye \\e]0;owned\\x07 \\e[2J end") != std::string::npos);
}

TEST_CASE(
    "uvcometd-cli prints one valid JSON line per message: pretty-printed data compacted, "
    "messages with invalid UTF-8 never printed",
    "[integration][cli]") {
  server_process srv("cli-hostile.js");
  // The library skips (and logs) a message that is not valid UTF-8 (RFC 8259); the CLI's own
  // UTF-8 repair of what it prints stays as a second line of defence (see test_cli_args).
  cli_process cli({"-v", "-s", "/hostile/**", "-n", "2", srv.base_url() + "/messages"});
  REQUIRE(cli.wait(30s));
  INFO(cli.describe());
  CHECK(cli.exit_code() == 0);
  const auto lines = uvcometd::test::lines_of(cli.out());
  REQUIRE(lines.size() == 2);
  for (const auto& line : lines) {
    INFO(line);
    CHECK_NOTHROW(json::parse(line));  // nlohmann refuses invalid UTF-8
  }
  CHECK(lines[0] == R"({"channel":"/hostile/b","data":{"n":2,"list":[1,2],)"
                    R"("s":"keep  these  spaces \n and \u00e9"}})");
  CHECK(lines[1] == R"({"channel":"/hostile/d","data":4})");
  CHECK(cli.err().find("skipped a message") != std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// What can be checked before connecting fails at once with 2.

TEST_CASE("uvcometd-cli refuses JSON nested deeper than the library takes, before connecting",
          "[integration][cli]") {
  server_process srv("faye-server.js");
  SECTION("-p") {
    cli_process cli({"-p", "/deep=" + nested(258), srv.url()});
    REQUIRE(cli.wait(at_once));
    INFO(cli.describe());
    CHECK(cli.exit_code() == 2);
    CHECK(cli.err().find("nested deeper than 256 levels") != std::string::npos);
  }
  SECTION("--ext") {
    cli_process cli({"--ext", "{\"a\":" + nested(257) + "}", srv.url()});
    REQUIRE(cli.wait(at_once));
    INFO(cli.describe());
    CHECK(cli.exit_code() == 2);
    CHECK(cli.err().find("--ext: expected a JSON object (nested deeper than 256 levels)") !=
          std::string::npos);
  }
  CHECK(handshakes(srv) == 0);
  SECTION("at the limit, both go through") {
    cli_process cli(
        {"--ext", "{\"a\":" + nested(256) + "}", "-p", "/deep=" + nested(257), srv.url()});
    REQUIRE(cli.wait(30s));
    INFO(cli.describe());
    CHECK(cli.exit_code() == 0);
  }
}

TEST_CASE("uvcometd-cli fails at once with 2 on a URL it cannot use", "[integration][cli]") {
  for (const char* url : {"http://", "http://127.0.0.1:abc/bayeux", "http:///bayeux",
                          "http://:8080/bayeux", "http://127.0.0.1:70000/", "ftp://127.0.0.1/"}) {
    INFO(url);
    const auto start = steady::now();
    cli_process cli({url});
    REQUIRE(cli.wait(at_once));
    INFO(cli.describe());
    CHECK(cli.exit_code() == 2);
    CHECK(steady::now() - start < at_once);
    CHECK(cli.err().find("uvcometd-cli: invalid URL '" + std::string(url) + "': ") !=
          std::string::npos);
  }
}

TEST_CASE("uvcometd-cli fails at once with 2 on an unreadable --cacert", "[integration][cli]") {
  for (const char* file : {"/nonexistent/ca.pem", "/"}) {
    INFO(file);
    cli_process cli({"--cacert", file, "https://127.0.0.1:9/bayeux"});
    REQUIRE(cli.wait(at_once));
    INFO(cli.describe());
    CHECK(cli.exit_code() == 2);
    CHECK(cli.err().find("uvcometd-cli: --cacert " + std::string(file) + ": ") !=
          std::string::npos);
  }
}

TEST_CASE("uvcometd-cli refuses invalid channels before connecting", "[integration][cli]") {
  server_process srv("faye-server.js");
  const std::vector<std::vector<std::string>> cases = {
      {"-s", "/a/**/b"}, {"-s", "/a//b"},  {"-s", "/meta/connect"},
      {"-p", "/a/*={}"}, {"-p", "/a/={}"},
  };
  for (auto args : cases) {
    INFO(args[0] << " " << args[1]);
    args.push_back(srv.url());
    cli_process cli(args);
    REQUIRE(cli.wait(at_once));
    INFO(cli.describe());
    CHECK(cli.exit_code() == 2);
    CHECK(cli.err().find("'" + args[1].substr(0, args[1].find('=')) + "'") != std::string::npos);
  }
  CHECK(handshakes(srv) == 0);
}

// ---------------------------------------------------------------------------------------------
// stdout errors and signals

TEST_CASE("uvcometd-cli -n 1 > /dev/full exits 1 after the write error", "[integration][cli]") {
  server_process srv("faye-server.js");
  child_stdio io;
  io.stdout_file = "/dev/full";
  cli_process cli({"-s", "/full", "-n", "1", srv.url()}, io);
  REQUIRE(cli.pump_until([&] { return server_subscribers(srv, "/full") > 0; }));
  srv.publish("/full", R"({"k":1})");
  REQUIRE(cli.wait(30s));
  INFO(cli.describe());
  CHECK(cli.exit_code() == 1);
  CHECK(cli.err().find("uvcometd-cli: stdout: No space left on device") != std::string::npos);
}

TEST_CASE(
    "uvcometd-cli exits 141 without dying of SIGPIPE when its reader goes away, and "
    "disconnects",
    "[integration][cli]") {
  server_process srv("faye-server.js");
  cli_process cli({"-s", "/pipe", srv.url()});
  REQUIRE(cli.pump_until([&] { return server_subscribers(srv, "/pipe") > 0; }));
  cli.close_stdout();
  srv.publish("/pipe", R"({"k":1})");
  REQUIRE(cli.wait(30s));
  INFO(cli.describe());
  CHECK(cli.term_signal() == 0);
  CHECK(cli.exit_code() == 141);
  CHECK(cli.err().empty());
  const json seen = server_seen(srv);
  INFO(seen.dump());
  CHECK(seen["channels"].back() == "/meta/disconnect");
}

TEST_CASE("uvcometd-cli ended by a signal before any session exits 128+N", "[integration][cli]") {
  for (const int sig : {SIGINT, SIGTERM, SIGHUP}) {
    INFO("signal " << sig);
    // The discard port: nothing listens; the default connection timeout (10 s) keeps retrying.
    cli_process cli({"-v", "http://127.0.0.1:9/bayeux"});
    // The state line comes after the handlers are installed.
    REQUIRE(
        cli.pump_until([&] { return cli.err().find("state=connecting") != std::string::npos; }));
    cli.send_signal(sig);
    REQUIRE(cli.wait(at_once));
    INFO(cli.describe());
    CHECK(cli.term_signal() == 0);
    CHECK(cli.exit_code() == 128 + sig);
  }
}

TEST_CASE(
    "uvcometd-cli ended by SIGINT, SIGTERM or SIGHUP after subscribing disconnects and "
    "exits 0",
    "[integration][cli]") {
  for (const int sig : {SIGINT, SIGTERM, SIGHUP}) {
    INFO("signal " << sig);
    server_process srv("faye-server.js");
    cli_process cli({"-s", "/sig", srv.url()});
    REQUIRE(cli.pump_until([&] { return server_subscribers(srv, "/sig") > 0; }));
    cli.send_signal(sig);
    REQUIRE(cli.wait(30s));
    INFO(cli.describe());
    CHECK(cli.term_signal() == 0);
    CHECK(cli.exit_code() == 0);
    CHECK(server_seen(srv)["channels"].back() == "/meta/disconnect");
    CHECK(server_subscribers(srv, "/sig") == 0);
  }
}

TEST_CASE("uvcometd-cli: a second SIGINT stops waiting for the disconnect reply",
          "[integration][cli]") {
  server_process srv("cli-hostile.js");  // never answers /meta/disconnect
  cli_process cli({"-s", "/x", "-t", "long-polling", srv.base_url() + "/mute-disconnect"});
  REQUIRE(cli.pump_until([&] { return contains(hostile_seen(srv), "/meta/subscribe"); }));
  cli.send_signal(SIGINT);
  REQUIRE(cli.pump_until([&] { return contains(hostile_seen(srv), "/meta/disconnect"); }));
  const auto second = steady::now();
  cli.send_signal(SIGINT);
  REQUIRE(cli.wait(30s));
  const auto took = steady::now() - second;
  INFO(cli.describe());
  // The client would otherwise wait disconnect_timeout (2 s) for the reply.
  CHECK(took < 1s);
  CHECK(cli.exit_code() == 0);
}

// ---------------------------------------------------------------------------------------------
// -v and the library's log

TEST_CASE("uvcometd-cli -v shows the library's log from info up, -vv from debug up",
          "[integration][cli]") {
  SECTION("-v: an info line (the websocket fallback), no debug lines") {
    server_process srv("faye-server.js", {"--upgrade", "1"});
    cli_process cli({"-v", srv.url()});
    REQUIRE(cli.wait(30s));
    INFO(cli.describe());
    CHECK(cli.exit_code() == 0);
    CHECK(cli.err().find("uvcometd-cli: [info] websocket unavailable") != std::string::npos);
    CHECK(cli.err().find("[debug]") == std::string::npos);
    CHECK(has_line(cli.err(), "state=connected transport=long-polling"));
  }
  SECTION("-vv: a debug line for each failed attempt while retrying") {
    cli_process cli({"-vv", "--connection-timeout", "1", "http://127.0.0.1:9/bayeux"});
    REQUIRE(cli.wait(30s));
    INFO(cli.describe());
    CHECK(cli.exit_code() == 3);
    std::size_t failed = 0;
    for (const auto& line : uvcometd::test::lines_of(cli.err())) {
      if (line.rfind("uvcometd-cli: [debug] ", 0) == 0 &&
          line.find("connection refused") != std::string::npos) {
        ++failed;
      }
    }
    CHECK(failed >= 2);
  }
  SECTION("without -v: nothing but the error") {
    cli_process cli({"--connection-timeout", "1", "http://127.0.0.1:9/bayeux"});
    REQUIRE(cli.wait(30s));
    INFO(cli.describe());
    CHECK(uvcometd::test::lines_of(cli.err()).size() == 1);
  }
}

TEST_CASE("uvcometd-cli states an error's kind once", "[integration][cli]") {
  // A body that is not the gzip its Content-Encoding claims: libcurl's error, which the
  // long-polling transport describes as "transport error: ...".
  server_process srv("cli-hostile.js");
  cli_process cli(
      {"--connection-timeout", "1", "-t", "long-polling", srv.base_url() + "/bad-encoding"});
  REQUIRE(cli.wait(30s));
  INFO(cli.describe());
  CHECK(cli.exit_code() == 3);
  CHECK(cli.err().find("transport error: transport error") == std::string::npos);
  CHECK(cli.err().find("transport error: ") != std::string::npos);
}

TEST_CASE("uvcometd-cli --version prints the project's version", "[integration][cli]") {
  cli_process cli({"--version"});
  REQUIRE(cli.wait(at_once));
  INFO(cli.describe());
  CHECK(cli.exit_code() == 0);
  CHECK(cli.out() == std::string("uvcometd-cli ") + UVCOMETD_PROJECT_VERSION + "\n");
}

// ---------------------------------------------------------------------------------------------
// Publishing stdin

TEST_CASE(
    "uvcometd-cli -p CHANNEL=- publishes each line of a pipe as it comes and exits 0 "
    "once all are acknowledged",
    "[integration][cli]") {
  server_process srv("faye-server.js");
  cli_process sub({"-s", "/in", "-n", "3", srv.url()});
  REQUIRE(sub.pump_until([&] { return server_subscribers(srv, "/in") > 0; }));
  child_stdio io;
  io.stdin_pipe = true;
  cli_process pub({"-p", "/in=-", srv.url()}, io);
  REQUIRE(pub.write_stdin("{\"n\":1}\n"));
  // Published while stdin is still open.
  REQUIRE(sub.pump_until([&] { return sub.out().find("\"n\":1") != std::string::npos; }));
  REQUIRE(pub.write_stdin("\n[2, 3]\n\"no newline at the end\""));
  pub.close_stdin();
  REQUIRE(pub.wait(30s));
  INFO(pub.describe());
  CHECK(pub.exit_code() == 0);
  CHECK(pub.err().empty());
  REQUIRE(sub.wait(30s));
  INFO(sub.describe());
  CHECK(uvcometd::test::lines_of(sub.out()) ==
        std::vector<std::string>{R"({"channel":"/in","data":{"n":1}})",
                                 R"({"channel":"/in","data":[2,3]})",
                                 R"({"channel":"/in","data":"no newline at the end"})"});
}

TEST_CASE(
    "uvcometd-cli -p CHANNEL=- reports invalid lines with their number, publishes the "
    "others, and exits 1",
    "[integration][cli]") {
  server_process srv("faye-server.js");
  cli_process sub({"-s", "/in", "-n", "2", srv.url()});
  REQUIRE(sub.pump_until([&] { return server_subscribers(srv, "/in") > 0; }));
  temp_file lines("{\"a\":1}\n\nnot json\n[1,\n\"ok\"\n" + nested(258) + "\n");
  child_stdio io;
  io.stdin_file = lines.path();  // a regular file: read on the thread pool
  cli_process pub({"-p", "/in=-", srv.url()}, io);
  REQUIRE(pub.wait(30s));
  INFO(pub.describe());
  CHECK(pub.exit_code() == 1);
  CHECK(uvcometd::test::lines_of(pub.err()) ==
        std::vector<std::string>{"uvcometd-cli: stdin:3: invalid JSON (line skipped)",
                                 "uvcometd-cli: stdin:4: invalid JSON (line skipped)",
                                 "uvcometd-cli: stdin:6: nested deeper than 256 levels "
                                 "(line skipped)"});
  REQUIRE(sub.wait(30s));
  CHECK(uvcometd::test::lines_of(sub.out()) ==
        std::vector<std::string>{R"({"channel":"/in","data":{"a":1}})",
                                 R"({"channel":"/in","data":"ok"})"});
}

TEST_CASE("uvcometd-cli -p CHANNEL=- skips a line longer than 16 MiB and publishes the rest",
          "[integration][cli]") {
  server_process srv("faye-server.js");
  cli_process sub({"-s", "/in", "-n", "2", srv.url()});
  REQUIRE(sub.pump_until([&] { return server_subscribers(srv, "/in") > 0; }));
  temp_file lines("{\"a\":1}\n\"" + std::string((16u << 20) + 1, 'x') + "\"\n{\"b\":2}\n");
  child_stdio io;
  io.stdin_pipe = true;  // 64 KiB reads: the long line arrives over many of them
  cli_process pub({"-p", "/in=-", srv.url()}, io);
  std::ifstream in(lines.path(), std::ios::binary);
  std::string chunk(1 << 20, '\0');
  while (in.read(&chunk[0], static_cast<std::streamsize>(chunk.size())) || in.gcount() > 0) {
    REQUIRE(pub.write_stdin(chunk.substr(0, static_cast<std::size_t>(in.gcount()))));
    pub.pump(0ms);
  }
  pub.close_stdin();
  REQUIRE(pub.wait(60s));
  INFO(pub.describe());
  CHECK(pub.exit_code() == 1);
  CHECK(
      uvcometd::test::lines_of(pub.err()) ==
      std::vector<std::string>{"uvcometd-cli: stdin:2: line longer than 16777216 bytes (skipped)"});
  REQUIRE(sub.wait(30s));
  CHECK(uvcometd::test::lines_of(sub.out()) ==
        std::vector<std::string>{R"({"channel":"/in","data":{"a":1}})",
                                 R"({"channel":"/in","data":{"b":2}})"});
}

TEST_CASE("uvcometd-cli -p CHANNEL=- streams more lines than it keeps in flight, in order",
          "[integration][cli]") {
  constexpr int n = 2000;  // well above the 256 publishes the CLI keeps unacknowledged
  server_process srv("faye-server.js");
  cli_process sub({"-s", "/many", "-n", std::to_string(n), srv.url()});
  REQUIRE(sub.pump_until([&] { return server_subscribers(srv, "/many") > 0; }));
  std::string input;
  for (int i = 0; i < n; ++i) input += "{\"i\":" + std::to_string(i) + "}\n";
  temp_file lines(input);
  child_stdio io;
  io.stdin_file = lines.path();
  cli_process pub({"-p", "/many=-", "-t", "long-polling", srv.url()}, io);
  REQUIRE(pub.wait(60s));
  INFO(pub.describe());
  CHECK(pub.exit_code() == 0);
  REQUIRE(sub.wait(60s));
  const auto got = uvcometd::test::lines_of(sub.out());
  REQUIRE(got.size() == static_cast<std::size_t>(n));
  for (int i = 0; i < n; i += 199) {
    CHECK(got[static_cast<std::size_t>(i)] ==
          "{\"channel\":\"/many\",\"data\":{\"i\":" + std::to_string(i) + "}}");
  }
}

// ---------------------------------------------------------------------------------------------
// Output format, extensions, secrets, --forever

TEST_CASE("uvcometd-cli --format data prints the data alone; --timestamps adds the time",
          "[integration][cli]") {
  server_process srv("faye-server.js");
  const auto before = std::time(nullptr);
  cli_process data({"-s", "/f", "-n", "2", "--format", "data", srv.url()});
  cli_process stamped({"-s", "/f", "-n", "2", "--format", "data", "--timestamps", srv.url()});
  cli_process json_ts({"-s", "/f", "-n", "2", "--timestamps", srv.url()});
  REQUIRE(data.pump_until([&] { return server_subscribers(srv, "/f") >= 3; }));
  srv.publish("/f", R"({"k":"v"})", 2);
  for (cli_process* c : {&data, &stamped, &json_ts}) {
    REQUIRE(c->wait(30s));
    INFO(c->describe());
    CHECK(c->exit_code() == 0);
  }
  CHECK(uvcometd::test::lines_of(data.out()) ==
        std::vector<std::string>{R"({"k":"v","seq":0})", R"({"k":"v","seq":1})"});
  const auto after = std::time(nullptr);
  // "2024-05-06T07:08:09.123Z" within the run.
  const auto in_run = [&](const std::string& ts) {
    std::tm tm{};
    if (ts.size() != 24 || ts[23] != 'Z' ||
        ::strptime(ts.c_str(), "%Y-%m-%dT%H:%M:%S", &tm) == nullptr) {
      return false;
    }
    const std::time_t t = ::timegm(&tm);
    return t >= before && t <= after;
  };
  const auto s = uvcometd::test::lines_of(stamped.out());
  REQUIRE(s.size() == 2);
  for (std::size_t i = 0; i < 2; ++i) {
    INFO(s[i]);
    CHECK(in_run(s[i].substr(0, 24)));
    CHECK(s[i].substr(24) == " {\"k\":\"v\",\"seq\":" + std::to_string(i) + "}");
  }
  const auto j = uvcometd::test::lines_of(json_ts.out());
  REQUIRE(j.size() == 2);
  for (std::size_t i = 0; i < 2; ++i) {
    INFO(j[i]);
    const json line = json::parse(j[i]);
    CHECK(line["channel"] == "/f");
    CHECK(line["data"]["seq"] == i);
    CHECK(in_run(line["ts"].get<std::string>()));
    CHECK(j[i].rfind(R"({"channel":"/f","data":)", 0) == 0);  // the fields of old come first
  }
}

TEST_CASE("uvcometd-cli --ack asks for acknowledged messages and receives with them",
          "[integration][cli]") {
  SECTION("the handshake carries ext.ack") {
    server_process srv("faye-server.js");
    cli_process cli({"--ack", srv.url()});
    REQUIRE(cli.wait(30s));
    INFO(cli.describe());
    CHECK(cli.exit_code() == 0);
    CHECK(server_seen(srv)["handshakeExt"]["ack"] == true);
  }
  SECTION("against a server with the ack extension") {
    server_process srv("cometd-server.js", {"--ack", "1"});
    cli_process cli({"--ack", "-s", "/acked", "-n", "3", srv.url()});
    REQUIRE(cli.pump_until([&] { return server_subscribers(srv, "/acked") > 0; }));
    srv.publish("/acked", R"({"k":1})", 3);
    REQUIRE(cli.wait(30s));
    INFO(cli.describe());
    CHECK(cli.exit_code() == 0);
    CHECK(uvcometd::test::lines_of(cli.out()).size() == 3);
  }
}

TEST_CASE("uvcometd-cli --replay-from ID receives the events after ID", "[integration][cli]") {
  server_process srv("faye-server.js");
  srv.publish("/replay/a", R"({"v":1})", 5);  // replay ids 1..5, before anyone subscribed
  const auto replay_ids = [](const std::string& out) {
    std::vector<long> ids;
    for (const auto& l : uvcometd::test::lines_of(out)) {
      ids.push_back(json::parse(l)["data"]["event"]["replayId"].get<long>());
    }
    return ids;
  };
  SECTION("an id") {
    cli_process cli({"--replay-from", "3", "-s", "/replay/a", "-n", "2", srv.url()});
    REQUIRE(cli.wait(30s));
    INFO(cli.describe());
    CHECK(cli.exit_code() == 0);
    CHECK(replay_ids(cli.out()) == std::vector<long>{4, 5});
    CHECK(server_seen(srv)["subscribeExt"]["replay"]["/replay/a"] == 3);
  }
  SECTION("-2: every event kept") {
    cli_process cli({"--replay-from", "-2", "-s", "/replay/a", "-n", "5", srv.url()});
    REQUIRE(cli.wait(30s));
    INFO(cli.describe());
    CHECK(cli.exit_code() == 0);
    CHECK(replay_ids(cli.out()) == std::vector<long>{1, 2, 3, 4, 5});
  }
}

TEST_CASE("uvcometd-cli takes headers from --header-file and UVCOMETD_HEADERS, off argv",
          "[integration][cli]") {
  server_process srv("faye-server.js");
  temp_file file("# secrets\nAuthorization: Bearer from-file\r\n\nX-File-Two: 2\n");
  child_stdio io;
  io.env = {"UVCOMETD_HEADERS=X-From-Env: e1\nX-Env-Two: 2"};
  for (const char* type : {"long-polling", "websocket"}) {
    INFO(type);
    cli_process cli(
        {"-t", type, "--header-file", file.path(), "-H", "X-Argv: a", "-p", "/h={}", srv.url()},
        io);
    REQUIRE(cli.wait(30s));
    INFO(cli.describe());
    CHECK(cli.exit_code() == 0);
    const json headers = server_seen(srv)["headers"];
    INFO(headers.dump());
    CHECK(headers["authorization"] == "Bearer from-file");
    CHECK(headers["x-file-two"] == "2");
    CHECK(headers["x-from-env"] == "e1");
    CHECK(headers["x-env-two"] == "2");
    CHECK(headers["x-argv"] == "a");
  }
  SECTION("a malformed line is a usage error naming the file and line, not the secret") {
    temp_file bad("X-Ok: 1\nBearer-s3cret-token\n");
    cli_process cli({"--header-file", bad.path(), srv.url()});
    REQUIRE(cli.wait(at_once));
    INFO(cli.describe());
    CHECK(cli.exit_code() == 2);
    CHECK(cli.err().find(bad.path() + ":2: expected 'Name: value'") != std::string::npos);
    CHECK(cli.err().find("s3cret") == std::string::npos);
  }
  SECTION("so is a malformed UVCOMETD_HEADERS, and an unreadable file") {
    child_stdio bad_env;
    bad_env.env = {"UVCOMETD_HEADERS=s3cret"};
    cli_process cli({srv.url()}, bad_env);
    REQUIRE(cli.wait(at_once));
    INFO(cli.describe());
    CHECK(cli.exit_code() == 2);
    CHECK(cli.err().find("UVCOMETD_HEADERS:1: expected 'Name: value'") != std::string::npos);
    CHECK(cli.err().find("s3cret") == std::string::npos);
    cli_process missing({"--header-file", "/nonexistent/headers", srv.url()});
    REQUIRE(missing.wait(at_once));
    CHECK(missing.exit_code() == 2);
    CHECK(missing.err().find("--header-file /nonexistent/headers: No such file or directory") !=
          std::string::npos);
  }
}

TEST_CASE("uvcometd-cli --forever keeps retrying past the default connection timeout",
          "[integration][cli]") {
  // What "forever" means here: longer than the default 10 s after which the CLI gives up.
  constexpr auto past_default_timeout = 11s;
  cli_process cli({"--forever", "-s", "/x", "http://127.0.0.1:9/bayeux"});
  cli.pump(past_default_timeout);
  INFO(cli.describe());
  REQUIRE_FALSE(cli.exited());
  cli.send_signal(SIGINT);
  REQUIRE(cli.wait(at_once));
  INFO(cli.describe());
  CHECK(cli.exit_code() == 128 + SIGINT);  // never connected
}

// ---------------------------------------------------------------------------------------------
// Documentation

TEST_CASE("every option of uvcometd-cli --help is in the manual page and the README",
          "[integration][cli]") {
  cli_process help({"--help"});
  REQUIRE(help.wait(at_once));
  const std::string root = uvcometd::test::servers_dir() + "/../..";
  const auto read = [](const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  std::string man = read(root + "/samples/uvcometd-cli.1");
  REQUIRE_FALSE(man.empty());
  for (std::size_t at; (at = man.find("\\-")) != std::string::npos;) man.replace(at, 2, "-");
  const std::string readme = read(root + "/README.md");
  std::size_t options = 0;
  for (std::size_t at = 0; (at = help.out().find("--", at)) != std::string::npos;) {
    const auto end = help.out().find_first_not_of("abcdefghijklmnopqrstuvwxyz-", at + 2);
    const std::string name = help.out().substr(at, end - at);
    at = end;
    if (name.size() < 3) continue;
    ++options;
    INFO(name);
    CHECK(man.find(name) != std::string::npos);
    CHECK(readme.find(name) != std::string::npos);
  }
  CHECK(options >= 20);
  for (const char* word : {"UVCOMETD_HEADERS", "EXIT STATUS", "141", "130"}) {
    INFO(word);
    CHECK(man.find(word) != std::string::npos);
  }
  SECTION("groff reads the page without a warning") {
    if (::access("/usr/bin/groff", X_OK) != 0) {
      WARN("groff is not installed: the manual page's syntax is not checked");
      return;
    }
    uvcometd::test::child_process groff(
        {"/usr/bin/groff", "-man", "-ww", "-z", root + "/samples/uvcometd-cli.1"});
    REQUIRE(groff.wait(30s));
    INFO(groff.describe());
    CHECK(groff.exit_code() == 0);
    CHECK(groff.err().empty());
  }
}

// ---------------------------------------------------------------------------------------------
// --call, --call-timeout and --meta (issue 15)

TEST_CASE("uvcometd-cli --call prints each reply's data as one JSON line and exits 0",
          "[integration][cli]") {
  const std::string script =
      GENERATE(std::string("faye-server.js"), std::string("cometd-server.js"));
  server_process srv(script);
  cli_process cli({"--call", "echo={\"n\": 1}", "--call", "echo=[2, 3]", srv.url()});
  REQUIRE(cli.wait(30s));
  INFO(script << "\n" << cli.describe());
  CHECK(cli.exit_code() == 0);
  const auto lines = lines_of(cli.out());
  REQUIRE(lines.size() == 2);
  // Replies may come in any order; each is printed compactly on its own line.
  CHECK(((lines[0] == R"({"n":1})" && lines[1] == "[2,3]") ||
         (lines[1] == R"({"n":1})" && lines[0] == "[2,3]")));
}

TEST_CASE("uvcometd-cli --call exits 1 with the server's error for a refused call",
          "[integration][cli]") {
  server_process srv("cometd-server.js");
  cli_process cli({"--call", "refuse={}", srv.url()});
  REQUIRE(cli.wait(30s));
  INFO(cli.describe());
  CHECK(cli.exit_code() == 1);
  CHECK(cli.out().empty());
  CHECK(cli.err().find("call refuse") != std::string::npos);
  CHECK(cli.err().find("refused by the test server") != std::string::npos);
}

TEST_CASE("uvcometd-cli --call-timeout bounds a call nobody answers", "[integration][cli]") {
  server_process srv("faye-server.js");
  const auto start = steady::now();
  cli_process cli({"--call", "silent={}", "--call-timeout", "1", srv.url()});
  REQUIRE(cli.wait(30s));
  INFO(cli.describe());
  CHECK(cli.exit_code() == 1);
  CHECK(steady::now() - start >= 1s);
  CHECK(steady::now() - start < 10s);
  CHECK(cli.err().find("timed out") != std::string::npos);
}

TEST_CASE("uvcometd-cli --meta -v prints the meta replies on stderr", "[integration][cli]") {
  server_process srv("faye-server.js");
  cli_process cli({"--meta", "-v", "-p", "/m={}", "-t", "long-polling", srv.url()});
  REQUIRE(cli.wait(30s));
  INFO(cli.describe());
  CHECK(cli.exit_code() == 0);
  CHECK(cli.err().find("meta /meta/handshake successful") != std::string::npos);
  CHECK(cli.err().find("meta /meta/connect successful") != std::string::npos);
  CHECK(cli.out().empty());
}
