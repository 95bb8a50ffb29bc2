// Extensions end to end against Faye (long-polling and websocket): order, headers, ext, dropping,
// asynchronous completion, failures; the auth extension against a server that demands a token and
// later rotates it; the replay extension against a server that keeps an event log with replay ids.
// The ack extension against cometd-nodejs-server under cuts is in test_faults.cpp.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <deque>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "client_helpers.hpp"
#include "loop_helpers.hpp"
#include "server_process.hpp"
#include "uvcometd/client.hpp"
#include "uvcometd/extension.hpp"
#include "uvcometd/extensions.hpp"

using namespace std::chrono_literals;
using uvcometd::bayeux_message;
using uvcometd::connection_type;
using uvcometd::errc;
using uvcometd::extension_done;
using uvcometd::message_batch;
using uvcometd::state;
using uvcometd::test::log_capture;
using uvcometd::test::peer;
using uvcometd::test::received;
using uvcometd::test::server_process;
using uvcometd::test::state_recorder;
using uvcometd::test::test_loop;
using json = nlohmann::json;

namespace {

peer pick_faye() {
  return GENERATE(uvcometd::test::faye_long_polling(), uvcometd::test::faye_websocket());
}

uvcometd::options make_options(const server_process& srv, const peer& p, log_capture& log) {
  uvcometd::options o;
  o.url = srv.url();
  o.connection_types = p.types;
  o.connection_timeout = 10s;
  o.backoff_initial = 50ms;
  o.backoff_max = 500ms;
  o.log = log.sink();
  return o;
}

json seen(server_process& srv) { return json::parse(srv.get("/control/seen")); }

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

// Publishes and records the outcome.
struct outcome {
  bool done = false;
  uvcometd::error err;
  uvcometd::completion cb() {
    return [this](const uvcometd::error& e) {
      err = e;
      done = true;
    };
  }
};

bool has_channel(const message_batch& b, std::string_view prefix) {
  return std::any_of(b.messages.begin(), b.messages.end(),
                     [&](const bayeux_message& m) { return m.channel().rfind(prefix, 0) == 0; });
}

}  // namespace

TEST_CASE("extensions see every batch, outgoing in registration order and incoming reversed; "
          "their ext and headers reach the server",
          "[integration][extensions]") {
  const peer p = pick_faye();
  INFO(p.name);
  server_process srv(p.script);
  test_loop loop;
  log_capture log;
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
  {
    auto o = make_options(srv, p, log);
    o.extensions = {a, b};
    uvcometd::client c(loop.get(), o);
    const auto err = uvcometd::test::open_and_wait(loop, c);
    INFO(err.to_string() << "\n" << log.tail());
    REQUIRE_FALSE(err);
    received got;
    uvcometd::test::subscribe_and_wait(loop, c, "/ext/order", got);
    outcome pub;
    REQUIRE_FALSE(c.publish("/ext/order", R"({"x":1})", pub.cb()));
    REQUIRE(loop.run_until([&] { return pub.done && got.data.size() == 1; }));
    CHECK_FALSE(pub.err);

    const json s = seen(srv);
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
    CHECK(std::count(calls.begin(), calls.end(), "A>") == std::count(calls.begin(), calls.end(), "B>"));
    // Response headers: long-polling has them (Content-Type at least), websocket none.
    REQUIRE_FALSE(b->incoming_header_counts.empty());
    if (p.websocket()) {
      CHECK(*std::max_element(b->incoming_header_counts.begin(), b->incoming_header_counts.end()) == 0);
    } else {
      CHECK(*std::min_element(b->incoming_header_counts.begin(), b->incoming_header_counts.end()) > 0);
    }
    uvcometd::test::close_and_wait(loop, c);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("an extension drops messages: a dropped publish completes with dropped_by_extension, "
          "the rest of its batch goes out, and a dropped incoming message reaches no handler",
          "[integration][extensions]") {
  const peer p = pick_faye();
  INFO(p.name);
  server_process srv(p.script);
  test_loop loop;
  log_capture log;
  std::vector<std::string> calls;
  auto dropper = std::make_shared<recording_extension>("D", calls);
  dropper->on_out = [](message_batch& batch) {
    auto& v = batch.messages;
    v.erase(std::remove_if(v.begin(), v.end(), [](const bayeux_message& m) { return m.channel().rfind("/drop/", 0) == 0; }),
            v.end());
  };
  dropper->on_in = [](message_batch& batch) {
    auto& v = batch.messages;
    v.erase(std::remove_if(v.begin(), v.end(), [](const bayeux_message& m) { return m.channel() == "/hidden"; }),
            v.end());
  };
  {
    auto o = make_options(srv, p, log);
    o.extensions = {dropper};
    uvcometd::client c(loop.get(), o);
    REQUIRE_FALSE(uvcometd::test::open_and_wait(loop, c));
    received visible, hidden;
    uvcometd::test::subscribe_and_wait(loop, c, "/visible", visible);
    uvcometd::test::subscribe_and_wait(loop, c, "/hidden", hidden);

    // One loop iteration: one batch with both publishes.
    outcome dropped, kept;
    REQUIRE_FALSE(c.publish("/drop/x", "1", dropped.cb()));
    REQUIRE_FALSE(c.publish("/visible", R"({"n":1})", kept.cb()));
    REQUIRE(loop.run_until([&] { return dropped.done && kept.done && visible.data.size() == 1; }));
    CHECK(dropped.err.code == errc::dropped_by_extension);
    CHECK_FALSE(kept.err);

    // A batch made only of dropped messages never leaves.
    outcome alone;
    REQUIRE_FALSE(c.publish("/drop/y", "2", alone.cb()));
    REQUIRE(loop.run_until([&] { return alone.done; }));
    CHECK(alone.err.code == errc::dropped_by_extension);

    srv.publish("/hidden", R"({"h":1})", 3);
    srv.publish("/visible", R"({"n":2})");
    REQUIRE(loop.run_until([&] { return visible.data.size() == 2; }));
    loop.run_for(100ms);
    CHECK(hidden.data.empty());
    CHECK(c.current_state() == state::connected);
    uvcometd::test::close_and_wait(loop, c);
  }
  CHECK(loop.close() == 0);
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
    uv_close(reinterpret_cast<uv_handle_t*>(timer), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  }
  uv_timer_t* timer;
  std::deque<extension_done> waiting;
  int batches = 0;
  void hold(extension_done done) {
    ++batches;
    waiting.push_back(std::move(done));
    uv_timer_start(timer, [](uv_timer_t* t) {
      auto* self = static_cast<delaying_extension*>(t->data);
      auto d = std::move(self->waiting.front());
      self->waiting.pop_front();
      if (!self->waiting.empty()) uv_timer_start(t, t->timer_cb, 1, 0);
      d({});
    }, 1, 0);
  }
  void outgoing(message_batch&, extension_done done) override { hold(std::move(done)); }
  void incoming(message_batch&, extension_done done) override { hold(std::move(done)); }
};

}  // namespace

TEST_CASE("extensions that finish later keep batches in order", "[integration][extensions]") {
  const peer p = pick_faye();
  INFO(p.name);
  server_process srv(p.script);
  test_loop loop;
  log_capture log;
  {
    auto slow = std::make_shared<delaying_extension>(loop.get());
    auto o = make_options(srv, p, log);
    o.extensions = {slow};
    uvcometd::client c(loop.get(), o);
    const auto err = uvcometd::test::open_and_wait(loop, c);
    INFO(err.to_string() << "\n" << log.tail());
    REQUIRE_FALSE(err);
    received got;
    uvcometd::test::subscribe_and_wait(loop, c, "/slow", got);
    constexpr int n = 30;
    int acked = 0;
    for (int i = 0; i < n; ++i) {
      REQUIRE_FALSE(c.publish("/slow", "{\"i\":" + std::to_string(i) + "}", [&](const uvcometd::error& e) {
        CHECK_FALSE(e);
        ++acked;
      }));
      loop.run_for(1ms);  // separate loop iterations: separate batches
    }
    REQUIRE(loop.run_until([&] { return acked == n && got.data.size() == n; }, 20s));
    for (int i = 0; i < n; ++i) CHECK(uvcometd::test::json_int(got.data[i], "i") == i);
    CHECK(slow->batches > n / 2);
    uvcometd::test::close_and_wait(loop, c);
    c.close();
  }
  loop.run_for(10ms);  // the extension's timer closes
  CHECK(loop.close() == 0);
}

namespace {

struct failing_extension : uvcometd::extension {
  int done_twice = 0;
  bool throw_incoming = false;
  void outgoing(message_batch& b, extension_done done) override {
    if (has_channel(b, "/boom")) throw std::runtime_error("boom from outgoing");
    if (has_channel(b, "/fail")) {
      done(uvcometd::error(make_error_code(errc::invalid_argument), "refused by the test extension"));
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

TEST_CASE("an extension that throws or fails: the calls of its batch get extension_error, "
          "nothing crashes, and the client keeps working",
          "[integration][extensions]") {
  const peer p = pick_faye();
  INFO(p.name);
  server_process srv(p.script);
  test_loop loop;
  log_capture log;
  state_recorder states;
  auto ext = std::make_shared<failing_extension>();
  {
    auto o = make_options(srv, p, log);
    o.extensions = {ext};
    uvcometd::client c(loop.get(), o);
    states.attach(c);
    REQUIRE_FALSE(uvcometd::test::open_and_wait(loop, c));
    received got;
    uvcometd::test::subscribe_and_wait(loop, c, "/ok", got);
    uvcometd::test::subscribe_and_wait(loop, c, "/boom-in", got);

    outcome boom, fail, twice;
    REQUIRE_FALSE(c.publish("/boom", "1", boom.cb()));
    REQUIRE(loop.run_until([&] { return boom.done; }));
    CHECK(boom.err.code == errc::extension_error);
    CHECK(boom.err.message.find("boom from outgoing") != std::string::npos);

    REQUIRE_FALSE(c.publish("/fail", "1", fail.cb()));
    REQUIRE(loop.run_until([&] { return fail.done; }));
    CHECK(fail.err.code == errc::extension_error);
    CHECK(fail.err.message.find("refused by the test extension") != std::string::npos);

    REQUIRE_FALSE(c.publish("/twice", "1", twice.cb()));
    REQUIRE(loop.run_until([&] { return twice.done; }));
    CHECK_FALSE(twice.err);
    CHECK(ext->done_twice == 1);
    CHECK(log.tail(400).find("more than once") != std::string::npos);

    // An incoming batch the extension cannot handle is discarded like a malformed frame: the
    // client re-establishes the connection and goes on.
    const auto mark = states.size();
    ext->throw_incoming = true;
    srv.publish("/boom-in", R"({"x":1})");
    REQUIRE(loop.run_until([&] { return !ext->throw_incoming; }));
    CHECK(log.tail(400).find("boom from incoming") != std::string::npos);
    loop.run_until([&] { return c.current_state() == state::connected && states.size() > mark; }, 5s);
    REQUIRE(loop.run_until([&] {
      if (c.current_state() != state::connected) return false;
      return true;
    }, 10s));
    // The session still works end to end.
    outcome ok;
    const auto before = got.data.size();
    REQUIRE_FALSE(c.publish("/ok", R"({"after":1})", ok.cb()));
    REQUIRE(loop.run_until([&] { return ok.done && got.data.size() > before; }, 10s));
    CHECK_FALSE(ok.err);
    uvcometd::test::close_and_wait(loop, c);
  }
  CHECK(loop.close() == 0);
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
  const peer p = pick_faye();
  INFO(p.name);
  server_process srv(p.script, {"--auth", "1", "--timeout", "1"});
  test_loop loop;
  log_capture log;
  state_recorder states;
  auto auth = std::make_shared<test_auth>();
  auth->token = "t1";
  {
    auto o = make_options(srv, p, log);
    o.auth = auth;
    uvcometd::client c(loop.get(), o);
    states.attach(c);
    const auto err = uvcometd::test::open_and_wait(loop, c);
    INFO(err.to_string() << "\n" << log.tail());
    REQUIRE_FALSE(err);
    CHECK(auth->calls == 0);
    received got;
    uvcometd::test::subscribe_and_wait(loop, c, "/auth/news", got);

    const auto mark = states.size();
    auth->next_token = "t2";
    srv.control("/control/auth", R"({"token":"t2"})");
    INFO(log.tail());
    REQUIRE(loop.run_until([&] { return states.saw_then(state::reconnecting, state::connected, mark); }, 15s));
    INFO(states.describe(mark));
    CHECK(auth->calls == 1);
    CHECK(states.events[*states.find(state::reconnecting, mark)].why.server_code == 401);
    // Re-subscribed with the fresh session.
    srv.publish("/auth/news", R"({"after":"rotation"})");
    REQUIRE(loop.run_until([&] { return got.data.size() == 1; }, 10s));
    const json stats = json::parse(srv.get("/control/stats"));
    CHECK(stats["authFailures"].get<int>() >= 1);
    uvcometd::test::close_and_wait(loop, c);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("auth: a wrong token ends open() with the server's error after one authenticate()",
          "[integration][extensions][auth]") {
  const peer p = pick_faye();
  INFO(p.name);
  server_process srv(p.script, {"--auth", "1"});
  test_loop loop;
  log_capture log;
  auto auth = std::make_shared<test_auth>();
  auth->token = "wrong";
  auth->next_token = "still-wrong";
  {
    auto o = make_options(srv, p, log);
    o.auth = auth;
    uvcometd::client c(loop.get(), o);
    const auto err = uvcometd::test::open_and_wait(loop, c);
    INFO(err.to_string() << "\n" << log.tail());
    CHECK(err.code == errc::server_error);
    CHECK(err.server_code == 401);
    CHECK(err.message == "invalid token");
    CHECK(auth->calls == 1);
    CHECK(c.current_state() == state::failed);
    uvcometd::test::close_and_wait(loop, c);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("token_auth: the provider is called on start and again after an HTTP 401, and the "
          "bearer header reaches the server",
          "[integration][extensions][auth]") {
  // Long-polling sends the header on every request: the first one after the rotation is refused.
  // Websocket sends it on the upgrade only: a reconnect's upgrade is refused, and the next one
  // carries the fresh token.
  const peer p = pick_faye();
  INFO(p.name);
  server_process srv(p.script, {"--auth-http", "1", "--timeout", "1"});
  test_loop loop;
  log_capture log;
  state_recorder states;
  std::string server_token = "t1";
  int provided = 0;
  auto auth = std::make_shared<uvcometd::token_auth>([&](uvcometd::token_auth::token_callback cb) {
    ++provided;
    cb({}, server_token);
  });
  {
    auto o = make_options(srv, p, log);
    o.auth = auth;
    uvcometd::client c(loop.get(), o);
    states.attach(c);
    const auto err = uvcometd::test::open_and_wait(loop, c);
    INFO(err.to_string() << "\n" << log.tail());
    REQUIRE_FALSE(err);
    CHECK(provided == 1);
    CHECK(seen(srv)["headers"]["authorization"] == "Bearer t1");
    received got;
    uvcometd::test::subscribe_and_wait(loop, c, "/bearer", got);

    server_token = "t2";
    srv.control("/control/auth", R"({"token":"t2"})");
    const auto mark = states.size();
    if (p.websocket()) REQUIRE_FALSE(c.reconnect_now());
    REQUIRE(loop.run_until([&] { return provided == 2; }, 10s));
    REQUIRE(loop.run_until([&] { return c.current_state() == state::connected; }, 10s));
    loop.run_for(300ms);
    INFO(states.describe(mark) << "\n" << log.tail());
    CHECK(c.current_state() == state::connected);
    CHECK(c.current_connection_type() == p.types.front());
    srv.publish("/bearer", R"({"n":1})");
    REQUIRE(loop.run_until([&] { return got.data.size() == 1; }, 10s));
    CHECK(seen(srv)["headers"]["authorization"] == "Bearer t2");
    CHECK(provided == 2);
    uvcometd::test::close_and_wait(loop, c);
  }
  CHECK(loop.close() == 0);
}

namespace {

std::vector<long> replay_ids(const received& got) {
  std::vector<long> ids;
  for (const auto& d : got.data) ids.push_back(json::parse(d)["event"]["replayId"].get<long>());
  return ids;
}

uvcometd::error subscribe_result(test_loop& loop, uvcometd::client& c, const std::string& channel,
                                 received& into) {
  bool done = false;
  uvcometd::error result;
  REQUIRE_FALSE(c.subscribe(
      channel, [&into](const uvcometd::message& m) { into.data.emplace_back(m.data); },
      [&](const uvcometd::error& e) {
        result = e;
        done = true;
      }));
  REQUIRE(loop.run_until([&] { return done; }));
  return result;
}

}  // namespace

TEST_CASE("replay: a subscription resumes after the last id, across a client restart with a "
          "persisted id, and falls back when the id expired",
          "[integration][extensions][replay]") {
  const peer p = pick_faye();
  INFO(p.name);
  server_process srv(p.script);
  test_loop loop;
  log_capture log;
  auto store = std::make_shared<uvcometd::memory_replay_store>();
  srv.publish("/replay/a", R"({"v":1})", 5);  // replay ids 1..5, before anyone subscribed

  SECTION("from -2: everything kept, then a restart with the persisted id misses nothing") {
    {
      auto replay = std::make_shared<uvcometd::replay_extension>(
          uvcometd::replay_extension::settings{-2, -1, store});
      auto o = make_options(srv, p, log);
      o.extensions = {replay};
      uvcometd::client c(loop.get(), o);
      REQUIRE_FALSE(uvcometd::test::open_and_wait(loop, c));
      received got;
      REQUIRE_FALSE(subscribe_result(loop, c, "/replay/a", got));
      REQUIRE(loop.run_until([&] { return got.data.size() == 5; }));
      CHECK(replay_ids(got) == std::vector<long>{1, 2, 3, 4, 5});
      CHECK(replay->replay_id("/replay/a") == 5);
      CHECK(store->load("/replay/a") == 5);
      CHECK(seen(srv)["handshakeExt"]["replay"] == true);
      uvcometd::test::close_and_wait(loop, c);
    }
    srv.publish("/replay/a", R"({"v":2})", 3);  // 6..8 while no client runs
    {
      auto replay = std::make_shared<uvcometd::replay_extension>(
          uvcometd::replay_extension::settings{-1, -1, store});
      auto o = make_options(srv, p, log);
      o.extensions = {replay};
      uvcometd::client c(loop.get(), o);
      REQUIRE_FALSE(uvcometd::test::open_and_wait(loop, c));
      received got;
      REQUIRE_FALSE(subscribe_result(loop, c, "/replay/a", got));
      CHECK(seen(srv)["subscribeExt"]["replay"]["/replay/a"] == 5);
      REQUIRE(loop.run_until([&] { return got.data.size() == 3; }));
      srv.publish("/replay/a", R"({"v":3})");
      REQUIRE(loop.run_until([&] { return got.data.size() == 4; }));
      loop.run_for(100ms);
      CHECK(replay_ids(got) == std::vector<long>{6, 7, 8, 9});
      uvcometd::test::close_and_wait(loop, c);
    }
  }

  SECTION("an expired id falls back to new messages only, or fails when no fallback is set") {
    srv.control("/control/replay-trim", R"({"channel":"/replay/a","keep":1})");  // keeps id 5
    store->save("/replay/a", 2);
    {
      auto replay = std::make_shared<uvcometd::replay_extension>(
          uvcometd::replay_extension::settings{-1, -1, store});
      auto o = make_options(srv, p, log);
      o.extensions = {replay};
      uvcometd::client c(loop.get(), o);
      REQUIRE_FALSE(uvcometd::test::open_and_wait(loop, c));
      received got;
      const auto err = subscribe_result(loop, c, "/replay/a", got);
      INFO(err.to_string() << "\n" << log.tail());
      CHECK_FALSE(err);
      CHECK(seen(srv)["subscribeExt"]["replay"]["/replay/a"] == -1);
      srv.publish("/replay/a", R"({"v":4})");
      REQUIRE(loop.run_until([&] { return got.data.size() == 1; }));
      loop.run_for(100ms);
      CHECK(replay_ids(got) == std::vector<long>{6});
      uvcometd::test::close_and_wait(loop, c);
    }
    store->save("/replay/a", 2);
    {
      auto replay = std::make_shared<uvcometd::replay_extension>(
          uvcometd::replay_extension::settings{-1, std::nullopt, store});
      auto o = make_options(srv, p, log);
      o.extensions = {replay};
      uvcometd::client c(loop.get(), o);
      REQUIRE_FALSE(uvcometd::test::open_and_wait(loop, c));
      received got;
      const auto err = subscribe_result(loop, c, "/replay/a", got);
      CHECK(err.code == errc::server_error);
      CHECK(err.server_code == 400);
      CHECK(err.message.find("replayId 2") != std::string::npos);
      uvcometd::test::close_and_wait(loop, c);
    }
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("replay: the re-subscribe after a re-handshake asks for what followed the last id",
          "[integration][extensions][replay]") {
  const peer p = pick_faye();
  INFO(p.name);
  server_process srv(p.script, {"--timeout", "1"});
  test_loop loop;
  log_capture log;
  state_recorder states;
  {
    auto replay = std::make_shared<uvcometd::replay_extension>();
    auto o = make_options(srv, p, log);
    o.extensions = {replay};
    uvcometd::client c(loop.get(), o);
    states.attach(c);
    REQUIRE_FALSE(uvcometd::test::open_and_wait(loop, c));
    received got;
    REQUIRE_FALSE(subscribe_result(loop, c, "/replay/c", got));
    srv.publish("/replay/c", R"({"v":1})", 3);
    REQUIRE(loop.run_until([&] { return got.data.size() == 3; }));

    const auto mark = states.size();
    srv.control("/control/expire", "{}");
    srv.publish("/replay/c", R"({"v":2})", 2);  // 4, 5: nobody is subscribed now
    REQUIRE(loop.run_until([&] { return states.saw_then(state::reconnecting, state::connected, mark); }, 15s));
    REQUIRE(loop.run_until([&] { return got.data.size() == 5; }, 10s));
    loop.run_for(200ms);
    CHECK(seen(srv)["subscribeExt"]["replay"]["/replay/c"] == 3);
    CHECK(replay_ids(got) == std::vector<long>{1, 2, 3, 4, 5});
    uvcometd::test::close_and_wait(loop, c);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("frame_encoder and frame_decoder see every frame; a decoder error fails the frame like "
          "a malformed one and the client recovers",
          "[integration][extensions]") {
  const peer p = pick_faye();
  INFO(p.name);
  server_process srv(p.script);
  test_loop loop;
  log_capture log;
  int encoded = 0, decoded = 0;
  bool fail_next = false;
  {
    auto o = make_options(srv, p, log);
    bool garble_next = false;
    o.frame_encoder = [&](std::string_view in, std::string& out) {
      ++encoded;
      if (in.find("/codec/unencodable") != std::string_view::npos) {
        return uvcometd::error{make_error_code(errc::invalid_argument), "the test encoder refused it"};
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
    std::vector<std::string> calls;
    o.extensions = {std::make_shared<recording_extension>("R", calls)};
    uvcometd::client c(loop.get(), o);
    REQUIRE_FALSE(uvcometd::test::open_and_wait(loop, c));
    received got;
    uvcometd::test::subscribe_and_wait(loop, c, "/codec/ok", got);
    uvcometd::test::subscribe_and_wait(loop, c, "/codec/bad", got);
    CHECK(encoded >= 3);
    CHECK(decoded >= 3);
    fail_next = true;
    srv.publish("/codec/bad", "1");
    REQUIRE(loop.run_until([&] { return !fail_next; }));
    CHECK(log.tail(400).find("the test decoder refused it") != std::string::npos);
    REQUIRE(loop.run_until([&] { return c.current_state() == state::connected; }, 10s));
    const auto before = got.data.size();
    srv.publish("/codec/ok", "2");
    REQUIRE(loop.run_until([&] { return got.data.size() > before; }, 10s));
    CHECK(got.data.back() == "2");

    // An encoder error fails the calls of that frame.
    outcome refused;
    REQUIRE_FALSE(c.publish("/codec/unencodable", "3", refused.cb()));
    REQUIRE(loop.run_until([&] { return refused.done; }));
    CHECK(refused.err.code == errc::invalid_argument);
    CHECK(refused.err.message.find("the test encoder refused it") != std::string::npos);

    // A decoded frame that is not JSON: reported as malformed, and the client recovers.
    garble_next = true;
    srv.publish("/codec/bad", "4");
    REQUIRE(loop.run_until([&] { return !garble_next; }));
    REQUIRE(loop.run_until([&] { return c.current_state() == state::connected; }, 10s));
    const auto before2 = got.data.size();
    srv.publish("/codec/ok", "5");
    REQUIRE(loop.run_until([&] { return got.data.size() > before2; }, 10s));
    CHECK(got.data.back() == "5");
    uvcometd::test::close_and_wait(loop, c);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("an extension may close or destroy the client from inside a hook: every call completes "
          "once and the loop closes cleanly",
          "[integration][extensions]") {
  const peer p = pick_faye();
  INFO(p.name);
  server_process srv(p.script);
  test_loop loop;
  log_capture log;
  const bool incoming = GENERATE(false, true);
  const bool destroy = GENERATE(false, true);
  INFO((incoming ? "incoming" : "outgoing") << (destroy ? ", destroying" : ", closing"));
  std::unique_ptr<uvcometd::client> c;
  int closes = 0;
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
  auto ext = std::make_shared<closer>();
  ext->on_incoming = incoming;
  ext->act = [&] {
    if (destroy) c.reset();
    else c->close([&](const uvcometd::error&) { ++closes; });
  };
  auto o = make_options(srv, p, log);
  o.extensions = {ext};
  c = std::make_unique<uvcometd::client>(loop.get(), o);
  REQUIRE_FALSE(uvcometd::test::open_and_wait(loop, *c));
  received got;
  if (incoming) uvcometd::test::subscribe_and_wait(loop, *c, "/close-me", got);
  outcome pub;
  REQUIRE_FALSE(c->publish("/close-me", "1", pub.cb()));
  REQUIRE(loop.run_until([&] { return ext->fired; }));
  if (!destroy) {
    REQUIRE(loop.run_until([&] { return closes == 1; }));
    CHECK(c->current_state() == state::closed);
    CHECK(pub.done);  // cancelled or answered, once
    c.reset();
  } else {
    CHECK_FALSE(pub.done);  // a destroyed client runs no callback
  }
  loop.run_for(100ms);
  // After a close(): at most the /meta/disconnect out, or the frames in flight and the
  // disconnect reply in. After destruction: nothing at all.
  if (destroy) CHECK(ext->calls_after == 0);
  else CHECK(ext->calls_after <= 2);
  CHECK(loop.close() == 0);
}
