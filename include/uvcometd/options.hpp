/// @file
/// uvcometd — client options, connection types, states and log levels.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "uvcometd/export.hpp"

namespace uvcometd {

class extension;
class auth_extension;
struct error;

/// A Bayeux connection type the client can use.
enum class connection_type { long_polling, websocket };

/// The Bayeux name of a connection type ("long-polling", "websocket").
UVCOMETD_API std::string_view to_string(connection_type t) noexcept;
/// Parses a Bayeux connection type name; nullopt if unknown.
UVCOMETD_API std::optional<connection_type> parse_connection_type(std::string_view name) noexcept;

/// The client's life cycle. Every transition is reported to the state listener.
enum class state {
  disconnected,   ///< created, not opened yet
  connecting,     ///< handshake and first connect of open()
  connected,      ///< session established, connect cycle running
  reconnecting,   ///< the session or the connection was lost and is being re-established
  disconnecting,  ///< close() called: /meta/disconnect sent, transports closing
  closed,         ///< close() finished: every handle is closed
  failed,         ///< no more retries: refused handshake, advice "none" or connection_timeout
};

/// The name of a state ("connected", ...).
UVCOMETD_API std::string_view to_string(state s) noexcept;

/// Severity of a log line given to options::log.
enum class log_level { debug, info, warning, error };

/// Options, copied when the client is created.
struct UVCOMETD_API options {
  /// The server's Bayeux URL, http(s)://host[:port]/path. The websocket URL is derived from it
  /// (ws(s)://, same host and path). The one-URL shorthand of `urls`.
  std::string url;

  /// The servers of a cluster, in order of preference (set `url` or `urls`, not both:
  /// invalid_argument). Each has its websocket URL derived as for `url`. When the current server
  /// cannot be reached, or its connection breaks and the retry on it fails, the client moves to
  /// the next (round robin; the backoff applies between full rounds) and first tries to continue
  /// its session there (same clientId: a cluster that shares sessions accepts it); it re-handshakes
  /// and re-subscribes only when that server answers "unknown client". A server's advice.hosts is
  /// merged in and tried in order on a re-handshake, as the Bayeux spec asks. Cookies are kept per
  /// server: a cookie of one is never sent to another.
  std::vector<std::string> urls;

  /// After this long on another server than the first of `urls`, the client goes back to the
  /// first at its next connect (and stays where it is if that fails). Zero: never (the client
  /// stays on the server that works).
  std::chrono::milliseconds failback_after{0};

  /// Allowed connection types in order of preference. One entry forces that type: if the server
  /// lacks it open() fails with errc::no_common_transport.
  std::vector<connection_type> connection_types{connection_type::websocket,
                                                connection_type::long_polling};

  /// How long the session may stay un-established (at open() or after a failure) before the client
  /// gives up with errc::connection_timeout. Zero means retry forever.
  std::chrono::milliseconds connection_timeout{10000};

  /// Incoming messages waiting for dispatch above which the client stops fetching (no new
  /// /meta/connect) until the application drains the buffer. Zero means no cap.
  /// Overflow policy: a message that has arrived is never dropped; the buffer may exceed the cap by
  /// the messages of frames already in flight, and fetching resumes below the cap.
  std::size_t max_pending_count = 100;

  /// Extra HTTP headers for every request and the websocket upgrade, each "Name: value".
  std::vector<std::string> headers;

  /// JSON object text sent as the handshake's "ext" field; empty for none.
  std::string handshake_ext;

  /// Added to the server's advised long-poll timeout to form a held request's deadline, and the
  /// deadline of every other request.
  std::chrono::milliseconds max_network_delay{10000};

  /// Verify the server's TLS certificate and host name (https/wss). Turn off only for testing.
  bool tls_verify = true;
  /// PEM file of CA certificates to verify the server against; empty uses the system store.
  std::string ca_file;

  /// How long a websocket connection may take to open before the client falls back.
  std::chrono::milliseconds websocket_connect_timeout{10000};
  /// Largest incoming frame accepted, on both transports: a websocket message (refused from the
  /// length its header announces) or a long-polling response body (counted after decompression,
  /// so a compressed "bomb" ends at the limit). Larger ends that connection or request with
  /// errc::message_too_large, and the client reconnects as after any failure. Memory for one
  /// frame stays within about twice this size.
  std::size_t max_message_size = 16u * 1024u * 1024u;

  ///@{
  /// Reconnect backoff after a failure: the delay starts at backoff_initial, doubles on each
  /// consecutive failure up to backoff_max, and is randomised down by up to backoff_jitter (0..1).
  /// advice.interval is added to it. A success resets it.
  std::chrono::milliseconds backoff_initial{250};
  std::chrono::milliseconds backoff_max{30000};
  double backoff_jitter = 0.5;
  ///@}

  /// Replaces the backoff above when set: given the consecutive failure count (1, 2, ...) and the
  /// delay the backoff would use, returns the delay before the next attempt (advice.interval is
  /// still added). Called on the loop thread.
  std::function<std::chrono::milliseconds(unsigned attempt, std::chrono::milliseconds suggested)>
      reconnect_delay;

  ///@{
  /// While the session is being re-established, publish/subscribe calls wait in a queue and leave
  /// once connected again. At most max_queued_messages wait (then publish() fails synchronously
  /// with errc::queue_full). With queue_while_reconnecting false, publish() fails synchronously
  /// with errc::not_connected instead, and queued publishes fail when the connection drops.
  bool queue_while_reconnecting = true;
  std::size_t max_queued_messages = 1000;
  ///@}

  /// Websocket connections that break this many times in a row without a successful /meta/connect
  /// in between make the client fall back to long-polling (when allowed and offered).
  unsigned websocket_failures_before_fallback = 3;

  /// Websocket ping period; a peer silent for two periods is considered dead (black hole).
  std::chrono::milliseconds websocket_ping_interval{15000};

  /// How long close() waits for the server's /meta/disconnect reply.
  std::chrono::milliseconds disconnect_timeout{2000};

  /// Extensions over every outgoing and incoming batch, in registration order (extension.hpp). The
  /// client shares ownership. Stateful ones (ack_extension, replay_extension) belong to one client.
  std::vector<std::shared_ptr<extension>> extensions;
  /// The auth extension: runs after the others on outgoing batches, and is asked for fresh
  /// credentials after an authentication failure. Null: none.
  std::shared_ptr<auth_extension> auth;

  ///@{
  /// Whole-frame codec (the seed's json_dumps/json_loads), for servers that frame messages in
  /// something other than plain JSON text. `frame_encoder` turns the JSON array the client wrote
  /// into the bytes sent; `frame_decoder` turns the bytes received into the JSON array text the
  /// client reads. An error fails the frame like a malformed one. Empty (the default): frames
  /// travel as they are and the client's own strict JSON scanner reads them in place, no copy.
  std::function<error(std::string_view json, std::string& wire)> frame_encoder;
  std::function<error(std::string_view wire, std::string& json)> frame_decoder;
  ///@}

  /// Log sink; libcurl's and libwebsockets' logs go here too. Empty: no logging.
  std::function<void(log_level, std::string_view)> log;
};

}  // namespace uvcometd
