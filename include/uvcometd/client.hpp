/// @file
/// uvcometd — the Bayeux client on an application-owned libuv loop.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

#include <uv.h>

#include "uvcometd/error.hpp"
#include "uvcometd/export.hpp"
#include "uvcometd/message.hpp"
#include "uvcometd/options.hpp"

namespace uvcometd {

class client;
namespace detail {
class client_impl;
}

/// Completion of an asynchronous call; runs exactly once, on the loop thread. `err` is empty on
/// success.
using completion = std::function<void(const error& err)>;
/// Called for every received message whose channel matches the subscription.
using message_handler = std::function<void(const message& msg)>;
/// Called on every state transition with the new state and the connection type then in use.
using state_listener = std::function<void(state s, connection_type t, const error& why)>;
/// Completion of a remote call; runs exactly once, on the loop thread. `reply` is the server's
/// answer (its `data` is the call's result) and is valid during the call only; its views are
/// empty when no reply came (timeout, cancelled, connection lost).
using call_completion = std::function<void(const error& err, const message& reply)>;
/// Called with every meta reply whose channel the listener's pattern matches; see on_meta().
using meta_listener = std::function<void(const meta_message& reply)>;

/// Fields of one publish, subscribe or remote call, beyond its channel and data.
struct UVCOMETD_API message_options {
  /// JSON object text sent as this message's "ext" (CometD's publish props and
  /// subscribeProps), without writing an extension; empty for none. A subscription's ext also
  /// travels with its re-subscription after a re-handshake.
  std::string ext;
};

/// One local subscription. Several may share a channel pattern; the server is subscribed once per
/// pattern and unsubscribed when the last local subscription of the pattern is released. A default
/// constructed subscription is empty. It is a plain value: copying it does not add a subscription.
class UVCOMETD_API subscription {
 public:
  subscription() = default;
  /// True when it refers to a subscription (it may have ended since).
  explicit operator bool() const noexcept { return id_ != 0; }
  /// The channel pattern it was made with.
  const std::string& channel() const noexcept { return channel_; }
  /// A number unique to the subscription within its client (0 when empty).
  std::uint64_t id() const noexcept { return id_; }

 private:
  friend class client;
  subscription(std::uint64_t id, std::string channel) : id_(id), channel_(std::move(channel)) {}
  std::uint64_t id_ = 0;
  std::string channel_;
};

/// A Bayeux client. All calls must be made on the loop's thread; the client starts no thread and
/// never blocks. Callbacks run on the loop and may call any method, close() included.
///
/// Lifetime: the client object may be destroyed at any time; destroying it closes it without
/// running any further callback. The loop must keep running until every handle is closed, which
/// close()'s completion signals: after it, uv_loop_close() returns 0.
class UVCOMETD_API client {
 public:
  /// Creates a client on `loop`. Nothing happens on the network until open().
  /// Throws std::system_error(invalid_argument) when the URL is not http(s)://.
  client(uv_loop_t* loop, options opts);
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  /// Handshakes, negotiates the transport and starts the connect cycle. `done` runs once the first
  /// /meta/connect succeeded, or with the error that ended the attempt (a refused handshake ends
  /// it at once; network failures are retried until connection_timeout).
  /// Fails synchronously with invalid_state unless the client is disconnected.
  std::error_code open(completion done);

  /// Subscribes `on_message` to `channel` (exact, "/a/*" one segment, or "/a/**" any depth).
  /// `done` runs when the server confirmed (or refused) the subscription. On refusal the
  /// subscription is removed. Fails synchronously with invalid_channel or invalid_state (before
  /// open() or after close()); then `out` is left untouched.
  std::error_code subscribe(std::string_view channel, message_handler on_message, completion done,
                            subscription* out = nullptr);

  /// Releases a local subscription: its handler is never called again from now on. When it was
  /// the last one of its channel, the server is unsubscribed and `done` runs on its reply;
  /// otherwise `done` runs on the next loop iteration. invalid_argument if unknown or released.
  std::error_code unsubscribe(const subscription& sub, completion done);

  /// Publishes `json_data` (JSON text) to `channel`. `done` reports the server's answer.
  /// Publishes made in the same loop iteration leave together in one frame.
  /// Fails synchronously with invalid_channel (wildcards, /meta/), invalid_argument (not JSON) or
  /// invalid_state.
  std::error_code publish(std::string_view channel, std::string_view json_data, completion done);
  /// publish() with per-message fields (an "ext" object). invalid_argument when the ext is not
  /// a JSON object.
  std::error_code publish(std::string_view channel, std::string_view json_data, completion done,
                          const message_options& fields);
  /// subscribe() with per-message fields: the "ext" goes with the /meta/subscribe this call
  /// sends (none is sent when the server already delivers the pattern: then the first
  /// subscription's ext stands). invalid_argument when the ext is not a JSON object.
  std::error_code subscribe(std::string_view channel, message_handler on_message, completion done,
                            subscription* out, const message_options& fields);

  /// Remote call (CometD's remoteCall): publishes `json_data` to /service/`target` and
  /// completes with the server's reply to that message (its `data` is the result; a refusal is
  /// errc::server_error with the server's text), errc::timeout when none came within `timeout`
  /// of the call (5 s by default), errc::cancelled at close(), or the transport's error when the
  /// connection that carried it broke (its reply can no longer come). Exactly once, on either
  /// transport. Fails synchronously like publish(): invalid_channel (an empty target, or one
  /// that makes no valid channel), invalid_argument (not JSON, a non-positive timeout),
  /// invalid_state, not_connected, queue_full.
  std::error_code remote_call(std::string_view target, std::string_view json_data,
                              call_completion done);
  /// remote_call() with its own timeout and per-message fields.
  std::error_code remote_call(std::string_view target, std::string_view json_data,
                              std::chrono::milliseconds timeout, call_completion done,
                              const message_options& fields = {});

  /// Explicit batching: publishes, subscribes and unsubscribes issued between start_batch() and
  /// the matching end_batch() are held and leave together in one frame (one HTTP request, one
  /// websocket message), even when they are issued over several loop iterations (calls of one
  /// iteration are coalesced anyway). Batches nest; the outermost end_batch() releases them.
  /// Each call still completes on its own, with its own reply. A re-subscription after a
  /// reconnect is never held. Leaving a batch open holds its calls until close().
  void start_batch();
  /// Ends the innermost batch. invalid_state when no batch is open.
  std::error_code end_batch();

  /// Sends /meta/disconnect when connected (waiting at most options::disconnect_timeout), completes
  /// every pending call with errc::cancelled, drops undelivered messages, and closes every handle;
  /// `done` runs last (never inside this call), after which uv_loop_close() may be called. Calling
  /// it again while closing adds `done`. Once closed it fails with invalid_state and `done` never
  /// runs (like every call that fails synchronously).
  std::error_code close(completion done = {});

  /// Drops the current connection and re-establishes the session at once, e.g. after the
  /// application learned that the network changed. invalid_state unless open.
  std::error_code reconnect_now();

  /// Sets the listener of state transitions (replacing the previous one).
  void on_state(state_listener listener);

  /// Sets the listener told when the server refuses to restore a subscription after a
  /// re-handshake (the subscription has ended; its handler is not called any more).
  void on_subscription_lost(
      std::function<void(const subscription& sub, const error& why)> listener);

  /// Adds a listener of meta replies (CometD's addListener): `channel` is /meta/handshake,
  /// /meta/connect, /meta/subscribe, /meta/unsubscribe, /meta/disconnect, or /meta/* or /meta/**
  /// for all of them. It runs after the client handled each reply (or the failure of such a
  /// request with no reply: then meta_message::json is empty), with views valid during the
  /// call only. `id` receives a number for remove_meta_listener(). invalid_channel for any other
  /// channel; listeners may be added and removed at any time, from callbacks too.
  std::error_code on_meta(std::string_view channel, meta_listener listener,
                          std::uint64_t* id = nullptr);
  /// Removes a meta listener; invalid_argument when unknown.
  std::error_code remove_meta_listener(std::uint64_t id);

  /// Sets the handler of data messages whose channel matches no subscription (service replies,
  /// /service/** pushes, a server's direct deliveries), dropped otherwise. Empty: none.
  void on_unmatched(message_handler handler);

  /// Stops dispatching received messages to handlers until resume(). Messages keep arriving until
  /// the pending buffer reaches max_pending_count; then fetching stops.
  void pause() noexcept;
  /// Resumes dispatching.
  void resume() noexcept;

  /// Messages received and not yet dispatched.
  std::size_t pending_count() const noexcept;
  /// The current state.
  uvcometd::state current_state() const noexcept;
  /// The connection type currently used (the handshake's before negotiation).
  connection_type current_connection_type() const noexcept;
  /// The clientId the server assigned; empty before the handshake.
  const std::string& client_id() const noexcept;
  /// The server in use (options::url, or one of options::urls or of a server's advice.hosts).
  /// The reference is valid until the next call into the client or callback.
  const std::string& current_url() const noexcept;

 private:
  std::shared_ptr<detail::client_impl> impl_;
};

}  // namespace uvcometd
