// Test helpers the client-level integration tests share: the server/transport matrix, a recorder
// of state transitions, a log sink, and small JSON field extraction for seq-numbered payloads.
// rigs.hpp builds client_rig on them; the free open/subscribe/close-and-wait helpers serve the
// tests not moved onto it yet.
//
// Header-only (inline); include after <catch2/catch.hpp> is available (it is included here).
#pragma once

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "loop_helpers.hpp"
#include "server_process.hpp"
#include "uvcometd/client.hpp"

namespace uvcometd::test {

// One server and the connection type the client is forced to use.
struct peer {
  const char* script;
  std::vector<connection_type> types;
  const char* name;
  const char* path;  // the Bayeux path on the server ("/bayeux" for Faye, "/cometd" for CometD)

  bool websocket() const {
    return types.size() == 1 && types.front() == connection_type::websocket;
  }
  bool faye() const { return std::string_view(script) == "faye-server.js"; }
};

inline peer faye_long_polling() {
  return {"faye-server.js", {connection_type::long_polling}, "faye long-polling", "/bayeux"};
}
inline peer faye_websocket() {
  return {"faye-server.js", {connection_type::websocket}, "faye websocket", "/bayeux"};
}
inline peer cometd_long_polling() {
  return {"cometd-server.js", {connection_type::long_polling}, "cometd long-polling", "/cometd"};
}

// Every scenario runs on each server and transport the server offers. Call once per test case
// run (it contains a Catch2 GENERATE).
inline peer pick_peer() {
  return GENERATE(faye_long_polling(), faye_websocket(), cometd_long_polling());
}

// Messages a subscription received, copied out of the callback.
struct received {
  std::vector<std::string> channels;
  std::vector<std::string> data;
};

// Every state transition the client reported, with its time and reason.
struct state_event {
  state s;
  connection_type t;
  error why;
  std::chrono::steady_clock::time_point at;
};

struct state_recorder {
  std::vector<state_event> events;

  void attach(client& c) {
    c.on_state([this](state s, connection_type t, const error& why) {
      events.push_back({s, t, why, std::chrono::steady_clock::now()});
    });
  }
  std::size_t count(state s, std::size_t from = 0) const {
    std::size_t n = 0;
    for (std::size_t i = from; i < events.size(); ++i) n += events[i].s == s ? 1 : 0;
    return n;
  }
  // Index of the first event with state `s` at or after `from`, or nullopt.
  std::optional<std::size_t> find(state s, std::size_t from = 0) const {
    for (std::size_t i = from; i < events.size(); ++i) {
      if (events[i].s == s) return i;
    }
    return std::nullopt;
  }
  // True when, from index `from` on, `first` was reported and later `then`.
  bool saw_then(state first, state then, std::size_t from = 0) const {
    const auto a = find(first, from);
    return a && find(then, *a + 1).has_value();
  }
  std::size_t size() const { return events.size(); }
  std::string describe(std::size_t from = 0) const {
    std::string out;
    for (std::size_t i = from; i < events.size(); ++i) {
      out += std::string(to_string(events[i].s)) + "/" + std::string(to_string(events[i].t));
      if (events[i].why) out += "(" + events[i].why.to_string() + ")";
      out += " ";
    }
    return out;
  }
};

// The library's log: kept (the last lines) for failure reports, printed live when the
// environment variable UVCOMETD_TEST_LOG is set.
struct log_capture {
  std::deque<std::string> lines;
  std::size_t keep = 400;

  std::function<void(log_level, std::string_view)> sink() {
    const bool live = std::getenv("UVCOMETD_TEST_LOG") != nullptr;
    return [this, live](log_level lv, std::string_view text) {
      static const char* const names[] = {"debug", "info", "warning", "error"};
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count() %
                      1000000;
      std::string line =
          std::to_string(ms) + " [" + names[static_cast<int>(lv)] + "] " + std::string(text);
      if (live) std::fprintf(stderr, "%s\n", line.c_str());
      lines.push_back(std::move(line));
      while (lines.size() > keep) lines.pop_front();
    };
  }
  std::string tail(std::size_t n = 40) const {
    std::string out;
    const std::size_t start = lines.size() > n ? lines.size() - n : 0;
    for (std::size_t i = start; i < lines.size(); ++i) out += lines[i] + "\n";
    return out;
  }
};

// Opens `c` and waits for the outcome.
inline error open_and_wait(test_loop& loop, client& c,
                           std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  bool done = false;
  error result;
  REQUIRE_FALSE(c.open([&](const error& e) {
    result = e;
    done = true;
  }));
  REQUIRE(loop.run_until([&] { return done; }, limit));
  return result;
}

inline void subscribe_and_wait(test_loop& loop, client& c, const std::string& channel,
                               received& into, subscription* sub = nullptr) {
  bool done = false;
  error result;
  REQUIRE_FALSE(c.subscribe(
      channel,
      [&into](const message& m) {
        into.channels.emplace_back(m.channel);
        into.data.emplace_back(m.data);
      },
      [&](const error& e) {
        result = e;
        done = true;
      },
      sub));
  REQUIRE(loop.run_until([&] { return done; }));
  INFO(result.to_string());
  REQUIRE_FALSE(result);
}

inline void close_and_wait(test_loop& loop, client& c) {
  int closes = 0;
  c.close([&](const error&) { ++closes; });
  REQUIRE(loop.run_until([&] { return closes == 1; }));
  CHECK(c.current_state() == state::closed);
}

// The integer value of `"key":N` in a flat JSON object text, or -1.
inline long json_int(std::string_view json, std::string_view key) {
  const std::string needle = "\"" + std::string(key) + "\":";
  const auto pos = json.find(needle);
  if (pos == std::string_view::npos) return -1;
  std::size_t i = pos + needle.size();
  while (i < json.size() && json[i] == ' ') ++i;
  bool neg = false;
  if (i < json.size() && json[i] == '-') {
    neg = true;
    ++i;
  }
  long v = 0;
  bool any = false;
  while (i < json.size() && json[i] >= '0' && json[i] <= '9') {
    v = v * 10 + (json[i] - '0');
    ++i;
    any = true;
  }
  if (!any) return -1;
  return neg ? -v : v;
}

// Runs the loop until the server's /control/stats counts a subscriber of `pattern` (asked every
// 50 ms; the blocking HTTP call runs between loop slices). Returns false on timeout.
inline bool wait_server_subscribed(test_loop& loop, server_process& srv, const std::string& pattern,
                                   std::chrono::milliseconds limit = std::chrono::seconds(15)) {
  const std::string needle = "\"" + pattern + "\":";
  return loop.run_until(
      [&] {
        std::string stats;
        try {
          stats = srv.get("/control/stats");
        } catch (const std::exception&) {
          return false;
        }
        const auto pos = stats.find(needle);
        return pos != std::string::npos &&
               json_int(std::string_view(stats).substr(pos), pattern) > 0;
      },
      limit, std::chrono::milliseconds(50));
}

}  // namespace uvcometd::test
