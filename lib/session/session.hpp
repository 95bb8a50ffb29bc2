// The Bayeux state machine. It does no I/O: it takes events (user calls, frames, request
// failures, timer expiry, the host's clock) and emits actions through session_host (send this
// frame on that transport, arm the timer, run me again soon, the state changed). It includes no
// uv, curl or lws header, so unit tests drive it with a scripted host and a fake clock.
//
// One word of state (phase), one classifier of failures (recovery.hpp) applied by recover(),
// and one resume() that decides "handshake or connect?". Beside it: the subscription table, the
// pending queue, the request ledger, the auth gate and the backoff.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "codec.hpp"
#include "session/auth_gate.hpp"
#include "session/backoff.hpp"
#include "session/endpoints.hpp"
#include "session/exchanges.hpp"
#include "session/outgoing.hpp"
#include "session/pending_queue.hpp"
#include "session/recovery.hpp"
#include "session/subscriptions.hpp"
#include "transport/traits.hpp"
#include "uvcometd/error.hpp"
#include "uvcometd/message.hpp"
#include "uvcometd/options.hpp"

namespace uvcometd::detail {

// What the session asks of its environment (the client on libuv, or a test script).
class session_host {
 public:
  virtual ~session_host() = default;
  virtual clock::time_point now() = 0;
  // Sends one batch of messages as one frame on the transport of type `t` (the host encodes
  // it, after extensions if any: the batch's views are valid during the call only). The outcome
  // comes back through session::on_frame / on_request_failed (request/response transports) or
  // on_frame(…, 0, …) / on_transport_down (stream transports). `timeout` is the request's whole
  // deadline. `alone`: the frame must travel by itself (connect, handshake, disconnect); others
  // may be merged by stream transports.
  virtual void send(connection_type t, std::uint64_t request, const outgoing_batch& batch,
                    std::chrono::milliseconds timeout, bool alone) = 0;
  // Drops every exchange in flight on `t` without reporting them (retries, close).
  virtual void abort(connection_type t) = 0;
  // Arms the session's single timer (replacing any previous arming); session::on_timer on expiry.
  virtual void arm_timer(std::chrono::milliseconds delay) = 0;
  virtual void disarm_timer() = 0;
  // Asks for session::run_deferred() soon, on a later loop iteration, not from inside this call.
  virtual void request_run() = 0;
  // What the transport of type `t` is.
  virtual transport_traits traits(connection_type t) {
    return t == connection_type::long_polling ? transport_traits{true, false, false}
                                              : transport_traits{false, true, true};
  }
  // The session moves to another server of the cluster: what is in flight on the old one was
  // aborted already; later sends go to `url`.
  virtual void use_endpoint(const std::string& url) { (void)url; }
  // Pausable transports: stop/resume reading (backpressure of the pending buffer).
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
  // The servers, in order of preference (options::url or options::urls).
  std::vector<std::string> urls;
  std::chrono::milliseconds failback_after{0};
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
  // `ext`: the message's own "ext" object (JSON text, checked by the caller), or empty.
  std::error_code subscribe(std::string_view channel, handler_fn on_message, completion_fn done,
                            std::uint64_t* sub_id, std::string_view ext = {});
  std::error_code unsubscribe(std::uint64_t sub_id, completion_fn done);
  std::error_code publish(std::string_view channel, std::string_view json_data, completion_fn done,
                          std::string_view ext = {});
  // Publishes to /service/<target>; `done` gets the server's reply (the message with the same
  // id), or errc::timeout once `timeout` passed since the call.
  std::error_code remote_call(std::string_view target, std::string_view json_data,
                              std::chrono::milliseconds timeout, call_fn done,
                              std::string_view ext = {});
  // Told of every meta reply (or failure of a meta request) once the session handled it.
  void on_meta(std::function<void(const meta_message&)> f) { meta_listener_ = std::move(f); }
  // Told of every data message no subscription matches.
  void on_unmatched(handler_fn f) { unmatched_ = std::move(f); }
  // client::start_batch / end_batch: while a batch is open, flush() holds the queue.
  void start_batch() noexcept { ++batch_depth_; }
  bool end_batch();
  // invalid_state once closed (`done` never runs then).
  std::error_code close(completion_fn done);
  // Drops the current connection and re-establishes the session at once (network change).
  std::error_code reconnect_now();
  // Called when the server refuses to restore a subscription after a re-handshake; the
  // subscription is gone afterwards.
  void on_subscription_lost(
      std::function<void(std::uint64_t, const std::string&, const error&)> f) {
    subscription_lost_ = std::move(f);
  }
  void pause() noexcept { paused_ = true; }
  void resume();
  // Forgets every user callback (the client object is being destroyed): nothing runs any more.
  void silence() noexcept { silenced_ = true; }
  // The client object is gone while closing: stop waiting for the /meta/disconnect reply and
  // close the transports now.
  void abandon();

  std::size_t pending_count() const noexcept { return pending_.size(); }
  state current_state() const noexcept;
  connection_type current_type() const noexcept { return type_; }
  const std::string& client_id() const noexcept { return client_id_; }
  // The server in use.
  const std::string& current_url() const noexcept { return endpoints_.current(); }

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
  void on_dropped(std::uint64_t request, std::uint64_t id, const error& err);
  // An incoming extension asked to send again the message that the reply with `id` answers.
  // True when accepted (a publish, subscribe or unsubscribe awaiting its reply, not resent
  // before): the message is queued again and its reply must be ignored.
  bool resend(std::uint64_t id);
  // True while `request` is awaited (an extension still holding its frame may send it).
  bool in_flight(std::uint64_t request) const noexcept { return ledger_.is_open(request); }
  // The auth extension's authenticate() finished.
  void on_authenticated(const error& err);

 private:
  // The one word of state. The public state is a function of it (and of whether open()
  // completed: the same phases are "connecting" before and "reconnecting" after).
  enum class phase : std::uint8_t {
    idle,            // made, not opened
    handshaking,     // a handshake in flight
    subscribing,     // a new session: re-subscriptions in flight, the connect waits for them
    connecting,      // the first connect (timeout 0) in flight
    connected,       // the connect cycle runs
    backing_off,     // waiting for the retry timer after a failure
    authenticating,  // waiting for the auth extension, then the same step once more
    disconnecting,   // close(): /meta/disconnect in flight
    closing,         // the transports are closing
    closed,
    failed,  // gave up (refused, advice none, connection_timeout)
  };

  // --- phases ---
  void enter(phase p, const error& why = {});
  bool active() const noexcept;
  bool opening() const noexcept { return !ever_connected_; }

  // --- sending ---
  bool allows(connection_type t) const noexcept;
  connection_type handshake_type() const noexcept;
  transport_traits traits() { return host_.traits(type_); }
  // Handshake or connect, whichever the session needs: the only place that decides. `why`
  // goes to the state listener if the public state changes.
  void resume_session(const error& why = {});
  void send_handshake();
  void send_connect(bool first);
  // How long the first connect on another server of a cluster may be held (see send_connect).
  static constexpr std::chrono::milliseconds resume_hold{1000};
  void send_alone(outgoing&& m, exchanges::slot holds);
  // Records the request of `sent` in the ledger and hands the batch to the host.
  void send_request(std::vector<outgoing>&& sent, exchanges::slot holds,
                    std::chrono::milliseconds timeout, bool alone);
  void flush();
  std::chrono::milliseconds request_timeout(message_kind k, bool first_connect) const;
  std::chrono::milliseconds held_timeout() const noexcept;
  std::uint64_t next_id() noexcept { return ++last_id_; }

  // --- replies ---
  void handle_reply(const wire_message& m, outgoing&& out);
  void handle_handshake_reply(const wire_message& m, const error& reply_err);
  void handle_connect_reply(const wire_message& m, const error& err, bool held);
  void handle_subscribe_reply(outgoing&& out, const error& err);
  void handle_unsubscribe_reply(outgoing&& out, const error& err);
  void fail_outgoing(outgoing&& out, const error& err);
  void fail_all(std::vector<outgoing>&& messages, const error& err);
  // Completes a publish or a remote call (with the reply when there is one), once.
  void complete_publish(outgoing& m, const error& err, const wire_message* reply = nullptr);
  void tell_meta(std::string_view channel, const error& err, const wire_message* reply);
  void expire_calls(clock::time_point now);
  std::optional<clock::time_point> next_call_deadline();
  void expire_request(std::uint64_t request);

  // --- recovery ---
  void recover(const failure& f);
  session_facts facts(const failure& f) const;
  // Tells the listener again (the transport changed, the state did not).
  void notify(const error& why);
  void back_off(const error& why);
  // Points the transports at the current endpoint (the policy moved): aborts what is in flight
  // on the old one.
  void use_current_endpoint(const error& why);
  // The session goes on on another server at once (no backoff delay).
  void resume_elsewhere(const error& why);
  void fall_back(const error& why);
  void authenticate_then_retry(const error& why, reconnect_advice advice);
  void note_failure(const error& why);
  void fail_session(const error& why);
  void start_connection_deadline();
  void rearm();

  // --- subscriptions and dispatch ---
  void reconcile(const std::string& pattern);
  void reconcile_all();
  void dispatch();
  bool buffer_full() const noexcept;

  // --- authentication ---
  bool authenticate_then(auth_gate::waiter then);
  void release_auth_held(const error& err);
  void cancel_auth_waiters(const error& err);

  // --- completion ---
  template <typename F>
  void invoke(F&& f) noexcept;
  void complete(completion_fn& done, const error& err);
  void defer(completion_fn done, error err);
  void cancel_everything(const error& err);
  void finish_close();

  session_host& host_;
  session_config cfg_;
  phase phase_ = phase::idle;
  state reported_ = state::disconnected;  // the last public state the listener heard
  bool ever_connected_ = false;           // open() completed
  bool silenced_ = false;
  bool paused_ = false;
  unsigned batch_depth_ = 0;  // open client batches

  // The session on the server.
  connection_type type_ = connection_type::long_polling;
  std::vector<std::string> server_types_;
  std::string client_id_;
  advice advice_;
  std::uint64_t epoch_ = 0;  // moves on every handshake attempt and success
  std::size_t resubscribes_outstanding_ = 0;

  // The transport.
  bool transport_up_ = false;        // a stream connection is open
  bool ever_up_on_type_ = false;     // a connect succeeded on the current type
  unsigned websocket_failures_ = 0;  // consecutive websocket drops without a held connect
  bool websocket_given_up_ = false;  // fell back: negotiation skips websocket from now on
  bool receive_paused_ = false;

  // The connect cycle.
  bool connect_wanted_ = false;  // a connect is due as soon as the buffer drains
  clock::time_point connect_sent_at_{};
  std::size_t data_since_connect_ = 0;  // data messages received since the last connect left
  bool check_empty_poll_ = false;       // the last held connect came back at once: was it empty?
  unsigned empty_polls_ = 0;            // consecutive held connects answered at once, empty

  // Calls.
  completion_fn open_done_;
  std::vector<completion_fn> close_dones_;
  std::function<void(std::uint64_t, const std::string&, const error&)> subscription_lost_;
  std::vector<std::pair<completion_fn, error>> deferred_;

  // Messages: waiting for the next flush, and sent.
  std::deque<outgoing> queue_;
  exchanges ledger_;
  std::uint64_t last_id_ = 0;
  std::uint64_t last_request_ = 0;

  // Timers (one host timer armed at the earliest).
  std::optional<clock::time_point> retry_at_;
  std::optional<clock::time_point> connection_deadline_;
  std::optional<clock::time_point> disconnect_deadline_;
  backoff backoff_;
  error last_failure_;

  // Remote calls: number -> id of the message carrying it (0 while queued), and deadlines.
  std::unordered_map<std::uint64_t, std::uint64_t> calls_;
  std::priority_queue<std::pair<clock::time_point, std::uint64_t>,
                      std::vector<std::pair<clock::time_point, std::uint64_t>>, std::greater<>>
      call_deadlines_;
  std::uint64_t last_call_ = 0;
  std::function<void(const meta_message&)> meta_listener_;
  handler_fn unmatched_;

  endpoint_list endpoints_;
  clock::time_point arrived_{};  // when the session moved to the current endpoint
  bool moved_ = false;           // ...continuing its session there, not connected there yet
  // Since the session was last connected: when, and the data messages received. A failure
  // after a connection that worked (a second, or any message) starts a new backoff count.
  clock::time_point connected_at_{};
  std::size_t data_while_connected_ = 0;
  static constexpr std::chrono::milliseconds stable_after{1000};

  subscription_table subs_;
  std::vector<sub_ptr> match_buf_;
  auth_gate auth_;
  pending_queue pending_;
  string_arena arena_;  // decoded strings of the message being handled
};

template <typename F>
void session::invoke(F&& f) noexcept {
  // No exception may cross into the event loop's C frames.
  try {
    f();
  } catch (const std::exception& e) {
    host_.log(log_level::error, std::string("a callback threw: ") + e.what());
  } catch (...) {
    host_.log(log_level::error, "a callback threw a non-std exception");
  }
}

}  // namespace uvcometd::detail
