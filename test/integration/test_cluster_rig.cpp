// The cluster rig (cluster.hpp) and what a failing-over client may assume of a real cluster —
// redis-server, Faye 1.4.3 nodes sharing sessions through faye-redis 0.2.0, HAProxy in front —
// checked on the wire: raw Bayeux over libcurl (long-polling) and over uvcometd's websocket
// transport (bayeux_peers.hpp), no uvcometd session involved.
//
// UVCOMETD_TEST_REPORT=1 prints the figures (start-up time, kill-to-removal time in HAProxy, what
// a SIGKILL did to requests in flight) on stderr. probe_cluster.cpp holds measurements of
// faye-redis that are not part of the suite.
#include <catch2/catch.hpp>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bayeux_peers.hpp"
#include "cluster.hpp"
#include "loop_helpers.hpp"
#include "server_process.hpp"

using namespace std::chrono_literals;
using namespace uvcometd::test;
using nlohmann::json;

namespace {

const std::vector<int> seq012{0, 1, 2};

}  // namespace

TEST_CASE("cluster rig: redis, three nodes and haproxy start on 127.0.0.1 and are reaped",
          "[cluster]") {
  std::vector<pid_t> pids;
  std::vector<int> ports;
  {
    cluster_options o;
    o.nodes = 3;
    o.haproxy = true;
    cluster c(o);
    figure(
        "cluster of redis-server + 3 nodes + haproxy up (every node passed a health check) "
        "in %ld ms (%s)",
        static_cast<long>(c.startup_time().count()), c.startup_detail().c_str());
    CHECK(c.size() == 3);
    CHECK(c.redis_port() > 0);
    http_peer peer;
    for (std::size_t i = 0; i < c.size(); ++i) {
      json s = c.stats(i);
      CHECK(s["node"] == c.name(i));
      CHECK(s["engine"] == "redis");
      CHECK(c.url(i) == "http://127.0.0.1:" + std::to_string(c.port(i)) + "/bayeux");
      const http_reply r = peer.post(c.url(i), handshake_msg("long-polling"));
      CHECK(r.status == 200);
      CHECK(r.node() == c.name(i));
      CHECK(upgrade_node(c.port(i)) == c.name(i));
      CHECK(c.lb_state(i) == "UP");
      ports.push_back(c.port(i));
    }
    // kill() and restart() keep the port; the node answers again at once.
    const int port_b = c.port(1);
    c.kill(1);
    CHECK_FALSE(c.alive(1));
    CHECK(peer.post(c.url(1), handshake_msg("long-polling"), 2000).rc == CURLE_COULDNT_CONNECT);
    c.restart(1);
    CHECK(c.alive(1));
    CHECK(c.port(1) == port_b);
    CHECK(c.stats(1)["node"] == "B");
    pids = c.pids();
    CHECK(pids.size() == 5);  // redis-server, 3 nodes, haproxy
  }
  // Every process is gone and reaped (a zombie would still take signal 0).
  for (pid_t pid : pids) {
    errno = 0;
    CHECK(::kill(pid, 0) == -1);
    CHECK(errno == ESRCH);
  }
  http_peer peer;
  for (int port : ports) {
    CHECK(peer.post("http://127.0.0.1:" + std::to_string(port) + "/bayeux",
                    handshake_msg("long-polling"), 2000)
              .rc == CURLE_COULDNT_CONNECT);
  }
  // Without haproxy there is no lb_url().
  cluster_options o;
  o.nodes = 1;
  o.redis = false;
  cluster lone(o);
  CHECK_THROWS_AS(lone.lb_url(), std::runtime_error);
  CHECK(lone.redis_port() == 0);
  CHECK(lone.stats(0)["engine"] == "memory");
}

TEST_CASE(
    "cluster: a session handshaken on node A continues on node B with what was "
    "published meanwhile",
    "[cluster]") {
  cluster c;
  SECTION("long-polling") {
    lp_client cl;
    CHECK(cl.handshake(c.url(0)).node() == "A");
    cl.subscribe(c.url(0), "/cl/**");
    const http_reply first = cl.connect(c.url(0), 0);
    REQUIRE(succeeded(reply_in(first.messages(), "/meta/connect")));
    CHECK(first.node() == "A");
    // Away (no request anywhere): published through A and through B.
    c.publish_on(0, "/cl/a", R"({"from":"A"})", 3);
    c.publish_on(1, "/cl/b", R"({"from":"B"})", 3);
    REQUIRE(c.wait_queued(cl.client_id, 6));  // all in Redis, nothing handed out yet
    const auto got = cl.collect(c.url(1), 6);
    CHECK(seqs(got, "/cl/a") == seq012);
    CHECK(seqs(got, "/cl/b") == seq012);
    CHECK(got.size() == 6);
    json b = c.stats(1);
    CHECK(contains(b["clients"], cl.client_id));
    CHECK(b["handshakes"] == 0);
    CHECK(b["delivered"] == 6);
    CHECK(c.stats(0)["delivered"] == 0);
    // Faye sets no cookie (nothing like CometD's BAYEUX_BROWSER): nothing ties a client to a node.
    const http_reply again = cl.connect(c.url(1), 0);
    CHECK(again.header("set-cookie").empty());
    CHECK(again.node() == "B");
  }
  SECTION("websocket") {
    test_loop loop;
    std::string id;
    {
      ws_client a(loop, c.url(0));
      id = a.handshake();
      a.send(subscribe_msg(id, "/cl/**"));
      REQUIRE(succeeded(a.wait_reply("/meta/subscribe")));
      a.send(connect_msg(id, "websocket", 0));
      REQUIRE(succeeded(a.wait_reply("/meta/connect")));
      a.close();
    }
    // Away once A let go of the socket (a node still holding it would take the messages).
    REQUIRE(wait_held(c, 0, id, false));
    c.publish_on(0, "/cl/a", R"({"from":"A"})", 3);
    c.publish_on(1, "/cl/b", R"({"from":"B"})", 3);
    REQUIRE(c.wait_queued(id, 6));
    {
      ws_client b(loop, c.url(1));
      b.send(connect_msg(id, "websocket", 0));
      json r = b.wait_reply("/meta/connect");
      INFO("connect on B: " << r.dump());
      CHECK(succeeded(r));
      REQUIRE(b.wait_deliveries(6));
      CHECK(seqs(b.deliveries(), "/cl/a") == seq012);
      CHECK(seqs(b.deliveries(), "/cl/b") == seq012);
      CHECK(b.deliveries().size() == 6);
      CHECK(c.stats(1)["delivered"] == 6);
    }
    CHECK(loop.close() == 0);
  }
}

TEST_CASE("cluster: HAProxy sends one client's requests to different nodes (no stickiness)",
          "[cluster]") {
  cluster_options o;
  o.haproxy = true;
  cluster c(o);
  SECTION("long-polling, one keep-alive connection") {
    lp_client cl;
    std::map<std::string, int> by_node;
    ++by_node[cl.handshake(c.lb_url()).node()];
    std::vector<std::string> order;
    for (int i = 0; i < 6; ++i) {
      const http_reply r = cl.connect(c.lb_url(), 0);
      INFO("connect through haproxy: HTTP " << r.status << " " << r.body);
      REQUIRE(r.status == 200);
      CHECK(succeeded(reply_in(r.messages(), "/meta/connect")));
      CHECK(r.header("set-cookie").empty());
      ++by_node[r.node()];
      order.push_back(r.node());
    }
    // Round robin: the 7 requests alternate between the two nodes.
    CHECK(by_node["A"] >= 3);
    CHECK(by_node["B"] >= 3);
    CHECK(by_node.size() == 2);
    for (std::size_t i = 1; i < order.size(); ++i) CHECK(order[i] != order[i - 1]);
  }
  SECTION("websocket upgrades") {
    std::map<std::string, int> by_node;
    for (int i = 0; i < 4; ++i) ++by_node[upgrade_node(c.lb_port())];
    CHECK(by_node["A"] == 2);
    CHECK(by_node["B"] == 2);
    // A session opened over one websocket is served over another that lands elsewhere.
    test_loop loop;
    {
      ws_client first(loop, c.lb_url());
      const std::string id = first.handshake();
      ws_client second(loop, c.lb_url());
      second.send(connect_msg(id, "websocket", 0));
      CHECK(succeeded(second.wait_reply("/meta/connect")));
      CHECK(c.stats(0)["handshakes"].get<int>() + c.stats(1)["handshakes"].get<int>() == 1);
      CHECK(c.stats(0)["connects"].get<int>() + c.stats(1)["connects"].get<int>() == 1);
    }
    CHECK(loop.close() == 0);
  }
}

TEST_CASE(
    "cluster: after SIGKILL of node A, node B keeps the session and what was published "
    "meanwhile",
    "[cluster]") {
  cluster c;
  SECTION("long-polling: killed while holding the client's poll") {
    lp_client cl;
    cl.handshake(c.url(0));
    cl.subscribe(c.url(0), "/cl/**");
    // A holds the poll when it dies.
    http_reply held;
    std::thread poll([&] { held = cl.connect(c.url(0)); });
    const bool was_held = wait_held(c, 0, cl.client_id, true);
    const auto t_kill = steady::now();
    c.kill(0);
    poll.join();
    REQUIRE(was_held);
    figure(
        "SIGKILL of the node holding a long-poll: the poll ended after %ld ms with curl "
        "error %d (%s), HTTP %ld",
        ms_since(t_kill), static_cast<int>(held.rc), curl_easy_strerror(held.rc), held.status);
    CHECK(held.rc != CURLE_OK);
    c.publish("/cl/x", R"({"after":"kill"})", 3);
    REQUIRE(c.wait_queued(cl.client_id, 3));  // kept in Redis for the client
    const auto got = cl.collect(c.url(1), 3);
    CHECK(seqs(got, "/cl/x") == seq012);
    CHECK(got.size() == 3);
  }
  SECTION("websocket: killed with the client's socket open") {
    test_loop loop;
    ws_client a(loop, c.url(0));
    const std::string id = a.handshake();
    a.send(subscribe_msg(id, "/cl/**"));
    REQUIRE(succeeded(a.wait_reply("/meta/subscribe")));
    a.send(connect_msg(id, "websocket", 0));
    REQUIRE(succeeded(a.wait_reply("/meta/connect")));
    a.send(connect_msg(id, "websocket", -1, "c2"));  // held by A
    REQUIRE(wait_held(c, 0, id, true));
    const auto t_kill = steady::now();
    c.kill(0);
    CHECK(a.wait_down());
    figure("SIGKILL of the node holding a websocket: the transport saw it go down after %ld ms",
           ms_since(t_kill));
    c.publish("/cl/x", R"({"after":"kill"})", 3);
    REQUIRE(c.wait_queued(id, 3));
    {
      ws_client b(loop, c.url(1));
      b.send(connect_msg(id, "websocket", 0));
      CHECK(succeeded(b.wait_reply("/meta/connect")));
      REQUIRE(b.wait_deliveries(3));
      CHECK(seqs(b.deliveries(), "/cl/x") == seq012);
    }
    a.close();
    CHECK(loop.close() == 0);
  }
}

TEST_CASE("cluster: HAProxy takes a killed node out and back after restart", "[cluster]") {
  cluster_options o;
  o.haproxy = true;
  cluster c(o);
  lp_client cl;
  cl.handshake(c.lb_url());
  cl.subscribe(c.lb_url(), "/cl/**");
  const auto t_kill = steady::now();
  c.kill(0);
  // Before HAProxy's checks noticed: a request it sends to A is redispatched to B.
  std::vector<std::string> early;
  for (int i = 0; i < 4; ++i) {
    const http_reply r = cl.connect(c.lb_url(), 0);
    early.push_back(std::to_string(r.status) + r.node());
    CHECK(r.status == 200);
    CHECK(r.node() == "B");
    CHECK(succeeded(reply_in(r.messages(), "/meta/connect")));
  }
  const auto down = c.wait_lb_state(0, "DOWN", 5s);
  const long kill_to_down = ms_since(t_kill);
  REQUIRE(down.count() >= 0);
  figure(
      "haproxy: node A DOWN %ld ms after its SIGKILL (checks every 200 ms, fall 2); the 4 "
      "requests sent meanwhile were answered %s %s %s %s",
      kill_to_down, early[0].c_str(), early[1].c_str(), early[2].c_str(), early[3].c_str());
  CHECK(kill_to_down < 2000);
  CHECK(c.lb_state(1) == "UP");
  // Queued in Redis while the client is away, delivered by the node that remains.
  c.publish("/cl/x", R"({"n":1})", 3);
  REQUIRE(c.wait_queued(cl.client_id, 3));
  const auto got = cl.collect(c.lb_url(), 3);
  CHECK(seqs(got, "/cl/x") == seq012);
  for (int i = 0; i < 4; ++i) CHECK(cl.connect(c.lb_url(), 0).node() == "B");

  const auto t_restart = steady::now();
  c.restart(0);
  const long restarted = ms_since(t_restart);
  const auto up = c.wait_lb_state(0, "UP", 5s);
  REQUIRE(up.count() >= 0);
  figure("haproxy: node A restarted in %ld ms, UP again %ld ms later", restarted,
         static_cast<long>(up.count()));
  std::set<std::string> nodes;
  std::string order;
  for (int i = 0; i < 10; ++i) {
    http_reply r = cl.connect(c.lb_url(), 0);
    CHECK(succeeded(reply_in(r.messages(), "/meta/connect")));
    nodes.insert(r.node());
    order += r.node();
  }
  figure("haproxy: the 10 requests after A came back went to %s", order.c_str());
  CHECK(nodes == std::set<std::string>{"A", "B"});
}

TEST_CASE("cluster: nodes without Redis answer 401 Unknown client to each other's clients",
          "[cluster]") {
  cluster_options o;
  o.redis = false;
  o.haproxy = true;
  cluster c(o);
  CHECK(c.stats(0)["engine"] == "memory");
  SECTION("long-polling, node by node") {
    lp_client cl;
    cl.handshake(c.url(0));
    const http_reply r = cl.connect(c.url(1), 0);
    CHECK(r.status == 200);
    json reply = reply_in(r.messages(), "/meta/connect");
    CHECK(reply["successful"] == false);
    CHECK(reply["error"] == "401:" + cl.client_id + ":Unknown client");
    CHECK(reply["advice"]["reconnect"] == "handshake");
    CHECK(c.stats(1)["unknownClient"] == 1);
    // Node A still knows it.
    CHECK(reply_in(cl.connect(c.url(0), 0).messages(), "/meta/connect")["successful"] == true);
  }
  SECTION("websocket, node by node") {
    test_loop loop;
    {
      ws_client a(loop, c.url(0));
      const std::string id = a.handshake();
      ws_client b(loop, c.url(1));
      b.send(connect_msg(id, "websocket", 0));
      json reply = b.wait_reply("/meta/connect");
      CHECK(reply["successful"] == false);
      CHECK(reply["error"] == "401:" + id + ":Unknown client");
      CHECK(reply["advice"]["reconnect"] == "handshake");
    }
    CHECK(loop.close() == 0);
  }
  SECTION("long-polling through HAProxy: every other request fails") {
    lp_client cl;
    const std::string home = cl.handshake(c.lb_url()).node();
    int ok = 0, unknown = 0;
    for (int i = 0; i < 4; ++i) {
      const http_reply r = cl.connect(c.lb_url(), 0);
      json reply = reply_in(r.messages(), "/meta/connect");
      if (r.node() == home) {
        CHECK(reply["successful"] == true);
        ++ok;
      } else {
        CHECK(reply["error"] == "401:" + cl.client_id + ":Unknown client");
        ++unknown;
      }
    }
    CHECK(ok == 2);
    CHECK(unknown == 2);
  }
}

TEST_CASE("cluster: advice.hosts in handshake and connect replies when configured", "[cluster]") {
  cluster c;
  const std::vector<std::string> hosts{c.url(1), c.url(0)};
  c.set_advice_hosts(0, hosts);
  const json want = hosts;
  SECTION("long-polling") {
    lp_client cl;
    json hs = reply_in(cl.handshake(c.url(0)).messages(), "/meta/handshake");
    CHECK(hs["advice"]["hosts"] == want);
    CHECK(hs["advice"]["reconnect"] == "retry");  // Faye's own advice is still there
    json conn = reply_in(cl.connect(c.url(0), 0).messages(), "/meta/connect");
    CHECK(conn["successful"] == true);
    CHECK(conn["advice"]["hosts"] == want);
    // A failed connect carries them too.
    json unknown =
        reply_in(cl.peer.post(c.url(0), connect_msg("nosuchclient", "long-polling", 0)).messages(),
                 "/meta/connect");
    CHECK(unknown["successful"] == false);
    CHECK(unknown["advice"]["reconnect"] == "handshake");
    CHECK(unknown["advice"]["hosts"] == want);
    // Node B was not told: no hosts.
    json on_b = reply_in(cl.connect(c.url(1), 0).messages(), "/meta/connect");
    CHECK_FALSE(on_b["advice"].contains("hosts"));
    // Switched off again.
    c.set_advice_hosts(0, {});
    lp_client other;
    CHECK_FALSE(
        reply_in(other.handshake(c.url(0)).messages(), "/meta/handshake")["advice"].contains(
            "hosts"));
  }
  SECTION("websocket") {
    test_loop loop;
    {
      ws_client a(loop, c.url(0));
      a.send(handshake_msg("websocket"));
      json hs = a.wait_reply("/meta/handshake");
      CHECK(hs["advice"]["hosts"] == want);
      a.send(connect_msg(hs["clientId"], "websocket", 0));
      CHECK(a.wait_reply("/meta/connect")["advice"]["hosts"] == want);
    }
    CHECK(loop.close() == 0);
  }
  SECTION("from the command line") {
    server_process lone("faye-cluster-node.js",
                        {"--advice-hosts", "http://127.0.0.1:1/bayeux, http://127.0.0.1:2/bayeux"});
    lp_client cl;
    json hs = reply_in(cl.handshake(lone.url()).messages(), "/meta/handshake");
    CHECK(hs["advice"]["hosts"] ==
          json::array({"http://127.0.0.1:1/bayeux", "http://127.0.0.1:2/bayeux"}));
  }
}

TEST_CASE("cluster: faye-redis forgets a session 1.6 x timeout after its last connect",
          "[cluster]") {
  cluster_options o;
  o.timeout_s = 1;  // sessions live 1.6 s after their last /meta/connect
  cluster c(o);
  // Quiet periods on either side of the 1.6 s a session lives without a connect.
  constexpr auto inside_session_life = 1000ms;
  constexpr auto past_session_life = 2200ms;
  lp_client cl;
  cl.handshake(c.url(0));
  REQUIRE(reply_in(cl.connect(c.url(0), 0).messages(), "/meta/connect")["successful"] == true);
  std::this_thread::sleep_for(inside_session_life);
  CHECK(reply_in(cl.connect(c.url(1), 0).messages(), "/meta/connect")["successful"] == true);
  std::this_thread::sleep_for(past_session_life);
  json reply = reply_in(cl.connect(c.url(1), 0).messages(), "/meta/connect");
  CHECK(reply["error"] == "401:" + cl.client_id + ":Unknown client");
}

TEST_CASE("cluster: with --requeue-dropped a connect with advice.timeout 0 loses nothing",
          "[cluster]") {
  // faye-redis as it is loses some of the messages queued for a client whose connect carries
  // advice.timeout 0 (probe_cluster.cpp measures how many); the patched nodes keep them all.
  // Trials go on until the nodes requeued a few messages (the race happened), at most 40.
  cluster_options o;
  o.requeue_dropped = true;
  cluster c(o);
  int trials = 0, delivered = 0, requeued = 0;
  for (; trials < 40 && (trials < 5 || requeued < 3); ++trials) {
    lp_client cl;
    cl.handshake(c.url(0));
    cl.subscribe(c.url(0), "/cl/**");
    c.publish_on(0, "/cl/x", R"({"n":1})", 3);
    REQUIRE(c.wait_queued(cl.client_id, 3));
    // The timeout-0 connect, then held ones until the three are there.
    std::vector<json> got = deliveries_in(cl.connect(c.url(1), 0).messages());
    if (got.size() < 3) {
      for (auto& d : cl.collect(c.url(1), 3 - got.size())) got.push_back(std::move(d));
    }
    CHECK(seqs(got, "/cl/x") == seq012);
    delivered += static_cast<int>(got.size());
    requeued = c.stats(1)["requeued"];
  }
  CHECK(delivered == 3 * trials);
  CHECK(requeued >= 3);
  CHECK(c.stats(1)["dropped"] == 0);
  figure(
      "--requeue-dropped: %d trials of a timeout-0 connect after 3 publishes: %d requeued, "
      "none lost",
      trials, requeued);
}
