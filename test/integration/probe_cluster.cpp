// Measurements of faye-redis 0.2.0 behind Faye 1.4.3 that are not part of the suite: they report
// figures (message loss that is the server's, not the client's) and assert only what must hold
// whatever the figures. Compiled into integration_tests but run by hand (not a meson test):
//
//   UVCOMETD_TEST_REPORT=1 UVCOMETD_SERVERS_DIR=$PWD/test/servers
//     build-asan/test/integration_tests '[probe]'
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bayeux_peers.hpp"
#include "cluster.hpp"
#include "loop_helpers.hpp"

using namespace std::chrono_literals;
using namespace uvcometd::test;
using nlohmann::json;

namespace {

struct tally {
  int published = 0;
  std::set<int> got;
  int duplicates = 0;
  int reordered = 0;  // arrived after a later message
  int highest = -1;
  void add(const json& d) {
    const int i = d["data"].value("i", -1);
    if (!got.insert(i).second) ++duplicates;
    if (i < highest) ++reordered;
    highest = std::max(highest, i);
  }
  int lost() const { return published - static_cast<int>(got.size()); }
};

// Publishes `n` messages {"i":0..n-1} on /st/x through node 0, one control request each.
std::thread publisher(cluster& c, int n, std::atomic<bool>& done) {
  return std::thread([&c, n, &done] {
    for (int i = 0; i < n; ++i) c.publish_on(0, "/st/x", "{\"i\":" + std::to_string(i) + "}");
    done = true;
  });
}

// A stream of `n` server-side publishes to one long-polling client of node 0 that polls without
// pause (held connects; the node holds them --timeout 1 s).
tally stream_long_polling(cluster& c, int n) {
  tally t;
  t.published = n;
  lp_client cl;
  cl.handshake(c.url(0));
  cl.subscribe(c.url(0), "/st/**");
  std::atomic<bool> done{false};
  std::thread pub = publisher(c, n, done);
  const auto t0 = steady::now();
  // After the last publish, one connect that brings nothing (a whole hold) ends the stream.
  for (;;) {
    const bool finished = done;
    const http_reply r = cl.connect(c.url(0));
    const auto d = deliveries_in(r.messages());
    for (const auto& m : d) t.add(m);
    if ((finished && d.empty()) || static_cast<int>(t.got.size()) == n ||
        steady::now() - t0 > 60s) {
      break;
    }
  }
  pub.join();
  return t;
}

// The same over a websocket: connects are re-sent as each reply arrives.
tally stream_websocket(cluster& c, int n) {
  tally t;
  t.published = n;
  test_loop loop;
  {
    ws_client ws(loop, c.url(0));
    const std::string id = ws.handshake();
    ws.send(subscribe_msg(id, "/st/**"));
    REQUIRE(succeeded(ws.wait_reply("/meta/subscribe")));
    ws.send(connect_msg(id, "websocket", 0));
    std::atomic<bool> done{false};
    std::thread pub = publisher(c, n, done);
    std::size_t replies_seen = 0;
    std::size_t deliveries_seen = 0;
    // Quiet period after the last publish: nothing more arrives within a whole hold.
    constexpr auto quiet_after_last_publish = 1500ms;
    auto last_news = steady::now();
    loop.run_until(
        [&] {
          std::size_t replies = 0;
          for (const auto& m : ws.messages()) {
            if (m.value("channel", "") == "/meta/connect" && m.contains("successful")) ++replies;
          }
          for (; replies_seen < replies; ++replies_seen) {
            ws.send(connect_msg(id, "websocket", -1, "c" + std::to_string(replies_seen)));
          }
          const std::size_t now_deliveries = ws.deliveries().size();
          if (now_deliveries != deliveries_seen || !done) {
            deliveries_seen = now_deliveries;
            last_news = steady::now();
          }
          return static_cast<int>(now_deliveries) >= n ||
                 steady::now() - last_news > quiet_after_last_publish;
        },
        60s);
    pub.join();
    for (const auto& d : ws.deliveries()) t.add(d);
  }
  CHECK(loop.close() == 0);
  return t;
}

}  // namespace

TEST_CASE("cluster probe: queued messages against a connect with advice.timeout 0",
          "[cluster][probe]") {
  cluster c;
  constexpr int trials = 40;
  int lost = 0, delivered_first = 0, delivered_later = 0;
  for (int t = 0; t < trials; ++t) {
    lp_client cl;
    cl.handshake(c.url(0));
    cl.subscribe(c.url(0), "/cl/**");
    c.publish_on(0, "/cl/x", R"({"n":1})", 3);
    REQUIRE(c.wait_queued(cl.client_id, 3));  // in Redis before the connect
    const auto first = deliveries_in(cl.connect(c.url(1), 0).messages());
    // Then connects held 300 ms until one brings nothing: whatever was still queued.
    std::size_t later = 0;
    for (int i = 0; i < 5; ++i) {
      const auto more = deliveries_in(cl.connect(c.url(1), 300).messages());
      if (more.empty()) break;
      later += more.size();
    }
    CHECK(first.size() + later <= 3);
    delivered_first += static_cast<int>(first.size());
    delivered_later += static_cast<int>(later);
    lost += 3 - static_cast<int>(first.size() + later);
    CHECK(c.stats(1)["dropped"] == lost);  // every loss is a drop by node B
  }
  figure(
      "faye-redis, a connect with advice.timeout 0 on node B after 3 messages published for "
      "the client, %d trials: %d delivered in that connect, %d in the next, %d lost (dropped "
      "by node B: %d)",
      trials, delivered_first, delivered_later, lost, c.stats(1)["dropped"].get<int>());
}

TEST_CASE("cluster probe: a stream of publishes to one client of one node, no failure",
          "[cluster][probe]") {
  constexpr int n = 500;
  struct setup {
    bool redis, requeue;
    const char* name;
  };
  for (const setup& e :
       {setup{true, false, "faye-redis"}, setup{true, true, "faye-redis --requeue-dropped 1"},
        setup{false, false, "memory engine"}}) {
    cluster_options o;
    o.nodes = 1;
    o.redis = e.redis;
    o.requeue_dropped = e.requeue;
    o.timeout_s = 1;
    for (const bool websocket : {false, true}) {
      cluster c(o);
      const tally t = websocket ? stream_websocket(c, n) : stream_long_polling(c, n);
      json s = c.stats(0);
      const int dropped = s["dropped"];
      figure(
          "%s, %s: %d published, %zu received, %d lost, %d duplicated, %d out of order; the "
          "node dropped %d, requeued %d",
          e.name, websocket ? "websocket" : "long-polling", t.published, t.got.size(), t.lost(),
          t.duplicates, t.reordered, dropped, s["requeued"].get<int>());
      CHECK(t.duplicates == 0);
      CHECK(t.lost() == dropped);  // every loss is a drop by the server
      if (!e.redis || e.requeue) CHECK(t.lost() == 0);
    }
  }
}
