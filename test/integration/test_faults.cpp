// The client under network and server faults: a fault-injecting TCP proxy (fault_proxy.hpp) sits
// between the client and a real server (Faye over long-polling and websocket, cometd-nodejs-server
// over long-polling) and cuts, refuses or black-holes connections; servers are killed and
// restarted, sessions expired, advice "none" sent. Short server timeouts (2 s) and short client
// knobs keep the tests quick; every time bound below is a generous upper bound for progress, never
// a speed assertion.
//
// Environment: UVCOMETD_TEST_LOG=1 prints the library's log live; UVCOMETD_TEST_REPORT=1 prints
// the figures (cuts survived, messages lost, detection times) on stderr. On a failed assertion
// the tail of the library's log is printed on stderr (the rig's log).
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

#include "rigs.hpp"
#include "uvcometd/extensions.hpp"

using namespace std::chrono_literals;
using uvcometd::connection_type;
using uvcometd::errc;
using uvcometd::state;
using uvcometd::test::client_rig;
using uvcometd::test::pick_peer;
using uvcometd::test::quiet_period;
using uvcometd::test::received;
using uvcometd::test::route;
using json = nlohmann::json;
using steady = std::chrono::steady_clock;

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

const std::vector<std::string> server_args{"--timeout", "2"};

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
  // True when what arrived of round `r` is its end: seqs k..count-1 for some k (none at all
  // included), with no gap.
  bool only_head_missing(long r, int count) const {
    bool arrived = false;
    for (int s = 0; s < count; ++s) {
      const bool got = seen.count({r, s}) > 0;
      if (arrived && !got) return false;
      arrived = arrived || got;
    }
    return true;
  }
};

// Publishes probes on `channel` server-side until one reaches `got` (the server may not have the
// (re-)subscription yet, or may not be up yet). Returns false when none arrived within `limit`.
bool probe_until_delivered(client_rig& rig, const std::string& channel, const received& got,
                           std::chrono::milliseconds limit = 15s) {
  const auto deadline = steady::now() + limit;
  for (int k = 0; steady::now() < deadline; ++k) {
    const auto before = got.data.size();
    try {
      rig.srv->publish(channel, "{\"probe\":" + std::to_string(k) + "}");
    } catch (const std::exception&) {
      // Not reachable yet: the wait below paces the next probe.
    }
    if (rig.loop.run_until([&] { return got.data.size() > before; }, 500ms)) return true;
  }
  return false;
}

// Cuts every connection until the client notices (a cut can miss a connection that is not
// established yet). Returns the number of cuts made, 0 when the client never noticed.
int cut_until_reconnecting(client_rig& rig, std::size_t mark) {
  for (int n = 1; n <= 5; ++n) {
    rig.proxy->cut_all();
    if (rig.wait_state(state::reconnecting, mark, 2s)) return n;
  }
  return 0;
}

// Cuts every connection and refuses new ones, until the client noticed. Returns the transition
// mark taken before the cut.
std::size_t cut_off(client_rig& rig, std::chrono::milliseconds limit = 10s) {
  const auto mark = rig.states.size();
  rig.proxy->cut_all();
  rig.proxy->refuse(true);
  REQUIRE(rig.wait_state(state::reconnecting, mark, limit));
  return mark;
}

// While the client is cut off: the server publishes `per_round` messages of `round` to /flow, an
// attempt of the client is refused, then the proxy accepts again.
void publish_while_away(client_rig& rig, long round, int per_round) {
  rig.srv->publish("/flow", "{\"round\":" + std::to_string(round) + "}", per_round);
  REQUIRE(rig.wait_accepted_after(rig.proxy->accepted()));  // an attempt is refused meanwhile
  rig.proxy->refuse(false);
}

// One round of the cut scenarios: the server publishes `per_round` messages to /flow; once part
// of them arrived every connection is cut until the client notices, and it must come back.
// Returns the number of cuts made.
int publish_and_cut(client_rig& rig, const seq_sink& sink, int round, int per_round) {
  rig.srv->publish("/flow", "{\"round\":" + std::to_string(round) + "}", per_round);
  // Let part of the round through, then cut while the rest may still be on its way.
  rig.loop.run_until([&] { return sink.round_count(round) > 0; }, 5s);
  const auto mark = rig.states.size();
  const int n = cut_until_reconnecting(rig, mark);
  const bool back = n > 0 && rig.wait_reconnected(mark);
  INFO(rig.states.describe(mark));
  REQUIRE(n > 0);
  REQUIRE(back);
  return n;
}

// Publishes a last message to /flow and waits for it: the server delivers a session's messages
// in order, so whatever of earlier batches was not lost has arrived by then.
bool flush_flow(client_rig& rig, const seq_sink& sink, long marker_round) {
  rig.srv->publish("/flow", "{\"round\":" + std::to_string(marker_round) + "}");
  return rig.loop.run_until([&] { return sink.round_count(marker_round) > 0; }, 15s);
}

}  // namespace

TEST_CASE(
    "cutting every connection while messages flow: the client reconnects, gets what was "
    "published while away, and nothing twice",
    "[integration][faults]") {
  seq_sink sink;
  client_rig rig(pick_peer(), server_args, route::fault_proxy);
  auto& c = rig.client();
  rig.open();
  rig.subscribe("/flow", sink.handler());

  constexpr int rounds = 6;
  constexpr int per_round = 20;
  int cuts = 0;
  for (int r = 0; r < rounds; ++r) {
    INFO("round " << r);
    cuts += publish_and_cut(rig, sink, r, per_round);
    // Whatever of the round was not lost with the cut arrives after the reconnection.
    rig.loop.run_until([&] { return sink.round_count(r) >= per_round; }, 1500ms);
  }

  // (a) Published at once while the client is cut off. Over websocket the server noticed the
  // close and queues them for the session: all must arrive. Over long-polling neither Faye nor
  // CometD watches the socket of a held /meta/connect: while the server still holds the cut one
  // (until its 2 s timeout), it writes what it has of the batch into that dead response and
  // queues the rest for the next connect. So only the head of the batch may be lost, and only
  // when the server held a dead connect: what arrives is the batch's end, each message once,
  // before a later marker.
  int away_a = 0;
  {
    const auto mark = cut_off(rig);
    const bool dead_held = uvcometd::test::server_stats(*rig.srv).at("heldConnects") > 0;
    publish_while_away(rig, 100, per_round);
    const bool back = rig.wait_reconnected(mark);
    const bool flushed = back && flush_flow(rig, sink, 300);
    away_a = sink.round_count(100);
    INFO(rig.states.describe(mark));
    INFO("missing seqs of the first away batch: " << sink.missing(100, per_round));
    REQUIRE(back);
    CHECK(flushed);
    INFO((dead_held ? "the server held the cut connect" : "no connect held"));
    if (rig.p.websocket() || !dead_held) {
      CHECK(away_a == per_round);
    } else {
      CHECK(sink.only_head_missing(100, per_round));
    }
  }
  // (b) Published while the client is cut off, after the server released the dead held
  // connect (long-polling: the server's 2 s timeout, within the session's lifetime: Faye expires
  // a session 2 x timeout after its last connect arrived, so a fresh connect is made to arrive
  // just before the cut). Every message must arrive after the reconnection.
  {
    rig.srv->publish("/flow", R"({"round":200})");
    REQUIRE(rig.loop.run_until([&] { return sink.round_count(200) == 1; }));
    REQUIRE(rig.wait_connect_held());  // the next /meta/connect reached the server
    const auto mark = cut_off(rig);
    if (!rig.p.websocket()) {
      REQUIRE(rig.wait_server([](const json& s) { return s.at("heldConnects") == 0; }, 10s));
    }
    publish_while_away(rig, 101, per_round);
    const bool all = rig.loop.run_until([&] { return sink.round_count(101) >= per_round; }, 15s);
    INFO(rig.states.describe(mark));
    INFO("missing seqs of the second away batch: " << sink.missing(101, per_round));
    CHECK(all);
    // Messages may arrive before the resumed connect's reply says "connected" (the first
    // connect after a cut on the same session is held briefly; websocket pushes meanwhile).
    CHECK(rig.wait_reconnected(mark));
  }
  rig.loop.run_for(quiet_period);
  CHECK(sink.duplicates() == 0);
  CHECK(c.current_state() == state::connected);

  int lost = 0;
  std::string lost_detail;
  for (int r = 0; r < rounds; ++r) {
    const int miss = per_round - sink.round_count(r);
    lost += miss;
    if (miss > 0)
      lost_detail += "round " + std::to_string(r) + ": " + sink.missing(r, per_round) + "; ";
  }
  figure(
      "%s: scenario 1: %d cuts for %d rounds, %d of %d cut-round messages lost (%s), "
      "away batch published at once %d/%d, after the held connect ended %d/%d, duplicates %d",
      rig.p.name, cuts, rounds, lost, rounds * per_round, lost_detail.c_str(), away_a, per_round,
      sink.round_count(101), per_round, sink.duplicates());
}

TEST_CASE(
    "the server is killed and restarted on the same port: re-handshake, re-subscribe, "
    "same handler",
    "[integration][faults]") {
  int lost_subs = 0;
  client_rig rig(pick_peer(), server_args, route::fault_proxy);
  auto& c = rig.client();
  c.on_subscription_lost(
      [&](const uvcometd::subscription&, const uvcometd::error&) { ++lost_subs; });
  rig.open();
  auto& got = rig.subscribe("/restart");
  rig.srv->publish("/restart", R"({"before":true})");
  REQUIRE(rig.loop.run_until([&] { return got.data.size() == 1; }));

  constexpr int restarts = 3;
  int survived = 0;
  for (int k = 0; k < restarts; ++k) {
    INFO("restart " << k);
    const std::string old_id = c.client_id();
    const auto mark = rig.states.size();
    rig.srv->stop();
    REQUIRE(rig.wait_state(state::reconnecting, mark, 10s));
    // A few failed attempts against the dead server.
    REQUIRE(rig.wait_accepted_after(rig.proxy->accepted() + 1));
    rig.srv->restart();
    const bool back = rig.loop.run_until(
        [&] {
          return rig.reconnected_since(mark) && c.current_state() == state::connected &&
                 !c.client_id().empty() && c.client_id() != old_id;
        },
        20s);
    INFO(rig.states.describe(mark));
    REQUIRE(back);
    // Messages published server-side afterwards reach the same local handler.
    REQUIRE(probe_until_delivered(rig, "/restart", got));
    const auto before = got.data.size();
    rig.srv->publish("/restart", "{\"restart\":" + std::to_string(k) + "}", 5);
    REQUIRE(rig.loop.run_until([&] { return got.data.size() >= before + 5; }));
    for (int s = 0; s < 5; ++s) {
      CHECK(got.data[before + s] ==
            "{\"restart\":" + std::to_string(k) + ",\"seq\":" + std::to_string(s) + "}");
    }
    ++survived;
  }
  CHECK(lost_subs == 0);
  figure("%s: scenario 2: survived %d server restarts", rig.p.name, survived);
}

TEST_CASE(
    "an outage longer than connection_timeout ends in failed with connection_timeout and "
    "no further attempts",
    "[integration][faults]") {
  client_rig rig(pick_peer(), server_args, route::fault_proxy);
  const bool hard = GENERATE(false, true);  // refuse(true), or stop_listening()
  INFO((hard ? "listener closed" : "connections reset"));
  auto o = rig.options();
  o.connection_timeout = 1s;
  auto& c = rig.start(o);
  rig.open();
  rig.subscribe("/ct");

  const auto mark = rig.states.size();
  const auto outage = steady::now();
  rig.proxy->cut_all();
  if (hard) {
    rig.proxy->stop_listening();
  } else {
    rig.proxy->refuse(true);
  }
  REQUIRE(rig.wait_state(state::reconnecting, mark, 5s));
  uvcometd::test::outcome pub;
  REQUIRE_FALSE(c.publish("/ct", R"({"during":"outage"})", pub.cb()));

  const bool gave_up = rig.wait_state(state::failed, mark, 15s);
  INFO(rig.states.describe(mark));
  REQUIRE(gave_up);
  const auto failed = rig.states.events[*rig.states.find(state::failed, mark)];
  INFO(failed.why.to_string());
  CHECK(failed.why.code == errc::connection_timeout);
  CHECK(failed.at - outage >= 1s);
  CHECK(c.current_state() == state::failed);
  figure("%s%s: scenario 3: failed %ld ms after the outage began", rig.p.name,
         hard ? " (listener closed)" : " (reset)", ms_between(outage, failed.at));

  // No connection attempt follows, even once the proxy accepts again.
  if (hard) REQUIRE(rig.proxy->start_listening() == 0);
  const auto accepted = rig.proxy->accepted();
  rig.loop.run_for(quiet_period);
  CHECK(rig.proxy->accepted() == accepted);
  CHECK(c.current_state() == state::failed);
  CHECK(rig.states.count(state::reconnecting, mark) == 1);
  CHECK(rig.states.count(state::connected, mark) == 0);

  // The publish issued during the outage completed exactly once, with connection_timeout.
  CHECK(pub.calls == 1);
  INFO(pub.err.to_string());
  CHECK(pub.err.code == errc::connection_timeout);
  rig.close();
  CHECK(pub.calls == 1);
}

TEST_CASE("with connection_timeout 0 the client keeps trying through an outage and recovers",
          "[integration][faults]") {
  client_rig rig(pick_peer(), server_args, route::fault_proxy);
  auto o = rig.options();
  o.connection_timeout = 0ms;
  auto& c = rig.start(o);
  rig.open();
  auto& got = rig.subscribe("/forever");

  const auto mark = cut_off(rig, 5s);
  // Still trying well past 1 s: a connection attempt reaches the proxy 2.5 s into the outage.
  const auto outage = steady::now();
  const auto at_outage = rig.proxy->accepted();
  std::size_t at_late = 0;
  const bool still_trying = rig.loop.run_until(
      [&] {
        if (steady::now() - outage < 2500ms) {
          at_late = rig.proxy->accepted();
          return false;
        }
        return rig.proxy->accepted() > at_late;
      },
      10s);
  INFO(rig.states.describe(mark));  // (as of now)
  CHECK(still_trying);
  CHECK(c.current_state() == state::reconnecting);
  CHECK_FALSE(rig.states.find(state::failed, mark).has_value());
  figure("%s: scenario 3b: %zu attempts in a %ld ms outage", rig.p.name,
         rig.proxy->accepted() - at_outage, ms_between(outage, steady::now()));

  rig.proxy->refuse(false);
  REQUIRE(rig.wait_reconnected(mark));
  CHECK(probe_until_delivered(rig, "/forever", got));
}

TEST_CASE("a black hole is detected and the client recovers once it ends",
          "[integration][faults]") {
  client_rig rig(pick_peer(), server_args, route::fault_proxy);
  auto& c = rig.client();
  rig.open();
  auto& got = rig.subscribe("/bh");
  REQUIRE(probe_until_delivered(rig, "/bh", got));
  REQUIRE(rig.wait_connect_held());  // the next connect is held

  const auto mark = rig.states.size();
  const auto start = steady::now();
  rig.proxy->blackhole(true);
  // Long-polling: the held connect's deadline (advice.timeout 2 s + max_network_delay 1 s);
  // websocket: two silent ping periods (2 x 300 ms). 15 s only bounds progress.
  REQUIRE(rig.wait_state(state::reconnecting, mark, 15s));
  const auto ev = rig.states.events[*rig.states.find(state::reconnecting, mark)];
  INFO(ev.why.to_string());
  CHECK(ev.why.code == errc::timeout);
  figure("%s: scenario 4: black hole detected after %ld ms (%s)", rig.p.name,
         ms_between(start, ev.at), ev.why.to_string().c_str());
  // A retry goes into the hole too: a new websocket connection, or a long-polling request.
  if (rig.p.websocket()) {
    REQUIRE(rig.wait_accepted_after(rig.proxy->accepted()));
  } else {
    const auto swallowed = rig.proxy->swallowed();
    REQUIRE(rig.loop.run_until([&] { return rig.proxy->swallowed() > swallowed; }, 10s));
  }
  rig.proxy->blackhole(false);
  const bool back = rig.wait_reconnected(mark, 20s);
  INFO(rig.states.describe(mark));
  REQUIRE(back);
  CHECK(probe_until_delivered(rig, "/bh", got));
  // Client publishes flow too.
  uvcometd::test::outcome ack;
  REQUIRE_FALSE(c.publish("/bh", R"({"after":"blackhole"})", ack.cb()));
  REQUIRE(rig.loop.run_until([&] { return ack.done(); }));
  INFO(ack.err.to_string());
  CHECK_FALSE(ack.err);
}

TEST_CASE("advice none from the server ends in failed with the server's error",
          "[integration][faults]") {
  client_rig rig(pick_peer(), server_args, route::fault_proxy);
  auto& c = rig.client();
  rig.open();
  rig.subscribe("/none");
  const auto mark = rig.states.size();
  rig.srv->control("/control/advice-none", R"({"enabled":true})");
  const bool over = rig.wait_state(state::failed, mark, 15s);
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
  rig.loop.run_for(quiet_period);
  CHECK(rig.proxy->accepted() == accepted);
  CHECK(c.publish("/none", "1", [](const uvcometd::error&) { FAIL("ran"); }) ==
        errc::invalid_state);
}

TEST_CASE("a hundred cuts: every publish completes exactly once and the client ends connected",
          "[integration][faults]") {
  constexpr int max_cuts = 100;
  std::vector<int> completions(max_cuts, 0);
  std::vector<uvcometd::error> results(max_cuts);
  std::map<long, int> echoed;  // own publishes received back, per index
  received finals;
  // Faye answers a new /meta/connect only when the cut one's hold timer ends (it does not watch
  // the request socket and keeps the first timer), so each reconnection there can take up to the
  // server timeout: 1 s here keeps 100 cuts well inside the 60 s bound.
  client_rig rig(pick_peer(), {"--timeout", "1"}, route::fault_proxy);
  auto o = rig.options();
  o.connection_timeout = 0ms;  // retry forever: the test bounds the time itself
  auto& c = rig.start(o);
  rig.open();
  rig.subscribe("/rep", [&](const uvcometd::message& m) {
    const long i = uvcometd::test::json_int(m.data, "i");
    if (i >= 0) {
      ++echoed[i];
    } else {
      finals.data.emplace_back(m.data);
    }
  });

  const auto start = steady::now();
  const auto mark = rig.states.size();
  int cuts = 0, cuts_connected = 0;
  // Where the last cut happened and whether it hit a connected client (which then notices it).
  std::size_t cut_mark = 0;
  bool cut_hit = false;
  const auto notice_last_cut = [&] {
    if (cut_hit) rig.wait_state(state::reconnecting, cut_mark, 2s);
  };
  for (int i = 0; i < max_cuts && steady::now() - start < 60s; ++i) {
    // Three cuts in four hit an established session; the fourth lands wherever the previous
    // cut left the client (often still reconnecting).
    if (i % 4 != 0) {
      notice_last_cut();
      rig.loop.run_until([&] { return c.current_state() == state::connected; }, 5s);
    }
    const auto up = rig.proxy->bytes_up();
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
      case 2: rig.loop.run_until([&] { return rig.proxy->bytes_up() > up; }, 2s); break;
      case 3: rig.loop.run_until([&] { return completions[i] > 0; }, 2s); break;
    }
    cut_hit = c.current_state() == state::connected;
    if (cut_hit) ++cuts_connected;
    cut_mark = rig.states.size();
    rig.proxy->cut_all();
    ++cuts;
  }
  const auto elapsed = steady::now() - start;
  INFO(cuts << " cuts");
  notice_last_cut();  // the state may still read connected
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
  rig.loop.run_for(quiet_period);  // late duplicates would show up now
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
  CHECK(probe_until_delivered(rig, "/rep", finals));

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
         rig.p.name, n_re ? total_ms / n_re : 0L, longest, slow);
  figure(
      "%s: scenario 6: %d cuts (%d of a connected client) in %ld ms, %zu reconnections "
      "(reconnecting -> connected), "
      "%d/%d publishes failed (%s), %zu/%d echoed back, duplicates %d",
      rig.p.name, cuts, cuts_connected,
      static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()),
      rig.states.count(state::connected, mark), failed, cuts, kinds.c_str(), echoed.size(), cuts,
      dup_echo);
  rig.close();
  CHECK(std::all_of(completions.begin(), completions.begin() + cuts, [](int n) { return n == 1; }));
}

TEST_CASE("publish while reconnecting: queued until reconnected, or not_connected at once",
          "[integration][faults]") {
  client_rig rig(pick_peer(), server_args, route::fault_proxy);
  const bool queue = GENERATE(true, false);
  INFO((queue ? "queueing" : "not queueing"));
  auto o = rig.options();
  o.queue_while_reconnecting = queue;
  auto& c = rig.start(o);
  rig.open();
  auto& got = rig.subscribe("/pq");

  const auto mark = cut_off(rig, 5s);
  REQUIRE(c.current_state() == state::reconnecting);
  uvcometd::test::outcome pub;
  const auto ec = c.publish("/pq", R"({"while":"reconnecting"})", pub.cb());
  if (queue) {
    REQUIRE_FALSE(ec);
    rig.loop.run_for(quiet_period);
    CHECK(pub.calls == 0);  // waits for the connection
    rig.proxy->refuse(false);
    REQUIRE(rig.loop.run_until([&] { return pub.calls == 1; }, 15s));
    INFO(pub.err.to_string());
    CHECK_FALSE(pub.err);
    REQUIRE(rig.loop.run_until([&] { return got.data.size() == 1; }));
    CHECK(got.data[0] == R"({"while":"reconnecting"})");
    CHECK(c.current_state() == state::connected);
  } else {
    CHECK(ec == errc::not_connected);
    rig.proxy->refuse(false);
    REQUIRE(rig.wait_reconnected(mark));
    rig.loop.run_for(quiet_period);
    CHECK(pub.calls == 0);  // a synchronous failure never runs the completion
    CHECK(got.data.empty());
    // Once connected again publishing works.
    CHECK_FALSE(rig.publish("/pq", R"({"after":1})"));
    REQUIRE(rig.loop.run_until([&] { return got.data.size() == 1; }));
  }
}

TEST_CASE("reconnect_now drops the connection and re-establishes it", "[integration][faults]") {
  client_rig rig(pick_peer(), server_args, route::fault_proxy);
  auto& c = rig.client();
  auto& idle = rig.start();
  CHECK(idle.reconnect_now() == errc::invalid_state);  // not open

  rig.open();
  auto& got = rig.subscribe("/rn");
  REQUIRE(rig.wait_connect_held());
  for (int k = 0; k < 3; ++k) {
    INFO("reconnect_now #" << k);
    const auto mark = rig.states.size();
    const auto accepted = rig.proxy->accepted();
    REQUIRE_FALSE(c.reconnect_now());
    const bool back = rig.wait_reconnected(mark);
    INFO(rig.states.describe(mark));
    REQUIRE(back);
    if (rig.p.websocket()) CHECK(rig.proxy->accepted() > accepted);  // a new websocket connection
    const auto before = got.data.size();
    rig.srv->publish("/rn", "{\"k\":" + std::to_string(k) + "}", 3);
    REQUIRE(rig.loop.run_until([&] { return got.data.size() >= before + 3; }));
    CHECK(got.data.size() == before + 3);
  }
}

TEST_CASE("an expired session is re-handshaken and re-subscribed; the old handler gets messages",
          "[integration][faults]") {
  int lost_subs = 0;
  client_rig rig(pick_peer(), server_args, route::fault_proxy);
  auto& c = rig.client();
  c.on_subscription_lost(
      [&](const uvcometd::subscription&, const uvcometd::error&) { ++lost_subs; });
  rig.open();
  auto& got = rig.subscribe("/exp");
  rig.srv->publish("/exp", R"({"before":1})");
  REQUIRE(rig.loop.run_until([&] { return got.data.size() == 1; }));

  const std::string old_id = c.client_id();
  const auto mark = rig.states.size();
  const auto start = steady::now();
  rig.srv->control("/control/expire", "{}");
  const bool renewed = rig.loop.run_until(
      [&] {
        return c.current_state() == state::connected && !c.client_id().empty() &&
               c.client_id() != old_id;
      },
      20s);
  INFO(rig.states.describe(mark));
  REQUIRE(renewed);
  CHECK(rig.reconnected_since(mark));
  const auto re = rig.states.find(state::reconnecting, mark);
  if (re) {
    figure("%s: scenario 9: expiry noticed after %ld ms: %s", rig.p.name,
           ms_between(start, rig.states.events[*re].at),
           rig.states.events[*re].why.to_string().c_str());
  }
  REQUIRE(probe_until_delivered(rig, "/exp", got));
  const auto before = got.data.size();
  rig.srv->publish("/exp", R"({"after":"expiry"})");
  REQUIRE(rig.loop.run_until([&] { return got.data.size() == before + 1; }));
  CHECK(got.data.back() == R"({"after":"expiry"})");
  CHECK(lost_subs == 0);
}

TEST_CASE("a refused websocket upgrade falls back to long-polling and says why",
          "[integration][faults]") {
  client_rig rig(uvcometd::test::default_preference("faye-server.js"),
                 {"--timeout", "2", "--upgrade", "1"});
  auto o = rig.options();  // default connection types: websocket first
  o.max_network_delay = 1s;
  auto& c = rig.start(o);
  const auto err = rig.open_result();
  INFO(err.to_string() << "; states: " << rig.states.describe());
  REQUIRE_FALSE(err);
  CHECK(c.current_connection_type() == connection_type::long_polling);
  // Some transition carried the websocket failure; the connected one names long-polling.
  const auto& states = rig.states.events;
  const auto why =
      std::find_if(states.begin(), states.end(), [](const auto& e) { return !!e.why; });
  REQUIRE(why != states.end());
  const auto conn =
      rig.states.find(state::connected, static_cast<std::size_t>(why - states.begin()));
  REQUIRE(conn.has_value());
  CHECK(states[*conn].t == connection_type::long_polling);
  figure("faye --upgrade 1: states %s", rig.states.describe().c_str());
  auto& got = rig.subscribe("/fb");
  CHECK(probe_until_delivered(rig, "/fb", got));
}

TEST_CASE(
    "an unanswered websocket upgrade falls back to long-polling after "
    "websocket_connect_timeout",
    "[integration][faults]") {
  client_rig rig(uvcometd::test::default_preference("faye-server.js"),
                 {"--timeout", "2", "--upgrade", "2"});
  auto o = rig.options();
  o.websocket_connect_timeout = 500ms;
  o.max_network_delay = 1s;
  auto& c = rig.start(o);
  const auto start = steady::now();
  const auto err = rig.open_result();
  INFO(err.to_string() << "; states: " << rig.states.describe());
  REQUIRE_FALSE(err);
  CHECK(c.current_connection_type() == connection_type::long_polling);
  const auto conn = rig.states.find(state::connected);
  REQUIRE(conn.has_value());
  CHECK(rig.states.events[*conn].t == connection_type::long_polling);
  CHECK(rig.states.events[*conn].at - start >= 500ms);  // waited for the websocket first
  figure("faye --upgrade 2: connected over long-polling after %ld ms; states %s",
         ms_between(start, rig.states.events[*conn].at), rig.states.describe().c_str());
  auto& got = rig.subscribe("/fb2");
  CHECK(probe_until_delivered(rig, "/fb2", got));
}

TEST_CASE(
    "with the ack extension, cometd-nodejs-server re-sends what cut connections lost: "
    "nothing lost, nothing twice",
    "[integration][faults][ack]") {
  // The same cuts that lose messages on CometD without acknowledgements (the first scenario):
  // the server writes a batch into a held response whose connection the proxy has cut.
  constexpr int rounds = 8;
  constexpr int per_round = 20;
  seq_sink sink;
  auto ack = std::make_shared<uvcometd::ack_extension>();
  client_rig rig(uvcometd::test::cometd_long_polling(), {"--timeout", "2", "--ack", "1"},
                 route::fault_proxy);
  int cuts = 0;
  auto o = rig.options();
  o.extensions = {ack};
  auto& c = rig.start(o);
  rig.open();
  CHECK(ack->enabled());
  rig.subscribe("/flow", sink.handler());

  for (int r = 0; r < rounds; ++r) {
    INFO("round " << r);
    cuts += publish_and_cut(rig, sink, r, per_round);
    const bool all = rig.loop.run_until([&] { return sink.round_count(r) >= per_round; }, 10s);
    INFO("missing: " << sink.missing(r, per_round));
    CHECK(all);
  }
  // Published while the client is cut off and the held connect is still open on the server:
  // written into a dead response, re-sent because the next connect does not acknowledge it.
  {
    const auto mark = cut_off(rig);
    publish_while_away(rig, 100, per_round);
    REQUIRE(rig.wait_reconnected(mark));
    const bool all = rig.loop.run_until([&] { return sink.round_count(100) >= per_round; }, 10s);
    INFO("missing: " << sink.missing(100, per_round));
    CHECK(all);
  }
  rig.loop.run_for(quiet_period);
  CHECK(sink.duplicates() == 0);
  CHECK(c.current_state() == state::connected);
  CHECK(ack->batch() > 0);
  int lost = 0;
  for (int r = 0; r < rounds; ++r) lost += per_round - sink.round_count(r);
  figure(
      "%s + ack: %d cuts for %d rounds, %d of %d cut-round messages lost, away batch %d/%d, "
      "duplicates %d, last batch %lld",
      rig.p.name, cuts, rounds, lost, rounds * per_round, sink.round_count(100), per_round,
      sink.duplicates(), static_cast<long long>(ack->batch()));
}
