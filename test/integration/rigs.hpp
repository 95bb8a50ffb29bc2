// Shared fixtures of the integration tests.
//
// client_rig owns what a client-level test needs: the peer (a real server started for the test,
// optionally behind the fault proxy), the loop, the library's log (its tail is printed on stderr
// when an assertion fails), the test's clients and the state transitions of the first one. Its
// helpers wait on events: open(), subscribe() until the server's reply, publish() until its
// completion, close(), and what the server reports (/control/stats). Its destructor closes the
// clients the test left open, shuts the proxy, runs the loop dry and checks uv_loop_close() == 0:
// every test gets that check once, here.
//
// transport_rig<Factory> does the same for the transport-level tests: one loop, one recorder of
// what a transport reports (frames, failed requests, ups, downs), the transport the Factory makes
// (and more when a test needs several), closed and checked in its destructor.
//
// Waiting: a test waits for the event it needs (loop.run_until(...), the wait_* helpers, the
// server's counters, the proxy's). A fixed time is used only to check that nothing (more)
// happens, and then it is quiet_period (loop_helpers.hpp).
//
// Callbacks a test hands to a client may capture the test's locals: a client delivers no message
// once close() began, and an assertion that unwinds the test destroys the clients (which then
// run no callback) before anything else. Extensions, frame transforms and meta listeners are
// different: they also see the /meta/disconnect of the rig's closing, so what they point to is
// declared before the rig, or the test closes the client itself.
#pragma once

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "client_helpers.hpp"
#include "fault_proxy.hpp"
#include "loop_helpers.hpp"
#include "server_process.hpp"
#include "transport/transport.hpp"
#include "transport_kit.hpp"
#include "uvcometd/client.hpp"

namespace uvcometd::test {

// The outcome of one asynchronous call: how often its completion ran, the last error, and for a
// remote call the reply's channel and data.
struct outcome {
  int calls = 0;
  error err;
  std::string channel;
  std::string data;

  bool done() const { return calls > 0; }
  completion cb() {
    return [this](const error& e) {
      err = e;
      ++calls;
    };
  }
  call_completion call_cb() {
    return [this](const error& e, const message& reply) {
      err = e;
      channel = std::string(reply.channel);
      data = std::string(reply.data);
      ++calls;
    };
  }
};

// Bayeux frames for the tests that talk to a transport or a server without the client.
std::string handshake_frame(const std::string& connection_type = "long-polling",
                            const std::string& id = "1");
std::string connect_frame(const std::string& client_id, const std::string& connection_type,
                          int advice_timeout, const std::string& id);

// What a test server reports (blocking HTTP calls; they throw when the server cannot be reached).
// /control/stats of faye-server.js and cometd-server.js: clients, handshakes, connects,
// connectReplies, subscriptions.
nlohmann::json server_stats(server_process& srv);
// The subscribers of `pattern` the server counts (0 when none, -1 when it cannot be asked).
long server_subscribers(server_process& srv, const std::string& pattern);
// /control/seen: what network clients sent last (faye-server.js, cli-hostile.js).
nlohmann::json server_seen(server_process& srv);

// Every scenario on Faye's two transports.
inline peer pick_faye() { return GENERATE(faye_long_polling(), faye_websocket()); }
// Every scenario on each server's long-polling.
inline peer pick_long_polling() { return GENERATE(faye_long_polling(), cometd_long_polling()); }
// `script`'s server with the client's default transport preference (websocket first).
peer default_preference(const char* script);
// No server: the client's URL is the discard port of 127.0.0.1, where nothing listens.
peer unreachable();

// The library's log of the running test: while it lives, a failed assertion prints its tail (and
// `label`) on stderr.
class log_recorder : public log_capture {
 public:
  explicit log_recorder(std::string label = {});
  ~log_recorder();
  log_recorder(const log_recorder&) = delete;
  log_recorder& operator=(const log_recorder&) = delete;

  const std::string label;

 private:
  log_recorder* previous_;
};

// Owns a fault_proxy and closes it (running the loop) before it is destroyed.
class proxy_holder {
 public:
  proxy_holder() = default;
  ~proxy_holder() { shut(); }
  proxy_holder(const proxy_holder&) = delete;
  proxy_holder& operator=(const proxy_holder&) = delete;

  void open(test_loop& loop, int target_port);
  explicit operator bool() const { return proxy_ != nullptr; }
  fault_proxy* operator->() { return proxy_.get(); }
  fault_proxy& operator*() { return *proxy_; }
  // Closes the proxy and runs the loop until it is closed (idempotent).
  void shut();

 private:
  test_loop* loop_ = nullptr;
  std::unique_ptr<fault_proxy> proxy_;
};

// Whether the client talks to the server directly or through a fault_proxy (rig.proxy).
enum class route { direct, fault_proxy };

class client_rig {
 public:
  // Starts `which`'s server with `server_args` (none for unreachable()), and the proxy when
  // `via` asks for it.
  explicit client_rig(peer which, const std::vector<std::string>& server_args = {},
                      route via = route::direct);
  ~client_rig();
  client_rig(const client_rig&) = delete;
  client_rig& operator=(const client_rig&) = delete;

  // What the rig's clients start from: the peer's URL (through the proxy when there is one) and
  // connection types, connection_timeout 10 s, backoff 50 ms .. 500 ms, the rig's log. Behind the
  // proxy the knobs are short, so that faults are noticed quickly: connection_timeout 20 s,
  // max_network_delay 1 s, websocket_ping_interval 300 ms, websocket_connect_timeout 2 s.
  uvcometd::options options();

  // Makes a client (the first one is client(), whose transitions `states` records).
  uvcometd::client& start(const uvcometd::options& o);
  uvcometd::client& start() { return start(options()); }
  // The first client, made with options() if start() was not called.
  uvcometd::client& client();
  // Destroys client() without close() (a destroyed client runs no callback).
  void destroy_client();

  // Opens and waits for the outcome.
  error open_result(uvcometd::client& c);
  error open_result() { return open_result(client()); }
  // Opens; it must succeed.
  void open(uvcometd::client& c);
  void open() { open(client()); }

  // Subscribes with a handler recording into a `received` the rig owns, and waits for the
  // server's reply, which must be a success.
  received& subscribe(uvcometd::client& c, const std::string& channel,
                      subscription* handle = nullptr);
  received& subscribe(const std::string& channel, subscription* handle = nullptr) {
    return subscribe(client(), channel, handle);
  }
  // The same with the test's own handler.
  void subscribe(const std::string& channel, message_handler handler);
  // Subscribes recording into `into`; returns the server's reply.
  error subscribe_result(uvcometd::client& c, const std::string& channel, received& into,
                         subscription* handle = nullptr);
  error subscribe_result(const std::string& channel, received& into) {
    return subscribe_result(client(), channel, into);
  }
  // Unsubscribes client() and waits for the server's reply, which must be a success.
  void unsubscribe(subscription& handle);
  // Publishes on client() and waits for the completion; returns its error.
  error publish(const std::string& channel, const std::string& json);
  // Closes and waits for close's completion; the client must then be closed.
  void close(uvcometd::client& c);
  void close() { close(client()); }

  // Runs the loop until `s` was reported at or after transition `from`.
  bool wait_state(state s, std::size_t from,
                  std::chrono::milliseconds limit = std::chrono::seconds(15));
  // True when, since transition `mark`, the client was reconnecting and then connected.
  bool reconnected_since(std::size_t mark) const {
    return states.saw_then(state::reconnecting, state::connected, mark);
  }
  bool wait_reconnected(std::size_t mark,
                        std::chrono::milliseconds limit = std::chrono::seconds(15));

  // Runs the loop until the server's /control/stats satisfies `pred` (asked every 20 ms).
  bool wait_server(const std::function<bool(const nlohmann::json&)>& pred,
                   std::chrono::milliseconds limit = std::chrono::seconds(15));
  // ... until the server counts a subscriber of `pattern`.
  bool wait_subscribed(const std::string& pattern,
                       std::chrono::milliseconds limit = std::chrono::seconds(15));
  // ... until the server holds a /meta/connect it has not answered yet (it received more
  // connects than it answered).
  bool wait_connect_held(std::chrono::milliseconds limit = std::chrono::seconds(15));
  // Runs the loop until the proxy accepted a connection after the `before`-th.
  bool wait_accepted_after(std::size_t before,
                           std::chrono::milliseconds limit = std::chrono::seconds(10));

  const peer p;
  log_recorder log;
  std::unique_ptr<server_process> srv;  // null for unreachable()
  test_loop loop;
  proxy_holder proxy;     // set up for route::fault_proxy only
  state_recorder states;  // client()'s transitions

 private:
  error subscribe_with(uvcometd::client& c, const std::string& channel, message_handler handler,
                       subscription* handle);

  std::vector<std::unique_ptr<uvcometd::client>> clients_;
  std::deque<received> received_;
};

// Closes the loop; when a handle is left open, lists them on stderr (type, active, closing).
// Returns uv_loop_close's result.
int close_loop(test_loop& loop);

// Everything a transport reports, in order. The hooks run after the event is recorded, so that a
// test can act from inside a transport's callback.
struct transport_recorder : detail::transport_events {
  using time_point = std::chrono::steady_clock::time_point;
  struct frame {
    std::uint64_t request;
    std::string body;
    header_list headers;
    time_point at;
  };
  struct failure {
    std::uint64_t request;
    error err;
    time_point at;
  };
  struct down {
    error err;
    bool was_up;
    std::vector<std::uint64_t> unsent;
  };

  std::vector<frame> frames;
  std::vector<failure> failures;
  std::vector<down> downs;
  int ups = 0;
  // A test sets inside_api around its own calls into the transport: an event reported meanwhile
  // sets event_inside_api (events are never reported from inside a call).
  bool inside_api = false;
  bool event_inside_api = false;
  std::function<void(const frame&)> frame_hook;
  std::function<void(const failure&)> failure_hook;
  // After a frame or a failure (after frame_hook / failure_hook): its request, and which it was.
  // It may clear `frames` and `failures`.
  std::function<void(std::uint64_t request, bool is_frame)> report_hook;
  std::function<void()> up_hook;
  std::function<void()> down_hook;

  // The frame / failure reported for `request` (request/response transports), or null.
  const frame* frame_for(std::uint64_t request) const;
  const failure* failure_for(std::uint64_t request) const;
  // How many frames and failures `request` got (exactly one once answered).
  std::size_t reports(std::uint64_t request) const;
  // The failure's message for `request`, or "" (for INFO when a frame was expected).
  std::string why(std::uint64_t request) const;

  void on_frame(std::uint64_t request, std::string&& body, const header_list& headers) override;
  void on_request_failed(std::uint64_t request, const error& err) override;
  void on_up() override;
  void on_down(const error& err, bool was_up, const std::vector<std::uint64_t>& unsent) override;
};

// One loop, and transports made by `Factory` (a callable taking a transport_env, the transport's
// config and the transport_events to report to): `t`, reporting to `rec`, and any others a test
// adds. Each transport is another client's (its own task queue and cookie jar, a transport_kit)
// unless a test passes one of client(). The destructor closes every transport still there (its
// done must not run inside close()), then the kits, runs the loop dry and checks
// uv_loop_close() == 0.
template <class Factory>
class transport_rig {
 public:
  // Another transport of the rig with its own recorder.
  struct endpoint {
    transport_recorder rec;
    std::unique_ptr<detail::transport> t;
  };

  explicit transport_rig(Factory f = Factory{}) : make(std::move(f)) {}
  ~transport_rig() {
    // Unwinding from a failed assertion: destroy the transports (they close their handles).
    const bool unwinding = std::uncaught_exceptions() > 0;
    const auto finish = [&](std::unique_ptr<detail::transport>& tr) {
      if (tr && !unwinding) close(tr);
      tr.reset();
    };
    finish(t);
    for (auto& e : others) finish(e.t);
    kits.clear();
    CHECK(close_loop(loop) == 0);
  }
  transport_rig(const transport_rig&) = delete;
  transport_rig& operator=(const transport_rig&) = delete;

  // A new client's share (task queue, cookie jar) on the rig's loop.
  transport_kit& client() { return kits.emplace_back(loop.get()); }

  // Makes the rig's transport `t`, reporting to `rec` (for `owner`, else a client of its own).
  template <class Config>
  detail::transport& start(const Config& config, transport_kit* owner = nullptr) {
    t = make((owner ? *owner : client()).env(), config, rec);
    return *t;
  }
  // Makes another transport on the loop (for `owner`, else a client of its own).
  template <class Config>
  endpoint& add(const Config& config, transport_kit* owner = nullptr) {
    endpoint& e = others.emplace_back();
    e.t = make((owner ? *owner : client()).env(), config, e.rec);
    return e;
  }
  // t.send(...) with rec.inside_api set around the call: an event reported from inside it shows
  // in rec.event_inside_api.
  void send(std::uint64_t request, std::string body, std::chrono::milliseconds timeout,
            bool alone = false) {
    rec.inside_api = true;
    t->send(request, std::move(body), timeout, alone);
    rec.inside_api = false;
  }
  // Closes `tr`, waits for its done, and destroys it.
  void close(std::unique_ptr<detail::transport>& tr) {
    auto done = std::make_shared<bool>(false);
    tr->close([done] { *done = true; });
    CHECK_FALSE(*done);  // never synchronously
    CHECK(loop.run_until([&] { return *done; }));
    tr.reset();
  }
  // Every transport's close contract, on `t`: close() while closing and once closed runs its
  // done later (never inside the call), and always. Destroys `t`.
  void check_close_again() {
    bool first = false, while_closing = false, after = false;
    t->close([&] { first = true; });
    t->close([&] { while_closing = true; });
    CHECK_FALSE(first);
    CHECK_FALSE(while_closing);
    REQUIRE(run_until([&] { return first && while_closing; }));
    t->close([&] { after = true; });
    CHECK_FALSE(after);
    REQUIRE(run_until([&] { return after; }));
    t.reset();
  }
  bool run_until(const std::function<bool()>& pred,
                 std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    return loop.run_until(pred, limit);
  }

  test_loop loop;
  std::deque<transport_kit> kits;  // destroyed after the transports (explicitly, before the loop)
  Factory make;
  transport_recorder rec;
  std::unique_ptr<detail::transport> t;
  std::deque<endpoint> others;
};

}  // namespace uvcometd::test
