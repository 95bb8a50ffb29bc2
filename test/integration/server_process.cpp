#include "server_process.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <thread>
#include <utility>

#include <curl/curl.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace uvcometd::test {

namespace {

constexpr auto start_timeout = std::chrono::seconds(15);
constexpr auto restart_retry_window = std::chrono::seconds(5);

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

bool is_executable(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// The first of `names` found on PATH (with /usr/sbin and /sbin after it: haproxy lives there),
// or "" (resolved before fork so that the child only calls async-signal-safe functions).
std::string find_on_path(std::initializer_list<const char*> names) {
  std::string path = env("PATH");
  if (path.empty()) path = "/usr/local/bin:/usr/bin:/bin";
  path += ":/usr/local/sbin:/usr/sbin:/sbin";
  for (const char* name : names) {
    std::size_t start = 0;
    while (start <= path.size()) {
      std::size_t end = path.find(':', start);
      if (end == std::string::npos) end = path.size();
      std::string dir = path.substr(start, end - start);
      if (dir.empty()) dir = ".";
      std::string candidate = dir + "/" + name;
      if (is_executable(candidate)) return candidate;
      start = end + 1;
    }
  }
  return {};
}

// The node binary: $UVCOMETD_NODE, else `node` or `nodejs` on PATH.
std::string find_node() {
  std::string forced = env("UVCOMETD_NODE");
  if (!forced.empty()) return forced;
  std::string found = find_on_path({"node", "nodejs"});
  if (found.empty()) {
    throw std::runtime_error("server_process: node not found on PATH (set UVCOMETD_NODE)");
  }
  return found;
}

// A program_spec's program: itself when it names a path, else found on PATH.
std::string find_program(const std::string& program) {
  if (program.find('/') != std::string::npos) return program;
  std::string found = find_on_path({program.c_str()});
  if (found.empty()) throw std::runtime_error("server_process: " + program + " not found on PATH");
  return found;
}

std::string basename_of(const std::string& path) {
  auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "ended (status " + std::to_string(status) + ")";
}

void reap(pid_t pid, int* status_out = nullptr) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (status_out) *status_out = status;
}

void kill_group(pid_t pid) {
  ::kill(-pid, SIGKILL);  // its process group (node and anything it started)
  ::kill(pid, SIGKILL);   // in case it was not (yet) a group leader
}

struct curl_deleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct slist_deleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

std::size_t on_body(char* data, std::size_t size, std::size_t nmemb, void* user) {
  static_cast<std::string*>(user)->append(data, size * nmemb);
  return size * nmemb;
}

// One blocking HTTP request; returns the body, throws unless the status is 200. An https URL is
// a test server's own certificate, which is not verified.
std::string http_request(const std::string& url, const std::string* post_body) {
  std::unique_ptr<CURL, curl_deleter> curl(curl_easy_init());
  if (!curl) throw std::runtime_error("server_process: curl_easy_init failed");
  std::string body;
  std::unique_ptr<curl_slist, slist_deleter> headers;
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 60000L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  if (url.rfind("https:", 0) == 0) {
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (post_body) {
    headers.reset(curl_slist_append(nullptr, "Content-Type: application/json"));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, post_body->c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(post_body->size()));
  }
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    throw std::runtime_error("server_process: " + url + ": " + curl_easy_strerror(rc));
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (status != 200) {
    throw std::runtime_error("server_process: " + url + ": HTTP " + std::to_string(status) + ": " +
                             body);
  }
  return body;
}

// Minimal JSON string quoting for channel names.
std::string json_quote(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(ch));
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

}  // namespace

std::string servers_dir() {
  std::string dir = env("UVCOMETD_SERVERS_DIR");
  if (!dir.empty()) return dir;
#ifdef UVCOMETD_SERVERS_DIR
  return UVCOMETD_SERVERS_DIR;
#else
  // Next to this source file: test/integration/../servers.
  std::string here = __FILE__;
  auto slash = here.find_last_of('/');
  return (slash == std::string::npos ? std::string(".") : here.substr(0, slash)) + "/../servers";
#endif
}

server_process::server_process(const std::string& script, std::vector<std::string> args)
    : script_(script), args_(std::move(args)) {
  spawn(args_);
}

server_process::server_process(program_spec spec) : spec_(std::move(spec)) {
  if (spec_.program.empty() || !spec_.ready) {
    throw std::invalid_argument("server_process: a program_spec needs a program and ready");
  }
  script_ = spec_.program;
  args_ = spec_.args;
  port_ = spec_.port;
  spawn(args_);
}

server_process::server_process(launch_only, const std::string& script,
                               std::vector<std::string> args)
    : script_(script), args_(std::move(args)) {
  launch(args_);
}

std::vector<std::unique_ptr<server_process>> server_process::start_all(
    const std::vector<std::pair<std::string, std::vector<std::string>>>& scripts) {
  std::vector<std::unique_ptr<server_process>> out;
  for (const auto& [script, args] : scripts) {
    out.push_back(std::unique_ptr<server_process>(new server_process(launch_only{}, script, args)));
  }
  // They all start meanwhile: waiting in turn takes as long as the slowest. On a failure the
  // others are killed and reaped by their destructors.
  for (auto& p : out) p->await_start();
  return out;
}

server_process::~server_process() {
  stop();
  if (out_fd_ >= 0) ::close(out_fd_);
  if (stderr_fd_ >= 0) ::close(stderr_fd_);
}

int server_process::port() const { return port_; }

std::string server_process::base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }

std::string server_process::control_base() const {
  for (std::size_t i = 0; i < args_.size(); ++i) {
    const bool tls_next = args_[i] == "--tls" && i + 1 < args_.size() && args_[i + 1] == "1";
    if (args_[i] == "--tls=1" || tls_next) {
      return "https://127.0.0.1:" + std::to_string(port_);
    }
  }
  return base_url();
}

std::string server_process::url() const {
  if (!spec_.program.empty()) return base_url();
  const std::string name = basename_of(script_);
  if (name.rfind("faye", 0) == 0) return base_url() + "/bayeux";
  if (name.rfind("cometd", 0) == 0) return base_url() + "/cometd";
  return base_url();
}

bool server_process::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_ || (r < 0 && errno == ECHILD)) {
    pid_ = 0;
    return false;
  }
  return true;
}

void server_process::stop() {
  if (pid_ <= 0) return;
  kill_group(pid_);
  reap(pid_);
  pid_ = 0;
}

void server_process::restart() {
  stop();
  if (!spec_.program.empty()) {
    spawn(args_);  // its arguments name its port
    return;
  }
  std::vector<std::string> args;
  for (std::size_t i = 0; i < args_.size(); ++i) {
    if (args_[i] == "--port") {
      ++i;  // and its value
      continue;
    }
    if (args_[i].rfind("--port=", 0) == 0) continue;
    args.push_back(args_[i]);
  }
  args.push_back("--port");
  args.push_back(std::to_string(port_));
  const auto deadline = std::chrono::steady_clock::now() + restart_retry_window;
  for (;;) {
    try {
      spawn(args);
      return;
    } catch (const std::runtime_error& e) {
      // The old listening socket may linger for a moment; anything else is fatal.
      if ((std::strstr(e.what(), "EADDRINUSE") == nullptr &&
           std::strstr(e.what(), "Address already in use") == nullptr) ||
          std::chrono::steady_clock::now() >= deadline) {
        throw;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
}

std::string server_process::stderr_tail() const {
  if (stderr_fd_ < 0) return {};
  struct stat st {};
  if (::fstat(stderr_fd_, &st) != 0 || st.st_size <= 0) return {};
  constexpr off_t tail = 4096;
  off_t from = st.st_size > tail ? st.st_size - tail : 0;
  std::string out(static_cast<std::size_t>(st.st_size - from), '\0');
  ssize_t n = ::pread(stderr_fd_, &out[0], out.size(), from);
  out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  return out;
}

void server_process::spawn(const std::vector<std::string>& args) {
  launch(args);
  await_start();
}

void server_process::launch(const std::vector<std::string>& args) {
  const bool program = !spec_.program.empty();
  std::vector<std::string> argv_s;
  if (program) {
    argv_s.push_back(find_program(spec_.program));
  } else {
    const std::string script_path =
        script_.find('/') != std::string::npos ? script_ : servers_dir() + "/" + script_;
    if (::access(script_path.c_str(), R_OK) != 0) {
      throw std::runtime_error("server_process: cannot read " + script_path +
                               " (set UVCOMETD_SERVERS_DIR)");
    }
    argv_s = {find_node(), script_path};
  }
  argv_s.insert(argv_s.end(), args.begin(), args.end());

  // The child's stderr: an unlinked temporary file we keep open to quote it on failure.
  if (stderr_fd_ >= 0) ::close(stderr_fd_);
  std::string tmpdir = env("TMPDIR");
  if (tmpdir.empty()) tmpdir = "/tmp";
  std::string tmpl = tmpdir + "/uvcometd-server-XXXXXX";
  stderr_fd_ = ::mkostemp(&tmpl[0], O_CLOEXEC);
  if (stderr_fd_ < 0) {
    throw std::runtime_error("server_process: mkostemp(" + tmpl + "): " + std::strerror(errno));
  }
  ::unlink(tmpl.c_str());

  // A script's stdout is a pipe for its "PORT n" line; a program's goes to the log.
  int out[2] = {-1, -1};
  if (!program && ::pipe2(out, O_CLOEXEC) != 0) {
    throw std::runtime_error(std::string("server_process: pipe2: ") + std::strerror(errno));
  }

  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(&a[0]);
  argv.push_back(nullptr);

  const pid_t parent = ::getpid();
  const int err_fd = stderr_fd_;
  pid_t pid = ::fork();
  if (pid < 0) {
    int e = errno;
    if (out[0] >= 0) ::close(out[0]);
    if (out[1] >= 0) ::close(out[1]);
    throw std::runtime_error(std::string("server_process: fork: ") + std::strerror(e));
  }
  if (pid == 0) {
    // Child: async-signal-safe calls only.
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);  // the test process already died
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD}) ::sigaction(sig, &dfl, nullptr);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(out[1] >= 0 ? out[1] : err_fd, 1);
    ::dup2(err_fd, 2);
    ::execv(argv[0], argv.data());
    const char msg[] = "server_process: execv failed\n";
    ssize_t ignored = ::write(2, msg, sizeof msg - 1);
    (void)ignored;
    ::_exit(127);
  }
  if (out[1] >= 0) ::close(out[1]);
  ::setpgid(pid, pid);  // also from the parent, so that kill(-pid) works at once
  pid_ = pid;
  out_fd_ = out[0];
  command_.clear();
  for (const auto& a : argv_s) command_ += (command_.empty() ? "" : " ") + a;
}

void server_process::await_start() {
  const bool program = !spec_.program.empty();
  const pid_t pid = pid_;
  const int out_fd = out_fd_;  // closed below
  out_fd_ = -1;

  // Wait for "PORT <n>\n" (a script) or for spec_.ready (a program).
  std::string line;
  const auto deadline = std::chrono::steady_clock::now() + start_timeout;
  int status = 0;
  bool exited = false;  // reaped by wait_ready, `status` says how
  std::string failure = program ? wait_ready(pid, status, exited) : std::string();
  if (program && failure.empty()) return;
  for (; !program;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) {
      failure = "no PORT line within 15 s";
      break;
    }
    pollfd p{out_fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0) {
      if (errno == EINTR) continue;
      failure = std::string("poll: ") + std::strerror(errno);
      break;
    }
    if (r == 0) continue;
    char buf[256];
    ssize_t n = ::read(out_fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      failure = std::string("read: ") + std::strerror(errno);
      break;
    }
    if (n == 0) {
      failure = "stdout closed before a PORT line";
      break;
    }
    line.append(buf, static_cast<std::size_t>(n));
    if (line.find('\n') != std::string::npos) break;
  }
  if (out_fd >= 0) ::close(out_fd);  // the servers write nothing else there (and ignore EPIPE)

  if (!program && failure.empty()) {
    line = line.substr(0, line.find('\n'));
    int port = 0;
    if (line.rfind("PORT ", 0) == 0) port = std::atoi(line.c_str() + 5);
    if (port > 0 && port < 65536) {
      port_ = port;
      return;
    }
    failure = "unexpected first line \"" + line + "\"";
  }

  // Failure: reap the child and report.
  if (!exited) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == 0) {
      kill_group(pid);
      reap(pid, &status);
    } else if (r < 0 && errno == EINTR) {
      reap(pid, &status);
    }
  }
  pid_ = 0;
  throw std::runtime_error("server_process: `" + command_ + "`: " + failure + "; the server " +
                           describe_status(status) + "; stderr:\n" + stderr_tail());
}

std::string server_process::wait_ready(pid_t pid, int& status, bool& exited) {
  const auto deadline = std::chrono::steady_clock::now() + start_timeout;
  for (;;) {
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      exited = true;
      return "it ended before " + spec_.ready_what;
    }
    try {
      if (spec_.ready()) return {};
    } catch (const std::exception& e) {
      return std::string("not ready: ") + e.what();
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return "no " + spec_.ready_what + " within 15 s";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::string server_process::control(const std::string& path, const std::string& json_body) {
  return http_request(control_base() + path, &json_body);
}

std::string server_process::get(const std::string& path) {
  return http_request(control_base() + path, nullptr);
}

void server_process::publish(const std::string& channel, const std::string& data_json, int count) {
  control("/control/publish", "{\"channel\":" + json_quote(channel) + ",\"data\":" + data_json +
                                  ",\"count\":" + std::to_string(count) + "}");
}

}  // namespace uvcometd::test
