/// @file
/// uvcometd — error codes and the error value every completion carries.
#pragma once

#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "uvcometd/export.hpp"

namespace uvcometd {

/// Error codes of the uvcometd category. Synchronous failures return them as std::error_code;
/// asynchronous completions carry the same codes inside uvcometd::error.
enum class errc {
  invalid_state = 1,      ///< the call is not allowed in the client's current state
  invalid_channel,        ///< the channel name is malformed or not allowed for this call
  invalid_argument,       ///< an argument is malformed (e.g. publish data that is not JSON)
  server_error,           ///< the server answered successful:false (see error::server_code)
  transport_error,        ///< the network exchange failed (connection refused, reset, TLS, ...)
  http_error,             ///< the server answered with an HTTP status other than 2xx
  bad_response,           ///< the server's frame is empty, not JSON, or not a Bayeux message array
  no_reply,               ///< the server's response did not contain the reply to this message
  timeout,                ///< a request got no answer within its deadline
  cancelled,              ///< the client was closed before the call completed
  connection_timeout,     ///< the session could not be (re-)established within connection_timeout
  no_common_transport,    ///< the server offers none of the connection types the client allows
  message_too_large,      ///< an incoming frame exceeded the configured size limit
  session_ended,          ///< a successful reply advised reconnect "none": the session is over
  not_connected,          ///< publish while reconnecting with queueing turned off
  queue_full,             ///< too many messages already wait for the connection to come back
  dropped_by_extension,   ///< an outgoing extension removed the message from its batch
  extension_error,        ///< an extension failed or threw (its text is in error::message)
  authentication_failed,  ///< the auth extension's authenticate() failed
  certificate_error,      ///< the server's TLS certificate was refused (untrusted, expired, wrong
                          ///< host name): a configuration error, not retried
};

/// The error category of uvcometd ("uvcometd").
UVCOMETD_API const std::error_category& category() noexcept;

/// Makes a std::error_code of the uvcometd category.
UVCOMETD_API std::error_code make_error_code(errc e) noexcept;

/// The outcome of an asynchronous call. Empty (false) on success.
struct UVCOMETD_API error {
  std::error_code code;           ///< what kind of failure; empty on success
  int server_code = 0;            ///< the Bayeux error code ("403" → 403); 0 when there is none
  std::vector<std::string> args;  ///< the Bayeux error arguments ("403:a,b:text" → {"a","b"})
  std::string message;            ///< the server's text, or a description of the transport failure
  int http_status = 0;            ///< the HTTP status of an http_error (or bad_response); else 0

  error() = default;
  /// A failure of code `c` described by `msg`.
  error(std::error_code c, std::string msg) : code(c), message(std::move(msg)) {}

  /// True when this is a failure.
  explicit operator bool() const noexcept { return static_cast<bool>(code); }
  /// One line for humans: "refused by the server 403 [/foo]: Forbidden channel".
  std::string to_string() const;
};

/// Parses a Bayeux error string "code:arg1,arg2:message" into an error of code server_error.
/// A string that does not follow the grammar is kept whole in `message` with server_code 0.
UVCOMETD_API error parse_server_error(std::string_view text);

}  // namespace uvcometd

namespace std {
template <>
struct is_error_code_enum<uvcometd::errc> : true_type {};
}  // namespace std
