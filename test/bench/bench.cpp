// uvcometd-bench — throughput, CPU, memory and publish-rate figures of the uvcometd client against
// the firehose server (test/bench/firehose-server.js), which it starts itself. Public API only.
//
//   uvcometd-bench [--transport long-polling|websocket] [--count N] [--size B] [--batch M]
//                  [--publish N] [--clients K] [--max-pending P]
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
#include <memory>
#include <string>
#include <vector>

#include "uvcometd/client.hpp"

#ifndef UVCOMETD_BENCH_DIR
#define UVCOMETD_BENCH_DIR "test/bench"
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
  unsigned long publish = 0;        // > 0: publishing benchmark
  unsigned long publish_batch = 1000;
  unsigned long clients = 0;        // > 0: idle memory per client
  long max_pending = -1;            // < 0: the library's default
  bool verbose = false;             // the client's log on stderr
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "uvcometd-bench: %s\n"
               "usage: uvcometd-bench [--transport long-polling|websocket] [--count N] "
               "[--size B] [--batch M]\n"
               "                      [--publish N] [--publish-batch P] [--clients K] "
               "[--max-pending P] [-v]\n",
               why);
  std::exit(2);
}

unsigned long parse_number(const char* name, const char* text, unsigned long min) {
  char* end = nullptr;
  errno = 0;
  const unsigned long v = std::strtoul(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v < min) {
    usage((std::string(name) + " needs an integer >= " + std::to_string(min)).c_str());
  }
  return v;
}

args parse_args(int argc, char** argv) {
  args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "-h" || k == "--help") usage("benchmark of the uvcometd client");
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
    } else if (k == "--clients") {
      a.clients = parse_number("--clients", v, 1);
    } else if (k == "--max-pending") {
      a.max_pending = static_cast<long>(parse_number("--max-pending", v, 0));
    } else {
      usage(("unknown argument " + k).c_str());
    }
  }
  if (a.publish && a.clients) usage("--publish and --clients are exclusive");
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

// ---- the firehose server process -------------------------------------------------------------

pid_t g_server = -1;

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

std::string bench_dir() {
  if (const char* d = std::getenv("UVCOMETD_BENCH_DIR"); d && *d) return d;
  return UVCOMETD_BENCH_DIR;
}

// Starts `node firehose-server.js <server_args>` and returns its port.
int start_server(const std::vector<std::string>& server_args) {
  const std::string script = bench_dir() + "/firehose-server.js";
  if (access(script.c_str(), R_OK) != 0) fail("cannot read " + script + " (set UVCOMETD_BENCH_DIR)");
  const char* node = std::getenv("UVCOMETD_NODE");
  if (!node || !*node) node = "node";

  int out[2];
  int in[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(in, O_CLOEXEC) != 0) fail("pipe failed");
  std::vector<std::string> argv_s{node, script, "--stdin-exit"};
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
    if (left.count() <= 0) fail("the firehose server did not print PORT within 15 s");
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, int(left.count())) <= 0) continue;
    char buf[256];
    const ssize_t n = read(out[0], buf, sizeof buf);
    if (n <= 0) fail("the firehose server exited before printing PORT");
    line.append(buf, size_t(n));
  }
  int port = 0;
  if (std::sscanf(line.c_str(), "PORT %d", &port) != 1 || port <= 0) {
    fail("unexpected server output: " + line);
  }
  return port;  // out[0] stays open: the server prints nothing else
}

// ---- the same frames as the server, and the parse ceiling ------------------------------------

std::string message_text(unsigned long size) {
  return "{\"channel\":\"/bench\",\"data\":{\"p\":\"" + std::string(size, 'x') + "\"}}";
}

std::string frame_text(unsigned long n, unsigned long size) {
  const std::string m = message_text(size);
  std::string f = "[";
  f.reserve(2 + n * (m.size() + 1));
  for (unsigned long i = 0; i < n; ++i) {
    if (i) f += ',';
    f += m;
  }
  f += ']';
  return f;
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

  // publish
  std::string publish_data;
  unsigned long issued = 0;
  unsigned long acked = 0;
  unsigned long batch_left = 0;
  unsigned long publish_errors = 0;
  std::string first_publish_error;

  // clients
  unsigned long ready = 0;
  long rss_before_kb = 0;
  long rss_one_kb = 0;
  long rss_all_kb = 0;
  long rss_settled_kb = 0;
};

uvcometd::options client_options(const run_state& r) {
  uvcometd::options o;
  o.url = "http://127.0.0.1:" + std::to_string(r.port) + "/bayeux";
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
                       r.start = take_sample();
                     }
                     if (m.data.size() != r.expected_data_size) ++r.bad;
                     if (++r.received == r.a.count) {
                       r.end = take_sample();
                       close_all(r);
                     }
                   },
                   [&r](const uvcometd::error& e) {
                     if (e) fail("subscribe: " + e.to_string());
                     if (!r.started) {
                       r.started = true;
                       r.start = take_sample();
                     }
                   }),
               "subscribe");
  }), "open");
}

// --- publish: N publishes to /bench/pub, in batches issued in one loop iteration each.
void publish_batch(run_state& r, uvcometd::client& c) {
  const unsigned long n = std::min(r.a.publish_batch, r.a.publish - r.issued);
  r.batch_left = n;
  for (unsigned long i = 0; i < n; ++i) {
    ++r.issued;
    check_sync(c.publish("/bench/pub", r.publish_data,
                         [&r, &c](const uvcometd::error& e) {
                           if (e) {
                             if (r.publish_errors++ == 0) r.first_publish_error = e.to_string();
                           } else {
                             ++r.acked;
                           }
                           if (--r.batch_left != 0) return;
                           if (r.issued < r.a.publish) {
                             publish_batch(r, c);
                           } else {
                             r.end = take_sample();
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
    r.start = take_sample();
    publish_batch(r, c);
  }), "open");
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
  r.end = take_sample();
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
    check_sync(c.subscribe("/bench", [](const uvcometd::message&) {},
                           [&r](const uvcometd::error& e) {
                             if (e) fail("subscribe: " + e.to_string());
                             on_idle_client_ready(r);
                           }),
               "subscribe");
  }), "open");
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

  std::vector<std::string> server_args{"--size", std::to_string(a.size), "--batch",
                                       std::to_string(a.batch)};
  const bool receive = !a.publish && !a.clients;
  server_args.insert(server_args.end(),
                     {"--count", receive ? std::to_string(a.count) : "0", "--publish-echo", "0"});

  auto r = std::make_unique<run_state>();
  r->a = a;
  r->port = start_server(server_args);

  uv_loop_init(&r->loop);
  uv_timer_init(&r->loop, &r->watchdog);
  uv_timer_init(&r->loop, &r->settle);
  r->settle.data = r.get();
  uv_timer_start(
      &r->watchdog,
      [](uv_timer_t*) {
        fail("run limit of " + std::to_string(kRunLimitSeconds) + " s exceeded");
      },
      kRunLimitSeconds * 1000, 0);

  const sample setup = take_sample();
  if (a.publish) {
    run_publish(*r);
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

  const char* tname = a.transport == uvcometd::connection_type::websocket ? "websocket"
                                                                           : "long-polling";
  const double wall = double(r->end.wall_ns - r->start.wall_ns) / 1e9;
  const double cpu = (r->end.cpu_user_s - r->start.cpu_user_s) +
                     (r->end.cpu_sys_s - r->start.cpu_sys_s);
  std::printf("transport: %s\n", tname);

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
    std::printf("summary: %s receive %lu x %lu B (batch %lu): %.0f msg/s, %.3f us CPU/msg, "
                "peak RSS %ld kB, parse ceiling %.0f msg/s (%.1fx actual)\n",
                tname, a.count, a.size, a.batch, rate, cpu_us, peak_kb, ceiling, ceiling / rate);
    if (r->bad) return 1;
  } else if (a.publish) {
    const double rate = double(r->acked) / wall;
    std::printf("mode: publish\n");
    std::printf("publish: %lu\nsize: %lu\npublish_batch: %lu\n", a.publish, a.size,
                a.publish_batch);
    std::printf("acked: %lu\n", r->acked);
    std::printf("publish_errors: %lu\n", r->publish_errors);
    if (r->publish_errors) std::printf("first_publish_error: %s\n", r->first_publish_error.c_str());
    std::printf("elapsed_s: %.4f\n", wall);
    std::printf("acked_publishes_per_s: %.0f\n", rate);
    std::printf("cpu_us_per_publish: %.3f\n", cpu * 1e6 / double(a.publish));
    std::printf("peak_rss_kb: %ld\n", peak_kb);
    std::printf("summary: %s publish %lu x %lu B (batch %lu): %.0f acked publishes/s, "
                "%.3f us CPU/publish, %lu errors\n",
                tname, a.publish, a.size, a.publish_batch, rate, cpu * 1e6 / double(a.publish),
                r->publish_errors);
    if (r->publish_errors) return 1;
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
