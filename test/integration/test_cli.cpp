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

#include "server_process.hpp"

extern char** environ;

using namespace std::chrono_literals;
using uvcometd::test::server_process;
using steady = std::chrono::steady_clock;

namespace {

const char* cli_path() {
  const char* p = std::getenv("UVCOMETD_CLI");
  return (p != nullptr && *p != '\0') ? p : nullptr;
}

// One run of the CLI: stdout and stderr captured through pipes, stdin from /dev/null. The
// destructor kills (SIGKILL) and reaps a child still running.
class cli_process {
 public:
  explicit cli_process(const std::vector<std::string>& args) {
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
    if (::pipe2(err, O_CLOEXEC) != 0) {
      ::close(out[0]);
      ::close(out[1]);
      throw std::runtime_error("pipe2 failed");
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    std::vector<std::string> argv_s;
    argv_s.emplace_back(cli_path());
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, argv_s[0].c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(out[1]);
    ::close(err[1]);
    out_fd_ = out[0];
    err_fd_ = err[0];
    ::fcntl(out_fd_, F_SETFL, ::fcntl(out_fd_, F_GETFL) | O_NONBLOCK);
    ::fcntl(err_fd_, F_SETFL, ::fcntl(err_fd_, F_GETFL) | O_NONBLOCK);
    if (rc != 0) {
      pid_ = 0;
      close_fds();
      throw std::runtime_error(std::string("posix_spawn: ") + std::strerror(rc));
    }
  }
  ~cli_process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
      }
    }
    close_fds();
  }
  cli_process(const cli_process&) = delete;
  cli_process& operator=(const cli_process&) = delete;

  // Reads output for up to `d` (returns early when both pipes ended and the child exited).
  void pump(std::chrono::milliseconds d) {
    const auto deadline = steady::now() + d;
    while (!finished()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
      if (left.count() <= 0) break;
      poll_once(static_cast<int>(std::min<long long>(left.count(), 50)));
    }
  }

  // Waits for the child to exit and both pipes to end, at most `limit`; kills it on timeout.
  // Returns true when it exited by itself in time.
  bool wait(std::chrono::milliseconds limit) {
    pump(limit);
    if (finished()) return true;
    timed_out_ = true;
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
      }
      status_ = st;
      pid_ = 0;
    }
    // Collect what is left (the pipes end with the child).
    for (int i = 0; i < 20 && (out_fd_ >= 0 || err_fd_ >= 0); ++i) poll_once(50);
    return false;
  }

  bool timed_out() const { return timed_out_; }
  bool exited() const { return pid_ == 0 && WIFEXITED(status_); }
  // The exit status, or -1 when killed by a signal (or not exited yet).
  int exit_code() const { return pid_ == 0 && WIFEXITED(status_) ? WEXITSTATUS(status_) : -1; }
  int term_signal() const { return pid_ == 0 && WIFSIGNALED(status_) ? WTERMSIG(status_) : 0; }
  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }
  std::string describe() const {
    return "exit " + std::to_string(exit_code()) + " signal " + std::to_string(term_signal()) +
           (timed_out_ ? " (timed out, killed)" : "") + "\n--- stdout ---\n" + out_ +
           "--- stderr ---\n" + err_;
  }

 private:
  bool finished() const { return out_fd_ < 0 && err_fd_ < 0 && pid_ == 0; }

  void poll_once(int timeout_ms) {
    pollfd fds[2];
    int n = 0;
    if (out_fd_ >= 0) fds[n++] = {out_fd_, POLLIN, 0};
    if (err_fd_ >= 0) fds[n++] = {err_fd_, POLLIN, 0};
    if (n > 0) {
      const int rc = ::poll(fds, static_cast<nfds_t>(n), timeout_ms);
      if (rc > 0) {
        for (int i = 0; i < n; ++i) {
          if (fds[i].revents == 0) continue;
          if (fds[i].fd == out_fd_) drain(out_fd_, out_);
          else if (fds[i].fd == err_fd_) drain(err_fd_, err_);
        }
      }
    } else if (pid_ > 0) {
      ::usleep(static_cast<useconds_t>(timeout_ms) * 1000u);
    }
    reap();
  }

  static void drain(int& fd, std::string& into) {
    char buf[4096];
    for (;;) {
      const ssize_t r = ::read(fd, buf, sizeof buf);
      if (r > 0) {
        into.append(buf, static_cast<std::size_t>(r));
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      ::close(fd);  // EOF or error
      fd = -1;
      return;
    }
  }

  void reap() {
    if (pid_ <= 0) return;
    int st = 0;
    const pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = st;
      pid_ = 0;
    }
  }

  void close_fds() {
    if (out_fd_ >= 0) ::close(out_fd_);
    if (err_fd_ >= 0) ::close(err_fd_);
    out_fd_ = err_fd_ = -1;
  }

  pid_t pid_ = 0;
  int status_ = 0;
  int out_fd_ = -1;
  int err_fd_ = -1;
  bool timed_out_ = false;
  std::string out_;
  std::string err_;
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

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    auto nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    out.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
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
