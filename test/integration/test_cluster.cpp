// Issue 14 against a real cluster (cluster.hpp: redis-server, Faye 1.4.3 nodes sharing sessions
// through faye-redis 0.2.0, HAProxy): a uvcometd client subscribed to a numbered stream of
// server-side publishes (40 msg/s) while the node it is on dies, all nodes die, the nodes share
// nothing, or a node sends advice.hosts. Each scenario runs on long-polling and on websocket.
//
// The stream is published by a node the client never uses (node C, the application's backend:
// a publish acknowledged by a node that is then SIGKILLed may never reach Redis, which would be
// the publisher's loss, not the client's). The nodes stamp each delivery with their name
// (--stamp-node), so the first message from the new node is known exactly.
//
// What is asserted is what the library promises: with shared sessions the session continues on
// the new node (no new handshake counted by any node, no unknown client), no message arrives
// twice, every publish the client made completes exactly once, the client is connected again
// within a bound and never fails. Loss: faye-redis 0.2.0 drops messages over long-polling by
// itself (it drains a client's queue for a poll that closed meanwhile: "dropped" in the node
// stats), failure or not; and a node SIGKILLed between draining the queue and writing loses
// what it drained (the delivery logs tell those apart: outcome::lost_with_killed). Each
// shared-session scenario runs with the rig's requeue_dropped patch, where the client may lose
// nothing else, and as faye-redis is, where it may lose no more than the nodes dropped. Behind
// HAProxy over long-polling each request may go to either node (round robin): in every run so
// far HAProxy counted no request cut on the killed node and redispatched those sent to it after
// its death, and the client saw no failure at all (its "->connected" is then -1). Without shared
// sessions (scenario 4) or when a node ends the session (scenario 5) the client re-handshakes: what
// was published while it had no session is lost, and that is measured; what is published once it
// re-subscribed must all arrive.
//
// UVCOMETD_TEST_REPORT=1 prints one line per scenario and transport: published, received, lost,
// duplicated, dropped and requeued by the nodes, kill-to-connected and kill-to-first-message,
// the client's own publishes and how many failed:
//   UVCOMETD_TEST_REPORT=1 UVCOMETD_SERVERS_DIR=$PWD/test/servers
//     build-asan/test/integration_tests -# '[#test_cluster]'
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <curl/curl.h>

#include "bayeux_peers.hpp"
#include "child_process.hpp"
#include "client_helpers.hpp"
#include "cluster.hpp"
#include "uvcometd/client.hpp"

using namespace std::chrono_literals;
using namespace uvcometd;
using namespace uvcometd::test;
using nlohmann::json;

namespace {

// The stream: one server-side publish every stream_period (40 msg/s) on stream_channel.
constexpr auto stream_period = 25ms;
const std::string stream_channel = "/st/x";
// Messages received before the failure (the stream is flowing) and after it (it flows again).
constexpr std::size_t warm_up = 20;
constexpr std::size_t flowing_again = 20;
// Bounds: every wait of a scenario ends by then.
constexpr auto step_limit = 15s;
// After the publisher stopped: once no message arrived for this long, nothing more will (a
// faye-redis node delivers a queued message at once to the poll or websocket it holds).
constexpr auto quiet_after_stream = 1500ms;
// The client publishes too (every completion must run exactly once across the failover).
constexpr auto client_publish_period = 100ms;
// Connected again after a node's death, with a URL list or behind HAProxy: a retry on the same
// server after the backoff (250 ms at first), then the next one at once, plus the resumed
// connect held up to 1 s. Generous for a loaded machine.
constexpr auto failover_bound = 5s;

bool websocket_run(int transport) { return transport == 1; }
const char* transport_name(int transport) {
  return websocket_run(transport) ? "websocket" : "long-polling";
}
std::vector<connection_type> types_of(int transport) {
  return {websocket_run(transport) ? connection_type::websocket : connection_type::long_polling};
}

// ---- the server-side stream ----

struct publish_record {
  int seq = 0;
  steady::time_point sent;  // when its first request left
  std::vector<bool> ok;     // per target: answered {"published":1}
  bool any() const { return std::find(ok.begin(), ok.end(), true) != ok.end(); }
};

// A thread publishing {"seq":0,1,...} on `channel` through the control API of each of
// `targets` (node base URLs) every `period`, until stop(). Its own libcurl handles.
class stream_publisher {
 public:
  stream_publisher(std::vector<std::string> targets, std::string channel,
                   std::chrono::milliseconds period)
      : targets_(std::move(targets)), channel_(std::move(channel)), period_(period) {
    curl_global_init(CURL_GLOBAL_DEFAULT);  // before any thread of ours uses libcurl
    thread_ = std::thread([this] { run(); });
  }
  ~stream_publisher() {
    stop();
    curl_global_cleanup();
  }
  stream_publisher(const stream_publisher&) = delete;
  stream_publisher& operator=(const stream_publisher&) = delete;

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  std::vector<publish_record> records() const {
    std::lock_guard<std::mutex> lock(mu_);
    return records_;
  }

 private:
  void run() {
    std::vector<std::unique_ptr<http_peer>> peers;
    for (std::size_t i = 0; i < targets_.size(); ++i)
      peers.push_back(std::make_unique<http_peer>());
    const auto t0 = steady::now();
    for (int seq = 0;; ++seq) {
      publish_record r;
      r.seq = seq;
      r.sent = steady::now();
      for (std::size_t i = 0; i < targets_.size(); ++i) {
        const http_reply reply =
            peers[i]->post(targets_[i] + "/control/publish",
                           json{{"channel", channel_}, {"data", {{"seq", seq}}}}, 2000);
        const json body = json::parse(reply.body, nullptr, false);
        r.ok.push_back(reply.rc == CURLE_OK && reply.status == 200 && body.is_object() &&
                       body.value("published", 0) == 1);
      }
      std::unique_lock<std::mutex> lock(mu_);
      records_.push_back(std::move(r));
      // Paced: the next one on schedule (a paced load, not a wait for an event).
      if (cv_.wait_until(lock, t0 + (seq + 1) * period_, [this] { return stop_; })) return;
    }
  }

  const std::vector<std::string> targets_;
  const std::string channel_;
  const std::chrono::milliseconds period_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::vector<publish_record> records_;
  std::thread thread_;
};

// ---- the client under test ----

struct arrival {
  int seq;
  std::string node;  // the node that delivered it (ext.node)
  steady::time_point at;
};

struct meta_event {
  std::string channel;
  bool successful;
  std::string url;  // current_url() then
  steady::time_point at;
};

// A uvcometd client on its own loop, subscribed to the stream, publishing on its own, with
// everything it saw recorded.
class watched_client {
 public:
  explicit watched_client(options o) {
    o.log = log_.sink();
    c_ = std::make_unique<client>(loop_.get(), std::move(o));
    states_.attach(*c_);
    REQUIRE_FALSE(c_->on_meta("/meta/**", [this](const meta_message& m) {
      metas_.push_back({std::string(m.channel), m.successful, c_->current_url(), steady::now()});
    }));
  }
  ~watched_client() {
    if (c_) finish();
  }

  client& get() { return *c_; }
  const client& get() const { return *c_; }
  const std::vector<arrival>& arrivals() const { return arrivals_; }
  const state_recorder& states() const { return states_; }
  const std::vector<meta_event>& metas() const { return metas_; }
  std::string log_tail() const { return log_.tail(60); }

  // Runs the loop (the client's publishes going on) until pred() or `limit`.
  bool run_until(const std::function<bool()>& pred, std::chrono::milliseconds limit = step_limit) {
    return loop_.run_until(
        [&] {
          tick();
          return pred();
        },
        limit);
  }

  void open_and_subscribe() {
    REQUIRE_FALSE(open_and_wait(loop_, *c_));
    bool done = false;
    error result;
    REQUIRE_FALSE(c_->subscribe(
        stream_channel, [this](const message& m) { on_message(m); },
        [&](const error& e) {
          result = e;
          done = true;
        }));
    REQUIRE(run_until([&] { return done; }));
    INFO(result.to_string());
    REQUIRE_FALSE(result);
    publishing_ = true;
    next_publish_ = steady::now();
  }

  // Waits for `n` more messages than now.
  bool wait_more(std::size_t n, std::chrono::milliseconds limit = step_limit) {
    const std::size_t want = arrivals_.size() + n;
    return run_until([&] { return arrivals_.size() >= want; }, limit);
  }

  // The first message after `t` from a node other than `not_from` ("" = any node).
  std::optional<arrival> first_after(steady::time_point t, const std::string& not_from = "") const {
    for (const auto& a : arrivals_) {
      if (a.at > t && a.node != not_from) return a;
    }
    return std::nullopt;
  }
  // The first transition to `connected` after `t`.
  std::optional<steady::time_point> connected_after(steady::time_point t) const {
    for (const auto& e : states_.events) {
      if (e.at > t && e.s == state::connected) return e.at;
    }
    return std::nullopt;
  }
  // Successful meta replies on `channel` after `t`.
  std::vector<meta_event> metas_after(steady::time_point t, const std::string& channel,
                                      bool successful = true) const {
    std::vector<meta_event> out;
    for (const auto& m : metas_) {
      if (m.at > t && m.channel == channel && m.successful == successful) out.push_back(m);
    }
    return out;
  }

  // After the publisher stopped: waits until every published seq arrived, or nothing arrived
  // for quiet_after_stream.
  void drain(const std::vector<publish_record>& published) {
    std::set<int> want;
    for (const auto& r : published) {
      if (r.any()) want.insert(r.seq);
    }
    std::size_t seen = arrivals_.size();
    auto last_news = steady::now();
    run_until(
        [&] {
          if (arrivals_.size() != seen) {
            seen = arrivals_.size();
            last_news = steady::now();
          }
          return std::all_of(want.begin(), want.end(),
                             [&](int s) { return counts_.count(s) != 0; }) ||
                 steady::now() - last_news >= quiet_after_stream;
        },
        step_limit);
  }

  // How often each seq arrived.
  const std::map<int, int>& counts() const { return counts_; }
  int duplicated() const {
    int n = 0;
    for (const auto& [seq, k] : counts_) n += k > 1 ? k - 1 : 0;
    return n;
  }

  // Closes the client: every publish it made has completed exactly once by then.
  void finish() {
    publishing_ = false;
    close_and_wait(loop_, *c_);
    c_.reset();
    CHECK(loop_.close() == 0);
    int twice = 0, never = 0;
    for (int n : completions_) {
      twice += n > 1 ? 1 : 0;
      never += n == 0 ? 1 : 0;
    }
    INFO(completions_.size() << " client publishes, " << publish_errors_ << " failed");
    CHECK(twice == 0);
    CHECK(never == 0);
    CHECK(!completions_.empty());
  }
  std::size_t client_publishes() const { return completions_.size(); }
  int client_publish_errors() const { return publish_errors_; }

 private:
  void on_message(const message& m) {
    const json data = json::parse(m.data.begin(), m.data.end(), nullptr, false);
    const json ext =
        m.ext.empty() ? json() : json::parse(m.ext.begin(), m.ext.end(), nullptr, false);
    arrival a;
    a.seq = data.is_object() ? data.value("seq", -1) : -1;
    a.node = ext.is_object() ? ext.value("node", "") : "";
    a.at = steady::now();
    ++counts_[a.seq];
    arrivals_.push_back(std::move(a));
  }

  // The client's own publishes: one every client_publish_period, whatever the state.
  void tick() {
    if (!publishing_ || !c_ || steady::now() < next_publish_) return;
    next_publish_ += client_publish_period;
    const std::size_t k = completions_.size();
    completions_.push_back(0);
    const auto ec =
        c_->publish("/up/x", "{\"n\":" + std::to_string(k) + "}", [this, k](const error& e) {
          ++completions_[k];
          if (e) ++publish_errors_;
        });
    if (ec) completions_[k] = 1;  // refused synchronously: no completion will run
  }

  test_loop loop_;
  log_capture log_;
  state_recorder states_;
  std::unique_ptr<client> c_;
  std::vector<arrival> arrivals_;
  std::map<int, int> counts_;
  std::vector<meta_event> metas_;
  std::vector<int> completions_;
  int publish_errors_ = 0;
  bool publishing_ = false;
  steady::time_point next_publish_;
};

// ---- one scenario: the stream, a disruption, the stream again ----

// Fails the test, with the client's log and states, when an awaited event did not come.
#define AWAIT(w, event)                                                 \
  do {                                                                  \
    if (!(event)) {                                                     \
      FAIL("did not happen: " #event "\n"                               \
           << (w).log_tail() << "states: " << (w).states().describe()); \
    }                                                                   \
  } while (false)

// The disruption: when it happened, and which messages count as "from the new node": those
// arriving after `since` from a node other than `old_node` ("" = any).
struct disruption {
  steady::time_point at;
  steady::time_point since;
  std::string old_node;
  // The nodes killed, each with the number of lines its delivery log had when it died (a
  // restarted node appends to the same log).
  std::map<std::size_t, std::size_t> killed;
};

// Lets the stream warm up, then returns right after one more delivery: the node that made it
// is then not in the middle of handing one over.
void settle_after_delivery(watched_client& w) {
  AWAIT(w, w.wait_more(warm_up));
  AWAIT(w, w.wait_more(1));
}

// A disruption of `old_node` starting now: what arrives from another node from now on counts.
disruption disruption_now(std::string old_node) {
  disruption d{steady::now(), {}, std::move(old_node), {}};
  d.since = d.at;
  return d;
}

// SIGKILLs node i of `c` as part of `d`.
void kill_node(cluster& c, std::size_t i, disruption& d) {
  c.kill(i);
  d.killed[i] = c.deliveries(i).size();
}

// Once the disruption is done: waits until a message came from the new node and the client
// is connected, then for the stream to flow again; stops the publisher and waits for what is
// still on its way. Returns what was published.
std::vector<publish_record> recover(watched_client& w, stream_publisher& pub, const disruption& d) {
  AWAIT(w, w.run_until([&] {
    return w.first_after(d.since, d.old_node).has_value() &&
           w.get().current_state() == state::connected;
  }));
  AWAIT(w, w.wait_more(flowing_again));
  pub.stop();
  auto published = pub.records();
  w.drain(published);
  return published;
}

struct outcome {
  int published = 0;
  int received = 0;  // distinct published seqs that arrived
  int lost = 0;
  int duplicated = 0;
  int dropped = 0;         // by the nodes (faye-redis draining for a closed poll)
  int requeued = 0;        // the same, put back by the patch
  long to_connected = -1;  // disruption -> state connected again (-1: it never left connected)
  long to_first = -1;      // disruption -> first message from the new node
  std::string first_from;
  std::string lost_seqs;  // "seq@ms" each, ms: when its publish began, from the disruption
  // Of the lost: never handed to the client's connection by any node (lost in the server, e.g.
  // drained from Redis by a node killed before it wrote them), and handed over but never
  // received (lost on the wire or by the client).
  int lost_in_nodes = 0;
  int lost_after_handover = 0;
  // Of the lost, what the killed nodes took with them: published before the kill and never
  // handed over by any node (a node drains the client's queue in Redis before it writes: one
  // killed in between loses what it drained), or handed over by a node that was killed (no
  // acknowledgement in Bayeux without the ack extension: what a dying node wrote may never
  // arrive). The rest is the client's.
  int lost_with_killed = 0;
  int lost_by_client = 0;
  // The client's own publishes until then, and how many of them completed with an error.
  std::size_t client_publishes = 0;
  int client_publish_errors = 0;
};

long ms_between(steady::time_point a, steady::time_point b) {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count());
}

// A counter of a node's /control/stats.
int counter(const json& s, const char* key) { return s.value(key, 0); }

// Which stream seqs the nodes of `c` handed to a client's connection (their delivery logs), and
// which of those a node handed over before `d` killed it.
struct handovers {
  std::set<int> any;
  std::set<int> by_killed;
};
handovers handed_over(const cluster& c, const disruption& d) {
  handovers out;
  for (std::size_t i = 0; i < c.size(); ++i) {
    const auto log = c.deliveries(i);
    const auto k = d.killed.find(i);
    for (std::size_t n = 0; n < log.size(); ++n) {
      const json& e = log[n];
      if (e.value("channel", "") != stream_channel || !e["data"].is_object()) continue;
      const int seq = e["data"].value("seq", -1);
      out.any.insert(seq);
      if (k != d.killed.end() && n < k->second) out.by_killed.insert(seq);
    }
  }
  return out;
}

// The figures of a run. `stats`: every node's counters that matter, the killed ones as taken
// just before the kill, the others at the end.
outcome measure(const cluster& c, const watched_client& w,
                const std::vector<publish_record>& published, const disruption& d,
                const std::vector<json>& stats) {
  const handovers handed = handed_over(c, d);
  outcome o;
  for (const auto& r : published) {
    if (!r.any()) continue;
    ++o.published;
    if (w.counts().count(r.seq) != 0) {
      ++o.received;
      continue;
    }
    const bool was_handed = handed.any.count(r.seq) != 0;
    (was_handed ? o.lost_after_handover : o.lost_in_nodes) += 1;
    const bool with_killed =
        !d.killed.empty() && (handed.by_killed.count(r.seq) != 0 || (!was_handed && r.sent < d.at));
    (with_killed ? o.lost_with_killed : o.lost_by_client) += 1;
    o.lost_seqs += " " + std::to_string(r.seq) + "@" + std::to_string(ms_between(d.at, r.sent)) +
                   (was_handed ? "(handed over)" : "") + (with_killed ? "(killed node)" : "");
  }
  o.lost = o.published - o.received;
  o.duplicated = w.duplicated();
  for (const auto& s : stats) {
    o.dropped += counter(s, "dropped");
    o.requeued += counter(s, "requeued");
  }
  if (const auto first = w.first_after(d.since, d.old_node)) {
    o.to_first = ms_between(d.at, first->at);
    o.first_from = first->node;
  }
  if (const auto t = w.connected_after(d.at)) o.to_connected = ms_between(d.at, *t);
  o.client_publishes = w.client_publishes();
  o.client_publish_errors = w.client_publish_errors();
  return o;
}

// The stream's messages the client missed, split at `t` (by when their publish began).
struct split_loss {
  int before = 0;
  int after = 0;
  int published_after = 0;
};
split_loss lost_around(const watched_client& w, const std::vector<publish_record>& published,
                       steady::time_point t) {
  split_loss l;
  for (const auto& r : published) {
    if (!r.any()) continue;
    const bool later = r.sent > t;
    l.published_after += later ? 1 : 0;
    if (w.counts().count(r.seq) == 0) (later ? l.after : l.before) += 1;
  }
  return l;
}

void report(const char* scenario, int transport, const char* mode, const outcome& o,
            const std::string& extra = "") {
  figure(
      "cluster %-26s | %-12s | %-7s | published %4d | received %4d | lost %3d (in nodes %d, "
      "after handover %d; with the killed node %d) | duplicated %d | dropped by nodes %3d | "
      "requeued %3d | ->connected %5ld ms | ->first message %5ld ms (from %s) | "
      "client publishes %zu (failed %d)%s",
      scenario, transport_name(transport), mode, o.published, o.received, o.lost, o.lost_in_nodes,
      o.lost_after_handover, o.lost_with_killed, o.duplicated, o.dropped, o.requeued,
      o.to_connected, o.to_first, o.first_from.empty() ? "-" : o.first_from.c_str(),
      o.client_publishes, o.client_publish_errors, extra.c_str());
  if (!o.lost_seqs.empty()) figure("  lost (seq@ms from the disruption):%s", o.lost_seqs.c_str());
}
const char* mode_name(bool requeue) { return requeue ? "requeue" : "as is"; }

// The loss rule of a session that continued: nothing lost but what the killed nodes took with
// them (outcome::lost_with_killed) with the patch; without it, no more than that and what the
// nodes dropped (anything beyond would be the client's). Nothing is left in the session's queue.
void check_loss(cluster& c, const watched_client& w, const outcome& o, bool requeue) {
  INFO("lost (seq@ms from the disruption):" << o.lost_seqs);
  CHECK(o.duplicated == 0);
  if (requeue) {
    CHECK(o.lost_by_client == 0);
    CHECK(o.dropped == 0);
  } else {
    CHECK(o.lost_by_client <= o.dropped);
  }
  CHECK(c.queued(w.get().client_id()) == 0);
}

constexpr long bound_ms(std::chrono::milliseconds d) { return static_cast<long>(d.count()); }

options client_options(int transport, std::vector<std::string> urls) {
  options o;
  if (urls.size() == 1) {
    o.url = urls.front();
  } else {
    o.urls = std::move(urls);
  }
  o.connection_types = types_of(transport);
  return o;
}

// Redis, A and B for the client, C for the publisher; deliveries stamped with the node.
cluster_options shared_cluster(bool requeue) {
  cluster_options o;
  o.nodes = 3;
  o.requeue_dropped = requeue;
  o.node_args = {"--stamp-node", "1"};
  o.delivery_log = true;
  return o;
}

// What every run that continued its session shows: no new handshake, no unknown client, no
// failure, the session id unchanged.
void check_session_continued(const watched_client& w, const disruption& d,
                             const std::vector<json>& survivors, const std::string& id) {
  for (const auto& s : survivors) {
    INFO("node " << s.value("node", "?"));
    CHECK(counter(s, "handshakes") == 0);
    CHECK(counter(s, "unknownClient") == 0);
  }
  CHECK(w.metas_after(d.at, "/meta/handshake").empty());
  CHECK(w.get().client_id() == id);
  CHECK(w.states().count(state::failed) == 0);
}

// The disruption of scenarios 1 and 5b: with the stream published through node C, a SIGKILL of
// node A, the one in use, once a delivery settled; the client recovers (on B). A's counters are
// from before the kill, B's from after the recovery.
struct node_a_killed {
  json a, b;
  disruption d;
  outcome o;
};
node_a_killed kill_node_a(cluster& c, watched_client& w) {
  stream_publisher pub({c.base_url(2)}, stream_channel, stream_period);
  settle_after_delivery(w);
  node_a_killed r;
  r.a = c.stats(0);
  r.d = disruption_now("A");
  kill_node(c, 0, r.d);
  const auto published = recover(w, pub, r.d);
  r.b = c.stats(1);
  r.o = measure(c, w, published, r.d, {r.a, r.b});
  return r;
}

}  // namespace

TEST_CASE("cluster: SIGKILL of the node in use with a URL list: the session continues on the next",
          "[cluster][failover]") {
  const int transport = GENERATE(0, 1);
  const bool requeue = GENERATE(true, false);
  INFO(transport_name(transport) << ", " << mode_name(requeue));
  cluster c(shared_cluster(requeue));
  watched_client w(client_options(transport, {c.url(0), c.url(1)}));
  w.open_and_subscribe();
  REQUIRE(w.get().current_url() == c.url(0));
  const std::string id = w.get().client_id();
  const auto [a, b, d, o] = kill_node_a(c, w);
  report("1 SIGKILL, urls", transport, mode_name(requeue), o);

  INFO(w.log_tail());
  CHECK(w.get().current_url() == c.url(1));
  CHECK(o.first_from == "B");
  CHECK(counter(a, "handshakes") == 1);
  check_session_continued(w, d, {b}, id);
  CHECK(counter(b, "connects") >= 1);
  REQUIRE(o.to_connected >= 0);
  CHECK(o.to_connected < bound_ms(failover_bound));
  check_loss(c, w, o, requeue);
  w.finish();
}

TEST_CASE("cluster: SIGKILL of the node in use behind HAProxy: the session continues",
          "[cluster][failover]") {
  const int transport = GENERATE(0, 1);
  const bool requeue = GENERATE(true, false);
  INFO(transport_name(transport) << ", " << mode_name(requeue));
  cluster_options co = shared_cluster(requeue);
  co.haproxy = true;
  co.lb_nodes = 2;  // A and B behind HAProxy; C publishes
  cluster c(co);
  watched_client w(client_options(transport, {c.lb_url()}));
  w.open_and_subscribe();
  const std::string id = w.get().client_id();
  stream_publisher pub({c.base_url(2)}, stream_channel, stream_period);
  settle_after_delivery(w);
  // The node holding the client's poll or websocket now (round robin: either): the only one
  // that lists it as held, with a request in progress in HAProxy's view (a node that just
  // answered a poll may still list the client a moment, while its next poll is on the other).
  std::size_t victim = 2;
  json before[2];
  AWAIT(w, w.run_until([&] {
    bool held[2];
    for (std::size_t i = 0; i < 2; ++i) {
      before[i] = c.stats(i);
      held[i] = contains(before[i]["held"], id);
    }
    victim = 2;
    for (std::size_t i = 0; i < 2; ++i) {
      if (held[i] && !held[1 - i] && c.lb_stat(i, "scur") != "0") victim = i;
    }
    return victim < 2;
  }));
  const std::size_t other = 1 - victim;
  disruption d = disruption_now(c.name(victim));
  kill_node(c, victim, d);
  // HAProxy's health checks take the node out meanwhile.
  long to_down = -1;
  auto next_look = steady::now();
  AWAIT(w, w.run_until([&] {
    if (steady::now() >= next_look) {
      next_look += 10ms;  // a look at HAProxy's stats socket takes about 1 ms
      if (c.lb_state(victim).rfind("DOWN", 0) == 0) to_down = ms_since(d.at);
    }
    return to_down >= 0;
  }));
  const auto published = recover(w, pub, d);
  const json after = c.stats(other);
  const outcome o = measure(c, w, published, d, {before[victim], after});
  // What HAProxy saw on the killed node: requests cut by its death (a held poll, a websocket),
  // and requests sent to it once dead that it sent on to the other node instead.
  const auto lb_count = [&](const char* field) {
    const std::string v = c.lb_stat(victim, field);
    return v.empty() ? 0 : std::stoi(v);
  };
  const int cut = lb_count("eresp") + lb_count("srv_abrt");
  const int redispatched = lb_count("wredis");
  report("2 SIGKILL, behind HAProxy", transport, mode_name(requeue), o,
         " | killed " + d.old_node + ", DOWN in HAProxy after " + std::to_string(to_down) +
             " ms; HAProxy: " + std::to_string(cut) + " cut, " + std::to_string(redispatched) +
             " redispatched");

  INFO(w.log_tail());
  CHECK(o.first_from == c.name(other));
  CHECK(w.get().current_url() == c.lb_url());
  // One handshake in all, before the kill.
  CHECK(counter(before[0], "handshakes") + counter(before[1], "handshakes") == 1);
  json survivor = after;
  survivor["handshakes"] = counter(after, "handshakes") - counter(before[other], "handshakes");
  check_session_continued(w, d, {survivor}, id);
  CHECK(o.to_first < bound_ms(failover_bound));
  CHECK(o.to_connected < bound_ms(failover_bound));
  check_loss(c, w, o, requeue);
  w.finish();
}

TEST_CASE("cluster: every node down then back within connection_timeout: the client recovers",
          "[cluster][failover]") {
  const int transport = GENERATE(0, 1);
  const bool requeue = GENERATE(true, false);
  INFO(transport_name(transport) << ", " << mode_name(requeue));
  cluster c(shared_cluster(requeue));
  options opts = client_options(transport, {c.url(0), c.url(1)});
  opts.connection_timeout = 10s;
  watched_client w(std::move(opts));
  w.open_and_subscribe();
  const std::string id = w.get().client_id();
  stream_publisher pub({c.base_url(2)}, stream_channel, stream_period);
  AWAIT(w, w.wait_more(warm_up));
  // Right after a /meta/connect was answered: the session's life in Redis (1.6 x timeout after
  // its last connect, 8 s) starts again, and the outage stays well inside it.
  const auto mark = steady::now();
  AWAIT(w, w.run_until([&] { return !w.metas_after(mark, "/meta/connect").empty(); }, 10s));
  const json a = c.stats(0);
  const json b = c.stats(1);
  disruption d = disruption_now("");  // `since` moves once the nodes are back
  kill_node(c, 0, d);
  kill_node(c, 1, d);
  // Down until the client was refused by both nodes (it has tried every server).
  AWAIT(w, w.run_until([&] {
    std::set<std::string> refused;
    for (const auto& m : w.metas_after(d.at, "/meta/connect", false)) refused.insert(m.url);
    return refused.size() == 2;
  }));
  d.since = steady::now();  // every message from now on comes from a restarted node
  c.restart(0);
  c.restart(1);
  const long down = ms_since(d.at);
  const auto published = recover(w, pub, d);
  const json a2 = c.stats(0);
  const json b2 = c.stats(1);
  const outcome o = measure(c, w, published, d, {a, b, a2, b2});
  report("3 all down, back", transport, mode_name(requeue), o,
         " | nodes down " + std::to_string(down) + " ms (their restart included)");

  INFO(w.log_tail());
  // Recovered without failing, within connection_timeout, on the same session.
  check_session_continued(w, d, {a2, b2}, id);
  REQUIRE(o.to_connected >= 0);
  CHECK(o.to_connected < 10000);
  check_loss(c, w, o, requeue);
  w.finish();
}

TEST_CASE(
    "cluster: nodes that share no sessions: a new handshake and re-subscription on the "
    "next; what was published meanwhile is lost",
    "[cluster][failover]") {
  // Two Faye nodes on their in-memory engines: B does not know A's clients. The stream is
  // published through both (a publish reaches only the subscribers of its node). The cost of
  // failing over to B: what B published between A's death and the client's re-subscription on
  // B never reaches the client; from the re-subscription on, nothing is lost.
  const int transport = GENERATE(0, 1);
  INFO(transport_name(transport));
  cluster_options co;
  co.nodes = 2;
  co.redis = false;
  co.node_args = {"--stamp-node", "1"};
  co.delivery_log = true;
  cluster c(co);
  watched_client w(client_options(transport, {c.url(0), c.url(1)}));
  w.open_and_subscribe();
  const std::string old_id = w.get().client_id();
  stream_publisher pub({c.base_url(0), c.base_url(1)}, stream_channel, stream_period);
  settle_after_delivery(w);
  disruption d = disruption_now("A");
  kill_node(c, 0, d);
  const auto published = recover(w, pub, d);
  const json b = c.stats(1);
  const outcome o = measure(c, w, published, d, {b});
  const auto resubscribed = w.metas_after(d.at, "/meta/subscribe");
  REQUIRE(resubscribed.size() == 1);
  const split_loss l = lost_around(w, published, resubscribed.front().at);
  report("4 no shared sessions", transport, "-", o,
         " | ->re-subscribed " + std::to_string(ms_between(d.at, resubscribed.front().at)) +
             " ms; lost before it " + std::to_string(l.before) + ", after it " +
             std::to_string(l.after) + " of " + std::to_string(l.published_after));

  INFO(w.log_tail());
  CHECK(w.get().current_url() == c.url(1));
  CHECK(o.first_from == "B");
  // B did not know the session: unknown client, one new handshake, the subscription made again.
  CHECK(counter(b, "unknownClient") >= 1);
  CHECK(counter(b, "handshakes") == 1);
  CHECK(w.get().client_id() != old_id);
  CHECK(w.metas_after(d.at, "/meta/handshake").size() == 1);
  CHECK(b["subscriptions"].value(stream_channel, 0) == 1);
  CHECK(w.states().count(state::failed) == 0);
  CHECK(o.to_connected < bound_ms(failover_bound));
  CHECK(o.duplicated == 0);
  CHECK(l.after == 0);
  CHECK(o.lost == l.before);
  w.finish();
}

TEST_CASE(
    "cluster: advice.hosts: a node ending the session sends the client to the host it "
    "advises",
    "[cluster][failover]") {
  // The client knows node A only. A advises hosts [B] (the client's node is not among them),
  // then ends the session (a node being drained): the re-handshake goes to B, and the
  // subscription is made again there. What is published between the end of the session and
  // the re-subscription is lost (the session and its queue are gone); after it, nothing.
  const int transport = GENERATE(0, 1);
  const bool requeue = GENERATE(true, false);
  INFO(transport_name(transport) << ", " << mode_name(requeue));
  cluster c(shared_cluster(requeue));
  c.set_advice_hosts(0, {c.url(1)});
  watched_client w(client_options(transport, {c.url(0)}));
  w.open_and_subscribe();
  REQUIRE(w.get().current_url() == c.url(0));
  const std::string old_id = w.get().client_id();
  stream_publisher pub({c.base_url(2)}, stream_channel, stream_period);
  settle_after_delivery(w);
  disruption d = disruption_now("A");
  c.forget(0, old_id);
  const auto published = recover(w, pub, d);
  const json a = c.stats(0);
  const json b = c.stats(1);
  const outcome o = measure(c, w, published, d, {a, b});
  const auto resubscribed = w.metas_after(d.at, "/meta/subscribe");
  REQUIRE(resubscribed.size() == 1);
  const split_loss l = lost_around(w, published, resubscribed.front().at);
  report("5 advice.hosts, ended", transport, mode_name(requeue), o,
         " | ->re-subscribed " + std::to_string(ms_between(d.at, resubscribed.front().at)) +
             " ms; lost before it " + std::to_string(l.before) + ", after it " +
             std::to_string(l.after) + " of " + std::to_string(l.published_after));

  INFO(w.log_tail());
  CHECK(w.get().current_url() == c.url(1));
  CHECK(o.first_from == "B");
  // The new handshake went to B, not to A where the session ended.
  CHECK(counter(a, "handshakes") == 1);
  CHECK(counter(b, "handshakes") == 1);
  CHECK(w.get().client_id() != old_id);
  const auto handshakes = w.metas_after(d.at, "/meta/handshake");
  REQUIRE(handshakes.size() == 1);
  CHECK(handshakes.front().url == c.url(1));
  CHECK(b["subscriptions"].value(stream_channel, 0) == 1);
  CHECK(w.states().count(state::failed) == 0);
  CHECK(o.duplicated == 0);
  CHECK(l.after <= (requeue ? 0 : o.dropped));
  w.finish();
}

TEST_CASE(
    "cluster: advice.hosts: a client given one URL fails over to an advised host and "
    "continues its session",
    "[cluster][failover]") {
  // advice.hosts are merged into the client's list for the session's lifetime: the client
  // configured with A alone moves to B (advised by A) when A dies, and B continues the session.
  const int transport = GENERATE(0, 1);
  INFO(transport_name(transport));
  cluster c(shared_cluster(true));
  c.set_advice_hosts(0, {c.url(0), c.url(1)});
  watched_client w(client_options(transport, {c.url(0)}));
  w.open_and_subscribe();
  const std::string id = w.get().client_id();
  const auto [a, b, d, o] = kill_node_a(c, w);
  report("5b advice.hosts, SIGKILL", transport, mode_name(true), o);

  INFO(w.log_tail());
  CHECK(w.get().current_url() == c.url(1));
  CHECK(o.first_from == "B");
  check_session_continued(w, d, {b}, id);
  REQUIRE(o.to_connected >= 0);
  CHECK(o.to_connected < bound_ms(failover_bound));
  check_loss(c, w, o, true);
  w.finish();
}

namespace {

// uvcometd-cli (env UVCOMETD_CLI) as a child process.
class cli_run : public child_process {
 public:
  explicit cli_run(std::vector<std::string> args) : child_process(with_cli(std::move(args))) {}
  bool pump_until(const std::function<bool()>& done, std::chrono::milliseconds limit = step_limit) {
    const auto deadline = steady::now() + limit;
    while (!done()) {
      if (steady::now() >= deadline) return false;
      pump(20ms);
    }
    return true;
  }
  std::size_t lines() const { return lines_of(out()).size(); }
  bool err_has_line(const std::string& line) const {
    const auto l = lines_of(err());
    return std::find(l.begin(), l.end(), line) != l.end();
  }

 private:
  static std::vector<std::string> with_cli(std::vector<std::string> args) {
    args.insert(args.begin(), env_path("UVCOMETD_CLI"));
    return args;
  }
};

}  // namespace

TEST_CASE("cluster: uvcometd-cli URL1 URL2 moves to URL2 when URL1's node dies", "[cluster][cli]") {
  if (env_path("UVCOMETD_CLI") == nullptr) {
    WARN("UVCOMETD_CLI is not set: uvcometd-cli not tested");
    return;
  }
  const std::string type = GENERATE(as<std::string>(), "long-polling", "websocket");
  INFO(type);
  cluster_options co;
  co.nodes = 3;
  co.requeue_dropped = true;  // the CLI's failover, not faye-redis's own losses
  cluster c(co);
  cli_run cli({c.url(0), c.url(1), "-s", "/x", "-v", "-t", type});
  REQUIRE(cli.pump_until([&] { return c.stats(0)["subscriptions"].value("/x", 0) == 1; }));
  INFO(cli.describe());
  CHECK(cli.err_has_line("url=" + c.url(0)));
  c.publish_on(2, "/x", R"({"p":1})", 3);
  REQUIRE(cli.pump_until([&] { return cli.lines() == 3; }));
  c.kill(0);
  // Published while the CLI is between nodes: kept in Redis for its session.
  c.publish_on(2, "/x", R"({"p":2})", 3);
  REQUIRE(cli.pump_until([&] { return cli.err_has_line("url=" + c.url(1)) && cli.lines() == 6; }));
  c.publish_on(2, "/x", R"({"p":3})", 3);
  REQUIRE(cli.pump_until([&] { return cli.lines() == 9; }));
  CHECK(c.stats(1)["handshakes"] == 0);  // the same session, continued on B
  cli.send_signal(SIGINT);
  REQUIRE(cli.wait(step_limit));
  CHECK(cli.exit_code() == 0);
  std::vector<std::string> want;
  for (int p = 1; p <= 3; ++p) {
    for (int seq = 0; seq < 3; ++seq) {
      want.push_back(R"({"channel":"/x","data":{"p":)" + std::to_string(p) + R"(,"seq":)" +
                     std::to_string(seq) + "}}");
    }
  }
  CHECK(lines_of(cli.out()) == want);
}

// Regression (found here, fixed in the session): the 1 s hold for "the first connect on another
// server, continuing the session" also held the first connect of a brand-new session there, so
// open() with urls {down, up} completed ~1 s late. Event-based: the server would report the
// client's connect held before open() ended.
TEST_CASE("urls: the first connect of a new session on the next URL is not held",
          "[cluster][failover][hold-after-handshake]") {
  const peer p = GENERATE(faye_long_polling(), faye_websocket());
  INFO(p.name);
  server_process up(p.script);
  log_capture log;
  test_loop loop;
  {
    options o;
    o.urls = {"http://127.0.0.1:9/bayeux", up.url()};  // nothing listens on the discard port
    o.connection_types = p.types;
    o.log = log.sink();
    client c(loop.get(), o);
    bool opened = false;
    error result;
    REQUIRE_FALSE(c.open([&](const error& e) {
      result = e;
      opened = true;
    }));
    bool held = false;
    auto next_look = steady::now();
    REQUIRE(loop.run_until(
        [&] {
          if (!opened && steady::now() >= next_look) {
            next_look += 20ms;
            held = held || json::parse(up.get("/control/stats")).value("heldConnects", 0) > 0;
          }
          return opened;
        },
        10s));
    INFO(log.tail());
    REQUIRE_FALSE(result);
    CHECK(c.current_url() == up.url());
    CHECK_FALSE(held);
    close_and_wait(loop, c);
  }
  CHECK(loop.close() == 0);
}
