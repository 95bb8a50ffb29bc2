// Frames ⇄ Bayeux messages. Decoding splits a frame (one JSON array) into messages whose fields
// are views into the frame text; only strings with escapes are decoded into the frame's arena.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "uvcometd/error.hpp"

namespace uvcometd::detail {

enum class reconnect_advice { unspecified, retry, handshake, none };

struct advice {
  reconnect_advice reconnect = reconnect_advice::unspecified;
  std::optional<std::int64_t> interval;  // ms
  std::optional<std::int64_t> timeout;   // ms
};

// One decoded message. Views point into the frame text or the decoded frame's arena.
struct wire_message {
  std::string_view json;                // the whole object text
  std::string_view channel;             // decoded
  std::string_view id;                  // decoded (a number's raw text if the server sent one)
  std::string_view client_id;           // decoded
  std::string_view error;               // decoded
  std::string_view subscription;        // decoded when a string, raw text when an array
  std::string_view data;                // raw JSON text, empty when absent
  std::string_view ext;                 // raw JSON text, empty when absent
  std::string_view connection_types;    // raw JSON text of supportedConnectionTypes
  std::optional<bool> successful;
  bool has_advice = false;
  advice adv;
};

struct decoded_frame {
  std::vector<wire_message> messages;
  std::deque<std::string> arena;  // decoded strings that had escapes (stable addresses)
  void clear() {
    messages.clear();
    arena.clear();
  }
};

// Decodes `text` (one JSON array of message objects). On failure returns errc::bad_response with
// a message that says what is wrong; `out` is then unspecified.
error decode_frame(std::string_view text, decoded_frame& out);

// Decodes a JSON array of strings (supportedConnectionTypes); non-strings are skipped.
std::vector<std::string> decode_string_array(std::string_view raw);

}  // namespace uvcometd::detail
