/// @file
/// uvcometd — extensions: hooks over every outgoing and incoming batch of messages, and the auth
/// extension the client asks for fresh credentials after an authentication failure.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "uvcometd/error.hpp"
#include "uvcometd/export.hpp"
#include "uvcometd/message.hpp"
#include "uvcometd/options.hpp"

namespace uvcometd {

namespace detail {
struct message_access;
}

/// One Bayeux message as extensions see it: its top-level fields in order, each a name and the raw
/// JSON text of its value. Every setter validates what it stores, so the message always encodes to
/// valid JSON.
class UVCOMETD_API bayeux_message {
 public:
  bayeux_message() = default;
  /// Parses one JSON object. Throws std::system_error(errc::invalid_argument) if it is not one,
  /// or if it names a member twice (member names are compared unescaped).
  static bayeux_message parse(std::string_view json);

  /// The decoded "channel" (empty when absent or not a string).
  std::string channel() const;
  /// True for /meta/* channels.
  bool is_meta() const;
  /// The "successful" field of a reply; nullopt when absent or not a boolean.
  std::optional<bool> successful() const noexcept;

  /// Raw JSON text of a field's value; empty when absent.
  std::string_view field(std::string_view name) const noexcept;
  /// A string field decoded; nullopt when absent or not a string.
  std::optional<std::string> string_field(std::string_view name) const;
  /// Sets (or adds, at the end) a field to `raw_json`. Throws invalid_argument if not one JSON
  /// value.
  void set_field(std::string_view name, std::string_view raw_json);
  /// Sets a field to a JSON string holding `value`.
  void set_string_field(std::string_view name, std::string_view value);
  /// Removes a field; false if it was absent.
  bool erase_field(std::string_view name);

  /// Raw JSON text of ext[key]; empty when "ext" or the key is absent.
  std::string_view ext(std::string_view key) const noexcept;
  /// Sets ext[key] to `raw_json`, creating "ext" as needed (an "ext" that is not an object is
  /// replaced). Throws invalid_argument if `raw_json` is not one JSON value.
  void set_ext(std::string_view key, std::string_view raw_json);
  /// Removes ext[key]; false if absent.
  bool erase_ext(std::string_view key);

  /// Every field, in order: {name (decoded), raw JSON value}.
  const std::vector<std::pair<std::string, std::string>>& fields() const noexcept {
    return fields_;
  }
  /// The message as one JSON object.
  std::string to_json() const;
  /// Appends the message as one JSON object to `out`.
  void append_json(std::string& out) const;

 private:
  friend struct detail::message_access;
  std::vector<std::pair<std::string, std::string>> fields_;
  std::uint64_t tag_ = 0;  // the client's id of an outgoing message: survives any edit
};

/// HTTP headers as {name, value} pairs, in order.
using header_list = std::vector<std::pair<std::string, std::string>>;

/// The messages of one frame and the headers of the exchange that carries it.
struct UVCOMETD_API message_batch {
  /// The transport carrying it.
  connection_type transport = connection_type::long_polling;
  /// The messages, in frame order. Erasing one drops it: an outgoing message dropped this way
  /// completes its call with errc::dropped_by_extension; an incoming one is never seen.
  std::vector<bayeux_message> messages;
  /// Outgoing: the request headers (long-polling: this HTTP request's; websocket: the headers of
  /// the next upgrade, as frames travel on an open connection without headers). Starts as
  /// options::headers. Incoming: the response headers; empty on websocket.
  header_list headers;
  /// Incoming only: asks the client to send again the message `reply` answers (a publish,
  /// subscribe or unsubscribe, at most once per message; outgoing extensions see it again) instead
  /// of reporting the reply, which is then removed once every extension is done with the batch.
  /// Returns false for a message that is not a reply (no "successful", or no "id" the client
  /// could have sent).
  bool resend(const bayeux_message& reply);

 private:
  friend struct detail::message_access;
  std::vector<std::uint64_t> resend_ids_;  // what resend() asked for, read by the client
};

/// Called by an extension exactly once when it is done with a batch, on the loop thread, inside
/// the extension call or later. Until then the batch (and every batch behind it) waits without a
/// deadline: a continuation that is never called stalls the connection until close(). An error
/// stops the batch: an outgoing one completes the calls of its messages with
/// errc::extension_error (with the error's text); an incoming one is discarded like a malformed
/// frame (the request fails, a websocket connection is re-established).
using extension_done = std::function<void(const error& err)>;

/// A hook over the message stream. Outgoing batches pass the extensions in registration order
/// (options::extensions, then options::auth last: the credentials it adds are the final word);
/// incoming batches in the reverse order (options::auth first), so extensions nest like layers.
/// Batches keep their order: the next batch waits until the extensions are done with this one.
/// An exception thrown by a hook is caught and handled as done(errc::extension_error).
/// Hooks run on the loop thread and may call into the client, close() included. Once the client
/// object is destroyed no hook runs any more. A stateful extension that reads replies (ack) is
/// best registered first, so that it sees an incoming batch last, after any that could reject it.
class UVCOMETD_API extension {
 public:
  virtual ~extension() = default;
  /// Sees every outgoing batch (meta messages included) just before it is sent.
  virtual void outgoing(message_batch& batch, extension_done done) { (void)batch, done({}); }
  /// Sees every incoming batch before the client processes any message of it.
  virtual void incoming(message_batch& batch, extension_done done) { (void)batch, done({}); }
  /// Told of every data message once the client is done with it: handed to every matching
  /// handler (or matching none). Messages dropped by close() never get here. Synchronous.
  virtual void delivered(const message& msg) { (void)msg; }
};

/// An extension that can obtain fresh credentials. After an authentication failure (a handshake
/// or /meta/connect refused with a 401 or 403 error, or an HTTP 401/403 answer) the client calls
/// authenticate() once — concurrent failures share one call in flight — then retries the failed
/// operation once. When authenticate() fails, or the retry fails again, the error reaches the
/// caller (during open(): open() fails with the server's error). It is not called again before a
/// connect succeeded or a backoff delay passed, so a bad credential never loops.
class UVCOMETD_API auth_extension : public extension {
 public:
  /// Obtains fresh credentials; calls `done` exactly once (an error gives up, see above).
  virtual void authenticate(extension_done done) = 0;
};

}  // namespace uvcometd
