// Test helper: runs a program (the CLI, a sample) as a child process with its output captured,
// and splits output into lines. Header-only; one object from one thread.
#pragma once

#include <fcntl.h>
#include <poll.h>
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
#include <vector>

extern char** environ;

namespace uvcometd::test {

// The path in environment variable `name`, or nullptr when unset or empty.
inline const char* env_path(const char* name) {
  const char* p = std::getenv(name);
  return (p != nullptr && *p != '\0') ? p : nullptr;
}

// How a child's standard streams and environment are set up; the defaults are stdin from
// /dev/null, stdout and stderr captured, the parent's environment.
struct child_stdio {
  std::string stdin_file = "/dev/null";  // stdin read from this file...
  bool stdin_pipe = false;       // ...or from a pipe the test feeds (write_stdin, close_stdin)
  std::string stdout_file;       // when set, stdout is opened for writing there instead of captured
  std::vector<std::string> env;  // "NAME=value" entries added to (or replacing in) the environment
};

// One run of a program (argv[0] is its path): stdout and stderr captured through pipes, stdin
// from /dev/null unless `io` says otherwise. The destructor kills (SIGKILL) and reaps a child
// still running.
class child_process {
 public:
  explicit child_process(const std::vector<std::string>& argv_s, const child_stdio& io = {}) {
    int out[2] = {-1, -1}, err[2], in[2] = {-1, -1};
    if (::pipe2(err, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
    if ((io.stdout_file.empty() && ::pipe2(out, O_CLOEXEC) != 0) ||
        (io.stdin_pipe && ::pipe2(in, O_CLOEXEC) != 0)) {
      for (int fd : {out[0], out[1], err[0], err[1], in[0], in[1]}) {
        if (fd >= 0) ::close(fd);
      }
      throw std::runtime_error("pipe2 failed");
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (io.stdin_pipe) {
      posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    } else {
      posix_spawn_file_actions_addopen(&fa, 0, io.stdin_file.c_str(), O_RDONLY, 0);
    }
    if (io.stdout_file.empty()) {
      posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    } else {
      posix_spawn_file_actions_addopen(&fa, 1, io.stdout_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                       0600);
    }
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    std::vector<std::string> args = argv_s;
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_s;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string entry = *e;
      const auto replaced = std::any_of(io.env.begin(), io.env.end(), [&](const std::string& x) {
        return x.substr(0, x.find('=') + 1) == entry.substr(0, entry.find('=') + 1);
      });
      if (!replaced) env_s.push_back(entry);
    }
    env_s.insert(env_s.end(), io.env.begin(), io.env.end());
    std::vector<char*> envp;
    for (auto& e : env_s) envp.push_back(e.data());
    envp.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, args[0].c_str(), &fa, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    if (out[1] >= 0) ::close(out[1]);
    ::close(err[1]);
    if (in[0] >= 0) ::close(in[0]);
    out_fd_ = out[0];
    err_fd_ = err[0];
    in_fd_ = in[1];
    if (out_fd_ >= 0) ::fcntl(out_fd_, F_SETFL, ::fcntl(out_fd_, F_GETFL) | O_NONBLOCK);
    ::fcntl(err_fd_, F_SETFL, ::fcntl(err_fd_, F_GETFL) | O_NONBLOCK);
    if (rc != 0) {
      pid_ = 0;
      close_fds();
      throw std::runtime_error(std::string("posix_spawn: ") + std::strerror(rc));
    }
  }
  ~child_process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
      }
    }
    close_fds();
  }
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  // Writes to the child's stdin (child_stdio::stdin_pipe), blocking until written; false when the
  // child does not read any more.
  bool write_stdin(const std::string& data) {
    // A child gone would raise SIGPIPE in the test process: EPIPE is enough.
    struct sigaction ignore {
    }, old{};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ignore, &old);
    std::size_t done = 0;
    while (in_fd_ >= 0 && done < data.size()) {
      const ssize_t n = ::write(in_fd_, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) break;
      done += static_cast<std::size_t>(n);
    }
    ::sigaction(SIGPIPE, &old, nullptr);
    return done == data.size();
  }
  // Ends the child's stdin (it reads end-of-file).
  void close_stdin() {
    if (in_fd_ >= 0) ::close(in_fd_);
    in_fd_ = -1;
  }
  // Stops capturing stdout and closes its read end: the child's next write to it fails (EPIPE).
  void close_stdout() {
    if (out_fd_ >= 0) ::close(out_fd_);
    out_fd_ = -1;
  }
  // Sends signal `sig` to the child (while it runs).
  void send_signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }

  // Reads output for up to `d` (returns early when both pipes ended and the child exited).
  void pump(std::chrono::milliseconds d) {
    const auto deadline = std::chrono::steady_clock::now() + d;
    while (!finished()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
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
          if (fds[i].fd == out_fd_)
            drain(out_fd_, out_);
          else if (fds[i].fd == err_fd_)
            drain(err_fd_, err_);
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
    if (in_fd_ >= 0) ::close(in_fd_);
    out_fd_ = err_fd_ = in_fd_ = -1;
  }

  pid_t pid_ = 0;
  int status_ = 0;
  int out_fd_ = -1;
  int err_fd_ = -1;
  int in_fd_ = -1;  // the write end of the child's stdin pipe
  bool timed_out_ = false;
  std::string out_;
  std::string err_;
};

// The lines of `text` (without their '\n').
inline std::vector<std::string> lines_of(const std::string& text) {
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

}  // namespace uvcometd::test
