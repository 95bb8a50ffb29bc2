// Test helpers: raw Bayeux peers for wire-level checks of real servers — long-polling over the
// libcurl easy API (blocking; response headers kept, e.g. a cluster node's X-Node) and websocket
// over uvcometd's own transport on a test_loop — plus message builders. Header-only; used by the
// cluster tests (test_cluster_rig.cpp, probe_cluster.cpp). One object from one thread.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cctype>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <curl/curl.h>

#include "cluster.hpp"
#include "loop_helpers.hpp"
#include "transport/transport.hpp"
#include "transport_kit.hpp"

namespace uvcometd::test {

using namespace std::chrono_literals;

using nlohmann::json;
using steady = std::chrono::steady_clock;
using uvcometd::detail::header_list;
using uvcometd::detail::make_websocket_transport;
using uvcometd::detail::transport;
using uvcometd::detail::transport_events;

inline void figure(const char* fmt, ...) {
  if (std::getenv("UVCOMETD_TEST_REPORT") == nullptr) return;
  std::va_list ap;
  va_start(ap, fmt);
  std::fputs("[figure] ", stderr);
  std::vfprintf(stderr, fmt, ap);
  std::fputs("\n", stderr);
  va_end(ap);
}

inline long ms_since(steady::time_point t0) {
  return static_cast<long>(
      std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t0).count());
}

// ---- Bayeux messages ----

inline json handshake_msg(const std::string& type) {
  return json::array({{{"channel", "/meta/handshake"},
                       {"version", "1.0"},
                       {"supportedConnectionTypes", {type}},
                       {"id", "h"}}});
}

// A /meta/connect; timeout_ms < 0: no advice (the node holds it up to its --timeout).
inline json connect_msg(const std::string& client_id, const std::string& type, int timeout_ms,
                        const std::string& id = "c") {
  json m = {
      {"channel", "/meta/connect"}, {"clientId", client_id}, {"connectionType", type}, {"id", id}};
  if (timeout_ms >= 0) m["advice"] = {{"timeout", timeout_ms}};
  return json::array({m});
}

inline json subscribe_msg(const std::string& client_id, const std::string& pattern) {
  return json::array({{{"channel", "/meta/subscribe"},
                       {"clientId", client_id},
                       {"subscription", pattern},
                       {"id", "s"}}});
}

// The first reply (a message with "successful") on `channel` in `messages`, or null.
inline json reply_in(const json& messages, const std::string& channel) {
  for (const auto& m : messages) {
    if (m.value("channel", "") == channel && m.contains("successful")) return m;
  }
  return nullptr;
}

// Whether `reply` (from reply_in) is a successful reply.
inline bool succeeded(const json& reply) {
  return reply.is_object() && reply.value("successful", false) == true;
}

// The deliveries (non-meta messages without "successful") in `messages`.
inline std::vector<json> deliveries_in(const json& messages) {
  std::vector<json> out;
  for (const auto& m : messages) {
    const std::string ch = m.value("channel", "");
    if (ch.rfind("/meta/", 0) != 0 && !m.contains("successful")) out.push_back(m);
  }
  return out;
}

// ---- long-polling over libcurl (blocking) ----

inline std::size_t append_body(char* data, std::size_t size, std::size_t nmemb, void* user) {
  static_cast<std::string*>(user)->append(data, size * nmemb);
  return size * nmemb;
}

inline std::size_t collect_header(char* data, std::size_t size, std::size_t nmemb, void* user) {
  auto* headers = static_cast<std::multimap<std::string, std::string>*>(user);
  std::string line(data, size * nmemb);
  const auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    value.erase(value.find_last_not_of(" \t\r\n") + 1);
    headers->emplace(name, value);
  }
  return size * nmemb;
}

struct http_reply {
  CURLcode rc = CURLE_OK;  // the transport's outcome
  long status = 0;
  std::string body;
  std::multimap<std::string, std::string> headers;  // names lower-cased

  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
  std::string node() const { return header("x-node"); }
  json messages() const {
    json j = json::parse(body, nullptr, false);
    return j.is_array() ? j : json::array();
  }
};

// One curl easy handle: requests reuse its connection (keep-alive), as a browser's would.
class http_peer {
 public:
  http_peer() : curl_(curl_easy_init()) {
    if (curl_ == nullptr) throw std::runtime_error("curl_easy_init");
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl_, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(curl_, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  }
  ~http_peer() { curl_easy_cleanup(curl_); }
  http_peer(const http_peer&) = delete;
  http_peer& operator=(const http_peer&) = delete;

  // POSTs `messages`; never throws for a transport error (see http_reply::rc).
  http_reply post(const std::string& url, const json& messages, long timeout_ms = 20000) {
    http_reply r;
    const std::string body = messages.dump();
    curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &append_body);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &r.body);
    curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, &collect_header);
    curl_easy_setopt(curl_, CURLOPT_HEADERDATA, &r.headers);
    r.rc = curl_easy_perform(curl_);
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, nullptr);
    curl_slist_free_all(headers);
    return r;
  }

 private:
  CURL* curl_;
};

// A long-polling Bayeux client in the raw: handshakes on one URL, may talk to any other.
struct lp_client {
  http_peer peer;
  std::string client_id;

  // Handshakes on `url`; returns the reply (REQUIREs success).
  http_reply handshake(const std::string& url) {
    http_reply r = peer.post(url, handshake_msg("long-polling"));
    INFO("handshake on " << url << ": rc " << r.rc << " HTTP " << r.status << " " << r.body);
    REQUIRE(r.status == 200);
    json hs = reply_in(r.messages(), "/meta/handshake");
    REQUIRE(hs.is_object());
    REQUIRE(succeeded(hs));
    client_id = hs.at("clientId").get<std::string>();
    return r;
  }
  http_reply connect(const std::string& url, int timeout_ms = -1) {
    return peer.post(url, connect_msg(client_id, "long-polling", timeout_ms));
  }
  void subscribe(const std::string& url, const std::string& pattern) {
    http_reply r = peer.post(url, subscribe_msg(client_id, pattern));
    INFO("subscribe: HTTP " << r.status << " " << r.body);
    REQUIRE(r.status == 200);
    REQUIRE(succeeded(reply_in(r.messages(), "/meta/subscribe")));
  }
  // Held connects on `url` until `n` deliveries arrived (at most `rounds` connects); every
  // connect must succeed there. Returns the deliveries.
  std::vector<json> collect(const std::string& url, std::size_t n, int rounds = 6) {
    std::vector<json> got;
    for (int i = 0; i < rounds && got.size() < n; ++i) {
      http_reply r = connect(url);
      INFO("connect on " << url << ": rc " << r.rc << " HTTP " << r.status << " " << r.body);
      REQUIRE(r.status == 200);
      REQUIRE(succeeded(reply_in(r.messages(), "/meta/connect")));
      for (auto& d : deliveries_in(r.messages())) got.push_back(std::move(d));
    }
    return got;
  }
};

// ---- websocket through uvcometd's transport ----

struct ws_events : transport_events {
  std::vector<json> messages;  // every message of every frame, in order
  int ups = 0;
  int downs = 0;
  void on_frame(std::uint64_t, std::string&& body, const header_list&) override {
    json j = json::parse(body, nullptr, false);
    if (j.is_array()) {
      for (auto& m : j) messages.push_back(std::move(m));
    }
  }
  void on_request_failed(std::uint64_t, const error&) override {}
  void on_up() override { ++ups; }
  void on_down(const error&, bool, const std::vector<std::uint64_t>&) override { ++downs; }
};

// One websocket to `url` on `loop`.
class ws_client {
 public:
  ws_client(test_loop& loop, const std::string& url)
      : loop_(loop), kit_(std::make_unique<transport_kit>(loop.get())) {
    auto c = uvcometd::test::ws_config(url);
    c.connect_timeout = 5000ms;
    t_ = make_websocket_transport(kit_->env(), c, ev_);
  }
  ~ws_client() { close(); }
  ws_client(const ws_client&) = delete;
  ws_client& operator=(const ws_client&) = delete;

  void send(const json& messages) { t_->send(0, messages.dump(), 5s, true); }
  // Waits for the reply on `channel` (or the connection going down); returns it or null.
  json wait_reply(const std::string& channel, std::chrono::milliseconds limit = 5s) {
    json found;
    loop_.run_until(
        [&] {
          for (std::size_t i = seen_; i < ev_.messages.size(); ++i) {
            const json& m = ev_.messages[i];
            if (m.value("channel", "") == channel && m.contains("successful")) {
              found = m;
              seen_ = i + 1;
              return true;
            }
          }
          return ev_.downs > 0;
        },
        limit);
    return found;
  }
  std::string handshake() {
    send(handshake_msg("websocket"));
    json hs = wait_reply("/meta/handshake");
    INFO("handshake reply " << hs.dump());
    REQUIRE(hs.is_object());
    REQUIRE(succeeded(hs));
    return hs.at("clientId").get<std::string>();
  }
  // Every message received so far, in order.
  const std::vector<json>& messages() const { return ev_.messages; }
  std::vector<json> deliveries() const { return deliveries_in(json(ev_.messages)); }
  bool wait_deliveries(std::size_t n, std::chrono::milliseconds limit = 10s) {
    return loop_.run_until([&] { return deliveries().size() >= n || ev_.downs > 0; }, limit) &&
           deliveries().size() >= n;
  }
  bool wait_down(std::chrono::milliseconds limit = 5s) {
    return loop_.run_until([&] { return ev_.downs > 0; }, limit);
  }
  void close() {
    if (t_) {
      bool done = false;
      t_->close([&] { done = true; });
      loop_.run_until([&] { return done; }, 5s);
      t_.reset();
    }
    kit_.reset();  // its handle closes with the loop's next turn
  }

 private:
  test_loop& loop_;
  std::unique_ptr<transport_kit> kit_;  // the client's share; closed after the transport
  ws_events ev_;
  std::unique_ptr<transport> t_;
  std::size_t seen_ = 0;
};

// The X-Node header (any case) of the 101 answering a websocket upgrade on 127.0.0.1:port ("" if
// none).
inline std::string upgrade_node(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string head;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    const std::string req =
        "GET /bayeux HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      while (head.find("\r\n\r\n") == std::string::npos) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 5000) <= 0) break;
        char buf[1024];
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        head.append(buf, static_cast<std::size_t>(n));
      }
    }
  }
  ::close(fd);
  INFO("upgrade answer: " << head);
  REQUIRE(head.rfind("HTTP/1.1 101", 0) == 0);
  // HAProxy passes header names on in lower case.
  std::string lower = head;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const auto at = lower.find("\r\nx-node: ");
  if (at == std::string::npos) return {};
  const auto from = at + 10;
  return head.substr(from, head.find("\r\n", from) - from);
}

inline bool contains(const json& array, const std::string& value) {
  return std::any_of(array.begin(), array.end(),
                     [&](const json& v) { return v.is_string() && v.get<std::string>() == value; });
}

// Waits (polling /control/stats) until node i holds, or no longer holds, a connection for id.
inline bool wait_held(cluster& c, std::size_t i, const std::string& id, bool held,
                      std::chrono::milliseconds limit = 5s) {
  const auto t0 = steady::now();
  for (;;) {
    if (contains(c.stats(i)["held"], id) == held) return true;
    if (steady::now() - t0 > limit) return false;
    std::this_thread::sleep_for(5ms);
  }
}

// The "seq" values of the deliveries on `channel`, in arrival order.
inline std::vector<int> seqs(const std::vector<json>& deliveries, const std::string& channel) {
  std::vector<int> out;
  for (const auto& d : deliveries) {
    if (d.value("channel", "") == channel) out.push_back(d["data"].value("seq", -1));
  }
  return out;
}

}  // namespace uvcometd::test
