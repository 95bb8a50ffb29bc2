// Checks the test servers and the server_process helper with raw Bayeux frames over libcurl.
#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include "server_process.hpp"

using nlohmann::json;
using uvcometd::test::server_process;

namespace {

std::size_t append_body(char* data, std::size_t size, std::size_t nmemb, void* user) {
  static_cast<std::string*>(user)->append(data, size * nmemb);
  return size * nmemb;
}

// A raw long-polling Bayeux peer: one curl handle (so one cookie jar, as cometd needs).
class raw_peer {
 public:
  explicit raw_peer(std::string url) : url_(std::move(url)), curl_(curl_easy_init()) {
    if (!curl_) throw std::runtime_error("curl_easy_init");
    curl_easy_setopt(curl_, CURLOPT_COOKIEFILE, "");  // in-memory cookie engine
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl_, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, 20000L);
    headers_ = curl_slist_append(nullptr, "Content-Type: application/json");
  }
  ~raw_peer() {
    curl_slist_free_all(headers_);
    curl_easy_cleanup(curl_);
  }
  raw_peer(const raw_peer&) = delete;
  raw_peer& operator=(const raw_peer&) = delete;

  // POSTs `frame`; returns the HTTP status and fills `body`.
  long post_raw(const std::string& frame, std::string& body,
                const std::vector<std::string>& extra_headers = {}) {
    body.clear();
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Content-Type: application/json");
    for (const auto& h : extra_headers) headers = curl_slist_append(headers, h.c_str());
    curl_easy_setopt(curl_, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, frame.c_str());
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE, static_cast<long>(frame.size()));
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &append_body);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &body);
    CURLcode rc = curl_easy_perform(curl_);
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers_);
    curl_slist_free_all(headers);
    if (rc != CURLE_OK) throw std::runtime_error(curl_easy_strerror(rc));
    long status = 0;
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &status);
    return status;
  }

  // POSTs the messages, expects 200, returns the reply array.
  json post(const json& messages) {
    std::string body;
    long status = post_raw(messages.dump(), body);
    INFO("request " << messages.dump() << " -> HTTP " << status << " " << body);
    REQUIRE(status == 200);
    json reply = json::parse(body);
    REQUIRE(reply.is_array());
    return reply;
  }

  json handshake() {
    json r = post(json::array({{{"channel", "/meta/handshake"},
                                {"version", "1.0"},
                                {"supportedConnectionTypes", {"long-polling"}},
                                {"id", next_id()}}}));
    json hs = find(r, "/meta/handshake");
    REQUIRE(hs.value("successful", false));
    client_id_ = hs.at("clientId").get<std::string>();
    return hs;
  }

  json connect(int timeout_ms = -1) {
    json m = {{"channel", "/meta/connect"},
              {"clientId", client_id_},
              {"connectionType", "long-polling"},
              {"id", next_id()}};
    if (timeout_ms >= 0) m["advice"] = {{"timeout", timeout_ms}};
    return post(json::array({m}));
  }

  json subscribe(const std::string& channel) {
    return find(post(json::array({{{"channel", "/meta/subscribe"},
                                   {"clientId", client_id_},
                                   {"subscription", channel},
                                   {"id", next_id()}}})),
                "/meta/subscribe");
  }

  json publish(const std::string& channel, const json& data) {
    json r = post(json::array(
        {{{"channel", channel}, {"clientId", client_id_}, {"data", data}, {"id", next_id()}}}));
    for (const auto& m : r) {
      if (m.value("channel", "") == channel && m.contains("successful")) return m;
    }
    FAIL("no publish reply in " << r.dump());
    return {};
  }

  // The first message of `channel` in `reply` that is a reply (has "successful").
  static json find(const json& reply, const std::string& channel) {
    for (const auto& m : reply) {
      if (m.value("channel", "") == channel && m.contains("successful")) return m;
    }
    FAIL("no " << channel << " reply in " << reply.dump());
    return {};
  }

  // The data of every message on `channel` without "successful" (deliveries).
  static std::vector<json> data_of(const json& reply, const std::string& channel) {
    std::vector<json> out;
    for (const auto& m : reply) {
      if (m.value("channel", "") == channel && !m.contains("successful")) out.push_back(m["data"]);
    }
    return out;
  }

  const std::string& client_id() const { return client_id_; }

 private:
  std::string next_id() { return std::to_string(++id_); }

  std::string url_;
  CURL* curl_;
  curl_slist* headers_ = nullptr;
  std::string client_id_;
  int id_ = 0;
};

const char* const scripts[] = {"faye-server.js", "cometd-server.js"};

}  // namespace

TEST_CASE("server_process starts both servers and they handshake", "[servers]") {
  for (const char* script : scripts) {
    SECTION(script) {
      server_process srv(script, {"--timeout", "2"});
      CHECK(srv.port() > 0);
      CHECK(srv.running());
      CHECK(srv.base_url() == "http://127.0.0.1:" + std::to_string(srv.port()));
      CHECK(srv.url() ==
            srv.base_url() + (std::string(script) == "faye-server.js" ? "/bayeux" : "/cometd"));
      raw_peer peer(srv.url());
      json hs = peer.handshake();
      CHECK(hs["supportedConnectionTypes"].size() >= 1);
      CHECK_FALSE(peer.client_id().empty());
      json c = raw_peer::find(peer.connect(0), "/meta/connect");
      CHECK(c.value("successful", false));
      CHECK(c["advice"]["timeout"] == 2000);

      json stats = json::parse(srv.get("/control/stats"));
      CHECK(stats["clients"] == 1);
    }
  }
}

TEST_CASE("control publish reaches a subscriber, in order, with seq", "[servers]") {
  for (const char* script : scripts) {
    SECTION(script) {
      server_process srv(script, {"--timeout", "2"});
      raw_peer peer(srv.url());
      peer.handshake();
      peer.connect(0);
      REQUIRE(peer.subscribe("/test/**").value("successful", false));

      srv.publish("/test/a", R"({"hello":"world"})");
      srv.publish("/test/b/c", R"({"n":1})", 5);
      srv.publish("/other", "42");

      auto t0 = std::chrono::steady_clock::now();
      json r = peer.connect();
      // Queued messages are returned at once, not after the 2 s hold.
      CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(1500));
      auto a = raw_peer::data_of(r, "/test/a");
      REQUIRE(a.size() == 1);
      CHECK(a[0] == json{{"hello", "world"}});
      auto bc = raw_peer::data_of(r, "/test/b/c");
      REQUIRE(bc.size() == 5);
      for (int i = 0; i < 5; ++i)
        CHECK(bc[static_cast<std::size_t>(i)] == json{{"n", 1}, {"seq", i}});
      CHECK(raw_peer::data_of(r, "/other").empty());

      // Non-object data with count > 1 is published as is.
      srv.publish("/test/s", "\"text\"", 2);
      auto s = raw_peer::data_of(peer.connect(), "/test/s");
      CHECK(s == std::vector<json>{"text", "text"});
    }
  }
}

TEST_CASE("forbidden publish and private subscribe are refused", "[servers]") {
  for (const char* script : scripts) {
    SECTION(script) {
      const bool faye = std::string(script) == "faye-server.js";
      server_process srv(script);
      raw_peer peer(srv.url());
      peer.handshake();
      json pub = peer.publish("/forbidden/x", json{{"a", 1}});
      CHECK_FALSE(pub.value("successful", true));
      CHECK(pub["error"] == (faye ? "403:/forbidden/x:Forbidden channel" : "403::publish_denied"));
      json ok = peer.publish("/allowed/x", json{{"a", 1}});
      CHECK(ok.value("successful", false));

      json sub = peer.subscribe("/private/**");
      CHECK_FALSE(sub.value("successful", true));
      CHECK(sub["error"] ==
            (faye ? "403:/private/**:Subscription denied" : "403::subscribe_denied"));
      CHECK(peer.subscribe("/public/x").value("successful", false));

      // The control API may still publish anywhere.
      CHECK_NOTHROW(srv.publish("/forbidden/y", "1"));
    }
  }
}

TEST_CASE("advice-none and expire", "[servers]") {
  for (const char* script : scripts) {
    SECTION(script) {
      server_process srv(script, {"--timeout", "2"});
      raw_peer peer(srv.url());
      peer.handshake();
      peer.connect(0);

      CHECK(json::parse(srv.control("/control/advice-none", R"({"enabled":true})"))["enabled"] ==
            true);
      auto t0 = std::chrono::steady_clock::now();
      json c = raw_peer::find(peer.connect(), "/meta/connect");
      CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(1500));
      CHECK_FALSE(c.value("successful", true));
      CHECK(c["error"] == "403::session terminated by test");
      CHECK(c["advice"] == json{{"reconnect", "none"}});
      srv.control("/control/advice-none", R"({"enabled":false})");
      CHECK(raw_peer::find(peer.connect(0), "/meta/connect").value("successful", false));

      CHECK(json::parse(srv.control("/control/expire", "{}"))["expired"] == 1);
      json gone = raw_peer::find(peer.connect(0), "/meta/connect");
      CHECK_FALSE(gone.value("successful", true));
      CHECK(gone["advice"]["reconnect"] == "handshake");
      CHECK(json::parse(srv.get("/control/stats"))["clients"] == 0);
    }
  }
}

TEST_CASE("stats count the connects received, those answered and those held", "[servers]") {
  for (const char* script : scripts) {
    SECTION(script) {
      server_process srv(script, {"--timeout", "1"});
      raw_peer peer(srv.url());
      peer.handshake();
      peer.connect(0);
      const auto stats = [&] { return json::parse(srv.get("/control/stats")); };
      json s = stats();
      CHECK(s["connects"] == 1);
      CHECK(s["connectReplies"] == 1);
      CHECK(s["heldConnects"] == 0);
      // A connect held for the server's 1 s timeout, made from another thread.
      std::thread held([&] { peer.connect(); });
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      while (stats()["heldConnects"] == 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      s = stats();
      CHECK(s["heldConnects"] == 1);
      CHECK(s["connects"] == 2);
      CHECK(s["connectReplies"] == 1);
      held.join();
      s = stats();
      CHECK(s["heldConnects"] == 0);
      CHECK(s["connectReplies"] == 2);
    }
  }
}

TEST_CASE("restart keeps the port; stop is idempotent", "[servers]") {
  for (const char* script : scripts) {
    SECTION(script) {
      server_process srv(script, {"--timeout", "1"});
      const int port = srv.port();
      const pid_t first = srv.pid();
      {
        raw_peer peer(srv.url());
        peer.handshake();
      }
      srv.restart();
      CHECK(srv.port() == port);
      CHECK(srv.pid() != first);
      CHECK(srv.running());
      raw_peer peer(srv.url());
      peer.handshake();
      CHECK(json::parse(srv.get("/control/stats"))["clients"] == 1);

      srv.stop();
      CHECK_FALSE(srv.running());
      CHECK(srv.pid() == 0);
      srv.stop();
      std::string body;
      CHECK_THROWS(peer.post_raw("[]", body));  // connection refused
      srv.restart();
      CHECK(srv.port() == port);
      peer.handshake();
    }
  }
}

TEST_CASE("cometd-server refuses websocket upgrades with 400", "[servers]") {
  server_process srv("cometd-server.js");
  std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), &curl_easy_cleanup);
  curl_slist* headers = nullptr;
  for (const char* h : {"Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13",
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="}) {
    headers = curl_slist_append(headers, h);
  }
  std::string body;
  const std::string url = srv.url();
  curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl.get(), CURLOPT_NOPROXY, "*");
  curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, &append_body);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &body);
  CURLcode rc = curl_easy_perform(curl.get());
  curl_slist_free_all(headers);
  REQUIRE(rc == CURLE_OK);
  long status = 0;
  curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &status);
  CHECK(status == 400);
}

TEST_CASE("server_process reports start failures", "[servers]") {
  try {
    server_process bad("faye-server.js", {"--bogus"});
    FAIL("no exception");
  } catch (const std::runtime_error& e) {
    std::string what = e.what();
    CHECK(what.find("unknown option --bogus") != std::string::npos);
    CHECK(what.find("exited with status 2") != std::string::npos);
  }
  CHECK_THROWS_AS(server_process("no-such-server.js"), std::runtime_error);
  server_process srv("faye-server.js");
  CHECK_THROWS_AS(srv.control("/control/nope", "{}"), std::runtime_error);
  CHECK_THROWS_AS(srv.control("/control/publish", "not json"), std::runtime_error);
}
