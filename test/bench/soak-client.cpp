// uvcometd-soak-client: the client side of the soak (test/bench/soak.sh). Subscribes to /soak and
// counts the messages {"base":B,"seq":S} (id B+S) that soak-driver.js publishes: received,
// distinct ids, duplicates. Prints on stdout:
//   READY                                   once subscribed the first time
//   STAT t=<s> rss_kb=<VmRSS> received=<n> distinct=<n> dup=<n> state=<state> reconnects=<n>
//                                           every second
//   FINAL ... rss_start_kb=<n> rss_end_kb=<n> rss_max_kb=<VmHWM>   on SIGTERM/SIGINT, then exits 0
//
//   uvcometd-soak-client URL websocket|long-polling [ack 0|1]
//
// With SOAK_LOG set in the environment the library's log (info and above) goes to stderr.
#include <uv.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "uvcometd/client.hpp"
#include "uvcometd/extensions.hpp"

namespace {

long status_kb(const char* field) {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  long v = -1;
  const std::size_t n = std::strlen(field);
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, field, n) == 0 && line[n] == ':') {
      v = std::strtol(line + n + 1, nullptr, 10);
      break;
    }
  }
  std::fclose(f);
  return v;
}

// The integer after "key": in `json`, or -1.
long long field(std::string_view json, std::string_view key) {
  const std::string needle = "\"" + std::string(key) + "\":";
  const auto pos = json.find(needle);
  if (pos == std::string_view::npos) return -1;
  long long v = 0;
  bool any = false;
  for (std::size_t i = pos + needle.size(); i < json.size() && json[i] >= '0' && json[i] <= '9';
       ++i) {
    v = v * 10 + (json[i] - '0');
    any = true;
  }
  return any ? v : -1;
}

struct soak {
  uv_loop_t* loop = nullptr;
  std::unique_ptr<uvcometd::client> client;
  std::vector<std::uint8_t> seen;
  std::uint64_t received = 0, distinct = 0, dup = 0, bad = 0, reconnects = 0;
  long rss_start = -1;
  bool ready = false;
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  uv_timer_t stat_timer{};
  uv_signal_t sigterm{}, sigint{};

  void on_message(const uvcometd::message& m) {
    ++received;
    const long long base = field(m.data, "base"), seq = field(m.data, "seq");
    if (base < 0 || seq < 0) {
      ++bad;
      return;
    }
    const auto id = static_cast<std::size_t>(base + seq);
    if (id >= seen.size()) seen.resize(id + 1024, 0);
    if (seen[id]) {
      ++dup;
    } else {
      seen[id] = 1;
      ++distinct;
    }
  }

  void stat(const char* tag) {
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf(
        "%s t=%.1f rss_kb=%ld received=%llu distinct=%llu dup=%llu bad=%llu state=%s "
        "reconnects=%llu",
        tag, t, status_kb("VmRSS"), static_cast<unsigned long long>(received),
        static_cast<unsigned long long>(distinct), static_cast<unsigned long long>(dup),
        static_cast<unsigned long long>(bad),
        std::string(to_string(client->current_state())).c_str(),
        static_cast<unsigned long long>(reconnects));
    if (std::strcmp(tag, "FINAL") == 0) {
      std::printf(" rss_start_kb=%ld rss_end_kb=%ld rss_max_kb=%ld", rss_start, status_kb("VmRSS"),
                  status_kb("VmHWM"));
    }
    std::printf("\n");
    std::fflush(stdout);
  }

  void stop() {
    stat("FINAL");
    uv_timer_stop(&stat_timer);
    uv_close(reinterpret_cast<uv_handle_t*>(&stat_timer), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&sigterm), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&sigint), nullptr);
    client->close();
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: uvcometd-soak-client URL websocket|long-polling [ack 0|1]\n");
    return 2;
  }
  const std::string transport = argv[2];
  const bool ack = argc > 3 && std::strcmp(argv[3], "1") == 0;
  uv_loop_t loop;
  uv_loop_init(&loop);
  soak s;
  s.loop = &loop;

  uvcometd::options o;
  o.url = argv[1];
  o.connection_types = {transport == "websocket" ? uvcometd::connection_type::websocket
                                                 : uvcometd::connection_type::long_polling};
  o.connection_timeout = std::chrono::milliseconds(0);  // cuts go on for the whole soak
  o.max_network_delay = std::chrono::seconds(5);
  if (ack) o.extensions.push_back(std::make_shared<uvcometd::ack_extension>());
  if (std::getenv("SOAK_LOG") != nullptr) {  // the library's log (info and above) on stderr
    o.log = [](uvcometd::log_level lv, std::string_view text) {
      if (lv == uvcometd::log_level::debug) return;
      std::fprintf(stderr, "%.*s\n", static_cast<int>(text.size()), text.data());
    };
  }
  s.client = std::make_unique<uvcometd::client>(&loop, o);
  s.client->on_state([&s](uvcometd::state st, uvcometd::connection_type, const uvcometd::error&) {
    if (st == uvcometd::state::reconnecting) ++s.reconnects;
  });

  auto subscribe = [&s] {
    const auto rc = s.client->subscribe(
        "/soak", [&s](const uvcometd::message& m) { s.on_message(m); },
        [&s](const uvcometd::error& e) {
          if (e) {
            std::fprintf(stderr, "soak-client: subscribe failed: %s\n", e.to_string().c_str());
            return;
          }
          if (!s.ready) {
            s.ready = true;
            s.rss_start = status_kb("VmRSS");
            std::printf("READY\n");
            std::fflush(stdout);
          }
        });
    if (rc) std::fprintf(stderr, "soak-client: subscribe: %s\n", rc.message().c_str());
  };
  s.client->open([subscribe](const uvcometd::error& e) {
    if (e)
      std::fprintf(stderr, "soak-client: open failed: %s\n", e.to_string().c_str());
    else
      subscribe();
  });

  uv_timer_init(&loop, &s.stat_timer);
  s.stat_timer.data = &s;
  uv_timer_start(
      &s.stat_timer, [](uv_timer_t* t) { static_cast<soak*>(t->data)->stat("STAT"); }, 1000, 1000);
  for (uv_signal_t* sig : {&s.sigterm, &s.sigint}) {
    uv_signal_init(&loop, sig);
    sig->data = &s;
    uv_signal_start(
        sig, [](uv_signal_t* h, int) { static_cast<soak*>(h->data)->stop(); },
        sig == &s.sigterm ? SIGTERM : SIGINT);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  s.client.reset();
  const int rc = uv_loop_close(&loop);
  if (rc != 0) std::fprintf(stderr, "soak-client: uv_loop_close: %s\n", uv_strerror(rc));
  return rc == 0 ? 0 : 1;
}
