/// @file
/// uvcometd — a received Bayeux message, as handed to subscription callbacks.
#pragma once

#include <string_view>

#include "uvcometd/export.hpp"

namespace uvcometd {

/// A received data message. Every view points into the frame it arrived in and is valid only
/// during the callback that receives it: copy what must outlive the call.
struct UVCOMETD_API message {
  std::string_view channel;  ///< the channel it was published to, e.g. "/chat/room1"
  std::string_view data;     ///< raw JSON text of "data" exactly as received; empty if absent
  std::string_view id;       ///< the message id (unescaped), empty if the server sent none
  std::string_view ext;      ///< raw JSON text of "ext"; empty if absent
  std::string_view json;     ///< raw JSON text of the whole message object
};

/// A reply on a meta channel (/meta/handshake, /meta/connect, /meta/subscribe, /meta/unsubscribe,
/// /meta/disconnect) as meta listeners see it, or the failure of such a request when no reply
/// came (then `json` is empty and `error` says what happened). Views valid during the call only.
struct UVCOMETD_API meta_message {
  std::string_view channel;  ///< the meta channel
  bool successful = false;   ///< the reply's "successful"
  std::string_view error;    ///< the reply's "error" text (decoded), or the failure's description
  std::string_view advice;   ///< raw JSON text of "advice"; empty if absent
  std::string_view ext;      ///< raw JSON text of "ext"; empty if absent
  std::string_view json;     ///< raw JSON text of the whole reply; empty for a failure without one
};

}  // namespace uvcometd
