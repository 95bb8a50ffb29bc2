/// @file
/// uvcometd's C API: the Bayeux client on an application-owned libuv loop, for C programs.
///
/// A thin layer over the C++ client (<uvcometd/client.hpp>) in the same library, with the same
/// rules:
/// - Everything runs on the loop's thread: call these functions there only. The library starts
///   no thread and never blocks.
/// - Errors are negative `int` codes (UVCOMETD_E*, like libuv's UV_E*), 0 is success;
///   uvcometd_strerror() names them. A function that returns an error never runs its callback.
///   One that succeeds runs its callback (when not NULL) exactly once, on the loop: with
///   success, the server's error, a transport error, or UVCOMETD_ECANCELLED from
///   uvcometd_client_close(). Callbacks may call any function of this header, close and
///   destroy included.
/// - Strings passed in are copied before the call returns. Strings and structures passed out to a
///   callback are valid during that call only: copy what must outlive it. Nothing handed out is
///   freed by the application, except what it created: a client (uvcometd_client_destroy()) and
///   options (uvcometd_options_free()).
/// - Callbacks must return normally (no longjmp out of them).
///
/// ```c
/// uvcometd_options_t* o = uvcometd_options_new();
/// uvcometd_options_set_url(o, "http://127.0.0.1:8000/bayeux");
/// uvcometd_client_t* c;
/// int rc = uvcometd_client_new(loop, o, &c);     // then: uvcometd_client_open(c, on_open, app)
/// uvcometd_options_free(o);
/// ```
#ifndef UVCOMETD_H
#define UVCOMETD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "uvcometd/export.hpp"
#include "uvcometd/version.hpp"

#ifdef __cplusplus
extern "C" {
#endif

/// Error codes: 0 is success, failures are negative. The values are those of the C++
/// uvcometd::errc, negated; codes added by a later version keep that rule.
typedef enum uvcometd_errno {
  UVCOMETD_EINVALID_STATE = -1,          ///< the call is not allowed in the client's current state
  UVCOMETD_EINVALID_CHANNEL = -2,        ///< the channel name is malformed or not allowed here
  UVCOMETD_EINVALID_ARGUMENT = -3,       ///< an argument is malformed (NULL, data that is not JSON)
  UVCOMETD_ESERVER_ERROR = -4,           ///< the server answered successful:false (server_code)
  UVCOMETD_ETRANSPORT_ERROR = -5,        ///< the network exchange failed (refused, reset, TLS, ...)
  UVCOMETD_EHTTP_ERROR = -6,             ///< the server answered an HTTP status other than 2xx
  UVCOMETD_EBAD_RESPONSE = -7,           ///< the server's frame is not a Bayeux message array
  UVCOMETD_ENO_REPLY = -8,               ///< the server's response held no reply to this message
  UVCOMETD_ETIMEOUT = -9,                ///< a request got no answer within its deadline
  UVCOMETD_ECANCELLED = -10,             ///< the client was closed before the call completed
  UVCOMETD_ECONNECTION_TIMEOUT = -11,    ///< no session could be established in connection_timeout
  UVCOMETD_ENO_COMMON_TRANSPORT = -12,   ///< the server offers none of the allowed types
  UVCOMETD_EMESSAGE_TOO_LARGE = -13,     ///< an incoming message exceeded max_message_size
  UVCOMETD_ESESSION_ENDED = -14,         ///< the server advised reconnect "none": session over
  UVCOMETD_ENOT_CONNECTED = -15,         ///< publish while reconnecting with queueing turned off
  UVCOMETD_EQUEUE_FULL = -16,            ///< too many messages wait for the connection to return
  UVCOMETD_EDROPPED_BY_EXTENSION = -17,  ///< an outgoing extension removed the message
  UVCOMETD_EEXTENSION_ERROR = -18,       ///< an extension failed
  UVCOMETD_EAUTHENTICATION_FAILED = -19,  ///< obtaining fresh credentials failed
  UVCOMETD_ECERTIFICATE_ERROR = -20,      ///< the server's TLS certificate was refused; not retried
  UVCOMETD_ENOMEM = -1000,                ///< out of memory (C API only)
  UVCOMETD_EINTERNAL = -1001              ///< an unexpected failure inside the library (C API only)
} uvcometd_errno_t;

/// A Bayeux connection type.
typedef enum uvcometd_connection_type {
  UVCOMETD_LONG_POLLING = 0,  ///< "long-polling": HTTP requests held by the server
  UVCOMETD_WEBSOCKET = 1      ///< "websocket"
} uvcometd_connection_type_t;

/// The client's life cycle; every transition is reported to the state callback.
typedef enum uvcometd_state {
  UVCOMETD_STATE_DISCONNECTED = 0,   ///< created, not opened yet
  UVCOMETD_STATE_CONNECTING = 1,     ///< handshake and first connect of uvcometd_client_open()
  UVCOMETD_STATE_CONNECTED = 2,      ///< session established, connect cycle running
  UVCOMETD_STATE_RECONNECTING = 3,   ///< the session or connection was lost and is re-established
  UVCOMETD_STATE_DISCONNECTING = 4,  ///< close called: /meta/disconnect sent, transports closing
  UVCOMETD_STATE_CLOSED = 5,         ///< close finished: every handle is closed
  UVCOMETD_STATE_FAILED = 6          ///< no more retries: refused handshake, advice "none", timeout
} uvcometd_state_t;

/// Severity of a log line.
typedef enum uvcometd_log_level {
  UVCOMETD_LOG_DEBUG = 0,    ///< protocol detail
  UVCOMETD_LOG_INFO = 1,     ///< notable events (connected, fell back, ...)
  UVCOMETD_LOG_WARNING = 2,  ///< something failed and is retried
  UVCOMETD_LOG_ERROR = 3     ///< something failed for good
} uvcometd_log_level_t;

/// A client (opaque). Created by uvcometd_client_new(), freed by uvcometd_client_destroy().
typedef struct uvcometd_client_s uvcometd_client_t;

/// Client options (opaque): set with the uvcometd_options_set_*() functions, copied by
/// uvcometd_client_new(), freed by uvcometd_options_free().
typedef struct uvcometd_options_s uvcometd_options_t;

/// One local subscription, as returned by uvcometd_client_subscribe(); never 0.
typedef uint64_t uvcometd_subscription_t;

/// The details of an outcome, handed to callbacks; valid during the callback only.
/// The library allocates it; later versions may add fields at the end.
typedef struct uvcometd_error {
  int code;                 ///< 0 on success, else a negative UVCOMETD_E* code
  int server_code;          ///< the Bayeux error code ("403:args:text" gives 403); else 0
  int http_status;          ///< the HTTP status of UVCOMETD_EHTTP_ERROR (or a bad response); else 0
  const char* message;      ///< the server's text or a description of the failure; "" if none
  size_t arg_count;         ///< how many Bayeux error arguments `args` holds
  const char* const* args;  ///< the Bayeux error arguments ("403:a,b:text" gives "a", "b")
} uvcometd_error_t;

/// A received data message, handed to a uvcometd_message_cb. The texts are not NUL-terminated
/// (print them with "%.*s"): each points into the frame the message arrived in and is valid
/// during the callback only. An absent member has length 0.
typedef struct uvcometd_message {
  const char* channel;  ///< the channel it was published to, e.g. "/chat/room1"
  size_t channel_len;   ///< length of `channel` in bytes
  const char* data;     ///< raw JSON text of "data" exactly as received
  size_t data_len;      ///< length of `data` in bytes; 0 if the message had no data
  const char* id;       ///< the message id (unescaped)
  size_t id_len;        ///< length of `id` in bytes; 0 if the server sent none
  const char* ext;      ///< raw JSON text of "ext"
  size_t ext_len;       ///< length of `ext` in bytes; 0 if absent
  const char* json;     ///< raw JSON text of the whole message object
  size_t json_len;      ///< length of `json` in bytes
} uvcometd_message_t;

/// A reply on a meta channel, handed to a uvcometd_meta_cb; or the failure of such a request
/// when no reply came (then `json_len` is 0 and `error` says what happened). The texts are not
/// NUL-terminated and are valid during the callback only; an absent member has length 0.
typedef struct uvcometd_meta_message {
  const char* channel;  ///< the meta channel, e.g. "/meta/connect"
  size_t channel_len;   ///< length of `channel` in bytes
  int successful;       ///< the reply's "successful": 1 or 0
  const char* error;    ///< the reply's "error" text (unescaped), or the failure's description
  size_t error_len;     ///< length of `error` in bytes
  const char* advice;   ///< raw JSON text of "advice"
  size_t advice_len;    ///< length of `advice` in bytes; 0 if absent
  const char* ext;      ///< raw JSON text of "ext"
  size_t ext_len;       ///< length of `ext` in bytes; 0 if absent
  const char* json;     ///< raw JSON text of the whole reply
  size_t json_len;      ///< length of `json` in bytes; 0 for a failure without a reply
} uvcometd_meta_message_t;

/// Completion of an asynchronous call: runs exactly once, on the loop. `status` is 0 on success
/// or a negative UVCOMETD_E* code (the same as `err->code`); `err` is never NULL.
typedef void (*uvcometd_done_cb)(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                                 void* user);

/// Called for every received message whose channel matches the subscription.
typedef void (*uvcometd_message_cb)(uvcometd_client_t* client, const uvcometd_message_t* msg,
                                    void* user);

/// Called on every state transition with the new state, the connection type then in use, and
/// why (`why->code` is 0 unless the transition comes from a failure); `why` is never NULL.
typedef void (*uvcometd_state_cb)(uvcometd_client_t* client, uvcometd_state_t state,
                                  uvcometd_connection_type_t type, const uvcometd_error_t* why,
                                  void* user);

/// Called when the server refuses to restore a subscription after a re-handshake: the
/// subscription has ended and its message callback is not called any more. `channel` is the
/// subscription's pattern (NUL-terminated, valid during the call).
typedef void (*uvcometd_subscription_lost_cb)(uvcometd_client_t* client,
                                              uvcometd_subscription_t subscription,
                                              const char* channel, const uvcometd_error_t* why,
                                              void* user);

/// Completion of a remote call: runs exactly once, on the loop. `status` is 0 when the server
/// answered successfully, else a negative UVCOMETD_E* code (UVCOMETD_ESERVER_ERROR for a refused
/// call, UVCOMETD_ETIMEOUT, UVCOMETD_ECANCELLED at close, a transport error when the connection
/// carrying the call broke). `reply` is never NULL: the server's reply message (its `data` is the
/// call's result), all lengths 0 when no reply came. Both are valid during the callback only.
typedef void (*uvcometd_call_cb)(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                                 const uvcometd_message_t* reply, void* user);

/// Called with every meta reply whose channel matches the listener's; see
/// uvcometd_client_on_meta().
typedef void (*uvcometd_meta_cb)(uvcometd_client_t* client, const uvcometd_meta_message_t* reply,
                                 void* user);

/// Receives the library's log lines (libcurl's and libwebsockets' included); `text` is
/// NUL-terminated and valid during the call. Runs on the loop's thread.
typedef void (*uvcometd_log_cb)(uvcometd_log_level_t level, const char* text, void* user);

/// The text of an error code (a static string), e.g. "cancelled by close";
/// "unknown error" for a code this library does not know.
UVCOMETD_API const char* uvcometd_strerror(int code);

/// The version of the library the program runs with, "MAJOR.MINOR.PATCH" (a static string).
/// UVCOMETD_VERSION_STRING is the version of the headers it was compiled against.
UVCOMETD_API const char* uvcometd_version(void);

/// The name of a state ("connected", ...; a static string).
UVCOMETD_API const char* uvcometd_state_name(uvcometd_state_t state);

/// The Bayeux name of a connection type ("long-polling", "websocket"; a static string).
UVCOMETD_API const char* uvcometd_connection_type_name(uvcometd_connection_type_t type);

/// New options with the defaults of the C++ uvcometd::options (no URL); NULL when out of memory.
UVCOMETD_API uvcometd_options_t* uvcometd_options_new(void);

/// Frees options (NULL is allowed). Clients created with them are not affected.
UVCOMETD_API void uvcometd_options_free(uvcometd_options_t* opts);

/// The server's Bayeux URL, http(s)://host[:port]/path; the websocket URL is derived from it.
/// UVCOMETD_EINVALID_ARGUMENT when NULL (the URL itself is checked by uvcometd_client_new()).
UVCOMETD_API int uvcometd_options_set_url(uvcometd_options_t* opts, const char* url);

/// Appends `url` to the list of servers to fail over between (options::urls): the client starts
/// on the first and moves on, in order and round robin, when one cannot be reached. Setting both
/// a URL list and uvcometd_options_set_url() makes uvcometd_client_new() refuse the options.
UVCOMETD_API int uvcometd_options_add_url(uvcometd_options_t* opts, const char* url);

/// With a URL list: once on another server for `ms`, the client returns to the first URL when it
/// answers again (0, the default: it stays where it works).
UVCOMETD_API int uvcometd_options_set_failback_after(uvcometd_options_t* opts, uint64_t ms);

/// The allowed connection types in order of preference (default: websocket, long-polling). One
/// entry forces that type. UVCOMETD_EINVALID_ARGUMENT when `count` is 0 or a type is unknown.
UVCOMETD_API int uvcometd_options_set_connection_types(uvcometd_options_t* opts,
                                                       const uvcometd_connection_type_t* types,
                                                       size_t count);

/// How long the session may stay un-established (at open or after a failure) before the
/// client gives up with UVCOMETD_ECONNECTION_TIMEOUT (default 10000 ms); 0 retries forever.
UVCOMETD_API int uvcometd_options_set_connection_timeout(uvcometd_options_t* opts, uint64_t ms);

/// Added to the server's long-poll timeout for a held request's deadline; the deadline of every
/// other request (default 10000 ms).
UVCOMETD_API int uvcometd_options_set_max_network_delay(uvcometd_options_t* opts, uint64_t ms);

/// How long a websocket connection may take to open before the client falls back to
/// long-polling (default 10000 ms).
UVCOMETD_API int uvcometd_options_set_websocket_connect_timeout(uvcometd_options_t* opts,
                                                                uint64_t ms);

/// Websocket ping period; a peer silent for two periods is dead (default 15000 ms).
UVCOMETD_API int uvcometd_options_set_websocket_ping_interval(uvcometd_options_t* opts,
                                                              uint64_t ms);

/// How long closing waits for the server's /meta/disconnect reply (default 2000 ms).
UVCOMETD_API int uvcometd_options_set_disconnect_timeout(uvcometd_options_t* opts, uint64_t ms);

/// Reconnect backoff: starts at `initial_ms`, doubles per consecutive failure up to `max_ms`,
/// randomised down by up to `jitter` (0 to 1). Defaults 250 ms, 30000 ms, 0.5.
UVCOMETD_API int uvcometd_options_set_backoff(uvcometd_options_t* opts, uint64_t initial_ms,
                                              uint64_t max_ms, double jitter);

/// Adds an HTTP header "Name: value" to every request and the websocket upgrade.
UVCOMETD_API int uvcometd_options_add_header(uvcometd_options_t* opts, const char* header);

/// JSON object text sent as the handshake's "ext" field ("" for none, the default).
UVCOMETD_API int uvcometd_options_set_handshake_ext(uvcometd_options_t* opts, const char* json);

/// Received messages waiting for dispatch above which the client stops fetching (default 100;
/// 0: no cap). A message that has arrived is never dropped.
UVCOMETD_API int uvcometd_options_set_max_pending_count(uvcometd_options_t* opts, size_t count);

/// Largest incoming websocket message accepted (default 16 MiB); a larger one ends the
/// connection with UVCOMETD_EMESSAGE_TOO_LARGE.
UVCOMETD_API int uvcometd_options_set_max_message_size(uvcometd_options_t* opts, size_t bytes);

/// Whether publishes made while the session is re-established wait for it (default on, at most
/// `max_queued` of them, else UVCOMETD_EQUEUE_FULL); off: they fail with UVCOMETD_ENOT_CONNECTED.
UVCOMETD_API int uvcometd_options_set_queue_while_reconnecting(uvcometd_options_t* opts,
                                                               int enabled, size_t max_queued);

/// Whether the server's TLS certificate and host name are verified (default 1; 0 for tests only).
UVCOMETD_API int uvcometd_options_set_tls_verify(uvcometd_options_t* opts, int verify);

/// PEM file of CA certificates to verify the server against ("" for the system store).
UVCOMETD_API int uvcometd_options_set_ca_file(uvcometd_options_t* opts, const char* path);

/// The log sink (NULL, the default: no logging); `user` is handed to every call. Lines may still
/// come after uvcometd_client_destroy(), while the loop closes the client's handles: keep `user`
/// valid until uv_run() has returned.
UVCOMETD_API int uvcometd_options_set_log(uvcometd_options_t* opts, uvcometd_log_cb log,
                                          void* user);

/// Why uvcometd_client_new() would refuse `opts` (a bad URL, an unreadable CA file, ...), or
/// NULL when it would not. The text belongs to `opts` and stays valid until the next call with
/// the same options or uvcometd_options_free(). Never touches the network.
UVCOMETD_API const char* uvcometd_options_problem(uvcometd_options_t* opts);

/// Creates a client on `loop` with a copy of `opts` and stores it in `*client`. Nothing happens on
/// the network until uvcometd_client_open(). UVCOMETD_EINVALID_ARGUMENT when an argument is NULL
/// or the options are refused (uvcometd_options_problem() says why), UVCOMETD_ENOMEM.
UVCOMETD_API int uvcometd_client_new(uv_loop_t* loop, const uvcometd_options_t* opts,
                                     uvcometd_client_t** client);

/// Frees the client (NULL is allowed), closing it without running any further callback. Its
/// libuv handles close on the loop: keep running it until uv_run() returns, then
/// uv_loop_close() returns 0. Usual use: uvcometd_client_close() first, destroy in (or after)
/// its callback. Allowed inside the client's own callbacks.
UVCOMETD_API void uvcometd_client_destroy(uvcometd_client_t* client);

/// Attaches an application pointer to the client (like uv_handle_set_data()).
UVCOMETD_API void uvcometd_client_set_data(uvcometd_client_t* client, void* data);

/// The pointer given to uvcometd_client_set_data(); NULL before.
UVCOMETD_API void* uvcometd_client_get_data(const uvcometd_client_t* client);

/// The loop the client runs on.
UVCOMETD_API uv_loop_t* uvcometd_client_loop(const uvcometd_client_t* client);

/// Handshakes, negotiates the transport and starts the connect cycle. `done` runs once the first
/// /meta/connect succeeded, or with the error that ended the attempt (a refused handshake ends it
/// at once; network failures are retried until the connection timeout).
/// UVCOMETD_EINVALID_STATE unless the client is disconnected (never opened).
UVCOMETD_API int uvcometd_client_open(uvcometd_client_t* client, uvcometd_done_cb done, void* user);

/// Subscribes `on_message` to `channel` (exact, "/a/*" one more segment, "/a/**" any depth) and
/// stores the new subscription in `*subscription` (may be NULL). `done` runs when the server
/// confirmed or refused it; refused, the subscription has ended. `user` is handed to both
/// callbacks. UVCOMETD_EINVALID_CHANNEL, UVCOMETD_EINVALID_STATE (before open, after close),
/// UVCOMETD_EINVALID_ARGUMENT (NULL channel or `on_message`); `*subscription` is then untouched.
UVCOMETD_API int uvcometd_client_subscribe(uvcometd_client_t* client, const char* channel,
                                           uvcometd_message_cb on_message, uvcometd_done_cb done,
                                           void* user, uvcometd_subscription_t* subscription);

/// Ends a subscription: its message callback is not called again from now on. When it was the
/// last of its channel the server is unsubscribed and `done` runs on its reply; otherwise on the
/// next loop iteration. UVCOMETD_EINVALID_ARGUMENT for a subscription unknown or already ended.
UVCOMETD_API int uvcometd_client_unsubscribe(uvcometd_client_t* client,
                                             uvcometd_subscription_t subscription,
                                             uvcometd_done_cb done, void* user);

/// Publishes `json` (NUL-terminated JSON text) to `channel`; `done` reports the server's answer.
/// Publishes of one loop iteration leave together in one frame. UVCOMETD_EINVALID_CHANNEL
/// (wildcards, /meta/), UVCOMETD_EINVALID_ARGUMENT (not JSON, NULL), UVCOMETD_EINVALID_STATE,
/// UVCOMETD_ENOT_CONNECTED, UVCOMETD_EQUEUE_FULL.
UVCOMETD_API int uvcometd_client_publish(uvcometd_client_t* client, const char* channel,
                                         const char* json, uvcometd_done_cb done, void* user);

/// uvcometd_client_publish() with `ext` (a JSON object's text, or NULL for none) sent as this
/// message's "ext" field, without writing an extension. UVCOMETD_EINVALID_ARGUMENT when `ext` is
/// not a JSON object.
UVCOMETD_API int uvcometd_client_publish_ext(uvcometd_client_t* client, const char* channel,
                                             const char* json, const char* ext,
                                             uvcometd_done_cb done, void* user);

/// uvcometd_client_subscribe() with `ext` (a JSON object's text, or NULL) sent as the subscribe
/// message's "ext" field (CometD's subscribeProps); it travels with the re-subscription after a
/// re-handshake too.
UVCOMETD_API int uvcometd_client_subscribe_ext(uvcometd_client_t* client, const char* channel,
                                               const char* ext, uvcometd_message_cb on_message,
                                               uvcometd_done_cb done, void* user,
                                               uvcometd_subscription_t* subscription);

/// Calls a server-side service: publishes `json` to "/service/<target>" and completes with the
/// server's reply (the message with the same id). `timeout_ms` 0 means the default, 5 s; `ext`
/// is a JSON object's text or NULL. Fails at once like uvcometd_client_publish()
/// (UVCOMETD_EINVALID_CHANNEL for a target that makes no valid channel); `done` then never runs.
UVCOMETD_API int uvcometd_client_remote_call(uvcometd_client_t* client, const char* target,
                                             const char* json, uint64_t timeout_ms, const char* ext,
                                             uvcometd_call_cb done, void* user);

/// Holds the publishes, subscribes and unsubscribes issued until the matching
/// uvcometd_client_end_batch() and sends them in one frame. Batches nest.
UVCOMETD_API void uvcometd_client_start_batch(uvcometd_client_t* client);

/// Ends the innermost batch; UVCOMETD_EINVALID_STATE when no batch is open.
UVCOMETD_API int uvcometd_client_end_batch(uvcometd_client_t* client);

/// Sends /meta/disconnect when connected (waiting at most the disconnect timeout), completes
/// every pending call with UVCOMETD_ECANCELLED, drops undelivered messages and closes every
/// handle; `done` (may be NULL) runs last, never inside this call, after which uv_loop_close()
/// may be called once the client is destroyed. Calling it again while closing adds `done`. Once
/// closed it fails with UVCOMETD_EINVALID_STATE (and `done` never runs); UVCOMETD_ENOMEM.
UVCOMETD_API int uvcometd_client_close(uvcometd_client_t* client, uvcometd_done_cb done,
                                       void* user);

/// Drops the current connection and re-establishes the session at once (e.g. after a network
/// change). UVCOMETD_EINVALID_STATE unless open.
UVCOMETD_API int uvcometd_client_reconnect_now(uvcometd_client_t* client);

/// Sets the state callback (NULL removes it), replacing the previous one.
UVCOMETD_API void uvcometd_client_on_state(uvcometd_client_t* client, uvcometd_state_cb cb,
                                           void* user);

/// Sets the callback told when a subscription is lost after a re-handshake (NULL removes it).
UVCOMETD_API void uvcometd_client_on_subscription_lost(uvcometd_client_t* client,
                                                       uvcometd_subscription_lost_cb cb,
                                                       void* user);

/// Adds a listener of meta replies (CometD's addListener): `channel` is "/meta/handshake",
/// "/meta/connect", "/meta/subscribe", "/meta/unsubscribe", "/meta/disconnect", or "/meta/*" or
/// "/meta/**" for all. It runs after the client handled each reply. `*id` (may be NULL) receives
/// a number for uvcometd_client_remove_meta_listener(). UVCOMETD_EINVALID_CHANNEL for any other
/// channel. Listeners may be added and removed at any time, from callbacks too.
UVCOMETD_API int uvcometd_client_on_meta(uvcometd_client_t* client, const char* channel,
                                         uvcometd_meta_cb cb, void* user, uint64_t* id);

/// Removes a meta listener; UVCOMETD_EINVALID_ARGUMENT when unknown.
UVCOMETD_API int uvcometd_client_remove_meta_listener(uvcometd_client_t* client, uint64_t id);

/// Sets the callback of data messages whose channel matches no subscription (service replies,
/// /service/** pushes, a server's direct deliveries), which are dropped otherwise; NULL removes
/// it, replacing the previous one.
UVCOMETD_API void uvcometd_client_on_unmatched(uvcometd_client_t* client, uvcometd_message_cb cb,
                                               void* user);

/// Stops dispatching received messages until uvcometd_client_resume(); they keep arriving until
/// the pending buffer reaches max_pending_count, then fetching stops.
UVCOMETD_API void uvcometd_client_pause(uvcometd_client_t* client);

/// Resumes dispatching received messages.
UVCOMETD_API void uvcometd_client_resume(uvcometd_client_t* client);

/// Messages received and not yet dispatched.
UVCOMETD_API size_t uvcometd_client_pending_count(const uvcometd_client_t* client);

/// The current state.
UVCOMETD_API uvcometd_state_t uvcometd_client_state(const uvcometd_client_t* client);

/// The connection type in use (the handshake's before negotiation).
UVCOMETD_API uvcometd_connection_type_t
uvcometd_client_connection_type(const uvcometd_client_t* client);

/// The clientId the server assigned ("" before the handshake), NUL-terminated. Valid until the
/// next call of this function for the same client, or its destruction.
UVCOMETD_API const char* uvcometd_client_id(uvcometd_client_t* client);

/// The server in use (the URL, one of the URL list or of a server's advice.hosts),
/// NUL-terminated. Valid until the next call of this function for the same client, or its
/// destruction.
UVCOMETD_API const char* uvcometd_client_current_url(uvcometd_client_t* client);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // UVCOMETD_H
