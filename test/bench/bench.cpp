// uvcometd-bench — throughput, CPU, memory and publish-rate figures of the uvcometd client against
// the firehose server (test/bench/firehose-server.js), and the publish→receive round trip through
// Faye (test/servers/faye-server.js); it starts the server itself. Public API only.
//
//   uvcometd-bench [--transport long-polling|websocket] [--count N] [--size B] [--batch M]
//                  [--publish N] [--publish-batch P] [--publish-inflight I] [--clients K]
//                  [--max-pending P] [--roundtrip N] [--window W] [--tls] [-v]
//
// Output: "key: value" lines, then one "summary:" line. Every run is bounded: after 120 s the
// bench stops with an error. The server is killed at exit.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include <rapidjson/document.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "uvcometd/client.hpp"

#ifndef UVCOMETD_BENCH_DIR
#define UVCOMETD_BENCH_DIR "test/bench"
#endif
#ifndef UVCOMETD_SERVERS_DIR
#define UVCOMETD_SERVERS_DIR "test/servers"
#endif

namespace {

#ifndef UVCOMETD_BENCH_LIMIT_S
#define UVCOMETD_BENCH_LIMIT_S 120
#endif
constexpr unsigned kRunLimitSeconds = UVCOMETD_BENCH_LIMIT_S;

// ---- arguments -------------------------------------------------------------------------------

struct args {
  uvcometd::connection_type transport = uvcometd::connection_type::websocket;
  unsigned long count = 20000;
  unsigned long size = 100;
  unsigned long batch = 1000;
  unsigned long publish = 0;  // > 0: publishing benchmark
  unsigned long publish_batch = 1000;
  unsigned long publish_inflight = 1;  // batches awaiting their acks at once
  unsigned long clients = 0;           // > 0: idle memory per client
  unsigned long roundtrip = 0;         // > 0: publish→receive round trips through Faye
  unsigned long window = 1;            // round trips in flight at once
  long max_pending = -1;               // < 0: the library's default
  bool verbose = false;                // the client's log on stderr
  bool tls = false;                    // https/wss to the firehose (self-signed, not verified)
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "uvcometd-bench: %s\n"
               "usage: uvcometd-bench [--transport long-polling|websocket] [--count N] "
               "[--size B] [--batch M]\n"
               "                      [--publish N] [--publish-batch P] [--clients K] "
               "[--max-pending P]\n"
               "                      [--publish-inflight I] [--roundtrip N] [--window W] [--tls] "
               "[-v]\n",
               why);
  std::exit(2);
}

unsigned long parse_number(const char* name, const char* text, unsigned long min) {
  return uvcometd_bench::parse_number(name, text, min, usage);
}

args parse_args(int argc, char** argv) {
  args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "-h" || k == "--help") usage("benchmark of the uvcometd client");
    if (k == "--tls") {
      a.tls = true;
      continue;
    }
    if (k == "-v" || k == "--verbose") {
      a.verbose = true;
      continue;
    }
    if (i + 1 >= argc) usage((k + " needs a value").c_str());
    const char* v = argv[++i];
    if (k == "--transport") {
      auto t = uvcometd::parse_connection_type(v);
      if (!t) usage("--transport is long-polling or websocket");
      a.transport = *t;
    } else if (k == "--count") {
      a.count = parse_number("--count", v, 1);
    } else if (k == "--size") {
      a.size = parse_number("--size", v, 0);
    } else if (k == "--batch") {
      a.batch = parse_number("--batch", v, 1);
    } else if (k == "--publish") {
      a.publish = parse_number("--publish", v, 1);
    } else if (k == "--publish-batch") {
      a.publish_batch = parse_number("--publish-batch", v, 1);
    } else if (k == "--publish-inflight") {
      a.publish_inflight = parse_number("--publish-inflight", v, 1);
    } else if (k == "--clients") {
      a.clients = parse_number("--clients", v, 1);
    } else if (k == "--roundtrip") {
      a.roundtrip = parse_number("--roundtrip", v, 1);
    } else if (k == "--window") {
      a.window = parse_number("--window", v, 1);
    } else if (k == "--max-pending") {
      a.max_pending = static_cast<long>(parse_number("--max-pending", v, 0));
    } else {
      usage(("unknown argument " + k).c_str());
    }
  }
  if ((a.publish != 0) + (a.clients != 0) + (a.roundtrip != 0) > 1) {
    usage("--publish, --clients and --roundtrip are exclusive");
  }
  if (a.tls && a.roundtrip) usage("--tls goes with the firehose, not --roundtrip (Faye)");
  return a;
}

// ---- measurements ----------------------------------------------------------------------------

struct sample {
  std::uint64_t wall_ns = 0;
  double cpu_user_s = 0;
  double cpu_sys_s = 0;
};

double seconds(const timeval& tv) { return double(tv.tv_sec) + double(tv.tv_usec) / 1e6; }

sample take_sample() {
  sample s;
  s.wall_ns = uv_hrtime();
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  s.cpu_user_s = seconds(ru.ru_utime);
  s.cpu_sys_s = seconds(ru.ru_stime);
  return s;
}

long peak_rss_kb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

// The current resident set (VmRSS), in kB.
long current_rss_kb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

// ---- the server process ----------------------------------------------------------------------

pid_t g_server = -1;

// CPU seconds (user + system, all threads) the server process has used so far, from
// /proc/<pid>/stat; -1 when unknown. Tells whether a run was bound by the Node server.
double server_cpu_seconds() {
  if (g_server <= 0) return -1;
  std::ifstream f("/proc/" + std::to_string(g_server) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto close_paren = stat.rfind(')');  // the command name may contain spaces
  if (close_paren == std::string::npos) return -1;
  const char* p = stat.c_str() + close_paren + 2;  // field 3, the state
  unsigned long long utime = 0, stime = 0;
  if (std::sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) !=
      2) {
    return -1;
  }
  return double(utime + stime) / double(sysconf(_SC_CLK_TCK));
}

void kill_server() {
  if (g_server <= 0) return;
  const pid_t pid = g_server;
  g_server = -1;
  kill(pid, SIGTERM);
  for (int i = 0; i < 100; ++i) {  // up to 1 s, then SIGKILL
    if (waitpid(pid, nullptr, WNOHANG) == pid) return;
    usleep(10000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

[[noreturn]] void fail(const std::string& why) {
  std::fprintf(stderr, "uvcometd-bench: error: %s\n", why.c_str());
  kill_server();
  std::exit(1);
}

extern "C" void on_alarm(int) {
  static const char msg[] = "uvcometd-bench: error: run limit exceeded (hard stop)\n";
  ssize_t r = write(2, msg, sizeof msg - 1);
  (void)r;
  if (g_server > 0) kill(g_server, SIGKILL);
  _exit(3);
}

std::string env_or(const char* name, const char* fallback) {
  if (const char* d = std::getenv(name); d && *d) return d;
  return fallback;
}

// Starts `node <script> <server_args>` and returns its port. The script prints "PORT <n>".
int start_server(const std::string& script, const std::vector<std::string>& server_args,
                 const char* dir_variable) {
  if (access(script.c_str(), R_OK) != 0) {
    fail("cannot read " + script + " (set " + dir_variable + ")");
  }
  const char* node = std::getenv("UVCOMETD_NODE");
  if (!node || !*node) node = "node";

  int out[2];
  int in[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(in, O_CLOEXEC) != 0) fail("pipe failed");
  std::vector<std::string> argv_s{node, script};
  argv_s.insert(argv_s.end(), server_args.begin(), server_args.end());
  std::vector<char*> argv_c;
  for (auto& s : argv_s) argv_c.push_back(s.data());
  argv_c.push_back(nullptr);

  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) fail("fork failed");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);  // never outlive the bench
    if (getppid() != parent) _exit(1);
    dup2(in[0], 0);
    dup2(out[1], 1);
    execvp(node, argv_c.data());
    std::fprintf(stderr, "uvcometd-bench: cannot run %s: %s\n", node, std::strerror(errno));
    _exit(127);
  }
  g_server = pid;
  close(in[0]);  // in[1] stays open (close-on-exec) until the bench exits: the server's stdin EOF
  close(out[1]);

  std::string line;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (line.find('\n') == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) fail("the server did not print PORT within 15 s");
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, int(left.count())) <= 0) continue;
    char buf[256];
    const ssize_t n = read(out[0], buf, sizeof buf);
    if (n <= 0) fail("the server exited before printing PORT");
    line.append(buf, size_t(n));
  }
  int port = 0;
  if (std::sscanf(line.c_str(), "PORT %d", &port) != 1 || port <= 0) {
    fail("unexpected server output: " + line);
  }
  return port;  // out[0] stays open: the server prints nothing else
}

// ---- the same frames as the server, and the parse ceiling ------------------------------------

std::string frame_text(unsigned long n, unsigned long size) {
  return uvcometd_bench::frame_text(n, std::string(size, 'x'));
}

// CPU seconds per message to parse the server's frames with rapidjson::Document::Parse, one new
// Document per frame (as a client does), over at least `count` messages and 0.3 s of CPU.
double parse_cpu_per_message(unsigned long count, unsigned long size, unsigned long batch) {
  const unsigned long per_frame = std::min(batch, count);
  const std::string frame = frame_text(per_frame, size);
  std::size_t sink = 0;
  unsigned long messages = 0;
  const double t0 = process_cpu_seconds();
  double t1 = t0;
  while (messages < count || t1 - t0 < 0.3) {
    rapidjson::Document d;
    d.Parse(frame.data(), frame.size());
    if (d.HasParseError() || !d.IsArray()) fail("rapidjson could not parse the frame");
    sink += d.Size();
    messages += per_frame;
    t1 = process_cpu_seconds();
  }
  if (sink != messages) fail("parse ceiling: wrong message count");
  return (t1 - t0) / double(messages);
}

// ---- the client side -------------------------------------------------------------------------

struct run_state {
  uv_loop_t loop{};
  uv_timer_t watchdog{};
  uv_timer_t settle{};
  args a;
  int port = 0;
  std::vector<std::unique_ptr<uvcometd::client>> clients;
  std::size_t closed = 0;

  // receive
  unsigned long received = 0;
  unsigned long bad = 0;
  std::size_t expected_data_size = 0;
  bool started = false;
  sample start, end;
  double server_cpu_start = -1;
  double server_cpu_end = -1;

  // publish
  std::string publish_data;
  unsigned long issued = 0;
  unsigned long acked = 0;
  unsigned long batch_left = 0;  // publishes awaiting their ack
  unsigned long publish_errors = 0;
  std::string first_publish_error;

  // round trip: publish i carries its send time; latencies in ns
  std::uint64_t t0_ns = 0;  // time origin of the timestamps in the payloads
  std::string pad;          // the payload's "p" string
  unsigned long rt_issued = 0;
  unsigned long rt_received = 0;
  unsigned long rt_acked = 0;
  unsigned long rt_bad = 0;
  bool rt_done = false;
  std::vector<std::uint64_t> rt_sent_ns;  // per publish, for the ack latency
  std::vector<std::uint64_t> rt_receive_ns;
  std::vector<std::uint64_t> rt_ack_ns;

  // clients
  unsigned long ready = 0;
  long rss_before_kb = 0;
  long rss_one_kb = 0;
  long rss_all_kb = 0;
  long rss_settled_kb = 0;
};

uvcometd::options client_options(const run_state& r) {
  uvcometd::options o;
  o.url = std::string(r.a.tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(r.port) +
          "/bayeux";
  o.tls_verify = false;  // the firehose's throw-away certificate; a once-per-connection cost
  o.connection_types = {r.a.transport};
  o.connection_timeout = std::chrono::seconds(60);
  if (r.a.max_pending >= 0) o.max_pending_count = std::size_t(r.a.max_pending);
  if (r.a.verbose) {
    o.log = [](uvcometd::log_level, std::string_view line) {
      std::fprintf(stderr, "log: %.*s\n", int(line.size()), line.data());
    };
  }
  return o;
}

void mark_start(run_state& r) {
  r.start = take_sample();
  r.server_cpu_start = server_cpu_seconds();
}

void mark_end(run_state& r) {
  r.end = take_sample();
  r.server_cpu_end = server_cpu_seconds();
}

void close_all(run_state& r) {
  uv_timer_stop(&r.watchdog);
  for (auto& c : r.clients) {
    c->close([&r](const uvcometd::error&) {
      if (++r.closed == r.clients.size()) {
        uv_close(reinterpret_cast<uv_handle_t*>(&r.watchdog), nullptr);
        uv_close(reinterpret_cast<uv_handle_t*>(&r.settle), nullptr);
      }
    });
  }
}

uvcometd::client& add_client(run_state& r) {
  r.clients.push_back(std::make_unique<uvcometd::client>(&r.loop, client_options(r)));
  auto& c = *r.clients.back();
  c.on_state([&r](uvcometd::state s, uvcometd::connection_type, const uvcometd::error& why) {
    if (s == uvcometd::state::failed) fail("client failed: " + why.to_string());
    if (s == uvcometd::state::reconnecting && r.closed == 0) {
      fail("client lost its session: " + why.to_string());
    }
  });
  return c;
}

void check_sync(std::error_code ec, const char* what) {
  if (ec) fail(std::string(what) + ": " + ec.message());
}

// --- receive: subscribe to /bench and count N messages.
void run_receive(run_state& r) {
  r.expected_data_size = r.a.size + 8;  // {"p":"…"}
  auto& c = add_client(r);
  check_sync(c.open([&r, &c](const uvcometd::error& err) {
    if (err) fail("open: " + err.to_string());
    if (c.current_connection_type() != r.a.transport) fail("the wrong transport was negotiated");
    check_sync(c.subscribe(
                   "/bench",
                   [&r](const uvcometd::message& m) {
                     if (!r.started) {  // data before the subscribe completion: count it anyway
                       r.started = true;
                       mark_start(r);
                     }
                     if (m.data.size() != r.expected_data_size) ++r.bad;
                     if (++r.received == r.a.count) {
                       mark_end(r);
                       close_all(r);
                     }
                   },
                   [&r](const uvcometd::error& e) {
                     if (e) fail("subscribe: " + e.to_string());
                     if (!r.started) {
                       r.started = true;
                       mark_start(r);
                     }
                   }),
               "subscribe");
  }),
             "open");
}

// --- publish: N publishes to /bench/pub, in batches issued in one loop iteration each. Up to
// --publish-inflight batches await their acks at once: a new batch starts as soon as the acks
// outstanding fit in one batch fewer (1: the next batch waits for every ack of the current one).
void publish_batch(run_state& r, uvcometd::client& c) {
  const unsigned long n = std::min(r.a.publish_batch, r.a.publish - r.issued);
  r.batch_left += n;
  for (unsigned long i = 0; i < n; ++i) {
    ++r.issued;
    check_sync(c.publish("/bench/pub", r.publish_data,
                         [&r, &c](const uvcometd::error& e) {
                           if (e) {
                             if (r.publish_errors++ == 0) r.first_publish_error = e.to_string();
                           } else {
                             ++r.acked;
                           }
                           --r.batch_left;
                           if (r.issued < r.a.publish) {
                             if (r.batch_left <= (r.a.publish_inflight - 1) * r.a.publish_batch) {
                               publish_batch(r, c);
                             }
                           } else if (r.batch_left == 0) {
                             mark_end(r);
                             close_all(r);
                           }
                         }),
               "publish");
  }
}

void run_publish(run_state& r) {
  r.publish_data = "{\"p\":\"" + std::string(r.a.size, 'x') + "\"}";
  auto& c = add_client(r);
  check_sync(c.open([&r, &c](const uvcometd::error& err) {
    if (err) fail("open: " + err.to_string());
    mark_start(r);
    for (unsigned long b = 0; b < r.a.publish_inflight && r.issued < r.a.publish; ++b) {
      publish_batch(r, c);
    }
  }),
             "open");
}

// --- round trip: one client subscribed to /bench/rt publishes N timestamped messages to itself
// through Faye, `window` of them in flight at once (1: each publish waits for the previous
// delivery). Measures publish→receive and publish→ack latency.
constexpr const char* kRoundTripChannel = "/bench/rt";

// Done when every publish was delivered and acknowledged (the ack and the delivery of one publish
// come in either order).
void maybe_finish_roundtrip(run_state& r) {
  if (r.rt_done || r.rt_received < r.a.roundtrip || r.rt_acked + r.publish_errors < r.a.roundtrip) {
    return;
  }
  r.rt_done = true;
  mark_end(r);
  close_all(r);
}

void publish_roundtrip(run_state& r, uvcometd::client& c) {
  const unsigned long i = r.rt_issued++;
  const std::uint64_t now = uv_hrtime();
  r.rt_sent_ns[i] = now;
  const std::string data = "{\"t\":" + std::to_string(now - r.t0_ns) +
                           ",\"i\":" + std::to_string(i) + ",\"p\":\"" + r.pad + "\"}";
  check_sync(c.publish(kRoundTripChannel, data,
                       [&r, i](const uvcometd::error& e) {
                         if (r.rt_done) return;
                         if (e) {
                           if (r.publish_errors++ == 0) r.first_publish_error = e.to_string();
                         } else {
                           ++r.rt_acked;
                           r.rt_ack_ns.push_back(uv_hrtime() - r.rt_sent_ns[i]);
                         }
                         maybe_finish_roundtrip(r);
                       }),
             "publish");
}

// The send time in a delivered payload {"t":<ns since t0>,...}, or false.
bool payload_time(std::string_view data, std::uint64_t& t) {
  const auto k = data.find("\"t\":");
  if (k == std::string_view::npos) return false;
  const std::string digits(data.substr(k + 4, 24));
  char* end = nullptr;
  t = std::strtoull(digits.c_str(), &end, 10);
  return end != digits.c_str();
}

void run_roundtrip(run_state& r) {
  r.pad.assign(r.a.size, 'x');
  r.rt_sent_ns.assign(r.a.roundtrip, 0);
  r.rt_receive_ns.reserve(r.a.roundtrip);
  r.rt_ack_ns.reserve(r.a.roundtrip);
  auto& c = add_client(r);
  check_sync(c.open([&r, &c](const uvcometd::error& err) {
    if (err) fail("open: " + err.to_string());
    if (c.current_connection_type() != r.a.transport) fail("the wrong transport was negotiated");
    check_sync(c.subscribe(
                   kRoundTripChannel,
                   [&r, &c](const uvcometd::message& m) {
                     const std::uint64_t now = uv_hrtime();
                     std::uint64_t t;
                     if (!payload_time(m.data, t)) {
                       ++r.rt_bad;
                     } else {
                       r.rt_receive_ns.push_back(now - r.t0_ns - t);
                     }
                     ++r.rt_received;
                     if (r.rt_issued < r.a.roundtrip) publish_roundtrip(r, c);
                     maybe_finish_roundtrip(r);
                   },
                   [&r, &c](const uvcometd::error& e) {
                     if (e) fail("subscribe: " + e.to_string());
                     r.t0_ns = uv_hrtime();
                     mark_start(r);
                     const unsigned long first = std::min(r.a.window, r.a.roundtrip);
                     for (unsigned long i = 0; i < first; ++i) publish_roundtrip(r, c);
                   }),
               "subscribe");
  }),
             "open");
}

// The q-quantile (0 < q <= 1) of sorted values: the smallest value with at least q of them at
// or below it.
double quantile_us(const std::vector<std::uint64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  auto rank = static_cast<std::size_t>(q * double(sorted.size()) + 0.999999);
  rank = std::clamp<std::size_t>(rank, 1, sorted.size());
  return double(sorted[rank - 1]) / 1e3;
}

void print_latencies(const char* name, std::vector<std::uint64_t>& v) {
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (const auto x : v) sum += double(x);
  std::printf("%s_count: %zu\n", name, v.size());
  std::printf("%s_p50_us: %.1f\n", name, quantile_us(v, 0.50));
  std::printf("%s_p90_us: %.1f\n", name, quantile_us(v, 0.90));
  std::printf("%s_p99_us: %.1f\n", name, quantile_us(v, 0.99));
  std::printf("%s_max_us: %.1f\n", name, v.empty() ? 0.0 : double(v.back()) / 1e3);
  std::printf("%s_mean_us: %.1f\n", name, v.empty() ? 0.0 : sum / double(v.size()) / 1e3);
}

// --- clients: K idle clients, each subscribed to /bench. The first is opened alone (its RSS
// includes the one-time costs of libcurl/libwebsockets), then the K-1 others all at once.
void open_idle_client(run_state& r);

void on_idle_client_ready(run_state& r) {
  if (++r.ready == 1) {
    r.rss_one_kb = current_rss_kb();
    for (unsigned long i = 1; i < r.a.clients; ++i) open_idle_client(r);
  }
  if (r.ready != r.a.clients) return;
  mark_end(r);
  r.rss_all_kb = current_rss_kb();
  // Measure again after 500 ms of idling, then close.
  uv_timer_start(
      &r.settle,
      [](uv_timer_t* t) {
        auto& rs = *static_cast<run_state*>(t->data);
        rs.rss_settled_kb = current_rss_kb();
        close_all(rs);
      },
      500, 0);
}

void open_idle_client(run_state& r) {
  auto& c = add_client(r);
  check_sync(c.open([&r, &c](const uvcometd::error& err) {
    if (err) fail("open: " + err.to_string());
    check_sync(c.subscribe(
                   "/bench", [](const uvcometd::message&) {},
                   [&r](const uvcometd::error& e) {
                     if (e) fail("subscribe: " + e.to_string());
                     on_idle_client_ready(r);
                   }),
               "subscribe");
  }),
             "open");
}

void run_clients(run_state& r) {
  r.clients.reserve(r.a.clients);
  r.rss_before_kb = current_rss_kb();
  open_idle_client(r);
}

}  // namespace

int main(int argc, char** argv) {
  const args a = parse_args(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGALRM, on_alarm);
  alarm(kRunLimitSeconds + 10);  // hard stop should the loop itself hang

  // Raise the descriptor limit for --clients.
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  const bool receive = !a.publish && !a.clients && !a.roundtrip;
  auto r = std::make_unique<run_state>();
  r->a = a;
  if (a.roundtrip) {
    r->port = start_server(env_or("UVCOMETD_SERVERS_DIR", UVCOMETD_SERVERS_DIR) + "/faye-server.js",
                           {"--port", "0"}, "UVCOMETD_SERVERS_DIR");
  } else {
    std::vector<std::string> server_args{"--stdin-exit",
                                         "--size",
                                         std::to_string(a.size),
                                         "--batch",
                                         std::to_string(a.batch),
                                         "--count",
                                         receive ? std::to_string(a.count) : "0",
                                         "--publish-echo",
                                         "0"};
    if (a.tls) server_args.push_back("--tls");
    r->port = start_server(env_or("UVCOMETD_BENCH_DIR", UVCOMETD_BENCH_DIR) + "/firehose-server.js",
                           server_args, "UVCOMETD_BENCH_DIR");
  }

  uv_loop_init(&r->loop);
  uv_timer_init(&r->loop, &r->watchdog);
  uv_timer_init(&r->loop, &r->settle);
  r->settle.data = r.get();
  uv_timer_start(
      &r->watchdog,
      [](uv_timer_t*) { fail("run limit of " + std::to_string(kRunLimitSeconds) + " s exceeded"); },
      kRunLimitSeconds * 1000, 0);

  const sample setup = take_sample();
  if (a.publish) {
    run_publish(*r);
  } else if (a.roundtrip) {
    run_roundtrip(*r);
  } else if (a.clients) {
    run_clients(*r);
  } else {
    run_receive(*r);
  }
  uv_run(&r->loop, UV_RUN_DEFAULT);
  const long peak_kb = peak_rss_kb();
  r->clients.clear();
  uv_run(&r->loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&r->loop) != 0) std::fprintf(stderr, "uvcometd-bench: warning: loop busy\n");
  kill_server();

  const char* tname =
      a.transport == uvcometd::connection_type::websocket ? "websocket" : "long-polling";
  const double wall = double(r->end.wall_ns - r->start.wall_ns) / 1e9;
  const double cpu =
      (r->end.cpu_user_s - r->start.cpu_user_s) + (r->end.cpu_sys_s - r->start.cpu_sys_s);
  const double server_cpu = r->server_cpu_start >= 0 && r->server_cpu_end >= 0
                                ? r->server_cpu_end - r->server_cpu_start
                                : -1;
  std::printf("transport: %s\n", tname);
  // The server's CPU over the measured span (clock-tick resolution): near 1.0 of wall means
  // the single-threaded Node server, not the client, set the pace.
  if (!a.clients && server_cpu >= 0) {
    std::printf("server_cpu_s: %.2f\n", server_cpu);
    std::printf("server_cpu_share_of_wall: %.2f\n", server_cpu / wall);
  }

  if (receive) {
    const double rate = double(a.count) / wall;
    const double cpu_us = cpu * 1e6 / double(a.count);
    const double parse_us = parse_cpu_per_message(a.count, a.size, a.batch) * 1e6;
    const double ceiling = 1e6 / parse_us;
    std::printf("mode: receive\n");
    std::printf("count: %lu\nsize: %lu\nbatch: %lu\n", a.count, a.size, a.batch);
    std::printf("received: %lu\n", r->received);
    std::printf("bad_payloads: %lu\n", r->bad);
    std::printf("elapsed_s: %.4f\n", wall);
    std::printf("msgs_per_s: %.0f\n", rate);
    std::printf("cpu_user_s: %.4f\n", r->end.cpu_user_s - r->start.cpu_user_s);
    std::printf("cpu_sys_s: %.4f\n", r->end.cpu_sys_s - r->start.cpu_sys_s);
    std::printf("cpu_us_per_msg: %.3f\n", cpu_us);
    std::printf("cpu_share_of_wall: %.2f\n", cpu / wall);
    std::printf("peak_rss_kb: %ld\n", peak_kb);
    std::printf("parse_cpu_us_per_msg: %.3f\n", parse_us);
    std::printf("parse_ceiling_msgs_per_s: %.0f\n", ceiling);
    std::printf("ceiling_over_actual: %.2f\n", ceiling / rate);
    std::printf("cpu_actual_over_parse: %.2f\n", cpu_us / parse_us);
    std::printf(
        "summary: %s receive %lu x %lu B (batch %lu): %.0f msg/s, %.3f us CPU/msg, "
        "peak RSS %ld kB, parse ceiling %.0f msg/s (%.1fx actual)\n",
        tname, a.count, a.size, a.batch, rate, cpu_us, peak_kb, ceiling, ceiling / rate);
    if (r->bad) return 1;
  } else if (a.publish) {
    const double rate = double(r->acked) / wall;
    std::printf("mode: publish\n");
    std::printf("publish: %lu\nsize: %lu\npublish_batch: %lu\npublish_inflight: %lu\n", a.publish,
                a.size, a.publish_batch, a.publish_inflight);
    std::printf("acked: %lu\n", r->acked);
    std::printf("publish_errors: %lu\n", r->publish_errors);
    if (r->publish_errors) std::printf("first_publish_error: %s\n", r->first_publish_error.c_str());
    std::printf("elapsed_s: %.4f\n", wall);
    std::printf("acked_publishes_per_s: %.0f\n", rate);
    std::printf("cpu_user_s: %.4f\n", r->end.cpu_user_s - r->start.cpu_user_s);
    std::printf("cpu_sys_s: %.4f\n", r->end.cpu_sys_s - r->start.cpu_sys_s);
    std::printf("cpu_us_per_publish: %.3f\n", cpu * 1e6 / double(a.publish));
    std::printf("peak_rss_kb: %ld\n", peak_kb);
    std::printf(
        "summary: %s publish %lu x %lu B (batch %lu, %lu in flight): %.0f acked "
        "publishes/s, %.3f us CPU/publish, %lu errors, server CPU %.2f of wall\n",
        tname, a.publish, a.size, a.publish_batch, a.publish_inflight, rate,
        cpu * 1e6 / double(a.publish), r->publish_errors, server_cpu / wall);
    if (r->publish_errors) return 1;
  } else if (a.roundtrip) {
    std::printf("mode: roundtrip (Faye)\n");
    std::printf("roundtrip: %lu\nsize: %lu\nwindow: %lu\n", a.roundtrip, a.size, a.window);
    std::printf("received: %lu\nacked: %lu\n", r->rt_received, r->rt_acked);
    std::printf("publish_errors: %lu\nbad_payloads: %lu\n", r->publish_errors, r->rt_bad);
    if (r->publish_errors) std::printf("first_publish_error: %s\n", r->first_publish_error.c_str());
    std::printf("elapsed_s: %.4f\n", wall);
    std::printf("roundtrips_per_s: %.0f\n", double(r->rt_received) / wall);
    std::printf("cpu_user_s: %.4f\n", r->end.cpu_user_s - r->start.cpu_user_s);
    std::printf("cpu_sys_s: %.4f\n", r->end.cpu_sys_s - r->start.cpu_sys_s);
    std::printf("cpu_us_per_roundtrip: %.3f\n", cpu * 1e6 / double(a.roundtrip));
    print_latencies("receive", r->rt_receive_ns);
    print_latencies("ack", r->rt_ack_ns);
    std::printf(
        "summary: %s round trip through Faye, %lu x %lu B, window %lu: publish->receive "
        "p50 %.1f us, p99 %.1f us, max %.1f us; publish->ack p50 %.1f us, p99 %.1f us; "
        "%.0f round trips/s, server CPU %.2f of wall\n",
        tname, a.roundtrip, a.size, a.window, quantile_us(r->rt_receive_ns, 0.5),
        quantile_us(r->rt_receive_ns, 0.99),
        r->rt_receive_ns.empty() ? 0.0 : double(r->rt_receive_ns.back()) / 1e3,
        quantile_us(r->rt_ack_ns, 0.5), quantile_us(r->rt_ack_ns, 0.99),
        double(r->rt_received) / wall, server_cpu / wall);
    if (r->publish_errors || r->rt_bad || r->rt_received != a.roundtrip) return 1;
  } else {
    const double k = double(a.clients);
    const double per_client = double(r->rss_settled_kb - r->rss_before_kb) / k;
    std::printf("mode: clients\n");
    std::printf("clients: %lu\n", a.clients);
    std::printf("connect_all_s: %.3f\n", double(r->end.wall_ns - setup.wall_ns) / 1e9);
    std::printf("rss_before_kb: %ld\n", r->rss_before_kb);
    std::printf("rss_first_client_kb: %ld\n", r->rss_one_kb);
    std::printf("rss_all_connected_kb: %ld\n", r->rss_all_kb);
    std::printf("rss_after_500ms_idle_kb: %ld\n", r->rss_settled_kb);
    std::printf("rss_per_client_kb: %.1f\n", per_client);
    if (a.clients > 1) {
      std::printf("rss_per_additional_client_kb: %.1f\n",
                  double(r->rss_settled_kb - r->rss_one_kb) / (k - 1));
    }
    std::printf("peak_rss_kb: %ld\n", peak_kb);
    std::printf("summary: %s %lu idle clients: %.1f kB RSS per client (%ld kB -> %ld kB)\n", tname,
                a.clients, per_client, r->rss_before_kb, r->rss_settled_kb);
  }
  return 0;
}
