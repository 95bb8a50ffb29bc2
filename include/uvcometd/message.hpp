// uvcometd — a received Bayeux message, as handed to subscription callbacks.
#pragma once

#include <string_view>

namespace uvcometd {

// A received data message. Every view points into the frame it arrived in and is valid only
// during the callback that receives it: copy what must outlive the call.
struct message {
  std::string_view channel;  // the channel it was published to, e.g. "/chat/room1"
  std::string_view data;     // raw JSON text of "data" exactly as received; empty if absent
  std::string_view id;       // the message id (unescaped), empty if the server sent none
  std::string_view ext;      // raw JSON text of "ext"; empty if absent
  std::string_view json;     // raw JSON text of the whole message object
};

}  // namespace uvcometd
