// The sans-I/O session (lib/session.*) driven by a scripted host: arbitrary sequences of API calls
// (open, subscribe, unsubscribe, publish, batches, pause/resume, reconnect_now, close), server
// frames built from fragments of the replies Faye and CometD really send (with ids matching what
// the session sent) and garbage, transport events (up, down with unsent requests, request failed,
// unusable frames), the timer, the deferred-work loop and the auth extension's answers. Every
// callback (completions, handlers, the state listener) may react re-entrantly: close(),
// reconnect_now(), unsubscribe(), publish(), subscribe(), pause/resume, batches, or throw.
//
// Invariants checked (issue 11, findings 14, 15, 16, 20, 21 broke them):
// - every accepted call completes exactly once (never twice), and all have completed once close()
//   is done and the deferred work is drained; a call refused synchronously never completes;
// - no handler runs after close() was called, after its unsubscribe(), or after its subscription
//   ended (refused, lost); a handler gets only messages its pattern matches (channel_matches), and
//   each message at most once;
// - only legal state transitions, never "connected" (nor a successful open()) without a clientId;
// - the host is never asked to send or arm a timer once it was told to close the transports; the
//   frames sent are JSON arrays, and connect, handshake and disconnect travel alone;
// - the memory sanitizers stay silent (use-after-free from re-entrant callbacks).
//
// Input: three configuration bytes, then a stream of operations (one byte each, plus the bytes
// its arguments take). Callbacks take their reactions from the other end of the input, one byte
// each when they run (0: no reaction), so the operations stay where they are whatever runs.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "channel.hpp"
#include "codec.hpp"
#include "fuzz_target.hpp"
#include "session/session.hpp"

namespace {

namespace d = uvcometd::detail;
using uvcometd::connection_type;
using uvcometd::errc;
using uvcometd::state;
using ms = std::chrono::milliseconds;

std::string state_name(state s) { return std::string(uvcometd::to_string(s)); }

// UVCOMETD_FUZZ_TRACE=1: what happens, one line each on stderr (to read a reproducer).
void trace(const std::string& line) {
  static const bool on = std::getenv("UVCOMETD_FUZZ_TRACE") != nullptr;
  if (on) std::fprintf(stderr, "  | %s\n", line.c_str());
}

std::string type_name(connection_type t) { return std::string(uvcometd::to_string(t)); }

bool legal(state from, state to) {
  switch (from) {
    case state::disconnected: return to == state::connecting || to == state::disconnecting;
    // The same state again: the listener learns of a transport change (websocket fallback).
    case state::connecting:
      return to == state::connecting || to == state::connected || to == state::failed ||
             to == state::disconnecting;
    case state::connected:
      return to == state::reconnecting || to == state::failed || to == state::disconnecting;
    case state::reconnecting:
      return to == state::reconnecting || to == state::connected || to == state::failed ||
             to == state::disconnecting;
    case state::failed: return to == state::disconnecting;
    case state::disconnecting: return to == state::closed;
    case state::closed: return false;
  }
  return false;
}

const char* const patterns[] = {"/a",     "/a/b",    "/a/*",   "/a/**",      "/**",    "/*",
                                "/a/b/*", "/a/b/**", "/x/y",   "/service/x", "/a/b/c", "/meta/x",
                                "/a/",    "",        "/a/*/b", "/meta"};
const char* const data_channels[] = {"/a",    "/a/b",  "/a/b/c", "/a/*",       "/a/**",  "/",
                                     "/a/b/", "/x/y",  "/b",     "/service/x", "/a/b/*", "/meta/x",
                                     "",      "/a//b", "/**",    "/a/b/c/d"};
const char* const publish_channels[] = {"/a",   "/a/b",    "/x/y", "/service/x",
                                        "/a/*", "/meta/x", "",     "/b"};
const char* const errors[] = {"401::Unknown client",
                              "402::session_unknown",
                              "403::Forbidden",
                              "400::bad",
                              "401:nosuchclient:Unknown client",
                              "500:x:oops",
                              "",
                              "nonsense"};
const char* const advices[] = {
    "",
    R"({"reconnect":"retry","interval":0,"timeout":3000})",
    R"({"reconnect":"handshake"})",
    R"({"reconnect":"none"})",
    R"({"reconnect":"retry","interval":1000})",
    R"({"reconnect":"handshake","interval":0})",
    R"({"timeout":0})",
    R"({"interval":86400000})",
    R"("nonsense")",
    R"({"reconnect":"retry","timeout":30000,"interval":0,"multiple-clients":true})"};
const char* const types_offered[] = {R"(["long-polling","websocket"])", R"(["long-polling"])",
                                     R"(["websocket"])", R"([])",
                                     R"(["websocket","long-polling","callback-polling"])"};

// One message the session sent: what the server needs to answer it.
struct sent_message {
  std::string channel, id, subscription;
  bool answered = false;
};

struct sent_frame {
  connection_type type;
  std::uint64_t request;
  std::vector<sent_message> messages;
  bool open = true;  // long-polling: no response yet; websocket: some message unanswered
};

struct completion_record {
  std::string what;
  int calls = 0;
  bool refused = false;      // the call returned an error: must never complete
  bool after_close = false;  // created once close() had completed
  bool is_open = false;
  bool is_close = false;  // several close() calls all complete at the end
  std::uint64_t sub = 0;  // subscribe: the local subscription it reports on
};

struct sub_record {
  std::string pattern;
  bool gone = false;    // unsubscribed, refused or lost: its handler must not run any more
  std::set<long> seen;  // the generated messages it got ("n" of their data)
};

class driver;

class fuzz_host final : public d::session_host {
 public:
  explicit fuzz_host(driver& dr) : dr_(dr) {}
  d::clock::time_point now() override { return now_; }
  void send(connection_type t, std::uint64_t request, const d::outgoing_batch& batch, ms timeout,
            bool alone) override;
  void abort(connection_type t) override;
  void arm_timer(ms delay) override {
    FUZZ_CHECK(delay.count() >= 0, "a negative timer delay");
    FUZZ_CHECK(!closing, "a timer armed after close_transports()");
    deadline = now_ + delay;
  }
  void disarm_timer() override { deadline.reset(); }
  void request_run() override { run_requested = true; }
  void close_transports() override {
    FUZZ_CHECK(!closing, "close_transports() twice");
    closing = true;
    closed_pending = true;
    drop(connection_type::long_polling);
    drop(connection_type::websocket);
  }
  void state_changed(state s, connection_type t, const uvcometd::error& why) override;
  void authenticate() override { ++auth_pending; }

  void drop(connection_type t) {
    for (auto& f : frames) {
      if (f.type == t) f.open = false;
    }
    if (t == connection_type::websocket) ws = ws_state::closed;
  }

  d::clock::time_point now_ = d::clock::time_point{} + std::chrono::hours(1000);
  std::optional<d::clock::time_point> deadline;
  bool run_requested = false;
  bool closing = false;         // close_transports() was called
  bool closed_pending = false;  // on_transports_closed() is due
  int auth_pending = 0;
  std::vector<sent_frame> frames;
  enum class ws_state { closed, opening, up } ws = ws_state::closed;
  std::vector<std::uint64_t> ws_requests;  // sent on the current websocket connection

 private:
  driver& dr_;
};

class driver {
 public:
  driver(const std::uint8_t* data, std::size_t size) : in_(data, size), host_(*this) {}

  void run() {
    configure();
    s_ = std::make_unique<d::session>(host_, cfg_);
    s_->on_subscription_lost([this](std::uint64_t id, const std::string&, const uvcometd::error&) {
      FUZZ_CHECK(!close_done_, "on_subscription_lost after close completed");
      const auto it = subs_.find(id);
      FUZZ_CHECK(it != subs_.end(), "a subscription lost that was never made");
      it->second.gone = true;
      react();
    });
    for (int ops = 0; !in_.empty() && ops < 2000; ++ops) step();
    finish();
  }

  // --- called by the host and the callbacks ---
  void on_state(state s, connection_type t) {
    trace(std::string("state ") + state_name(s) + " over " + type_name(t));
    FUZZ_CHECK(!close_done_, std::string("state ") + state_name(s) + " after close completed");
    FUZZ_CHECK(legal(state_, s),
               std::string("illegal transition ") + state_name(state_) + " -> " + state_name(s));
    state_ = s;
    if (s == state::connected) {
      was_connected_ = true;
      FUZZ_CHECK(!s_->client_id().empty(), "connected with an empty clientId");
    }
    react();
  }
  void on_send(const sent_frame& f, bool alone) {
    FUZZ_CHECK(!host_.closing, "a frame sent after close_transports()");
    FUZZ_CHECK(!f.messages.empty(), "an empty frame sent");
    const auto& ch = f.messages[0].channel;
    const bool must_be_alone =
        ch == "/meta/connect" || ch == "/meta/handshake" || ch == "/meta/disconnect";
    FUZZ_CHECK(alone == must_be_alone, "alone=" + std::to_string(alone) + " for " + ch);
    if (must_be_alone) FUZZ_CHECK(f.messages.size() == 1, ch + " sent with other messages");
  }

 private:
  // ---------------------------------------------------------------------------------------
  void configure() {
    const std::uint8_t a = in_.byte(), b = in_.byte(), c = in_.byte();
    static const std::vector<connection_type> type_sets[] = {
        {connection_type::websocket, connection_type::long_polling},
        {connection_type::long_polling},
        {connection_type::websocket},
        {connection_type::long_polling, connection_type::websocket}};
    cfg_.connection_types = type_sets[a & 3];
    cfg_.has_auth = (a & 4) != 0;
    cfg_.queue_while_reconnecting = (a & 8) == 0;
    cfg_.notify_delivered = (a & 16) != 0;
    static const std::size_t pendings[] = {100, 1, 2, 0};
    cfg_.max_pending_count = pendings[(a >> 5) & 3];
    static const std::size_t batches[] = {1024, 1, 2, 3};
    cfg_.dispatch_batch = batches[b & 3];
    static const std::size_t queued[] = {1000, 0, 1, 3};
    cfg_.max_queued_messages = queued[(b >> 2) & 3];
    cfg_.websocket_failures_before_fallback = (b >> 4) & 3;
    static const ms timeouts[] = {ms(10000), ms(0), ms(500), ms(60000)};
    cfg_.connection_timeout = timeouts[c & 3];
    static const ms delays[] = {ms(10000), ms(100), ms(1), ms(30000)};
    cfg_.max_network_delay = delays[(c >> 2) & 3];
    cfg_.disconnect_timeout = delays[(c >> 4) & 3];
    cfg_.websocket_connect_timeout = delays[(c >> 6) & 3];
    cfg_.random_seed = 1;
  }

  // A completion that checks it runs once, then reacts.
  d::completion_fn completion(std::string what, std::size_t* index = nullptr) {
    records_.emplace_back();
    const std::size_t i = records_.size() - 1;
    records_[i].what = std::move(what);
    records_[i].after_close = close_done_;
    if (index) *index = i;
    return [this, i](const uvcometd::error& err) {
      completion_record& r = records_[i];
      trace("completion of " + r.what + ": " + (err ? err.to_string() : "ok"));
      ++r.calls;
      FUZZ_CHECK(r.calls == 1, "completion of " + r.what + " ran twice");
      FUZZ_CHECK(!r.refused, "completion of " + r.what + " ran although the call was refused");
      FUZZ_CHECK(!close_done_ || r.after_close || r.is_close,
                 "completion of " + r.what + " after close completed");
      if (r.is_open && !err) {
        // Connected first (a listener may have moved on since, e.g. with reconnect_now()).
        FUZZ_CHECK(was_connected_, "open() succeeded without the state ever being connected");
        FUZZ_CHECK(s_->current_state() != state::connected || !s_->client_id().empty(),
                   "open() succeeded connected with an empty clientId");
      }
      if (r.sub != 0 && err) subs_[r.sub].gone = true;  // a failed subscribe ends it
      react();
    };
  }

  void refused(std::size_t i, std::error_code ec) {
    if (!ec) return;
    FUZZ_CHECK(records_[i].calls == 0, "the completion of " + records_[i].what +
                                           " ran although the call returned " + ec.message());
    records_[i].refused = true;
  }

  // The subscription id is known only once subscribe() returns: the handler reads it from `slot`.
  d::handler_fn handler(std::shared_ptr<std::uint64_t> slot) {
    return [this, slot](const uvcometd::message& m) {
      const std::uint64_t id = *slot;
      trace("handler of subscription " + std::to_string(id) + " gets " + std::string(m.json));
      FUZZ_CHECK(id != 0, "a handler ran inside subscribe()");
      FUZZ_CHECK(!close_called_,
                 "a handler ran after close() (channel " + std::string(m.channel) + ")");
      auto& rec = subs_[id];
      FUZZ_CHECK(!rec.gone, "the handler of " + rec.pattern + " ran after its subscription ended");
      FUZZ_CHECK(d::channel_matches(rec.pattern, m.channel),
                 "the handler of " + rec.pattern + " got a message on " + std::string(m.channel));
      const long n = generated_number(m.data);
      if (n >= 0) {
        FUZZ_CHECK(rec.seen.insert(n).second, "the handler of " + rec.pattern +
                                                  " got the message on " + std::string(m.channel) +
                                                  " twice");
      }
      react();
    };
  }

  // The "n" of a generated data message ({"n":K}), or -1.
  static long generated_number(std::string_view data) {
    constexpr std::string_view prefix = "{\"n\":";
    if (data.substr(0, prefix.size()) != prefix || data.back() != '}') return -1;
    long n = 0;
    for (std::size_t i = prefix.size(); i + 1 < data.size(); ++i) {
      if (data[i] < '0' || data[i] > '9') return -1;
      n = n * 10 + (data[i] - '0');
    }
    return n;
  }

  // --- the API calls, from the script or from callbacks ---
  void call_open() {
    std::size_t i;
    auto cb = completion("open", &i);
    records_[i].is_open = true;
    refused(i, s_->open(std::move(cb)));
  }
  void call_subscribe(std::size_t which) {
    const std::string pattern = patterns[which % std::size(patterns)];
    std::size_t i;
    auto cb = completion("subscribe " + pattern, &i);
    std::uint64_t id = 0;
    auto slot = std::make_shared<std::uint64_t>(0);
    auto h = handler(slot);
    const auto ec = s_->subscribe(pattern, std::move(h), std::move(cb), &id);
    if (!ec) {
      FUZZ_CHECK(id != 0 && subs_.count(id) == 0, "subscribe() returned a used id");
      *slot = id;
      subs_[id].pattern = pattern;
      records_[i].sub = id;
      sub_ids_.push_back(id);
    }
    refused(i, ec);
  }
  void call_unsubscribe(std::size_t which) {
    std::uint64_t id = sub_ids_.empty() ? 12345 : sub_ids_[which % sub_ids_.size()];
    std::size_t i;
    auto cb = completion("unsubscribe " + std::to_string(id), &i);
    const auto ec = s_->unsubscribe(id, std::move(cb));
    if (!ec) subs_[id].gone = true;
    refused(i, ec);
  }
  void call_publish(std::size_t which) {
    const std::string channel = publish_channels[which % std::size(publish_channels)];
    std::size_t i;
    const std::string data = (which & 8) ? "{not json" : "{\"p\":" + std::to_string(which) + "}";
    if (which & 16) {
      // A remote call: the same exactly-once rule, with its own timeout (0: refused).
      auto cb = completion("remote call " + channel, &i);
      const ms timeout((which & 32) ? 0 : 50 * static_cast<int>(which & 7));
      refused(i,
              s_->remote_call(channel.size() > 1 ? channel.substr(1) : channel, data, timeout,
                              [cb = std::move(cb)](const uvcometd::error& err,
                                                   const uvcometd::message&) mutable { cb(err); }));
      return;
    }
    auto cb = completion("publish " + channel, &i);
    refused(i, s_->publish(channel, data, std::move(cb)));
  }
  void call_close() {
    close_called_ = true;
    std::size_t i;
    auto cb = completion("close", &i);
    records_[i].is_close = true;
    // The completion of a close() called before the session was closed ends its life: nothing
    // may run after it. (A close() once closed is refused synchronously, like uv_close().)
    const bool ends = state_ != state::closed;
    auto wrapped = [this, ends, cb = std::move(cb)](const uvcometd::error& err) mutable {
      struct mark {
        bool& done;
        bool ends;
        ~mark() { done = done || ends; }  // also when the reaction throws
      } m{close_done_, ends};
      cb(err);
    };
    refused(i, s_->close(std::move(wrapped)));
  }

  // A callback's re-entrant reaction, taken from the input.
  void react() {
    if (depth_ >= 6) return;
    ++depth_;
    const std::uint8_t r = in_.back_byte();
    static const char* const names[] = {
        "",      "close()", "reconnect_now()", "unsubscribe()", "publish()",  "subscribe()",
        "throw", "pause()", "resume()",        "start_batch()", "end_batch()"};
    if (r % 32 != 0 && r % 32 <= 10) trace(std::string("  reacts: ") + names[r % 32]);
    switch (r % 32) {
      case 1: call_close(); break;
      case 2: (void)s_->reconnect_now(); break;
      case 3: call_unsubscribe(r >> 5); break;
      case 4: call_publish(r >> 5); break;
      case 5: call_subscribe(r >> 5); break;
      case 6: --depth_; throw std::runtime_error("a callback threw");
      case 7: s_->pause(); break;
      case 8: s_->resume(); break;
      case 9: s_->start_batch(); break;
      case 10: (void)s_->end_batch(); break;
      default: break;  // 0 and 11-31: none
    }
    --depth_;
  }

  // --- the server's side ---
  std::string data_message(std::uint8_t v) {
    std::string o = R"({"channel":)";
    o += '"';
    o += data_channels[v % std::size(data_channels)];
    o += R"(","data":{"n":)" + std::to_string(next_n_++) + "}";
    if (v & 16) o += R"(,"id":")" + std::to_string(1 + (v >> 5)) + '"';  // may collide with ours
    if ((v & 0xC0) == 0xC0) o += R"(,"advice":{"reconnect":"handshake","interval":86400000})";
    return o + "}";
  }

  std::string reply_object(const sent_message& m) {
    const std::uint8_t v = in_.byte();
    const std::uint8_t a = in_.byte();
    std::string o = "{";
    if ((v & 7) == 7) {
      o += R"("id":)" + m.id + ",";  // the id as a number
    } else {
      o += R"("id":")" + m.id + R"(",)";
    }
    o += R"("channel":")" + ((v & 0x18) == 0x18 ? std::string("/meta/other") : m.channel) + '"';
    const int outcome = (v >> 5) & 7;  // 0-4 success, 5 refusal, 6 refusal without text, 7 none
    if (outcome <= 4) {
      o += R"(,"successful":true)";
    } else if (outcome == 5) {
      o += R"(,"successful":false,"error":")" + std::string(errors[a % std::size(errors)]) + '"';
    } else if (outcome == 6) {
      o += R"(,"successful":false)";
    }
    if (m.channel == "/meta/handshake" && outcome <= 4) {
      if ((a & 0x30) != 0x30) o += R"(,"clientId":"c)" + std::to_string(next_client_++) + '"';
      o += R"(,"version":"1.0","supportedConnectionTypes":)";
      o += types_offered[(a >> 6) % std::size(types_offered)];
    } else if (m.channel == "/meta/connect" && (a & 8)) {
      o += R"(,"clientId":"c0")";
    }
    if (!m.subscription.empty()) o += R"(,"subscription":")" + m.subscription + '"';
    const char* adv = advices[(a >> 3) % std::size(advices)];
    if (*adv) o += std::string(R"(,"advice":)") + adv;
    return o + "}";
  }

  // Answers some of the open messages of a frame the session sent, with data messages around.
  void answer() {
    std::vector<std::size_t> open;
    for (std::size_t i = 0; i < host_.frames.size(); ++i) {
      if (host_.frames[i].open) open.push_back(i);
    }
    if (open.empty()) return;
    sent_frame& f = host_.frames[open[in_.pick(open.size())]];
    const std::uint8_t mask = in_.byte();
    const std::uint8_t around = in_.byte();
    std::string body = "[";
    auto add = [&](const std::string& o) {
      if (body.size() > 1) body += ',';
      body += o;
    };
    for (int k = 0; k < (around & 3); ++k) add(data_message(in_.byte()));
    const bool ws = f.type == connection_type::websocket;
    if (ws && host_.ws != fuzz_host::ws_state::up) return;
    for (std::size_t i = 0; i < f.messages.size(); ++i) {
      auto& m = f.messages[i];
      if (m.answered || (i < 8 && !((mask >> i) & 1) && f.messages.size() > 1)) continue;
      m.answered = true;
      add(reply_object(m));
    }
    for (int k = 0; k < ((around >> 2) & 3); ++k) add(data_message(in_.byte()));
    body += ']';
    if (ws) {
      f.open = std::any_of(f.messages.begin(), f.messages.end(),
                           [](const sent_message& m) { return !m.answered; });
    } else {
      f.open = false;  // one HTTP response per request
    }
    trace("frame for #" + std::to_string(f.request) + ": " + body);
    s_->on_frame(f.type, ws ? 0 : f.request, std::move(body));
  }

  // Data messages (and maybe stray replies) pushed on the websocket.
  void push() {
    if (host_.ws != fuzz_host::ws_state::up) return;
    std::string body = "[";
    const int n = 1 + in_.byte() % 4;
    for (int k = 0; k < n; ++k) {
      if (k) body += ',';
      body += data_message(in_.byte());
    }
    body += ']';
    trace("pushed: " + body);
    s_->on_frame(connection_type::websocket, 0, std::move(body));
  }

  sent_frame* pick_open(bool lp_only) {
    std::vector<std::size_t> open;
    for (std::size_t i = 0; i < host_.frames.size(); ++i) {
      const auto& f = host_.frames[i];
      if (f.open && (!lp_only || f.type == connection_type::long_polling)) open.push_back(i);
    }
    if (open.empty()) return nullptr;
    return &host_.frames[open[in_.pick(open.size())]];
  }

  uvcometd::error failure(std::uint8_t v) {
    static const int statuses[] = {401, 403, 404, 408, 429, 500, 502, 400};
    switch (v % 4) {
      case 0: return uvcometd::error{make_error_code(errc::transport_error), "connection reset"};
      case 1: return uvcometd::error{make_error_code(errc::timeout), "no answer"};
      case 2: {
        uvcometd::error e{make_error_code(errc::http_error), "HTTP error"};
        e.http_status = statuses[(v >> 2) % std::size(statuses)];
        return e;
      }
      default: return uvcometd::error{make_error_code(errc::bad_response), "not JSON"};
    }
  }

  void step() {
    const std::uint8_t op = in_.byte();
    static const char* const names[] = {
        "open",           "subscribe",    "unsubscribe",    "publish",
        "start_batch",    "end_batch",    "pause",          "resume",
        "reconnect_now",  "close",        "answer",         "answer",
        "answer",         "answer",       "answer",         "push",
        "garbage",        "websocket up", "websocket down", "request failed",
        "request failed", "timer",        "timer",          "advance clock",
        "loop",           "loop",         "loop",           "transports closed",
        "authenticated",  "bad frame",    "resend",         "dropped"};
    trace(std::string("op ") + names[op % 32] + " (" + std::to_string(op) + ")");
    switch (op % 32) {
      case 0: call_open(); break;
      case 1: call_subscribe(in_.byte()); break;
      case 2: call_unsubscribe(in_.byte()); break;
      case 3: call_publish(in_.byte()); break;
      case 4: s_->start_batch(); break;
      case 5: (void)s_->end_batch(); break;
      case 6: s_->pause(); break;
      case 7: s_->resume(); break;
      case 8: (void)s_->reconnect_now(); break;
      case 9: call_close(); break;
      case 10:
      case 11:
      case 12:
      case 13:
      case 14: answer(); break;
      case 15: push(); break;
      case 16: {  // garbage, on the websocket or as a long-polling response
        std::string body = in_.bytes(48);
        if (op & 0x20) {
          if (host_.ws == fuzz_host::ws_state::up)
            s_->on_frame(connection_type::websocket, 0, std::move(body));
        } else if (auto* f = pick_open(true)) {
          f->open = false;
          s_->on_frame(f->type, f->request, std::move(body));
        }
        break;
      }
      case 17:
        if (host_.ws == fuzz_host::ws_state::opening) {
          host_.ws = fuzz_host::ws_state::up;
          s_->on_transport_up(connection_type::websocket);
        }
        break;
      case 18: {  // the websocket connection goes away
        if (host_.ws == fuzz_host::ws_state::closed) break;
        const bool was_up = host_.ws == fuzz_host::ws_state::up;
        const std::uint8_t bits = in_.byte();
        std::vector<std::uint64_t> unsent;
        for (std::size_t i = 0; i < host_.ws_requests.size(); ++i) {
          if (!was_up || ((bits >> (i % 8)) & 1)) unsent.push_back(host_.ws_requests[i]);
        }
        uvcometd::error err = failure(in_.byte());
        host_.drop(connection_type::websocket);
        host_.ws_requests.clear();
        s_->on_transport_down(connection_type::websocket, err, was_up, unsent);
        break;
      }
      case 19:
      case 20: {  // a request fails
        auto* f = pick_open(false);
        if (!f) break;
        f->open = false;
        s_->on_request_failed(f->type, f->request, failure(in_.byte()));
        break;
      }
      case 21:
      case 22:  // the timer fires
        if (host_.deadline) {
          if (*host_.deadline > host_.now_) host_.now_ = *host_.deadline;
          host_.deadline.reset();
          s_->on_timer();
        }
        break;
      case 23: host_.now_ += ms(in_.word()); break;
      case 24:
      case 25:
      case 26: loop(); break;
      case 27:
        if (host_.closed_pending) {
          host_.closed_pending = false;
          s_->on_transports_closed();
        }
        break;
      case 28:
        if (host_.auth_pending > 0) {
          --host_.auth_pending;
          uvcometd::error err;
          if (op & 0x20) err = uvcometd::error{make_error_code(errc::authentication_failed), "no"};
          s_->on_authenticated(err);
        }
        break;
      case 29: {  // an unusable frame (a decoder or an incoming extension failed)
        const uvcometd::error err{make_error_code(errc::extension_error), "extension failed"};
        if (op & 0x20) {
          if (host_.ws == fuzz_host::ws_state::up)
            s_->on_bad_frame(connection_type::websocket, 0, err);
        } else if (auto* f = pick_open(true)) {
          f->open = false;
          s_->on_bad_frame(f->type, f->request, err);
        }
        break;
      }
      case 30: {  // an incoming extension asks for a message to be sent again
        auto* f = pick_open(false);
        if (!f) break;
        auto& m = f->messages[in_.pick(f->messages.size())];
        if (m.answered) break;
        if (s_->resend(std::stoull(m.id))) m.answered = true;  // its reply is ignored from now on
        break;
      }
      case 31: {  // an outgoing extension dropped a message from its frame
        auto* f = pick_open(false);
        if (!f) break;
        auto& m = f->messages[in_.pick(f->messages.size())];
        if (m.answered) break;
        m.answered = true;
        s_->on_dropped(f->request, std::stoull(m.id),
                       uvcometd::error{make_error_code(errc::dropped_by_extension), "dropped"});
        break;
      }
    }
  }

  // One loop iteration's deferred work, repeated while the session asks for more.
  void loop() {
    for (int guard = 0; guard < 100 && host_.run_requested; ++guard) {
      host_.run_requested = false;
      s_->run_deferred();
    }
  }

  // close(), then run the loop until the session is closed: everything must have completed.
  void finish() {
    depth_ = 100;  // no more reactions: the input is spent
    if (state_ != state::closed) call_close();
    for (int guard = 0; guard < 100000; ++guard) {
      if (host_.run_requested) {
        host_.run_requested = false;
        s_->run_deferred();
      } else if (host_.closed_pending) {
        host_.closed_pending = false;
        s_->on_transports_closed();
      } else if (host_.deadline) {
        if (*host_.deadline > host_.now_) host_.now_ = *host_.deadline;
        host_.deadline.reset();
        s_->on_timer();
      } else {
        break;
      }
    }
    FUZZ_CHECK(s_->current_state() == state::closed,
               std::string("close() never finished: the session is ") +
                   state_name(s_->current_state()) + " with nothing left to run");
    for (const auto& r : records_) {
      if (r.refused) continue;
      FUZZ_CHECK(r.calls == 1, "the completion of " + r.what + " never ran");
    }
  }

  uvcometd_fuzz::input in_;
  fuzz_host host_;
  d::session_config cfg_;
  std::unique_ptr<d::session> s_;
  std::deque<completion_record> records_;
  std::map<std::uint64_t, sub_record> subs_;
  std::vector<std::uint64_t> sub_ids_;
  state state_ = state::disconnected;
  bool close_called_ = false;
  bool close_done_ = false;
  bool was_connected_ = false;
  int depth_ = 0;
  long next_n_ = 0;
  long next_client_ = 1;
};

void fuzz_host::send(connection_type t, std::uint64_t request, const d::outgoing_batch& batch,
                     ms timeout, bool alone) {
  (void)timeout;
  const std::string frame = batch.encode();
  trace(std::string("sent over ") + type_name(t) + " #" + std::to_string(request) + ": " + frame);
  sent_frame f{t, request, {}, true};
  d::decoded_frame df;
  const auto err = d::decode_frame(frame, df);
  FUZZ_CHECK(!err && frame.front() == '[',
             "the session sent a frame that is not a message array: " + frame);
  for (const auto& m : df.messages) {
    f.messages.push_back(
        {std::string(m.channel), std::string(m.id), std::string(m.subscription), false});
  }
  dr_.on_send(f, alone);
  if (t == connection_type::websocket) {
    if (ws == ws_state::closed) ws = ws_state::opening;
    ws_requests.push_back(request);
  }
  frames.push_back(std::move(f));
}

void fuzz_host::abort(connection_type t) {
  drop(t);
  if (t == connection_type::websocket) ws_requests.clear();
}

void fuzz_host::state_changed(state s, connection_type t, const uvcometd::error& why) {
  (void)why;
  dr_.on_state(s, t);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  driver dr(data, size);
  dr.run();
  return 0;
}
