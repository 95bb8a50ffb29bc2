// Test helper: a real Bayeux cluster on 127.0.0.1 — redis-server, N Faye 1.4.3 nodes
// (test/servers/faye-cluster-node.js, sessions shared through faye-redis 0.2.0) and optionally
// HAProxy in front of them (test/servers/haproxy-cluster.cfg.in: round robin, no stickiness).
// Every process is a server_process: its own process group, killed with the test process
// (PR_SET_PDEATHSIG), SIGKILLed and reaped by the destructor. Ports are ephemeral. Blocking
// calls (libcurl easy API, a UNIX socket for HAProxy's stats); one object from one thread.
#pragma once

#include <sys/types.h>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server_process.hpp"

namespace uvcometd::test {

struct cluster_options {
  std::size_t nodes = 2;
  // Sessions shared through redis-server (faye-redis); false: each node keeps its own sessions
  // (Faye's in-memory engine) and no redis-server runs.
  bool redis = true;
  // HAProxy in front of the nodes (lb_url()).
  bool haproxy = false;
  // How many nodes HAProxy balances: the first lb_nodes ones (0: all). The others are reachable
  // by their own URL only (e.g. an application's publisher, out of the clients' path).
  std::size_t lb_nodes = 0;
  // The nodes' --timeout: how long a /meta/connect is held (advice.timeout), in seconds. Faye and
  // faye-redis forget a session 1.6 x timeout after its last /meta/connect.
  int timeout_s = 5;
  // Patch faye-redis (--requeue-dropped 1): messages it drains for a long-poll that closed
  // meanwhile go back to the queue instead of being lost (faye-cluster-node.js says more). For
  // measuring the client's own losses apart from the server's; false is faye-redis as it is.
  bool requeue_dropped = false;
  // Every node logs each message it hands to a network client's connection (deliveries(i)).
  bool delivery_log = false;
  // Added to every node's command line (e.g. {"--advice-hosts", "URL,URL"}).
  std::vector<std::string> node_args;
};

class cluster {
 public:
  // Starts redis-server (if opts.redis), the nodes named "A", "B", ... and HAProxy (if
  // opts.haproxy), and returns once every node serves and HAProxy has seen each of them pass a
  // health check. Throws std::runtime_error (with the failing process's log) otherwise.
  explicit cluster(cluster_options opts = {});
  // Stops HAProxy, the nodes, then redis-server (SIGKILL, reaped) and removes the temporary
  // directory.
  ~cluster();
  cluster(const cluster&) = delete;
  cluster& operator=(const cluster&) = delete;

  std::size_t size() const { return nodes_.size(); }
  // "A", "B", ...: the node's --node name (its X-Node response header, /control/stats "node").
  std::string name(std::size_t i) const;
  int port(std::size_t i) const;
  // "http://127.0.0.1:<port>/bayeux" of node i (the same after restart(i)).
  std::string url(std::size_t i) const;
  // "http://127.0.0.1:<port>" of node i (its control API).
  std::string base_url(std::size_t i) const;
  // "http://127.0.0.1:<port>/bayeux" of HAProxy; throws without opts.haproxy.
  std::string lb_url() const;
  // HAProxy's port; throws without opts.haproxy.
  int lb_port() const;
  // The redis-server port (0 without opts.redis).
  int redis_port() const;
  // How long the constructor took, and its parts ("redis-server N ms, nodes N ms, haproxy N ms").
  std::chrono::milliseconds startup_time() const { return startup_time_; }
  const std::string& startup_detail() const { return startup_detail_; }

  // The process ids of every process running now: redis-server, the nodes, haproxy.
  std::vector<pid_t> pids() const;
  // Node i's process: running(), pid(), get(), control()...
  server_process& node(std::size_t i);
  bool alive(std::size_t i);
  // SIGKILL node i (and reap it): its sockets close, its held requests end unanswered.
  void kill(std::size_t i);
  // Starts node i again on the same port with the same arguments.
  void restart(std::size_t i);

  // POST /control/publish through the first live node (server-side publishes reach every
  // node's subscribers through Redis). With count > 1 and an object as data, each message's data
  // also gets "seq": 0..count-1.
  void publish(const std::string& channel, const std::string& data_json, int count = 1);
  // The same through node i.
  void publish_on(std::size_t i, const std::string& channel, const std::string& data_json,
                  int count = 1);
  // The messages node i handed to a network client's connection, in order, over all its runs
  // (kill() and restart() keep them): {"node","channel","data"} each. Needs opts.delivery_log.
  std::vector<nlohmann::json> deliveries(std::size_t i) const;
  // GET /control/stats of node i (see faye-cluster-node.js).
  nlohmann::json stats(std::size_t i);
  // GET /control/queue through the first live node: how many messages wait for client_id in
  // the engine (Redis: the queue every node shares), not yet handed to a connection.
  int queued(const std::string& client_id);
  // Waits (polling every 5 ms) until queued(client_id) >= n; false when `limit` passed first.
  bool wait_queued(const std::string& client_id, int n,
                   std::chrono::milliseconds limit = std::chrono::seconds(5));
  // POST /control/advice-hosts: node i sends advice.hosts = hosts from now on ({} stops it).
  void set_advice_hosts(std::size_t i, const std::vector<std::string>& hosts);
  // POST /control/forget on node i: the engine destroys client_id's session (with Redis, on
  // every node); its next /meta/connect is answered 401 with advice reconnect "handshake".
  // Throws when there is no such session.
  void forget(std::size_t i, const std::string& client_id);

  // HAProxy's view of node i ("UP", "DOWN", "UP 1/2", "MAINT"...), from its stats socket; ""
  // for a node it does not balance (cluster_options::lb_nodes).
  std::string lb_state(std::size_t i);
  // Any field of HAProxy's "show stat" row for node i ("eresp", "srv_abrt", "wredis"...), "" when
  // it is empty or the node is not balanced.
  std::string lb_stat(std::size_t i, const std::string& field);
  // Waits (polling the stats socket every 5 ms) until lb_state(i) starts with `prefix`; returns
  // the time it took, or -1 ms when `limit` passed first.
  std::chrono::milliseconds wait_lb_state(std::size_t i, const std::string& prefix,
                                          std::chrono::milliseconds limit);

 private:
  std::string haproxy_command(const std::string& command);
  void start_redis();
  void start_haproxy();

  cluster_options opts_;
  std::string dir_;  // temporary directory: redis's dir, HAProxy's config and stats socket
  std::unique_ptr<server_process> redis_;
  std::vector<std::unique_ptr<server_process>> nodes_;
  std::unique_ptr<server_process> haproxy_;
  std::chrono::milliseconds startup_time_{0};
  std::string startup_detail_;
};

// A free TCP port on 127.0.0.1 (bound to 0, read and released): for programs that cannot report
// the port they bound. Another process may take it before the caller binds it; callers retry.
int pick_free_port();

}  // namespace uvcometd::test
