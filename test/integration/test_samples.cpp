// The samples end to end: each runs as a child process against a real server (path in env
// UVCOMETD_NLOHMANN_SAMPLE for nlohmann-chat); checks exit status and output.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "server_process.hpp"

extern char** environ;

using namespace std::chrono_literals;
using uvcometd::test::server_process;

namespace {

const char* nlohmann_sample() {
  const char* p = std::getenv("UVCOMETD_NLOHMANN_SAMPLE");
  return (p != nullptr && *p != '\0') ? p : nullptr;
}

// An anonymous temporary file (for a child's stdout or stderr).
class temp_file {
 public:
  temp_file() {
    char name[] = "/tmp/uvcometd-sample-XXXXXX";
    fd_ = ::mkstemp(name);
    if (fd_ < 0) throw std::runtime_error(std::string("mkstemp: ") + std::strerror(errno));
    ::unlink(name);
  }
  ~temp_file() { ::close(fd_); }
  temp_file(const temp_file&) = delete;
  temp_file& operator=(const temp_file&) = delete;
  int fd() const { return fd_; }
  std::string contents() const {
    std::string s;
    char buf[4096];
    for (off_t off = 0;;) {
      const ssize_t r = ::pread(fd_, buf, sizeof buf, off);
      if (r <= 0) break;
      s.append(buf, static_cast<std::size_t>(r));
      off += r;
    }
    return s;
  }

 private:
  int fd_ = -1;
};

// One run of a program to completion: stdin /dev/null, stdout and stderr captured. A child still
// running after `limit` is killed (SIGKILL).
struct run_result {
  int exit_code = -1;  // -1 when killed by a signal or timed out
  bool timed_out = false;
  std::string out, err;
  std::string describe() const {
    return "exit " + std::to_string(exit_code) + (timed_out ? " (timed out, killed)" : "") +
           "\n--- stdout ---\n" + out + "--- stderr ---\n" + err;
  }
};

run_result run(const std::vector<std::string>& args, std::chrono::milliseconds limit) {
  temp_file out, err;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out.fd(), 1);
  posix_spawn_file_actions_adddup2(&fa, err.fd(), 2);
  std::vector<std::string> argv_s = args;
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error(std::string("posix_spawn: ") + std::strerror(rc));

  run_result r;
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    const pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) throw std::runtime_error("waitpid failed");
    if (std::chrono::steady_clock::now() >= deadline) {
      r.timed_out = true;
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    std::this_thread::sleep_for(20ms);
  }
  if (!r.timed_out && WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  r.out = out.contents();
  r.err = err.contents();
  return r;
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

#define SKIP_WITHOUT(path, what)                                            \
  if ((path) == nullptr) {                                                  \
    WARN(what " was not built (its dependency is missing): not tested"); \
    SUCCEED();                                                              \
    return;                                                                 \
  }

}  // namespace

TEST_CASE("nlohmann-chat receives every message it published to its channel, then exits 0",
          "[integration][samples]") {
  SKIP_WITHOUT(nlohmann_sample(), "nlohmann-chat");
  server_process srv("faye-server.js");
  const auto r = run({nlohmann_sample(), srv.url(), "/chat/room1", "4"}, 30s);
  INFO(r.describe());
  CHECK(r.exit_code == 0);
  CHECK(r.err.empty());
  auto lines = lines_of(r.out);
  std::sort(lines.begin(), lines.end());  // the sample does not promise an order
  CHECK(lines == std::vector<std::string>{
                     R"({"seq":0,"text":"hello"})", R"({"seq":1,"text":"hello"})",
                     R"({"seq":2,"text":"hello"})", R"({"seq":3,"text":"hello"})"});
  // It left by /meta/disconnect: the server holds no client and no subscriber any more.
  const std::string stats = srv.get("/control/stats");
  INFO("stats: " << stats);
  CHECK(stats.find(R"("clients":0,)") != std::string::npos);
  CHECK(stats.find(R"("/chat/room1")") == std::string::npos);
}

TEST_CASE("nlohmann-chat exits 2 on a usage error", "[integration][samples]") {
  SKIP_WITHOUT(nlohmann_sample(), "nlohmann-chat");
  const std::vector<std::vector<std::string>> cases = {
      {},                                                   // no URL, no channel
      {"http://127.0.0.1:9/bayeux"},                        // no channel
      {"http://127.0.0.1:9/bayeux", "/chat", "zero"},       // count not a number
      {"http://127.0.0.1:9/bayeux", "/chat", "0"},          // count out of range
      {"ftp://127.0.0.1:9/bayeux", "/chat"},                // not an http(s) URL
  };
  for (const auto& args : cases) {
    std::vector<std::string> argv{nlohmann_sample()};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto r = run(argv, 15s);
    INFO(r.describe());
    CHECK(r.exit_code == 2);
    CHECK(r.out.empty());
    CHECK(r.err.find("nlohmann-chat") != std::string::npos);
  }
}
