// The Bayeux state machine. It does no I/O: it takes events (user calls, frames, request
// failures, timer expiry, the host's clock) and emits actions through session_host (send this
// frame on that transport, arm the timer, run me again soon, the state changed). It includes no
// uv, curl or lws header, so unit tests drive it with a scripted host and a fake clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "codec.hpp"
#include "uvcometd/error.hpp"
#include "uvcometd/message.hpp"
#include "uvcometd/options.hpp"

namespace uvcometd::detail {

using clock = std::chrono::steady_clock;
using completion_fn = std::function<void(const error&)>;
using handler_fn = std::function<void(const message&)>;

// What the session asks of its environment (the client on libuv, or a test script).
class session_host {
 public:
  virtual ~session_host() = default;
  virtual clock::time_point now() = 0;
  // Sends one frame on the transport of type `t`. The outcome comes back through
  // session::on_frame / on_request_failed (request/response transports) or on_frame(…, 0, …) /
  // on_transport_down (stream transports). `timeout` is the request's whole deadline.
  // `alone`: the frame must travel by itself (connect, handshake, disconnect); others may be
  // merged by stream transports.
  virtual void send(connection_type t, std::uint64_t request, std::string&& frame,
                    std::chrono::milliseconds timeout, bool alone) = 0;
  // Drops every exchange in flight on `t` without reporting them (retries, close).
  virtual void abort(connection_type t) = 0;
  // Arms the session's single timer (replacing any previous arming); session::on_timer on expiry.
  virtual void arm_timer(std::chrono::milliseconds delay) = 0;
  virtual void disarm_timer() = 0;
  // Asks for session::run_deferred() soon, on a later loop iteration, not from inside this call.
  virtual void request_run() = 0;
  // About to use transport `t` after the handshake ran on `from` (e.g. copy cookies over).
  virtual void prepare_transport(connection_type t, connection_type from) { (void)t, (void)from; }
  // Stream transports: stop/resume reading (backpressure of the pending buffer).
  virtual void pause_receive(connection_type t, bool paused) { (void)t, (void)paused; }
  // The session is done with the network: close every transport, then call
  // session::on_transports_closed().
  virtual void close_transports() = 0;
  virtual void state_changed(state s, connection_type t, const error& why) = 0;
  // Asks the auth extension for fresh credentials; the answer comes back through
  // session::on_authenticated (never from inside this call). Only called when
  // session_config::has_auth.
  virtual void authenticate() {}
  // A data message was handed to every matching handler (session_config::notify_delivered).
  virtual void delivered(const message& msg) { (void)msg; }
  virtual void log(log_level level, std::string_view text) { (void)level, (void)text; }
};

// The part of options the session uses, plus the few knobs tests need.
struct session_config {
  std::vector<connection_type> connection_types{connection_type::websocket,
                                                connection_type::long_polling};
  std::chrono::milliseconds connection_timeout{10000};
  std::size_t max_pending_count = 100;
  std::string handshake_ext;
  std::chrono::milliseconds max_network_delay{10000};
  std::chrono::milliseconds backoff_initial{250};
  std::chrono::milliseconds backoff_max{30000};
  double backoff_jitter = 0.5;
  std::chrono::milliseconds disconnect_timeout{2000};
  std::function<std::chrono::milliseconds(unsigned, std::chrono::milliseconds)> reconnect_delay;
  bool queue_while_reconnecting = true;
  std::size_t max_queued_messages = 1000;
  unsigned websocket_failures_before_fallback = 3;
  std::chrono::milliseconds websocket_connect_timeout{10000};
  std::uint64_t random_seed = 0;  // 0: seeded from the clock
  // An auth extension is configured: authentication failures call host.authenticate().
  bool has_auth = false;
  // Tell the host of every dispatched message (extensions want to know).
  bool notify_delivered = false;
  // Messages handed to handlers per run_deferred() before yielding to the loop.
  std::size_t dispatch_batch = 1024;
};

class session {
 public:
  session(session_host& host, session_config config);
  ~session();
  session(const session&) = delete;
  session& operator=(const session&) = delete;

  // --- user calls (the client's public API) ---
  std::error_code open(completion_fn done);
  std::error_code subscribe(std::string_view channel, handler_fn on_message, completion_fn done,
                            std::uint64_t* sub_id);
  std::error_code unsubscribe(std::uint64_t sub_id, completion_fn done);
  std::error_code publish(std::string_view channel, std::string_view json_data,
                          completion_fn done);
  // client::start_batch / end_batch: while a batch is open, flush() holds the queue.
  void start_batch() noexcept { ++batch_depth_; }
  bool end_batch();
  void close(completion_fn done);
  // Drops the current connection and re-establishes the session at once (network change).
  std::error_code reconnect_now();
  // Called when the server refuses to restore a subscription after a re-handshake; the
  // subscription is gone afterwards.
  void on_subscription_lost(std::function<void(std::uint64_t, const std::string&, const error&)> f) {
    subscription_lost_ = std::move(f);
  }
  void pause() noexcept;
  void resume();
  // Forgets every user callback (the client object is being destroyed): nothing runs any more.
  void silence() noexcept;
  // The client object is gone while closing: stop waiting for the /meta/disconnect reply and
  // close the transports now.
  void abandon();

  std::size_t pending_count() const noexcept { return pending_count_; }
  state current_state() const noexcept { return state_; }
  connection_type current_type() const noexcept { return type_; }
  const std::string& client_id() const noexcept { return client_id_; }

  // --- events from the host ---
  void on_frame(connection_type t, std::uint64_t request, std::string&& body);
  void on_request_failed(connection_type t, std::uint64_t request, const error& err);
  void on_transport_up(connection_type t);
  // `unsent`: requests whose frames never left (sent again on the next connection).
  void on_transport_down(connection_type t, const error& err, bool was_up,
                         const std::vector<std::uint64_t>& unsent = {});
  void on_timer();
  void run_deferred();
  void on_transports_closed();
  // A frame that could not be used (a frame decoder or an incoming extension failed): a
  // request's exchange fails with `err`; a stream connection is dropped.
  void on_bad_frame(connection_type t, std::uint64_t request, const error& err);
  // An outgoing extension removed the message `id` from the frame of `request`.
  void on_dropped(std::uint64_t request, std::string_view id, const error& err);
  // An incoming extension asked to send again the message that the reply with `id` answers.
  // True when accepted (a publish, subscribe or unsubscribe awaiting its reply, not resent
  // before): the message is queued again and its reply must be ignored.
  bool resend(std::string_view id);
  // True while `request` is awaited (an extension still holding its frame may send it).
  bool in_flight(std::uint64_t request) const noexcept;
  // The auth extension's authenticate() finished.
  void on_authenticated(const error& err);

 private:
  enum class kind : std::uint8_t { handshake, connect, subscribe, unsubscribe, publish, disconnect };

  struct outgoing {
    explicit outgoing(kind kk) : k(kk) {}
    kind k;
    std::uint64_t id = 0;  // assigned when encoded
    std::string channel;
    std::string payload;   // publish: data JSON; subscribe/unsubscribe: the subscription
    completion_fn done;
    std::uint64_t request = 0;  // the request that carried it
    std::uint64_t epoch = 0;    // handshake generation it belongs to
    bool first_connect = false;
    bool resubscribe = false;
    bool resent = false;        // an extension had it sent again once already
    bool auth_retried = false;  // sent again once after authenticate()
  };

  struct in_flight_request {
    connection_type type = connection_type::long_polling;
    std::vector<std::uint64_t> ids;  // messages sent in it, answered or not
    std::size_t remaining = 0;       // stream transports: replies still expected
    // Stream transports: when its replies are given up (request/response transports time
    // their exchanges out themselves).
    std::optional<clock::time_point> deadline;
    std::chrono::milliseconds timeout{0};
  };

  struct local_sub {
    std::uint64_t id;
    std::string pattern;
    handler_fn handler;
    completion_fn done;  // until the server answered
    bool alive = true;
  };

  struct pattern_entry {
    std::vector<std::shared_ptr<local_sub>> subs;
    bool server_subscribed = false;
    bool in_flight = false;
    std::vector<completion_fn> unsub_waiters;
  };

  // A received frame with data messages not yet dispatched: its text, where the walk stands,
  // and how many data messages are left. Nothing is kept per message: each is read again from
  // the text when its turn comes, so a frame costs its text (issue: a 15 MiB frame of tiny
  // messages must not cost ten times that).
  struct pending_frame {
    std::shared_ptr<const std::string> text;  // shared: a handler's views outlive a close()
    frame_reader::cursor at;
    std::size_t remaining = 0;
  };

  // transitions and sending
  bool active() const noexcept;
  bool allows(connection_type t) const noexcept;
  connection_type handshake_type() const noexcept;
  void set_state(state s, const error& why = {}, bool force = false);
  void send_handshake();
  void send_connect(bool first);
  void send_alone(outgoing&& m);
  void flush();
  void encode(const outgoing& m, std::string& frame) const;
  std::chrono::milliseconds request_timeout(const outgoing& m) const;
  std::uint64_t next_id() noexcept { return ++last_id_; }

  // replies
  void release_request_slot(std::uint64_t request) noexcept;
  // Takes a message out of awaiting_, closing its stream request when it was the last one.
  outgoing take_awaiting(std::unordered_map<std::uint64_t, outgoing>::iterator it);
  void drop_requests_of(connection_type t);
  // Registers `req` as in flight, with a deadline when the transport does not time it out.
  void track(std::uint64_t request, in_flight_request req, std::chrono::milliseconds timeout);
  // The earliest stream request deadline still standing.
  std::optional<clock::time_point> next_request_deadline();
  void expire_request(std::uint64_t request);
  void handle_reply(const wire_message& m, outgoing&& out);
  void handle_handshake_reply(const wire_message& m, error err);
  void handle_connect_reply(const wire_message& m, const error& err, bool held);
  void handle_subscribe_reply(outgoing&& out, const error& err);
  void handle_unsubscribe_reply(outgoing&& out, const error& err);
  void fail_outgoing(outgoing&& out, const error& err);

  // reconnection
  void follow_advice(reconnect_advice what, const error& why);
  void connection_lost(const error& why);
  void recover_after_down(connection_type t, const error& err, bool was_up, bool lost_handshake,
                          bool fallback, bool auth_failure, bool auth);
  // An HTTP client error that retrying the same request will not change.
  static bool is_final_refusal(const error& err) noexcept;
  void schedule_retry(bool handshake);
  std::chrono::milliseconds backoff_delay();
  // The backoff for the n-th consecutive failure (1, 2, ...), jitter applied.
  std::chrono::milliseconds scaled_backoff(unsigned n);
  // How long the server holds a connect (its advice, else 60 s).
  std::chrono::milliseconds held_timeout() const noexcept;
  void fail_session(const error& why);
  void enter_reconnecting(const error& why);
  void start_connection_deadline();
  void rearm();

  // subscriptions and dispatch
  void reconcile(const std::string& pattern);
  void reconcile_all();
  void collect_matches(std::string_view channel);
  void dispatch();
  bool buffer_full() const noexcept;

  // authentication
  static bool is_auth_failure(const error& err) noexcept;
  bool authenticate_then(std::function<void(const error&)> then);
  void cancel_auth_waiters(const error& err);
  void release_auth_held(const error& err);
  bool can_authenticate() const noexcept { return cfg_.has_auth && (auth_in_flight_ || !auth_used_); }
  void handshake_refused(reconnect_advice advised, const error& err);
  void connect_refused(reconnect_advice what, const error& err);

  // completion
  template <typename F>
  void invoke(F&& f) noexcept;
  void complete(completion_fn& done, const error& err);
  void defer(completion_fn done, error err);
  void cancel_everything(const error& err);
  void finish_close();

  session_host& host_;
  session_config cfg_;
  state state_ = state::disconnected;
  connection_type type_ = connection_type::long_polling;
  std::vector<std::string> server_types_;
  std::string client_id_;
  advice advice_;
  std::uint64_t last_id_ = 0;
  std::uint64_t last_request_ = 0;
  bool silenced_ = false;
  unsigned batch_depth_ = 0;  // open client batches
  bool paused_ = false;

  completion_fn open_done_;
  std::vector<completion_fn> close_dones_;
  std::function<void(std::uint64_t, const std::string&, const error&)> subscription_lost_;
  unsigned websocket_failures_ = 0;  // consecutive websocket drops without a successful connect
  bool websocket_given_up_ = false;  // fell back from websocket: negotiation skips it from now on

  // Outgoing messages waiting for the next flush, and messages sent and awaiting their reply.
  std::deque<outgoing> queue_;
  std::unordered_map<std::uint64_t, outgoing> awaiting_;
  std::unordered_map<std::uint64_t, in_flight_request> requests_;
  // Deadlines of stream requests, earliest first; entries of requests answered since are
  // dropped when they come up.
  std::priority_queue<std::pair<clock::time_point, std::uint64_t>,
                      std::vector<std::pair<clock::time_point, std::uint64_t>>, std::greater<>>
      deadlines_;
  std::uint64_t normal_request_ = 0;   // long-polling: the one non-connect request in flight
  std::uint64_t connect_request_ = 0;  // the request carrying /meta/connect (0 = none)
  std::uint64_t handshake_request_ = 0;
  std::uint64_t disconnect_request_ = 0;
  bool connect_wanted_ = false;        // a connect is due as soon as the buffer drains
  clock::time_point connect_sent_at_{};
  std::size_t data_since_connect_ = 0;  // data messages received since the last connect left
  bool check_empty_poll_ = false;       // the last held connect came back at once: was it empty?
  unsigned empty_polls_ = 0;            // consecutive held connects answered at once with nothing
  bool transport_up_ = false;          // stream transport established (websocket)
  bool ever_up_on_type_ = false;       // a connect succeeded on the current type
  bool ever_connected_ = false;        // open() completed once
  bool receive_paused_ = false;
  bool transports_closing_ = false;
  std::uint64_t epoch_ = 0;            // incremented by every successful handshake
  std::size_t resubscribes_outstanding_ = 0;

  // Timers (one host timer armed at the earliest).
  std::optional<clock::time_point> retry_at_;
  bool retry_is_handshake_ = false;
  std::optional<clock::time_point> connection_deadline_;
  std::optional<clock::time_point> disconnect_deadline_;
  unsigned failures_ = 0;
  error last_failure_;
  std::uint64_t rng_;

  std::unordered_map<std::string, pattern_entry> patterns_;
  std::unordered_map<std::uint64_t, std::shared_ptr<local_sub>> subs_;
  std::size_t wildcard_patterns_ = 0;
  std::uint64_t last_sub_id_ = 0;

  // authenticate() in flight and what waits for it; used since the last success.
  bool auth_in_flight_ = false;
  bool auth_used_ = false;
  std::vector<std::function<void(const error&)>> auth_waiters_;
  std::vector<outgoing> auth_held_;  // messages refused with HTTP 401/403, sent again after it

  std::deque<pending_frame> pending_;
  std::size_t pending_count_ = 0;
  std::vector<std::pair<completion_fn, error>> deferred_;
  string_arena arena_;           // decoded strings of the message being handled
  string_arena dispatch_arena_;  // decoded strings of the message being dispatched
  std::string match_key_;
  std::vector<std::shared_ptr<local_sub>> match_buf_;
};

}  // namespace uvcometd::detail
