// Extensions end to end against Faye (long-polling and websocket): order, headers, ext, dropping,
// asynchronous completion, failures; the auth extension against a server that demands a token and
// later rotates it; the replay extension against a server that keeps an event log with replay ids.
// The ack extension against cometd-nodejs-server under cuts is in test_faults.cpp.
//
// What an extension or a frame transform points to is declared before the rig: they also see the
// /meta/disconnect of the rig's closing.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <deque>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rigs.hpp"
#include "uvcometd/extension.hpp"
#include "uvcometd/extensions.hpp"

using namespace std::chrono_literals;
using uvcometd::bayeux_message;
using uvcometd::errc;
using uvcometd::extension_done;
using uvcometd::message_batch;
using uvcometd::state;
using uvcometd::test::client_rig;
using uvcometd::test::outcome;
using uvcometd::test::pick_faye;
using uvcometd::test::quiet_period;
using uvcometd::test::received;
using json = nlohmann::json;

namespace {

json seen(client_rig& rig) { return uvcometd::test::server_seen(*rig.srv); }

// A synchronous extension that logs each call and runs optional edits.
struct recording_extension : uvcometd::extension {
  recording_extension(std::string n, std::vector<std::string>& l) : name(std::move(n)), log(l) {}
  std::string name;
  std::vector<std::string>& log;
  std::function<void(message_batch&)> on_out, on_in;
  std::vector<std::size_t> incoming_header_counts;
  void outgoing(message_batch& b, extension_done done) override {
    log.push_back(name + ">");
    if (on_out) on_out(b);
    done({});
  }
  void incoming(message_batch& b, extension_done done) override {
    log.push_back(name + "<");
    incoming_header_counts.push_back(b.headers.size());
    if (on_in) on_in(b);
    done({});
  }
};

bool has_channel(const message_batch& b, std::string_view prefix) {
  return std::any_of(b.messages.begin(), b.messages.end(),
                     [&](const bayeux_message& m) { return m.channel().rfind(prefix, 0) == 0; });
}

// Drops the outgoing messages of /drop/** and the incoming ones of /hidden.
std::shared_ptr<recording_extension> dropper(std::vector<std::string>& calls) {
  auto d = std::make_shared<recording_extension>("D", calls);
  d->on_out = [](message_batch& batch) {
    auto& v = batch.messages;
    v.erase(
        std::remove_if(v.begin(), v.end(),
                       [](const bayeux_message& m) { return m.channel().rfind("/drop/", 0) == 0; }),
        v.end());
  };
  d->on_in = [](message_batch& batch) {
    auto& v = batch.messages;
    v.erase(std::remove_if(v.begin(), v.end(),
                           [](const bayeux_message& m) { return m.channel() == "/hidden"; }),
            v.end());
  };
  return d;
}

// Starts and opens the rig's client with dropper(calls); returns what /visible receives.
received& open_dropping(client_rig& rig, std::vector<std::string>& calls) {
  auto o = rig.options();
  o.extensions = {dropper(calls)};
  rig.start(o);
  rig.open();
  return rig.subscribe("/visible");
}

}  // namespace

TEST_CASE(
    "extensions see every batch, outgoing in registration order and incoming reversed; "
    "their ext and headers reach the server",
    "[integration][extensions]") {
  std::vector<std::string> calls;
  auto a = std::make_shared<recording_extension>("A", calls);
  auto b = std::make_shared<recording_extension>("B", calls);
  a->on_out = [](message_batch& batch) {
    for (auto& m : batch.messages) m.set_ext("a", "1");
  };
  b->on_out = [](message_batch& batch) {
    batch.headers.emplace_back("X-Ext-B", "yes");
    for (auto& m : batch.messages) {
      // B runs after A: it sees A's change.
      if (m.ext("a") == "1" && m.channel() == "/meta/handshake") m.set_ext("b", "\"after-a\"");
    }
  };
  client_rig rig(pick_faye());
  auto o = rig.options();
  o.extensions = {a, b};
  rig.start(o);
  rig.open();
  auto& got = rig.subscribe("/ext/order");
  CHECK_FALSE(rig.publish("/ext/order", R"({"x":1})"));
  REQUIRE(rig.loop.run_until([&] { return got.data.size() == 1; }));

  const json s = seen(rig);
  INFO(s.dump());
  CHECK(s["handshakeExt"]["a"] == 1);
  CHECK(s["handshakeExt"]["b"] == "after-a");
  CHECK(s["subscribeExt"]["a"] == 1);
  CHECK(s["publishExt"]["a"] == 1);
  CHECK(s["headers"]["x-ext-b"] == "yes");

  REQUIRE(calls.size() >= 8);
  for (std::size_t i = 0; i < calls.size(); ++i) {
    if (calls[i] == "A>") {
      REQUIRE(i + 1 < calls.size());
      CHECK(calls[i + 1] == "B>");
    }
    if (calls[i] == "B<") {
      REQUIRE(i + 1 < calls.size());
      CHECK(calls[i + 1] == "A<");
    }
  }
  CHECK(std::count(calls.begin(), calls.end(), "A>") ==
        std::count(calls.begin(), calls.end(), "B>"));
  // Response headers: long-polling has them (Content-Type at least), websocket none.
  const auto& counts = b->incoming_header_counts;
  REQUIRE_FALSE(counts.empty());
  if (rig.p.websocket()) {
    CHECK(*std::max_element(counts.begin(), counts.end()) == 0);
  } else {
    CHECK(*std::min_element(counts.begin(), counts.end()) > 0);
  }
}

TEST_CASE(
    "an extension drops outgoing messages: each completes with dropped_by_extension, the "
    "rest of its batch goes out",
    "[integration][extensions]") {
  std::vector<std::string> calls;
  client_rig rig(pick_faye());
  auto& visible = open_dropping(rig, calls);
  auto& c = rig.client();

  // One loop iteration: one batch with both publishes.
  outcome dropped, kept;
  REQUIRE_FALSE(c.publish("/drop/x", "1", dropped.cb()));
  REQUIRE_FALSE(c.publish("/visible", R"({"n":1})", kept.cb()));
  REQUIRE(rig.loop.run_until(
      [&] { return dropped.done() && kept.done() && visible.data.size() == 1; }));
  CHECK(dropped.err.code == errc::dropped_by_extension);
  CHECK_FALSE(kept.err);

  // A batch made only of dropped messages never leaves.
  CHECK(rig.publish("/drop/y", "2").code == errc::dropped_by_extension);
}

TEST_CASE("an incoming message an extension drops reaches no handler",
          "[integration][extensions]") {
  std::vector<std::string> calls;
  client_rig rig(pick_faye());
  auto& visible = open_dropping(rig, calls);
  auto& hidden = rig.subscribe("/hidden");
  rig.srv->publish("/hidden", R"({"h":1})", 3);
  rig.srv->publish("/visible", R"({"n":2})");
  REQUIRE(rig.loop.run_until([&] { return visible.data.size() == 1; }));
  rig.loop.run_for(quiet_period);
  CHECK(hidden.data.empty());
  CHECK(rig.client().current_state() == state::connected);
}

namespace {

// Finishes every batch later, from a timer, in both directions.
struct delaying_extension : uvcometd::extension {
  explicit delaying_extension(uv_loop_t* loop) {
    timer = new uv_timer_t;
    uv_timer_init(loop, timer);
    timer->data = this;
  }
  ~delaying_extension() override {
    uv_close(reinterpret_cast<uv_handle_t*>(timer),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  }
  uv_timer_t* timer;
  std::deque<extension_done> waiting;
  int batches = 0;
  int outgoing_batches = 0;
  void hold(extension_done done) {
    ++batches;
    waiting.push_back(std::move(done));
    uv_timer_start(
        timer,
        [](uv_timer_t* t) {
          auto* self = static_cast<delaying_extension*>(t->data);
          auto d = std::move(self->waiting.front());
          self->waiting.pop_front();
          if (!self->waiting.empty()) uv_timer_start(t, t->timer_cb, 1, 0);
          d({});
        },
        1, 0);
  }
  void outgoing(message_batch&, extension_done done) override {
    ++outgoing_batches;
    hold(std::move(done));
  }
  void incoming(message_batch&, extension_done done) override { hold(std::move(done)); }
};

}  // namespace

TEST_CASE("extensions that finish later keep batches in order", "[integration][extensions]") {
  client_rig rig(pick_faye());
  auto slow = std::make_shared<delaying_extension>(rig.loop.get());
  auto o = rig.options();
  o.extensions = {slow};
  auto& c = rig.start(o);
  rig.open();
  auto& got = rig.subscribe("/slow");
  constexpr int n = 30;
  int acked = 0;
  for (int i = 0; i < n; ++i) {
    const int before = slow->outgoing_batches;
    REQUIRE_FALSE(
        c.publish("/slow", "{\"i\":" + std::to_string(i) + "}", [&](const uvcometd::error& e) {
          CHECK_FALSE(e);
          ++acked;
        }));
    // Its own batch: the next publish is made once this one reached the extension.
    REQUIRE(rig.loop.run_until([&] { return slow->outgoing_batches > before; }));
  }
  REQUIRE(rig.loop.run_until([&] { return acked == n && got.data.size() == n; }, 20s));
  for (int i = 0; i < n; ++i) CHECK(uvcometd::test::json_int(got.data[i], "i") == i);
  CHECK(slow->batches > n / 2);
  rig.close();
  c.close();
}

namespace {

struct failing_extension : uvcometd::extension {
  int done_twice = 0;
  bool throw_incoming = false;
  void outgoing(message_batch& b, extension_done done) override {
    if (has_channel(b, "/boom")) throw std::runtime_error("boom from outgoing");
    if (has_channel(b, "/fail")) {
      done(uvcometd::error(make_error_code(errc::invalid_argument),
                           "refused by the test extension"));
      return;
    }
    if (has_channel(b, "/twice")) {
      ++done_twice;
      done({});
      done({});  // ignored, logged
      return;
    }
    done({});
  }
  void incoming(message_batch& b, extension_done done) override {
    if (throw_incoming && has_channel(b, "/boom-in")) {
      throw_incoming = false;
      throw std::runtime_error("boom from incoming");
    }
    done({});
  }
};

}  // namespace

TEST_CASE(
    "an extension that throws or fails: the calls of its batch get extension_error, "
    "nothing crashes, and the client keeps working",
    "[integration][extensions]") {
  client_rig rig(pick_faye());
  auto ext = std::make_shared<failing_extension>();
  auto o = rig.options();
  o.extensions = {ext};
  auto& c = rig.start(o);
  rig.open();
  auto& got = rig.subscribe("/ok");
  rig.subscribe("/boom-in");

  const auto boom = rig.publish("/boom", "1");
  CHECK(boom.code == errc::extension_error);
  CHECK(boom.message.find("boom from outgoing") != std::string::npos);

  const auto fail = rig.publish("/fail", "1");
  CHECK(fail.code == errc::extension_error);
  CHECK(fail.message.find("refused by the test extension") != std::string::npos);

  CHECK_FALSE(rig.publish("/twice", "1"));
  CHECK(ext->done_twice == 1);
  CHECK(rig.log.tail(400).find("more than once") != std::string::npos);

  // An incoming batch the extension cannot handle is discarded like a malformed frame: the
  // client re-establishes the connection and goes on.
  const auto mark = rig.states.size();
  const auto connects = uvcometd::test::server_stats(*rig.srv)["connects"].get<long>();
  ext->throw_incoming = true;
  rig.srv->publish("/boom-in", R"({"x":1})");
  REQUIRE(rig.loop.run_until([&] { return !ext->throw_incoming; }));
  CHECK(rig.log.tail(400).find("boom from incoming") != std::string::npos);
  INFO(rig.states.describe(mark));
  REQUIRE(rig.wait_reconnected(mark));
  CHECK(uvcometd::test::server_stats(*rig.srv)["connects"].get<long>() > connects);
  // The session still works end to end.
  outcome ok;
  const auto before = got.data.size();
  REQUIRE_FALSE(c.publish("/ok", R"({"after":1})", ok.cb()));
  REQUIRE(rig.loop.run_until([&] { return ok.done() && got.data.size() > before; }, 10s));
  CHECK_FALSE(ok.err);
}

namespace {

// Puts its token in the handshake's ext.auth; authenticate() takes the next token.
struct test_auth : uvcometd::auth_extension {
  std::string token;
  std::string next_token;
  int calls = 0;
  void outgoing(message_batch& b, extension_done done) override {
    for (auto& m : b.messages) {
      if (m.channel() == "/meta/handshake") m.set_ext("auth", json{{"token", token}}.dump());
    }
    done({});
  }
  void authenticate(extension_done done) override {
    ++calls;
    token = next_token;
    done({});
  }
};

}  // namespace

TEST_CASE("auth: an expired token makes the client call authenticate() once and recover",
          "[integration][extensions][auth]") {
  client_rig rig(pick_faye(), {"--auth", "1", "--timeout", "1"});
  auto auth = std::make_shared<test_auth>();
  auth->token = "t1";
  auto o = rig.options();
  o.auth = auth;
  rig.start(o);
  rig.open();
  CHECK(auth->calls == 0);
  auto& got = rig.subscribe("/auth/news");

  const auto mark = rig.states.size();
  auth->next_token = "t2";
  rig.srv->control("/control/auth", R"({"token":"t2"})");
  REQUIRE(rig.wait_reconnected(mark));
  INFO(rig.states.describe(mark));
  CHECK(auth->calls == 1);
  CHECK(rig.states.events[*rig.states.find(state::reconnecting, mark)].why.server_code == 401);
  // Re-subscribed with the fresh session.
  rig.srv->publish("/auth/news", R"({"after":"rotation"})");
  REQUIRE(rig.loop.run_until([&] { return got.data.size() == 1; }, 10s));
  CHECK(uvcometd::test::server_stats(*rig.srv)["authFailures"].get<int>() >= 1);
}

TEST_CASE("auth: a wrong token ends open() with the server's error after one authenticate()",
          "[integration][extensions][auth]") {
  client_rig rig(pick_faye(), {"--auth", "1"});
  auto auth = std::make_shared<test_auth>();
  auth->token = "wrong";
  auth->next_token = "still-wrong";
  auto o = rig.options();
  o.auth = auth;
  auto& c = rig.start(o);
  const auto err = rig.open_result();
  INFO(err.to_string());
  CHECK(err.code == errc::server_error);
  CHECK(err.server_code == 401);
  CHECK(err.message == "invalid token");
  CHECK(auth->calls == 1);
  CHECK(c.current_state() == state::failed);
}

TEST_CASE(
    "token_auth: the provider is called on start and again after an HTTP 401, and the "
    "bearer header reaches the server",
    "[integration][extensions][auth]") {
  // Long-polling sends the header on every request: the first one after the rotation is refused.
  // Websocket sends it on the upgrade only: a reconnect's upgrade is refused, and the next one
  // carries the fresh token.
  std::string server_token = "t1";
  int provided = 0;
  client_rig rig(pick_faye(), {"--auth-http", "1", "--timeout", "1"});
  auto auth = std::make_shared<uvcometd::token_auth>([&](uvcometd::token_auth::token_callback cb) {
    ++provided;
    cb({}, server_token);
  });
  auto o = rig.options();
  o.auth = auth;
  auto& c = rig.start(o);
  rig.open();
  CHECK(provided == 1);
  CHECK(seen(rig)["headers"]["authorization"] == "Bearer t1");
  auto& got = rig.subscribe("/bearer");

  server_token = "t2";
  rig.srv->control("/control/auth", R"({"token":"t2"})");
  const auto mark = rig.states.size();
  if (rig.p.websocket()) REQUIRE_FALSE(c.reconnect_now());
  REQUIRE(rig.loop.run_until([&] { return provided == 2; }, 10s));
  REQUIRE(rig.loop.run_until([&] { return c.current_state() == state::connected; }, 10s));
  rig.loop.run_for(quiet_period);
  INFO(rig.states.describe(mark));
  CHECK(c.current_state() == state::connected);
  CHECK(c.current_connection_type() == rig.p.types.front());
  rig.srv->publish("/bearer", R"({"n":1})");
  REQUIRE(rig.loop.run_until([&] { return got.data.size() == 1; }, 10s));
  CHECK(seen(rig)["headers"]["authorization"] == "Bearer t2");
  CHECK(provided == 2);
}

namespace {

std::vector<long> replay_ids(const received& got) {
  std::vector<long> ids;
  for (const auto& d : got.data) ids.push_back(json::parse(d)["event"]["replayId"].get<long>());
  return ids;
}

// A client with a replay extension of `settings`.
uvcometd::client& start_replaying(client_rig& rig, uvcometd::replay_extension::settings settings,
                                  std::shared_ptr<uvcometd::replay_extension>* out = nullptr) {
  auto replay = std::make_shared<uvcometd::replay_extension>(std::move(settings));
  if (out) *out = replay;
  auto o = rig.options();
  o.extensions = {replay};
  auto& c = rig.start(o);
  rig.open(c);
  return c;
}

}  // namespace

TEST_CASE(
    "replay: a subscription resumes after the last id, across a client restart with a "
    "persisted id, and falls back when the id expired",
    "[integration][extensions][replay]") {
  auto store = std::make_shared<uvcometd::memory_replay_store>();
  client_rig rig(pick_faye());
  rig.srv->publish("/replay/a", R"({"v":1})", 5);  // replay ids 1..5, before anyone subscribed

  SECTION("from -2: everything kept, then a restart with the persisted id misses nothing") {
    {
      std::shared_ptr<uvcometd::replay_extension> replay;
      auto& c = start_replaying(rig, {-2, -1, store}, &replay);
      received got;
      REQUIRE_FALSE(rig.subscribe_result(c, "/replay/a", got));
      REQUIRE(rig.loop.run_until([&] { return got.data.size() == 5; }));
      CHECK(replay_ids(got) == std::vector<long>{1, 2, 3, 4, 5});
      CHECK(replay->replay_id("/replay/a") == 5);
      CHECK(store->load("/replay/a") == 5);
      CHECK(seen(rig)["handshakeExt"]["replay"] == true);
      rig.close(c);
    }
    rig.srv->publish("/replay/a", R"({"v":2})", 3);  // 6..8 while no client runs
    {
      auto& c = start_replaying(rig, {-1, -1, store});
      received got;
      REQUIRE_FALSE(rig.subscribe_result(c, "/replay/a", got));
      CHECK(seen(rig)["subscribeExt"]["replay"]["/replay/a"] == 5);
      REQUIRE(rig.loop.run_until([&] { return got.data.size() == 3; }));
      rig.srv->publish("/replay/a", R"({"v":3})");
      REQUIRE(rig.loop.run_until([&] { return got.data.size() == 4; }));
      rig.loop.run_for(quiet_period);
      CHECK(replay_ids(got) == std::vector<long>{6, 7, 8, 9});
      rig.close(c);
    }
  }

  SECTION("an expired id falls back to new messages only, or fails when no fallback is set") {
    rig.srv->control("/control/replay-trim", R"({"channel":"/replay/a","keep":1})");  // keeps id 5
    store->save("/replay/a", 2);
    {
      auto& c = start_replaying(rig, {-1, -1, store});
      received got;
      const auto err = rig.subscribe_result(c, "/replay/a", got);
      INFO(err.to_string());
      CHECK_FALSE(err);
      CHECK(seen(rig)["subscribeExt"]["replay"]["/replay/a"] == -1);
      rig.srv->publish("/replay/a", R"({"v":4})");
      REQUIRE(rig.loop.run_until([&] { return got.data.size() == 1; }));
      rig.loop.run_for(quiet_period);
      CHECK(replay_ids(got) == std::vector<long>{6});
      rig.close(c);
    }
    store->save("/replay/a", 2);
    {
      auto& c = start_replaying(rig, {-1, std::nullopt, store});
      received got;
      const auto err = rig.subscribe_result(c, "/replay/a", got);
      CHECK(err.code == errc::server_error);
      CHECK(err.server_code == 400);
      CHECK(err.message.find("replayId 2") != std::string::npos);
      rig.close(c);
    }
  }
}

TEST_CASE("replay: the re-subscribe after a re-handshake asks for what followed the last id",
          "[integration][extensions][replay]") {
  client_rig rig(pick_faye(), {"--timeout", "1"});
  auto& c = start_replaying(rig, {});
  received got;
  REQUIRE_FALSE(rig.subscribe_result(c, "/replay/c", got));
  rig.srv->publish("/replay/c", R"({"v":1})", 3);
  REQUIRE(rig.loop.run_until([&] { return got.data.size() == 3; }));

  const auto mark = rig.states.size();
  rig.srv->control("/control/expire", "{}");
  rig.srv->publish("/replay/c", R"({"v":2})", 2);  // 4, 5: nobody is subscribed now
  REQUIRE(rig.wait_reconnected(mark));
  REQUIRE(rig.loop.run_until([&] { return got.data.size() == 5; }, 10s));
  rig.loop.run_for(quiet_period);
  CHECK(seen(rig)["subscribeExt"]["replay"]["/replay/c"] == 3);
  CHECK(replay_ids(got) == std::vector<long>{1, 2, 3, 4, 5});
}

TEST_CASE(
    "frame_encoder and frame_decoder see every frame; a decoder error fails the frame like "
    "a malformed one and the client recovers",
    "[integration][extensions]") {
  int encoded = 0, decoded = 0;
  bool fail_next = false, garble_next = false;
  std::vector<std::string> calls;
  client_rig rig(pick_faye());
  auto o = rig.options();
  o.frame_encoder = [&](std::string_view in, std::string& out) {
    ++encoded;
    if (in.find("/codec/unencodable") != std::string_view::npos) {
      return uvcometd::error{make_error_code(errc::invalid_argument),
                             "the test encoder refused it"};
    }
    out.assign(in);
    return uvcometd::error{};
  };
  o.frame_decoder = [&](std::string_view in, std::string& out) {
    ++decoded;
    if (fail_next && in.find("/codec/bad") != std::string_view::npos) {
      fail_next = false;
      return uvcometd::error{make_error_code(errc::bad_response), "the test decoder refused it"};
    }
    if (garble_next && in.find("/codec/bad") != std::string_view::npos) {
      // Not a message array: with an extension registered, the client cannot split it into a
      // batch either, and must report it like any malformed frame.
      garble_next = false;
      out = "[{\"channel\":";
      return uvcometd::error{};
    }
    out.assign(in);
    return uvcometd::error{};
  };
  o.extensions = {std::make_shared<recording_extension>("R", calls)};
  rig.start(o);
  rig.open();
  auto& got = rig.subscribe("/codec/ok");
  rig.subscribe("/codec/bad");
  CHECK(encoded >= 3);
  CHECK(decoded >= 3);
  const auto refused_at = rig.states.size();
  fail_next = true;
  rig.srv->publish("/codec/bad", "1");
  REQUIRE(rig.loop.run_until([&] { return !fail_next; }));
  CHECK(rig.log.tail(400).find("the test decoder refused it") != std::string::npos);
  REQUIRE(rig.wait_reconnected(refused_at, 10s));
  const auto before = got.data.size();
  rig.srv->publish("/codec/ok", "2");
  REQUIRE(rig.loop.run_until([&] { return got.data.size() > before; }, 10s));
  CHECK(got.data.back() == "2");

  // An encoder error fails the calls of that frame.
  const auto refused = rig.publish("/codec/unencodable", "3");
  CHECK(refused.code == errc::invalid_argument);
  CHECK(refused.message.find("the test encoder refused it") != std::string::npos);

  // A decoded frame that is not JSON: reported as malformed, and the client recovers.
  const auto garbled_at = rig.states.size();
  garble_next = true;
  rig.srv->publish("/codec/bad", "4");
  REQUIRE(rig.loop.run_until([&] { return !garble_next; }));
  REQUIRE(rig.wait_reconnected(garbled_at, 10s));
  const auto before2 = got.data.size();
  rig.srv->publish("/codec/ok", "5");
  REQUIRE(rig.loop.run_until([&] { return got.data.size() > before2; }, 10s));
  CHECK(got.data.back() == "5");
}

TEST_CASE(
    "an extension may close or destroy the client from inside a hook: every call completes "
    "once and the loop closes cleanly",
    "[integration][extensions]") {
  struct closer : uvcometd::extension {
    std::function<void()> act;
    bool on_incoming = false;
    int calls_after = 0;
    bool fired = false;
    void maybe(const message_batch& b) {
      if (fired) {
        ++calls_after;
        return;
      }
      if (has_channel(b, "/close-me")) {
        fired = true;
        act();
      }
    }
    void outgoing(message_batch& b, extension_done done) override {
      if (!on_incoming) maybe(b);
      done({});
    }
    void incoming(message_batch& b, extension_done done) override {
      if (on_incoming) maybe(b);
      done({});
    }
  };
  int closes = 0;
  client_rig rig(pick_faye());
  const bool incoming = GENERATE(false, true);
  const bool destroy = GENERATE(false, true);
  INFO((incoming ? "incoming" : "outgoing") << (destroy ? ", destroying" : ", closing"));
  auto ext = std::make_shared<closer>();
  ext->on_incoming = incoming;
  ext->act = [&] {
    if (destroy)
      rig.destroy_client();
    else
      rig.client().close([&](const uvcometd::error&) { ++closes; });
  };
  auto o = rig.options();
  o.extensions = {ext};
  auto& c = rig.start(o);
  rig.open();
  if (incoming) rig.subscribe("/close-me");
  outcome pub;
  REQUIRE_FALSE(c.publish("/close-me", "1", pub.cb()));
  REQUIRE(rig.loop.run_until([&] { return ext->fired; }));
  if (!destroy) {
    REQUIRE(rig.loop.run_until([&] { return closes == 1; }));
    CHECK(c.current_state() == state::closed);
    CHECK(pub.done());  // cancelled or answered, once
    rig.destroy_client();
  } else {
    CHECK_FALSE(pub.done());  // a destroyed client runs no callback
  }
  REQUIRE(rig.loop.drain());  // every handle of the client closed: nothing more can happen
  // After a close(): at most the /meta/disconnect out, or the frames in flight and the
  // disconnect reply in. After destruction: nothing at all.
  if (destroy)
    CHECK(ext->calls_after == 0);
  else
    CHECK(ext->calls_after <= 2);
}
