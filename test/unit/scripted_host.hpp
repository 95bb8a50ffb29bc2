// A scripted session_host for the session unit tests: a fake clock, every action the session asks
// for recorded, and helpers that play the server's side (replies, failures, time passing).
#pragma once

#include <catch2/catch.hpp>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "session/session.hpp"

namespace uvcometd_test {

using namespace std::chrono_literals;
using uvcometd::connection_type;
using uvcometd::errc;
using uvcometd::state;
namespace detail = uvcometd::detail;
using ms = std::chrono::milliseconds;

// One frame the session sent, parsed.
struct sent_frame {
  connection_type type = connection_type::long_polling;
  std::uint64_t request = 0;
  std::string text;
  ms timeout{0};
  bool alone = false;  // the session asked for the frame to travel by itself
  std::shared_ptr<rapidjson::Document> doc;

  std::size_t size() const { return doc->IsArray() ? doc->Size() : 0; }
  const rapidjson::Value& msg(std::size_t i) const {
    REQUIRE(doc->IsArray());
    REQUIRE(i < doc->Size());
    return (*doc)[static_cast<rapidjson::SizeType>(i)];
  }
  static std::string field(const rapidjson::Value& m, const char* name) {
    if (!m.IsObject() || !m.HasMember(name)) return {};
    const auto& v = m[name];
    if (v.IsString()) return std::string(v.GetString(), v.GetStringLength());
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    v.Accept(w);
    return buf.GetString();
  }
  // A member of message i: a string's value, or the compact JSON text of any other value;
  // empty when absent.
  std::string get(std::size_t i, const char* name) const { return field(msg(i), name); }
  bool has(std::size_t i, const char* name) const { return msg(i).HasMember(name); }
  std::string channel(std::size_t i = 0) const { return get(i, "channel"); }
  std::string id(std::size_t i = 0) const { return get(i, "id"); }
  // Index of the first message on `channel`, or -1.
  int find(const std::string& ch) const {
    for (std::size_t i = 0; i < size(); ++i) {
      if (channel(i) == ch) return static_cast<int>(i);
    }
    return -1;
  }
  bool carries(const std::string& ch) const { return find(ch) >= 0; }
};

struct state_event {
  state s;
  connection_type type;
  uvcometd::error why;
};

// Counts a completion's calls and keeps the last error.
struct outcome {
  int calls = 0;
  uvcometd::error err;
  std::function<void()> then;  // runs inside the completion (re-entrancy tests)
  detail::completion_fn cb() {
    return [this](const uvcometd::error& e) {
      ++calls;
      err = e;
      if (then) then();
    };
  }
  bool ok_once() const { return calls == 1 && !err; }
  bool failed_once(errc code) const { return calls == 1 && err.code == code; }
};

class scripted_host final : public detail::session_host {
 public:
  detail::clock::time_point now_ = detail::clock::time_point{} + std::chrono::hours(1000);
  std::vector<sent_frame> sends;
  std::optional<detail::clock::time_point> deadline;
  std::vector<ms> arms;
  bool run_requested = false;
  std::vector<connection_type> aborts;
  int close_transports_calls = 0;
  int arms_after_close = 0;
  int sends_after_close = 0;
  std::vector<state_event> states;
  std::vector<std::pair<connection_type, bool>> receive_pauses;
  std::vector<std::string> logs;
  std::function<void(state, connection_type, const uvcometd::error&)> on_state;

  detail::clock::time_point now() override { return now_; }

  void send(connection_type t, std::uint64_t request, const detail::outgoing_batch& batch,
            ms timeout, bool alone) override {
    sent_frame f;
    f.type = t;
    f.alone = alone;
    f.request = request;
    f.text = batch.encode();
    f.timeout = timeout;
    f.doc = std::make_shared<rapidjson::Document>();
    f.doc->Parse(f.text.c_str(), f.text.size());
    INFO("frame sent: " << f.text);
    CHECK_FALSE(f.doc->HasParseError());  // the session only ever sends valid JSON
    CHECK(f.doc->IsArray());
    if (f.doc->IsArray() && f.doc->Size() > 0 && (*f.doc)[0].IsObject() &&
        (*f.doc)[0].HasMember("channel") && (*f.doc)[0]["channel"].IsString()) {
      // /meta/connect, handshake and disconnect must never be merged with anything.
      const std::string ch = (*f.doc)[0]["channel"].GetString();
      const bool must_be_alone =
          ch == "/meta/connect" || ch == "/meta/handshake" || ch == "/meta/disconnect";
      CHECK(alone == must_be_alone);
      if (must_be_alone) CHECK(f.doc->Size() == 1);
    }
    if (close_transports_calls > 0) ++sends_after_close;
    sends.push_back(std::move(f));
  }
  void abort(connection_type t) override { aborts.push_back(t); }
  void arm_timer(ms delay) override {
    CHECK(delay.count() >= 0);
    arms.push_back(delay);
    if (close_transports_calls > 0) ++arms_after_close;
    deadline = now_ + delay;
  }
  void disarm_timer() override { deadline.reset(); }
  void request_run() override { run_requested = true; }
  std::vector<std::string> endpoints;  // use_endpoint() calls, in order
  void use_endpoint(const std::string& url) override { endpoints.push_back(url); }
  void pause_receive(connection_type t, bool paused) override {
    receive_pauses.emplace_back(t, paused);
  }
  void close_transports() override { ++close_transports_calls; }
  void state_changed(state s, connection_type t, const uvcometd::error& why) override {
    states.push_back({s, t, why});
    if (on_state) on_state(s, t, why);
  }
  void log(uvcometd::log_level, std::string_view text) override { logs.emplace_back(text); }
  int authenticate_calls = 0;
  void authenticate() override { ++authenticate_calls; }
};

// Deterministic defaults for the tests (fixed random seed).
inline detail::session_config test_config() {
  detail::session_config c;
  c.random_seed = 42;
  return c;
}

inline detail::session_config long_polling_only() {
  auto c = test_config();
  c.connection_types = {connection_type::long_polling};
  return c;
}

// The session under test with its scripted host, plus the server-side moves.
struct harness {
  scripted_host host;
  std::unique_ptr<detail::session> s;

  explicit harness(detail::session_config cfg = test_config())
      : s(std::make_unique<detail::session>(host, std::move(cfg))) {}

  // One loop iteration's worth of deferred work, repeated while the session asks for more.
  void loop() {
    for (int guard = 0; guard < 1000 && host.run_requested; ++guard) {
      host.run_requested = false;
      s->run_deferred();
    }
  }

  // Moves the fake clock forward, firing the timer (then the loop) whenever its deadline passes.
  void advance(ms d) {
    const auto target = host.now_ + d;
    for (int guard = 0; guard < 100000; ++guard) {
      if (!host.deadline || *host.deadline > target) break;
      if (*host.deadline > host.now_) host.now_ = *host.deadline;
      host.deadline.reset();
      s->on_timer();
      loop();
    }
    host.now_ = target;
  }

  std::size_t sent_count() const { return host.sends.size(); }
  const sent_frame& last() const {
    REQUIRE_FALSE(host.sends.empty());
    return host.sends.back();
  }
  const sent_frame& sent(std::size_t i) const {
    REQUIRE(i < host.sends.size());
    return host.sends[i];
  }
  // The last frame carrying a message on `channel`.
  const sent_frame& last_on(const std::string& channel) const {
    for (auto it = host.sends.rbegin(); it != host.sends.rend(); ++it) {
      if (it->carries(channel)) return *it;
    }
    FAIL("no frame sent on " << channel);
    return host.sends.back();
  }
  std::size_t count_on(const std::string& channel, std::size_t from = 0) const {
    std::size_t n = 0;
    for (std::size_t i = from; i < host.sends.size(); ++i) {
      for (std::size_t k = 0; k < host.sends[i].size(); ++k) {
        if (host.sends[i].channel(k) == channel) ++n;
      }
    }
    return n;
  }

  // The server answers `req` with `body`: as the HTTP response of that request (long-polling) or
  // as a frame pushed on the connection (websocket, request 0).
  void reply(const sent_frame& req, std::string body) {
    const std::uint64_t request = req.type == connection_type::websocket ? 0 : req.request;
    s->on_frame(req.type, request, std::move(body));
  }
  // A frame pushed on a stream connection, answering no request.
  void push(connection_type t, std::string body) { s->on_frame(t, 0, std::move(body)); }
  void fail(const sent_frame& req, errc code, std::string text, int http_status = 0) {
    uvcometd::error e{uvcometd::make_error_code(code), std::move(text)};
    e.http_status = http_status;
    s->on_request_failed(req.type, req.request, e);
  }
  // A stream connection went away (or never opened: was_up false).
  void down(connection_type t, std::string text, bool was_up) {
    s->on_transport_down(
        t, uvcometd::error{uvcometd::make_error_code(errc::transport_error), std::move(text)},
        was_up);
  }

  std::vector<state> states() const {
    std::vector<state> out;
    for (const auto& e : host.states) out.push_back(e.s);
    return out;
  }
};

// --- what the servers answer (shapes from shared/reference/server-exchanges.md) ---

inline std::string faye_handshake_reply(
    const std::string& id, const std::string& client_id = "fo8b7vgpm78obnken0i3zjijvepuho0") {
  return R"([{"id":")" + id +
         R"(","channel":"/meta/handshake","successful":true,"version":"1.0","supportedConnectionTypes":["long-polling","cross-origin-long-polling","callback-polling","websocket","eventsource","in-process"],"clientId":")" +
         client_id + R"(","advice":{"reconnect":"retry","interval":0,"timeout":3000}}])";
}

inline std::string cometd_handshake_reply(
    const std::string& id,
    const std::string& client_id = "8d558cfbb86b2fc5037c4a19650eafca65d343a2") {
  return R"([{"id":")" + id + R"(","channel":"/meta/handshake","successful":true,"clientId":")" +
         client_id +
         R"(","version":"1.0","supportedConnectionTypes":["long-polling"],"advice":{"reconnect":"retry","timeout":3000,"interval":0}}])";
}

// A successful reply object (no brackets) to message i of `req`, as the servers send it.
inline std::string ok_reply_object(const sent_frame& req, std::size_t i) {
  std::string o =
      R"({"id":")" + req.id(i) + R"(","channel":")" + req.channel(i) + R"(","successful":true)";
  if (req.has(i, "subscription")) o += R"(,"subscription":")" + req.get(i, "subscription") + '"';
  if (req.channel(i) == "/meta/connect")
    o += R"(,"advice":{"reconnect":"retry","interval":0,"timeout":3000})";
  return o + "}";
}

// Successful replies to every message of `req`, in order.
inline std::string ok_replies(const sent_frame& req) {
  std::string out = "[";
  for (std::size_t i = 0; i < req.size(); ++i) {
    if (i) out += ',';
    out += ok_reply_object(req, i);
  }
  return out + "]";
}

inline std::string refusal(const sent_frame& req, std::size_t i, const std::string& error,
                           const std::string& advice = "") {
  std::string o = R"([{"id":")" + req.id(i) + R"(","channel":")" + req.channel(i) +
                  R"(","successful":false,"error":")" + error + '"';
  if (!advice.empty()) o += R"(,"advice":)" + advice;
  return o + "}]";
}

inline std::string data_message(const std::string& channel, const std::string& data,
                                const std::string& id = "") {
  std::string o = R"({"channel":")" + channel + R"(","data":)" + data;
  if (!id.empty()) o += R"(,"id":")" + id + '"';
  return o + "}";
}

// --- moves of the tests (shared by the session test files) ---

// A subscription handler that records what it receives.
struct inbox {
  std::vector<std::string> channels, data, ids;
  std::function<void(const uvcometd::message&)> then;
  detail::handler_fn fn() {
    return [this](const uvcometd::message& m) {
      channels.emplace_back(m.channel);
      data.emplace_back(m.data);
      ids.emplace_back(m.id);
      if (then) then(m);
    };
  }
  std::size_t size() const { return channels.size(); }
};

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// open() against a server whose handshake reply is `handshake(id)`, through the first connect;
// returns with the session connected and its held /meta/connect in flight.
template <typename Handshake>
void open_and_connect(harness& h, outcome& open, Handshake handshake) {
  REQUIRE_FALSE(h.s->open(open.cb()));
  const sent_frame hs = h.last();
  REQUIRE(hs.channel() == "/meta/handshake");
  h.reply(hs, handshake(hs.id()));
  const sent_frame first = h.last();
  REQUIRE(first.channel() == "/meta/connect");
  h.reply(first, ok_replies(first));
  h.loop();
  REQUIRE(h.s->current_state() == state::connected);
  REQUIRE(open.ok_once());
  REQUIRE(h.last().channel() == "/meta/connect");
}

inline void open_cometd(harness& h, outcome& open) {
  open_and_connect(h, open, [](const std::string& id) { return cometd_handshake_reply(id); });
}

inline void open_faye(harness& h, outcome& open) {
  open_and_connect(h, open, [](const std::string& id) { return faye_handshake_reply(id); });
}

// subscribe() and the server's successful reply; requires an idle session.
inline std::uint64_t subscribe_ok(harness& h, const std::string& channel, detail::handler_fn fn,
                                  outcome& done) {
  std::uint64_t id = 0;
  REQUIRE_FALSE(h.s->subscribe(channel, std::move(fn), done.cb(), &id));
  h.loop();
  const sent_frame f = h.last();
  REQUIRE(f.channel() == "/meta/subscribe");
  h.reply(f, ok_replies(f));
  h.loop();
  REQUIRE(done.ok_once());
  return id;
}

// The held connect's reply, carrying `before` (data messages) ahead of the reply object.
inline std::string connect_reply_after(const sent_frame& held,
                                       const std::vector<std::string>& before) {
  std::string out = "[";
  for (const auto& m : before) out += m + ",";
  return out + ok_reply_object(held, 0) + "]";
}

// The held connect's reply followed by `after` (Faye's order: reply first, then deliveries).
inline std::string connect_reply_before(const sent_frame& held,
                                        const std::vector<std::string>& after) {
  std::string out = "[" + ok_reply_object(held, 0);
  for (const auto& m : after) out += "," + m;
  return out + "]";
}

}  // namespace uvcometd_test
