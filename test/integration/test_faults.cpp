// The client under network and server faults: a fault-injecting TCP proxy (fault_proxy.hpp) sits
// between the client and a real server (Faye over long-polling and websocket, cometd-nodejs-server
// over long-polling) and cuts, refuses or black-holes connections; servers are killed and
// restarted, sessions expired, advice "none" sent. Short server timeouts (2 s) and short client
// knobs keep the tests quick; every time bound below is a generous upper bound for progress, never
// a speed assertion.
//
// Environment: UVCOMETD_TEST_LOG=1 prints the library's log live; UVCOMETD_TEST_REPORT=1 prints
// the figures (cuts survived, messages lost, detection times) on stderr. On a failed assertion
// the tail of the library's log is printed on stderr.
#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "client_helpers.hpp"
#include "fault_proxy.hpp"
#include "loop_helpers.hpp"
#include "server_process.hpp"
#include "uvcometd/client.hpp"
#include "uvcometd/extensions.hpp"

using namespace std::chrono_literals;
using uvcometd::connection_type;
using uvcometd::errc;
using uvcometd::state;
using uvcometd::test::fault_proxy;
using uvcometd::test::log_capture;
using uvcometd::test::peer;
using uvcometd::test::received;
using uvcometd::test::server_process;
using uvcometd::test::state_recorder;
using uvcometd::test::test_loop;
using steady = std::chrono::steady_clock;

namespace {

// The log of the test case running now, dumped when an assertion fails.
log_capture* g_current_log = nullptr;

struct log_dump_listener : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  bool assertionEnded(const Catch::AssertionStats& stats) override {
    if (!stats.assertionResult.succeeded() && g_current_log != nullptr &&
        !g_current_log->lines.empty()) {
      std::fprintf(stderr, "---- uvcometd log tail (%s:%zu) ----\n%s---- end of log ----\n",
                   stats.assertionResult.getSourceInfo().file,
                   stats.assertionResult.getSourceInfo().line, g_current_log->tail(60).c_str());
    }
    return true;
  }
  void testCaseEnded(const Catch::TestCaseStats&) override { g_current_log = nullptr; }
};

}  // namespace

CATCH_REGISTER_LISTENER(log_dump_listener)

namespace {

void figure(const char* fmt, ...) {
  if (std::getenv("UVCOMETD_TEST_REPORT") == nullptr) return;
  std::va_list ap;
  va_start(ap, fmt);
  std::fputs("[figure] ", stderr);
  std::vfprintf(stderr, fmt, ap);
  std::fputs("\n", stderr);
  va_end(ap);
}

long ms_between(steady::time_point a, steady::time_point b) {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count());
}

// The test's log, registered for the failure listener.
struct scoped_log : log_capture {
  scoped_log() { g_current_log = this; }
  ~scoped_log() {
    if (g_current_log == this) g_current_log = nullptr;
  }
};

// Owns the proxy and closes it (running the loop) before it is destroyed, also when an assertion
// unwinds the test.
class proxy_rig {
 public:
  proxy_rig(test_loop& loop, int port)
      : loop_(loop), proxy_(std::make_unique<fault_proxy>(loop.get(), port)) {}
  ~proxy_rig() { shut(); }
  proxy_rig(const proxy_rig&) = delete;
  proxy_rig& operator=(const proxy_rig&) = delete;

  fault_proxy* operator->() { return proxy_.get(); }
  fault_proxy& operator*() { return *proxy_; }

  void shut() {
    if (!proxy_) return;
    bool done = false;
    proxy_->close([&done] { done = true; });
    loop_.run_until([&] { return done; }, 5s);
    if (done) {
      proxy_.reset();
    } else {
      (void)proxy_.release();  // never destroy it with live handles: leak (LSan will say so)
    }
  }

 private:
  test_loop& loop_;
  std::unique_ptr<fault_proxy> proxy_;
};

const std::vector<std::string> server_args{"--timeout", "2"};

uvcometd::options fault_options(fault_proxy& proxy, const peer& p, log_capture& log) {
  uvcometd::options o;
  o.url = proxy.url(p.path);
  o.connection_types = p.types;
  o.connection_timeout = 20s;
  o.backoff_initial = 50ms;
  o.backoff_max = 500ms;
  o.max_network_delay = 1s;
  o.websocket_ping_interval = 300ms;
  o.websocket_connect_timeout = 2s;
  o.log = log.sink();
  return o;
}

// Subscribes an arbitrary handler and waits for the server's confirmation.
void subscribe_handler(test_loop& loop, uvcometd::client& c, const std::string& channel,
                       uvcometd::message_handler h) {
  bool done = false;
  uvcometd::error result;
  REQUIRE_FALSE(c.subscribe(channel, std::move(h), [&](const uvcometd::error& e) {
    result = e;
    done = true;
  }));
  REQUIRE(loop.run_until([&] { return done; }));
  INFO(result.to_string());
  REQUIRE_FALSE(result);
}

// Seq-numbered deliveries: data {"round":R,"seq":S} (or {"i":N}), counted per key.
struct seq_sink {
  std::map<std::pair<long, long>, int> seen;
  std::size_t total = 0;

  uvcometd::message_handler handler() {
    return [this](const uvcometd::message& m) {
      ++total;
      ++seen[{uvcometd::test::json_int(m.data, "round"), uvcometd::test::json_int(m.data, "seq")}];
    };
  }
  int round_count(long r) const {
    int n = 0;
    for (const auto& [k, v] : seen) n += k.first == r ? 1 : 0;
    return n;
  }
  int duplicates() const {
    int n = 0;
    for (const auto& [k, v] : seen) n += v > 1 ? v - 1 : 0;
    return n;
  }
  std::string missing(long r, int count) const {
    std::string out;
    for (int s = 0; s < count; ++s) {
      if (seen.count({r, s}) == 0) out += std::to_string(s) + " ";
    }
    return out;
  }
};

// Publishes probes on `channel` server-side until one reaches `got` (the server may not have the
// (re-)subscription yet). Returns false when none arrived within `limit`.
bool probe_until_delivered(test_loop& loop, server_process& srv, const std::string& channel,
                           const received& got, std::chrono::milliseconds limit = 15s) {
  const auto deadline = steady::now() + limit;
  for (int k = 0; steady::now() < deadline; ++k) {
    const auto before = got.data.size();
    try {
      srv.publish(channel, "{\"probe\":" + std::to_string(k) + "}");
    } catch (const std::exception&) {
      loop.run_for(200ms);
      continue;
    }
    if (loop.run_until([&] { return got.data.size() > before; }, 500ms)) return true;
  }
  return false;
}

// Cuts every connection until the client notices (a cut can miss a connection that is not
// established yet). Returns the number of cuts made, 0 when the client never noticed.
int cut_until_reconnecting(test_loop& loop, fault_proxy& proxy, const state_recorder& states,
                           std::size_t mark) {
  for (int n = 1; n <= 5; ++n) {
    proxy.cut_all();
    if (loop.run_until([&] { return states.find(state::reconnecting, mark).has_value(); }, 2s)) {
      return n;
    }
  }
  return 0;
}

// Closes the loop; when a handle is left open, lists them on stderr (type, active, closing) and
// returns uv_loop_close's error.
int close_loop(test_loop& loop) {
  const int rc = loop.close();
  if (rc != 0) {
    std::fprintf(stderr, "---- handles left open on the loop (uv_loop_close: %s) ----\n", uv_err_name(rc));
    uv_walk(
        loop.get(),
        [](uv_handle_t* h, void*) {
          std::fprintf(stderr, "  %s active=%d closing=%d has_ref=%d data=%p\n",
                       uv_handle_type_name(uv_handle_get_type(h)), uv_is_active(h), uv_is_closing(h),
                       uv_has_ref(h), h->data);
        },
        nullptr);
  }
  return rc;
}

bool reconnected_since(const state_recorder& st, std::size_t mark) {
  return st.saw_then(state::reconnecting, state::connected, mark);
}

// What most scenarios share: a server behind a fault proxy, the loop, the client's state
// transitions and the log. Members are destroyed in reverse order, so the proxy is closed while
// the loop is still there.
struct fault_rig {
  explicit fault_rig(const peer& which, const std::vector<std::string>& args = server_args)
      : p(which), srv(p.script, args), proxy(loop, srv.port()) {}

  // The client's options: through the proxy, with the short knobs of fault_options.
  uvcometd::options options() { return fault_options(*proxy, p, log); }

  // Records the client's transitions and opens it; the open must succeed.
  void open(uvcometd::client& c) {
    states.attach(c);
    const auto err = uvcometd::test::open_and_wait(loop, c);
    INFO(err.to_string());
    REQUIRE_FALSE(err);
  }

  // One round of the cut scenarios: the server publishes `per_round` messages to /flow; once
  // part of them arrived every connection is cut until the client notices, and it must come
  // back. Returns the number of cuts made.
  int publish_and_cut(const seq_sink& sink, int round, int per_round) {
    srv.publish("/flow", "{\"round\":" + std::to_string(round) + "}", per_round);
    // Let part of the round through, then cut while the rest may still be on its way.
    loop.run_until([&] { return sink.round_count(round) > 0; }, 5s);
    const auto mark = states.size();
    const int n = cut_until_reconnecting(loop, *proxy, states, mark);
    const bool back = n > 0 && loop.run_until([&] { return reconnected_since(states, mark); }, 15s);
    INFO(states.describe(mark));
    REQUIRE(n > 0);
    REQUIRE(back);
    return n;
  }

  // Ends the test once its clients are gone: shuts the proxy, then closes the loop, which must
  // have no handle left.
  void shut_down() {
    proxy.shut();
    CHECK(close_loop(loop) == 0);
  }

  const peer p;
  scoped_log log;
  server_process srv;
  test_loop loop;
  proxy_rig proxy;
  state_recorder states;
};

}  // namespace

TEST_CASE("cutting every connection while messages flow: the client reconnects, gets what was "
          "published while away, and nothing twice",
          "[integration][faults]") {
  const peer p = uvcometd::test::pick_peer();
  INFO(p.name);
  fault_rig rig(p);
  seq_sink sink;
  {
    uvcometd::client c(rig.loop.get(), rig.options());
    rig.open(c);
    subscribe_handler(rig.loop, c, "/flow", sink.handler());

    constexpr int rounds = 6;
    constexpr int per_round = 20;
    int cuts = 0;
    for (int r = 0; r < rounds; ++r) {
      INFO("round " << r);
      cuts += rig.publish_and_cut(sink, r, per_round);
      // Whatever of the round was not lost with the cut arrives after the reconnection.
      rig.loop.run_until([&] { return sink.round_count(r) >= per_round; }, 1500ms);
    }

    // (a) Published at once while the client is cut off. Over websocket the server noticed the
    // close and queues them for the session: all must arrive. Over long-polling neither Faye
    // nor CometD watches the socket of a held /meta/connect: the server writes the batch into
    // that dead response (until its 2 s timeout), so it may be lost: reported, not asserted.
    int away_a = 0;
    {
      const auto mark = rig.states.size();
      rig.proxy->cut_all();
      rig.proxy->refuse(true);
      REQUIRE(rig.loop.run_until([&] { return rig.states.find(state::reconnecting, mark).has_value(); }, 10s));
      rig.srv.publish("/flow", R"({"round":100})", per_round);
      rig.loop.run_for(300ms);
      rig.proxy->refuse(false);
      const bool back = rig.loop.run_until([&] { return reconnected_since(rig.states, mark); }, 15s);
      if (p.websocket()) {
        rig.loop.run_until([&] { return sink.round_count(100) >= per_round; }, 15s);
      } else {
        rig.loop.run_for(1500ms);
      }
      away_a = sink.round_count(100);
      INFO(rig.states.describe(mark));
      INFO("missing seqs of the first away batch: " << sink.missing(100, per_round));
      REQUIRE(back);
      if (p.websocket()) CHECK(away_a == per_round);
    }
    // (b) Published while the client is cut off, after the server released the dead held
    // connect (long-polling: wait past the server's 2 s timeout, within the session's lifetime:
    // Faye expires a session 2 x timeout after its last connect arrived, so a fresh connect is
    // made to arrive just before the cut). Every message must arrive after the reconnection.
    {
      rig.srv.publish("/flow", R"({"round":200})");
      REQUIRE(rig.loop.run_until([&] { return sink.round_count(200) == 1; }));
      rig.loop.run_for(100ms);  // the next /meta/connect reaches the server
      const auto mark = rig.states.size();
      rig.proxy->cut_all();
      rig.proxy->refuse(true);
      REQUIRE(rig.loop.run_until([&] { return rig.states.find(state::reconnecting, mark).has_value(); }, 10s));
      if (!p.websocket()) rig.loop.run_for(2300ms);
      rig.srv.publish("/flow", R"({"round":101})", per_round);
      rig.loop.run_for(300ms);
      rig.proxy->refuse(false);
      const bool all = rig.loop.run_until([&] { return sink.round_count(101) >= per_round; }, 15s);
      INFO(rig.states.describe(mark));
      INFO("missing seqs of the second away batch: " << sink.missing(101, per_round));
      CHECK(all);
      CHECK(reconnected_since(rig.states, mark));
    }
    rig.loop.run_for(300ms);
    CHECK(sink.duplicates() == 0);
    CHECK(c.current_state() == state::connected);

    int lost = 0;
    std::string lost_detail;
    for (int r = 0; r < rounds; ++r) {
      const int miss = per_round - sink.round_count(r);
      lost += miss;
      if (miss > 0) lost_detail += "round " + std::to_string(r) + ": " + sink.missing(r, per_round) + "; ";
    }
    figure("%s: scenario 1: %d cuts for %d rounds, %d of %d cut-round messages lost (%s), "
           "away batch published at once %d/%d, after the held connect ended %d/%d, duplicates %d",
           p.name, cuts, rounds, lost, rounds * per_round, lost_detail.c_str(), away_a, per_round,
           sink.round_count(101), per_round, sink.duplicates());
    uvcometd::test::close_and_wait(rig.loop, c);
  }
  rig.shut_down();
}

TEST_CASE("the server is killed and restarted on the same port: re-handshake, re-subscribe, "
          "same handler",
          "[integration][faults]") {
  const peer p = uvcometd::test::pick_peer();
  INFO(p.name);
  fault_rig rig(p);
  received got;
  int lost_subs = 0;
  {
    uvcometd::client c(rig.loop.get(), rig.options());
    c.on_subscription_lost([&](const uvcometd::subscription&, const uvcometd::error&) { ++lost_subs; });
    rig.open(c);
    uvcometd::test::subscribe_and_wait(rig.loop, c, "/restart", got);
    rig.srv.publish("/restart", R"({"before":true})");
    REQUIRE(rig.loop.run_until([&] { return got.data.size() == 1; }));

    constexpr int restarts = 3;
    int survived = 0;
    for (int k = 0; k < restarts; ++k) {
      INFO("restart " << k);
      const std::string old_id = c.client_id();
      const auto mark = rig.states.size();
      rig.srv.stop();
      REQUIRE(rig.loop.run_until([&] { return rig.states.find(state::reconnecting, mark).has_value(); }, 10s));
      rig.loop.run_for(200ms);  // a few failed attempts against the dead server
      rig.srv.restart();
      const bool back = rig.loop.run_until(
          [&] {
            return reconnected_since(rig.states, mark) && c.current_state() == state::connected &&
                   !c.client_id().empty() && c.client_id() != old_id;
          },
          20s);
      INFO(rig.states.describe(mark));
      REQUIRE(back);
      // Messages published server-side afterwards reach the same local handler.
      REQUIRE(probe_until_delivered(rig.loop, rig.srv, "/restart", got));
      const auto before = got.data.size();
      rig.srv.publish("/restart", "{\"restart\":" + std::to_string(k) + "}", 5);
      REQUIRE(rig.loop.run_until([&] { return got.data.size() >= before + 5; }));
      for (int s = 0; s < 5; ++s) {
        CHECK(got.data[before + s] ==
              "{\"restart\":" + std::to_string(k) + ",\"seq\":" + std::to_string(s) + "}");
      }
      ++survived;
    }
    CHECK(lost_subs == 0);
    figure("%s: scenario 2: survived %d server restarts", p.name, survived);
    uvcometd::test::close_and_wait(rig.loop, c);
  }
  rig.shut_down();
}

TEST_CASE("an outage longer than connection_timeout ends in failed with connection_timeout and "
          "no further attempts",
          "[integration][faults]") {
  const peer p = uvcometd::test::pick_peer();
  const bool hard = GENERATE(false, true);  // refuse(true), or stop_listening()
  INFO(p.name << (hard ? ", listener closed" : ", connections reset"));
  fault_rig rig(p);
  {
    auto o = rig.options();
    o.connection_timeout = 1s;
    uvcometd::client c(rig.loop.get(), o);
    rig.open(c);
    received got;
    uvcometd::test::subscribe_and_wait(rig.loop, c, "/ct", got);

    const auto mark = rig.states.size();
    const auto outage = steady::now();
    rig.proxy->cut_all();
    if (hard) {
      rig.proxy->stop_listening();
    } else {
      rig.proxy->refuse(true);
    }
    REQUIRE(rig.loop.run_until([&] { return rig.states.find(state::reconnecting, mark).has_value(); }, 5s));
    int pub_done = 0;
    uvcometd::error pub_err;
    REQUIRE_FALSE(c.publish("/ct", R"({"during":"outage"})", [&](const uvcometd::error& e) {
      pub_err = e;
      ++pub_done;
    }));

    const bool gave_up =
        rig.loop.run_until([&] { return rig.states.find(state::failed, mark).has_value(); }, 15s);
    INFO(rig.states.describe(mark));
    REQUIRE(gave_up);
    const auto failed = rig.states.events[*rig.states.find(state::failed, mark)];
    INFO(failed.why.to_string());
    CHECK(failed.why.code == errc::connection_timeout);
    CHECK(failed.at - outage >= 1s);
    CHECK(c.current_state() == state::failed);
    figure("%s%s: scenario 3: failed %ld ms after the outage began", p.name,
           hard ? " (listener closed)" : " (reset)", ms_between(outage, failed.at));

    // No connection attempt follows, even once the proxy accepts again.
    if (hard) REQUIRE(rig.proxy->start_listening() == 0);
    const auto accepted = rig.proxy->accepted();
    rig.loop.run_for(1500ms);
    CHECK(rig.proxy->accepted() == accepted);
    CHECK(c.current_state() == state::failed);
    CHECK(rig.states.count(state::reconnecting, mark) == 1);
    CHECK(rig.states.count(state::connected, mark) == 0);

    // The publish issued during the outage completed exactly once, with connection_timeout.
    CHECK(pub_done == 1);
    INFO(pub_err.to_string());
    CHECK(pub_err.code == errc::connection_timeout);
    uvcometd::test::close_and_wait(rig.loop, c);
    CHECK(pub_done == 1);
  }
  rig.shut_down();
}

TEST_CASE("with connection_timeout 0 the client keeps trying through an outage and recovers",
          "[integration][faults]") {
  const peer p = uvcometd::test::pick_peer();
  INFO(p.name);
  fault_rig rig(p);
  {
    auto o = rig.options();
    o.connection_timeout = 0ms;
    uvcometd::client c(rig.loop.get(), o);
    rig.open(c);
    received got;
    uvcometd::test::subscribe_and_wait(rig.loop, c, "/forever", got);

    const auto mark = rig.states.size();
    rig.proxy->cut_all();
    rig.proxy->refuse(true);
    REQUIRE(rig.loop.run_until([&] { return rig.states.find(state::reconnecting, mark).has_value(); }, 5s));
    rig.loop.run_for(1500ms);
    const auto accepted = rig.proxy->accepted();
    rig.loop.run_for(1000ms);
    INFO(rig.states.describe(mark));  // (as of now)
    CHECK(rig.proxy->accepted() > accepted);  // still trying, well past 1 s
    CHECK(c.current_state() == state::reconnecting);
    CHECK_FALSE(rig.states.find(state::failed, mark).has_value());
    figure("%s: scenario 3b: %zu attempts in the last second of a 2.5 s outage", p.name,
           rig.proxy->accepted() - accepted);

    rig.proxy->refuse(false);
    REQUIRE(rig.loop.run_until([&] { return reconnected_since(rig.states, mark); }, 15s));
    CHECK(probe_until_delivered(rig.loop, rig.srv, "/forever", got));
    uvcometd::test::close_and_wait(rig.loop, c);
  }
  rig.shut_down();
}

TEST_CASE("a black hole is detected and the client recovers once it ends", "[integration][faults]") {
  const peer p = uvcometd::test::pick_peer();
  INFO(p.name);
  fault_rig rig(p);
  {
    uvcometd::client c(rig.loop.get(), rig.options());
    rig.open(c);
    received got;
    uvcometd::test::subscribe_and_wait(rig.loop, c, "/bh", got);
    REQUIRE(probe_until_delivered(rig.loop, rig.srv, "/bh", got));
    rig.loop.run_for(100ms);  // the next connect is held

    const auto mark = rig.states.size();
    const auto start = steady::now();
    rig.proxy->blackhole(true);
    // Long-polling: the held connect's deadline (advice.timeout 2 s + max_network_delay 1 s);
    // websocket: two silent ping periods (2 x 300 ms). 15 s only bounds progress.
    REQUIRE(rig.loop.run_until([&] { return rig.states.find(state::reconnecting, mark).has_value(); }, 15s));
    const auto ev = rig.states.events[*rig.states.find(state::reconnecting, mark)];
    INFO(ev.why.to_string());
    CHECK(ev.why.code == errc::timeout);
    figure("%s: scenario 4: black hole detected after %ld ms (%s)", p.name,
           ms_between(start, ev.at), ev.why.to_string().c_str());
    rig.loop.run_for(500ms);
    rig.proxy->blackhole(false);
    const bool back = rig.loop.run_until([&] { return reconnected_since(rig.states, mark); }, 20s);
    INFO(rig.states.describe(mark));
    REQUIRE(back);
    CHECK(probe_until_delivered(rig.loop, rig.srv, "/bh", got));
    // Client publishes flow too.
    int acks = 0;
    uvcometd::error ack_err;
    REQUIRE_FALSE(c.publish("/bh", R"({"after":"blackhole"})", [&](const uvcometd::error& e) {
      ack_err = e;
      ++acks;
    }));
    REQUIRE(rig.loop.run_until([&] { return acks == 1; }));
    INFO(ack_err.to_string());
    CHECK_FALSE(ack_err);
    uvcometd::test::close_and_wait(rig.loop, c);
  }
  rig.shut_down();
}

TEST_CASE("advice none from the server ends in failed with the server's error",
          "[integration][faults]") {
  const peer p = uvcometd::test::pick_peer();
  INFO(p.name);
  fault_rig rig(p);
  {
    uvcometd::client c(rig.loop.get(), rig.options());
    rig.open(c);
    received got;
    uvcometd::test::subscribe_and_wait(rig.loop, c, "/none", got);
    const auto mark = rig.states.size();
    rig.srv.control("/control/advice-none", R"({"enabled":true})");
    const bool over =
        rig.loop.run_until([&] { return rig.states.find(state::failed, mark).has_value(); }, 15s);
    INFO(rig.states.describe(mark));
    REQUIRE(over);
    const auto failed = rig.states.events[*rig.states.find(state::failed, mark)];
    INFO(failed.why.to_string());
    CHECK(failed.why.code == errc::server_error);
    CHECK(failed.why.server_code == 403);
    CHECK(failed.why.message.find("terminated") != std::string::npos);
    CHECK(c.current_state() == state::failed);
    // Over: no more attempts, calls fail synchronously.
    const auto accepted = rig.proxy->accepted();
    rig.loop.run_for(800ms);
    CHECK(rig.proxy->accepted() == accepted);
    CHECK(c.publish("/none", "1", [](const uvcometd::error&) { FAIL("ran"); }) == errc::invalid_state);
    uvcometd::test::close_and_wait(rig.loop, c);
  }
  rig.shut_down();
}

TEST_CASE("a hundred cuts: every publish completes exactly once and the client ends connected",
          "[integration][faults]") {
  const peer p = uvcometd::test::pick_peer();
  INFO(p.name);
  // Faye answers a new /meta/connect only when the cut one's hold timer ends (it does not watch
  // the request socket and keeps the first timer), so each reconnection there can take up to the
  // server timeout: 1 s here keeps 100 cuts well inside the 60 s bound.
  fault_rig rig(p, {"--timeout", "1"});
  {
    auto o = rig.options();
    o.connection_timeout = 0ms;  // retry forever: the test bounds the time itself
    uvcometd::client c(rig.loop.get(), o);
    rig.open(c);
    std::map<long, int> echoed;  // own publishes received back, per index
    received finals;
    subscribe_handler(rig.loop, c, "/rep", [&](const uvcometd::message& m) {
      const long i = uvcometd::test::json_int(m.data, "i");
      if (i >= 0) {
        ++echoed[i];
      } else {
        finals.data.emplace_back(m.data);
      }
    });

    constexpr int max_cuts = 100;
    std::vector<int> completions(max_cuts, 0);
    std::vector<uvcometd::error> results(max_cuts);
    const auto start = steady::now();
    const auto mark = rig.states.size();
    int cuts = 0, cuts_connected = 0;
    for (int i = 0; i < max_cuts && steady::now() - start < 60s; ++i) {
      // Three cuts in four hit an established session; the fourth lands wherever the previous
      // cut left the client (often still reconnecting).
      if (i % 4 != 0) {
        rig.loop.run_for(20ms);  // the previous cut is noticed
        rig.loop.run_until([&] { return c.current_state() == state::connected; }, 5s);
      }
      REQUIRE_FALSE(c.publish("/rep", "{\"i\":" + std::to_string(i) + "}",
                              [&completions, &results, i](const uvcometd::error& e) {
                                ++completions[i];
                                results[i] = e;
                              }));
      // Vary where the cut lands: before the publish leaves, while it is in flight, after its
      // reply.
      switch (i % 4) {
        case 0: break;
        case 1: break;
        case 2: rig.loop.run_for(3ms); break;
        case 3: rig.loop.run_until([&] { return completions[i] > 0; }, 2s); break;
      }
      if (c.current_state() == state::connected) ++cuts_connected;
      rig.proxy->cut_all();
      ++cuts;
    }
    const auto elapsed = steady::now() - start;
    INFO(cuts << " cuts");
    rig.loop.run_for(200ms);  // the last cut is noticed (the state may still read connected)
    REQUIRE(rig.loop.run_until(
        [&] {
          if (c.current_state() != state::connected) return false;
          for (int i = 0; i < cuts; ++i) {
            if (completions[i] == 0) return false;
          }
          return true;
        },
        30s));
    const auto settled = rig.states.size();
    rig.loop.run_for(300ms);  // late duplicates would show up now
    INFO("transitions after settling: " << rig.states.describe(settled));
    CHECK(rig.states.size() == settled);

    int not_once = 0, failed = 0, dup_echo = 0;
    std::string detail;
    std::map<std::string, int> failure_kinds;
    for (int i = 0; i < cuts; ++i) {
      if (completions[i] != 1) {
        ++not_once;
        detail += std::to_string(i) + "x" + std::to_string(completions[i]) + " ";
      }
      if (results[i]) {
        ++failed;
        ++failure_kinds[results[i].code.message()];
      }
    }
    for (const auto& [i, n] : echoed) dup_echo += n > 1 ? n - 1 : 0;
    INFO("publishes not completed exactly once: " << detail);
    CHECK(not_once == 0);
    CHECK(dup_echo == 0);
    CHECK(c.current_state() == state::connected);
    CHECK_FALSE(rig.states.find(state::failed, mark).has_value());
    CHECK(probe_until_delivered(rig.loop, rig.srv, "/rep", finals));

    std::string kinds;
    for (const auto& [k, n] : failure_kinds) kinds += k + "=" + std::to_string(n) + " ";
    // How long each reconnection took (reconnecting -> connected).
    long longest = 0, total_ms = 0, slow = 0, n_re = 0;
    for (std::size_t k = mark; k < rig.states.size(); ++k) {
      if (rig.states.events[k].s != state::reconnecting) continue;
      const auto back = rig.states.find(state::connected, k + 1);
      if (!back) continue;
      const long d = ms_between(rig.states.events[k].at, rig.states.events[*back].at);
      longest = std::max(longest, d);
      total_ms += d;
      slow += d > 1000 ? 1 : 0;
      ++n_re;
    }
    figure("%s: scenario 6: reconnections took %ld ms on average, %ld ms at most, %ld over 1 s",
           p.name, n_re ? total_ms / n_re : 0L, longest, slow);
    figure("%s: scenario 6: %d cuts (%d of a connected client) in %ld ms, %zu reconnections "
           "(reconnecting -> connected), "
           "%d/%d publishes failed (%s), %zu/%d echoed back, duplicates %d",
           p.name, cuts, cuts_connected, static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()),
           rig.states.count(state::connected, mark), failed, cuts, kinds.c_str(), echoed.size(), cuts, dup_echo);
    uvcometd::test::close_and_wait(rig.loop, c);
    CHECK(std::all_of(completions.begin(), completions.begin() + cuts, [](int n) { return n == 1; }));
  }
  rig.shut_down();
}

TEST_CASE("publish while reconnecting: queued until reconnected, or not_connected at once",
          "[integration][faults]") {
  const peer p = uvcometd::test::pick_peer();
  const bool queue = GENERATE(true, false);
  INFO(p.name << (queue ? ", queueing" : ", not queueing"));
  fault_rig rig(p);
  {
    auto o = rig.options();
    o.queue_while_reconnecting = queue;
    uvcometd::client c(rig.loop.get(), o);
    rig.open(c);
    received got;
    uvcometd::test::subscribe_and_wait(rig.loop, c, "/pq", got);

    const auto mark = rig.states.size();
    rig.proxy->cut_all();
    rig.proxy->refuse(true);
    REQUIRE(rig.loop.run_until([&] { return rig.states.find(state::reconnecting, mark).has_value(); }, 5s));
    REQUIRE(c.current_state() == state::reconnecting);
    int done = 0;
    uvcometd::error err;
    const auto ec = c.publish("/pq", R"({"while":"reconnecting"})", [&](const uvcometd::error& e) {
      err = e;
      ++done;
    });
    if (queue) {
      REQUIRE_FALSE(ec);
      rig.loop.run_for(300ms);
      CHECK(done == 0);  // waits for the connection
      rig.proxy->refuse(false);
      REQUIRE(rig.loop.run_until([&] { return done == 1; }, 15s));
      INFO(err.to_string());
      CHECK_FALSE(err);
      REQUIRE(rig.loop.run_until([&] { return got.data.size() == 1; }));
      CHECK(got.data[0] == R"({"while":"reconnecting"})");
      CHECK(c.current_state() == state::connected);
    } else {
      CHECK(ec == errc::not_connected);
      rig.proxy->refuse(false);
      REQUIRE(rig.loop.run_until([&] { return reconnected_since(rig.states, mark); }, 15s));
      rig.loop.run_for(200ms);
      CHECK(done == 0);  // a synchronous failure never runs the completion
      CHECK(got.data.empty());
      // Once connected again publishing works.
      REQUIRE_FALSE(c.publish("/pq", R"({"after":1})", [&](const uvcometd::error& e) {
        err = e;
        ++done;
      }));
      REQUIRE(rig.loop.run_until([&] { return done == 1 && got.data.size() == 1; }));
      CHECK_FALSE(err);
    }
    uvcometd::test::close_and_wait(rig.loop, c);
  }
  rig.shut_down();
}

TEST_CASE("reconnect_now drops the connection and re-establishes it", "[integration][faults]") {
  const peer p = uvcometd::test::pick_peer();
  INFO(p.name);
  fault_rig rig(p);
  {
    auto o = rig.options();
    uvcometd::client idle(rig.loop.get(), o);
    CHECK(idle.reconnect_now() == errc::invalid_state);  // not open

    uvcometd::client c(rig.loop.get(), o);
    rig.open(c);
    received got;
    uvcometd::test::subscribe_and_wait(rig.loop, c, "/rn", got);
    rig.loop.run_for(100ms);
    for (int k = 0; k < 3; ++k) {
      INFO("reconnect_now #" << k);
      const auto mark = rig.states.size();
      const auto accepted = rig.proxy->accepted();
      REQUIRE_FALSE(c.reconnect_now());
      const bool back = rig.loop.run_until([&] { return reconnected_since(rig.states, mark); }, 15s);
      INFO(rig.states.describe(mark));
      REQUIRE(back);
      if (p.websocket()) CHECK(rig.proxy->accepted() > accepted);  // a new websocket connection
      const auto before = got.data.size();
      rig.srv.publish("/rn", "{\"k\":" + std::to_string(k) + "}", 3);
      REQUIRE(rig.loop.run_until([&] { return got.data.size() >= before + 3; }));
      CHECK(got.data.size() == before + 3);
    }
    uvcometd::test::close_and_wait(rig.loop, c);
    uvcometd::test::close_and_wait(rig.loop, idle);
  }
  rig.shut_down();
}

TEST_CASE("an expired session is re-handshaken and re-subscribed; the old handler gets messages",
          "[integration][faults]") {
  const peer p = uvcometd::test::pick_peer();
  INFO(p.name);
  fault_rig rig(p);
  {
    uvcometd::client c(rig.loop.get(), rig.options());
    int lost_subs = 0;
    c.on_subscription_lost([&](const uvcometd::subscription&, const uvcometd::error&) { ++lost_subs; });
    rig.open(c);
    received got;
    uvcometd::test::subscribe_and_wait(rig.loop, c, "/exp", got);
    rig.srv.publish("/exp", R"({"before":1})");
    REQUIRE(rig.loop.run_until([&] { return got.data.size() == 1; }));

    const std::string old_id = c.client_id();
    const auto mark = rig.states.size();
    const auto start = steady::now();
    rig.srv.control("/control/expire", "{}");
    const bool renewed = rig.loop.run_until(
        [&] {
          return c.current_state() == state::connected && !c.client_id().empty() &&
                 c.client_id() != old_id;
        },
        20s);
    INFO(rig.states.describe(mark));
    REQUIRE(renewed);
    CHECK(reconnected_since(rig.states, mark));
    const auto re = rig.states.find(state::reconnecting, mark);
    if (re) {
      figure("%s: scenario 9: expiry noticed after %ld ms: %s", p.name,
             ms_between(start, rig.states.events[*re].at), rig.states.events[*re].why.to_string().c_str());
    }
    REQUIRE(probe_until_delivered(rig.loop, rig.srv, "/exp", got));
    const auto before = got.data.size();
    rig.srv.publish("/exp", R"({"after":"expiry"})");
    REQUIRE(rig.loop.run_until([&] { return got.data.size() == before + 1; }));
    CHECK(got.data.back() == R"({"after":"expiry"})");
    CHECK(lost_subs == 0);
    uvcometd::test::close_and_wait(rig.loop, c);
  }
  rig.shut_down();
}

TEST_CASE("a refused websocket upgrade falls back to long-polling and says why",
          "[integration][faults]") {
  scoped_log log;
  server_process srv("faye-server.js", {"--timeout", "2", "--upgrade", "1"});
  test_loop loop;
  state_recorder states;
  {
    uvcometd::options o;
    o.url = srv.url();  // default connection types: websocket first
    o.connection_timeout = 10s;
    o.backoff_initial = 50ms;
    o.backoff_max = 500ms;
    o.max_network_delay = 1s;
    o.log = log.sink();
    uvcometd::client c(loop.get(), o);
    states.attach(c);
    const auto err = uvcometd::test::open_and_wait(loop, c);
    INFO(err.to_string() << "; states: " << states.describe());
    REQUIRE_FALSE(err);
    CHECK(c.current_connection_type() == connection_type::long_polling);
    // Some transition carried the websocket failure; the connected one names long-polling.
    std::optional<std::size_t> why_at;
    for (std::size_t i = 0; i < states.size(); ++i) {
      if (states.events[i].why) {
        why_at = i;
        break;
      }
    }
    REQUIRE(why_at.has_value());
    const auto conn = states.find(state::connected, *why_at);
    REQUIRE(conn.has_value());
    CHECK(states.events[*conn].t == connection_type::long_polling);
    figure("faye --upgrade 1: states %s", states.describe().c_str());
    received got;
    uvcometd::test::subscribe_and_wait(loop, c, "/fb", got);
    CHECK(probe_until_delivered(loop, srv, "/fb", got));
    uvcometd::test::close_and_wait(loop, c);
  }
  CHECK(close_loop(loop) == 0);
}

TEST_CASE("an unanswered websocket upgrade falls back to long-polling after "
          "websocket_connect_timeout",
          "[integration][faults]") {
  scoped_log log;
  server_process srv("faye-server.js", {"--timeout", "2", "--upgrade", "2"});
  test_loop loop;
  state_recorder states;
  {
    uvcometd::options o;
    o.url = srv.url();
    o.connection_timeout = 10s;
    o.websocket_connect_timeout = 500ms;
    o.backoff_initial = 50ms;
    o.backoff_max = 500ms;
    o.max_network_delay = 1s;
    o.log = log.sink();
    uvcometd::client c(loop.get(), o);
    states.attach(c);
    const auto start = steady::now();
    const auto err = uvcometd::test::open_and_wait(loop, c);
    INFO(err.to_string() << "; states: " << states.describe());
    REQUIRE_FALSE(err);
    CHECK(c.current_connection_type() == connection_type::long_polling);
    const auto conn = states.find(state::connected);
    REQUIRE(conn.has_value());
    CHECK(states.events[*conn].t == connection_type::long_polling);
    CHECK(states.events[*conn].at - start >= 500ms);  // waited for the websocket first
    figure("faye --upgrade 2: connected over long-polling after %ld ms; states %s",
           ms_between(start, states.events[*conn].at), states.describe().c_str());
    received got;
    uvcometd::test::subscribe_and_wait(loop, c, "/fb2", got);
    CHECK(probe_until_delivered(loop, srv, "/fb2", got));
    uvcometd::test::close_and_wait(loop, c);
  }
  CHECK(close_loop(loop) == 0);
}

TEST_CASE("with the ack extension, cometd-nodejs-server re-sends what cut connections lost: "
          "nothing lost, nothing twice",
          "[integration][faults][ack]") {
  // The same cuts that lose messages on CometD without acknowledgements (the first scenario):
  // the server writes a batch into a held response whose connection the proxy has cut.
  const peer p = uvcometd::test::cometd_long_polling();
  fault_rig rig(p, {"--timeout", "2", "--ack", "1"});
  seq_sink sink;
  auto ack = std::make_shared<uvcometd::ack_extension>();
  constexpr int rounds = 8;
  constexpr int per_round = 20;
  int cuts = 0;
  {
    auto o = rig.options();
    o.extensions = {ack};
    uvcometd::client c(rig.loop.get(), o);
    rig.open(c);
    CHECK(ack->enabled());
    subscribe_handler(rig.loop, c, "/flow", sink.handler());

    for (int r = 0; r < rounds; ++r) {
      INFO("round " << r);
      cuts += rig.publish_and_cut(sink, r, per_round);
      const bool all = rig.loop.run_until([&] { return sink.round_count(r) >= per_round; }, 10s);
      INFO("missing: " << sink.missing(r, per_round));
      CHECK(all);
    }
    // Published while the client is cut off and the held connect is still open on the server:
    // written into a dead response, re-sent because the next connect does not acknowledge it.
    {
      const auto mark = rig.states.size();
      rig.proxy->cut_all();
      rig.proxy->refuse(true);
      REQUIRE(rig.loop.run_until([&] { return rig.states.find(state::reconnecting, mark).has_value(); }, 10s));
      rig.srv.publish("/flow", R"({"round":100})", per_round);
      rig.loop.run_for(300ms);
      rig.proxy->refuse(false);
      REQUIRE(rig.loop.run_until([&] { return reconnected_since(rig.states, mark); }, 15s));
      const bool all = rig.loop.run_until([&] { return sink.round_count(100) >= per_round; }, 10s);
      INFO("missing: " << sink.missing(100, per_round));
      CHECK(all);
    }
    rig.loop.run_for(500ms);
    CHECK(sink.duplicates() == 0);
    CHECK(c.current_state() == state::connected);
    CHECK(ack->batch() > 0);
    int lost = 0;
    for (int r = 0; r < rounds; ++r) lost += per_round - sink.round_count(r);
    figure("%s + ack: %d cuts for %d rounds, %d of %d cut-round messages lost, away batch %d/%d, "
           "duplicates %d, last batch %lld",
           p.name, cuts, rounds, lost, rounds * per_round, sink.round_count(100), per_round,
           sink.duplicates(), static_cast<long long>(ack->batch()));
    uvcometd::test::close_and_wait(rig.loop, c);
  }
  rig.shut_down();
}
