// What to do after a failure, decided in one pure function (like nghttp2_is_fatal): the
// session's recover() applies the remedy, and the table of cases is unit-tested on its own.
#pragma once

#include <cstdint>

#include "codec.hpp"
#include "uvcometd/error.hpp"

namespace uvcometd::detail {

// What failed.
enum class failure_kind : std::uint8_t {
  handshake_refused,  // the server answered the handshake with successful:false
  handshake_failed,   // the handshake's request failed (network, HTTP status, bad response)
  connect_refused,    // the server answered /meta/connect with successful:false
  connect_failed,     // the connect's request failed
  connection_lost,    // a stream connection broke, never opened, or went silent
  auth_failed,        // authenticate() failed, or the retry after it failed again
};

struct failure {
  failure_kind kind = failure_kind::connection_lost;
  error err;
  // The server's advice on a refusal (for a connect: unspecified resolved already, see
  // session::connect_refused).
  reconnect_advice advice = reconnect_advice::unspecified;
  bool was_up = false;          // connection_lost: the connection had opened
  bool lost_handshake = false;  // connection_lost: a handshake was in flight on it
};

// What the session knows that the remedy depends on.
struct session_facts {
  bool opening = false;             // open() has not completed yet
  bool has_auth = false;            // an auth extension is configured
  bool can_authenticate = false;    // ...and may be asked now
  bool websocket_hopeless = false;  // websocket never came up, or broke too often in a row
  bool on_websocket = false;        // the failure is websocket's
  bool can_fall_back = false;       // long-polling is allowed and the server offers it
};

enum class remedy : std::uint8_t {
  retry,                    // the same step again after the backoff delay
  rehandshake,              // a new handshake after the backoff delay (the clientId is gone)
  authenticate_then_retry,  // fresh credentials, then the same step once, at once
  fall_back,                // long-polling from now on, at once
  give_up,                  // the session fails with the error
};

remedy classify(const failure& f, const session_facts& s) noexcept;

// An HTTP client error that retrying the same request will not change (4xx but 408 and 429).
bool is_final_refusal(const error& err) noexcept;

}  // namespace uvcometd::detail
