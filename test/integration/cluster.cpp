#include "cluster.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

namespace uvcometd::test {

namespace {

constexpr int start_attempts = 5;  // each with a new port when the picked one was taken
constexpr int io_timeout_ms = 2000;

std::runtime_error fail(const std::string& what) { return std::runtime_error("cluster: " + what); }

// A connected stream socket, closed on scope exit.
class socket_fd {
 public:
  explicit socket_fd(int fd) : fd_(fd) {}
  ~socket_fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  socket_fd(const socket_fd&) = delete;
  socket_fd& operator=(const socket_fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

void send_all(int fd, const std::string& data) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw fail(std::string("send: ") + std::strerror(errno));
    done += static_cast<std::size_t>(n);
  }
}

// Reads until `complete(data)` holds or the peer closes; throws after io_timeout_ms of silence.
template <typename Complete>
std::string read_until(int fd, Complete complete) {
  std::string data;
  while (!complete(data)) {
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, io_timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) throw fail("no answer within 2 s");
    char buf[8192];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw fail(std::string("recv: ") + std::strerror(errno));
    if (n == 0) break;
    data.append(buf, static_cast<std::size_t>(n));
  }
  return data;
}

// Is the redis-server on `port` the one serving `dir` (ours, not another process that took the
// port)? False while it does not answer (yet) or answers -LOADING.
bool redis_serves(int port, const std::string& dir) {
  socket_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (s.get() < 0) throw fail(std::string("socket: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return false;
  send_all(s.get(), "*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$3\r\ndir\r\n");
  // The reply: *2 $3 dir $<n> <dir>, or an error line.
  const std::string reply = read_until(s.get(), [&](const std::string& d) {
    return (!d.empty() && d[0] == '-' && d.find("\r\n") != std::string::npos) ||
           d.find(dir + "\r\n") != std::string::npos;
  });
  return reply.find(dir + "\r\n") != std::string::npos;
}

// One stats-socket command; HAProxy answers and closes.
std::string unix_command(const std::string& path, const std::string& command) {
  socket_fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (s.get() < 0) throw fail(std::string("socket: ") + std::strerror(errno));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) throw fail("socket path too long: " + path);
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    throw fail("connect(" + path + "): " + std::strerror(errno));
  }
  send_all(s.get(), command + "\n");
  return read_until(s.get(), [](const std::string&) { return false; });
}

// "show stat" CSV: the value of `column` on the row of server `server` of backend `backend`
// ("" when there is no such row).
std::string stat_field(const std::string& csv, const std::string& backend,
                       const std::string& server, const std::string& column) {
  std::istringstream in(csv);
  std::string line;
  std::vector<std::string> header;
  auto split = [](const std::string& l) {
    std::vector<std::string> out;
    std::string cell;
    std::istringstream cells(l);
    while (std::getline(cells, cell, ',')) out.push_back(cell);
    return out;
  };
  while (std::getline(in, line)) {
    if (line.rfind("# ", 0) == 0) {
      header = split(line.substr(2));
      continue;
    }
    const auto row = split(line);
    if (row.size() < 2 || row[0] != backend || row[1] != server) continue;
    for (std::size_t c = 0; c < header.size() && c < row.size(); ++c) {
      if (header[c] == column) return row[c];
    }
  }
  return {};
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw fail("cannot read " + path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (std::size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) {
    s.replace(at, from.size(), to);
  }
}

bool port_taken(const std::runtime_error& e) {
  return std::strstr(e.what(), "Address already in use") != nullptr ||
         std::strstr(e.what(), "EADDRINUSE") != nullptr;
}

}  // namespace

int pick_free_port() {
  socket_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (s.get() < 0) throw fail(std::string("socket: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = 0;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    throw fail(std::string("picking a port: ") + std::strerror(errno));
  }
  return ntohs(a.sin_port);
}

cluster::cluster(cluster_options opts) : opts_(std::move(opts)) {
  const auto t0 = std::chrono::steady_clock::now();
  if (opts_.nodes == 0 || opts_.nodes > 26) throw fail("1 to 26 nodes");
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl =
      std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/uvcometd-cluster-XXXXXX";
  if (::mkdtemp(&tmpl[0]) == nullptr) {
    throw fail("mkdtemp(" + tmpl + "): " + std::strerror(errno));
  }
  dir_ = tmpl;
  auto lap = std::chrono::steady_clock::now();
  auto part = [&](const char* what) {
    const auto now = std::chrono::steady_clock::now();
    startup_detail_ +=
        std::string(startup_detail_.empty() ? "" : ", ") + what + " " +
        std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(now - lap).count()) +
        " ms";
    lap = now;
  };
  try {
    if (opts_.redis) {
      start_redis();
      part("redis-server");
    }
    std::vector<std::pair<std::string, std::vector<std::string>>> scripts;
    for (std::size_t i = 0; i < opts_.nodes; ++i) {
      std::vector<std::string> args{"--node",    std::string(1, static_cast<char>('A' + i)),
                                    "--timeout", std::to_string(opts_.timeout_s),
                                    "--port",    "0"};
      if (redis_) {
        args.push_back("--redis-port");
        args.push_back(std::to_string(redis_->port()));
        if (opts_.requeue_dropped) {
          args.push_back("--requeue-dropped");
          args.push_back("1");
        }
      }
      if (opts_.delivery_log) {
        args.push_back("--delivery-log");
        args.push_back(dir_ + "/deliveries-" + std::string(1, static_cast<char>('A' + i)) + ".log");
      }
      args.insert(args.end(), opts_.node_args.begin(), opts_.node_args.end());
      scripts.emplace_back("faye-cluster-node.js", std::move(args));
    }
    nodes_ = server_process::start_all(scripts);
    part("nodes");
    if (opts_.haproxy) {
      start_haproxy();
      part("haproxy");
    }
  } catch (...) {
    haproxy_.reset();
    nodes_.clear();
    redis_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
    throw;
  }
  startup_time_ =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
}

cluster::~cluster() {
  haproxy_.reset();
  nodes_.clear();
  redis_.reset();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

void cluster::start_redis() {
  for (int attempt = 1;; ++attempt) {
    program_spec spec;
    spec.program = "redis-server";
    spec.port = pick_free_port();
    // No persistence at all, 127.0.0.1 only, logs (warnings) to the process log.
    spec.args = {"--port",       std::to_string(spec.port),
                 "--bind",       "127.0.0.1",
                 "--save",       "",
                 "--appendonly", "no",
                 "--dir",        dir_,
                 "--daemonize",  "no",
                 "--databases",  "1",
                 "--loglevel",   "warning"};
    const std::string dir = dir_;
    const int port = spec.port;
    spec.ready = [dir, port] { return redis_serves(port, dir); };
    spec.ready_what = "an answer to CONFIG GET dir on port " + std::to_string(port);
    try {
      redis_ = std::make_unique<server_process>(std::move(spec));
      return;
    } catch (const std::runtime_error& e) {
      if (!port_taken(e) || attempt == start_attempts) throw;
    }
  }
}

void cluster::start_haproxy() {
  std::string cfg = read_file(servers_dir() + "/haproxy-cluster.cfg.in");
  const std::size_t balanced =
      opts_.lb_nodes == 0 ? nodes_.size() : std::min(opts_.lb_nodes, nodes_.size());
  std::string servers;
  for (std::size_t i = 0; i < balanced; ++i) {
    servers += "    server " + name(i) + " 127.0.0.1:" + std::to_string(port(i)) + "\n";
  }
  const std::string socket_path = dir_ + "/haproxy.sock";
  replace_all(cfg, "@STATS_SOCKET@", socket_path);
  replace_all(cfg, "@SERVERS@", servers);
  for (int attempt = 1;; ++attempt) {
    program_spec spec;
    spec.program = "haproxy";
    spec.port = pick_free_port();
    std::string text = cfg;
    replace_all(text, "@PORT@", std::to_string(spec.port));
    const std::string cfg_path = dir_ + "/haproxy.cfg";
    {
      std::ofstream out(cfg_path, std::ios::trunc);
      out << text;
      if (!out.flush()) throw fail("cannot write " + cfg_path);
    }
    spec.args = {"-db", "-f", cfg_path};
    // Ready once every node passed a health check (HTTP 200 from /control/stats).
    std::vector<std::string> names;
    for (std::size_t i = 0; i < balanced; ++i) names.push_back(name(i));
    spec.ready = [socket_path, names] {
      if (::access(socket_path.c_str(), F_OK) != 0) return false;
      std::string csv;
      try {
        csv = unix_command(socket_path, "show stat");
      } catch (const std::runtime_error&) {
        return false;  // not listening yet
      }
      for (const auto& n : names) {
        if (stat_field(csv, "nodes", n, "status") != "UP" ||
            stat_field(csv, "nodes", n, "check_status") != "L7OK") {
          return false;
        }
      }
      return true;
    };
    spec.ready_what = "every node UP after a health check";
    try {
      haproxy_ = std::make_unique<server_process>(std::move(spec));
      return;
    } catch (const std::runtime_error& e) {
      if (!port_taken(e) || attempt == start_attempts) throw;
    }
  }
}

std::string cluster::name(std::size_t i) const {
  if (i >= nodes_.size()) throw fail("no node " + std::to_string(i));
  return std::string(1, static_cast<char>('A' + i));
}

int cluster::port(std::size_t i) const {
  if (i >= nodes_.size()) throw fail("no node " + std::to_string(i));
  return nodes_[i]->port();
}

std::string cluster::url(std::size_t i) const { return base_url(i) + "/bayeux"; }

std::string cluster::base_url(std::size_t i) const {
  return "http://127.0.0.1:" + std::to_string(port(i));
}

std::string cluster::lb_url() const {
  return "http://127.0.0.1:" + std::to_string(lb_port()) + "/bayeux";
}

int cluster::lb_port() const {
  if (!haproxy_) throw fail("started without haproxy");
  return haproxy_->port();
}

int cluster::redis_port() const { return redis_ ? redis_->port() : 0; }

std::vector<pid_t> cluster::pids() const {
  std::vector<pid_t> out;
  auto add = [&](const std::unique_ptr<server_process>& p) {
    if (p && p->pid() > 0) out.push_back(p->pid());
  };
  add(redis_);
  for (const auto& n : nodes_) add(n);
  add(haproxy_);
  return out;
}

server_process& cluster::node(std::size_t i) {
  if (i >= nodes_.size()) throw fail("no node " + std::to_string(i));
  return *nodes_[i];
}

bool cluster::alive(std::size_t i) { return node(i).running(); }

void cluster::kill(std::size_t i) { node(i).stop(); }

void cluster::restart(std::size_t i) { node(i).restart(); }

void cluster::publish(const std::string& channel, const std::string& data_json, int count) {
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (alive(i)) return publish_on(i, channel, data_json, count);
  }
  throw fail("publish: no node is running");
}

void cluster::publish_on(std::size_t i, const std::string& channel, const std::string& data_json,
                         int count) {
  node(i).publish(channel, data_json, count);
}

std::vector<nlohmann::json> cluster::deliveries(std::size_t i) const {
  if (!opts_.delivery_log) throw fail("started without delivery_log");
  std::ifstream in(dir_ + "/deliveries-" + name(i) + ".log");
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(in, line)) {
    // A line cut short by a SIGKILL while it was written is not a delivery.
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object()) out.push_back(std::move(j));
  }
  return out;
}

nlohmann::json cluster::stats(std::size_t i) {
  return nlohmann::json::parse(node(i).get("/control/stats"));
}

int cluster::queued(const std::string& client_id) {
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (!alive(i)) continue;
    // Faye's clientIds are letters and digits: nothing to escape.
    return nlohmann::json::parse(node(i).get("/control/queue?clientId=" + client_id))
        .at("queued")
        .get<int>();
  }
  throw fail("queued: no node is running");
}

bool cluster::wait_queued(const std::string& client_id, int n, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (queued(client_id) >= n) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void cluster::set_advice_hosts(std::size_t i, const std::vector<std::string>& hosts) {
  node(i).control("/control/advice-hosts", nlohmann::json{{"hosts", hosts}}.dump());
}

void cluster::forget(std::size_t i, const std::string& client_id) {
  node(i).control("/control/forget", nlohmann::json{{"clientId", client_id}}.dump());
}

std::string cluster::haproxy_command(const std::string& command) {
  if (!haproxy_) throw fail("started without haproxy");
  return unix_command(dir_ + "/haproxy.sock", command);
}

std::string cluster::lb_state(std::size_t i) {
  return stat_field(haproxy_command("show stat"), "nodes", name(i), "status");
}

std::string cluster::lb_stat(std::size_t i, const std::string& field) {
  return stat_field(haproxy_command("show stat"), "nodes", name(i), field);
}

std::chrono::milliseconds cluster::wait_lb_state(std::size_t i, const std::string& prefix,
                                                 std::chrono::milliseconds limit) {
  const auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - t0);
    if (lb_state(i).rfind(prefix, 0) == 0) return elapsed;
    if (elapsed >= limit) return std::chrono::milliseconds(-1);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace uvcometd::test
