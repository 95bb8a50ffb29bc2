// Frames ⇄ Bayeux messages. Reading walks a frame (one JSON array of message objects) one message
// at a time; fields are views into the frame text, and only strings with escapes are decoded,
// into a reusable arena. Nothing is kept per message, so a frame costs its text and nothing more.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "uvcometd/error.hpp"
#include "uvcometd/options.hpp"

namespace uvcometd::detail {

// --- encoding ---

enum class message_kind : std::uint8_t {
  handshake,
  connect,
  subscribe,
  unsubscribe,
  publish,
  disconnect
};

// What the messages of one session have in common.
struct encode_context {
  std::string_view client_id;
  connection_type type = connection_type::long_polling;     // a connect's connectionType
  const std::vector<connection_type>* supported = nullptr;  // a handshake's types
  std::string_view handshake_ext;                           // JSON object text, or empty
};

// One message of an outgoing batch: what the session sends, before any text exists. Views are
// valid during session_host::send() only.
struct batch_message {
  message_kind kind = message_kind::publish;
  std::uint64_t id = 0;
  std::string_view channel;
  std::string_view payload;    // a publish's data (JSON text) or a (un)subscribe's pattern
  bool first_connect = false;  // asks the server to answer within hold_ms (advice.timeout)
  std::uint32_t hold_ms = 0;
  std::string_view ext;  // the message's own "ext" object, or empty
};

// The messages of one frame, with what they share.
struct outgoing_batch {
  std::vector<batch_message> messages;
  encode_context context;
  // The frame: one JSON array of the messages.
  std::string encode() const;
};

// Appends one message object to `frame`: its channel, id and the clientId, what its kind needs
// (a publish's data, a (un)subscribe's pattern, a handshake's versions, types and ext, a
// connect's type), its own ext, and for a first connect the hold it asks for.
void encode_message(std::string& frame, const batch_message& m, const encode_context& c);

// --- decoding ---

enum class reconnect_advice { unspecified, retry, handshake, none };

struct advice {
  reconnect_advice reconnect = reconnect_advice::unspecified;
  std::optional<std::int64_t> interval;  // ms
  std::optional<std::int64_t> timeout;   // ms
  std::string_view hosts;                // raw JSON text of "hosts" (an array), empty if absent
};

// One decoded message. Views point into the frame text or the reader's arena.
struct wire_message {
  std::string_view json;              // the whole object text
  std::string_view channel;           // decoded
  std::string_view id;                // decoded (a number's raw text if the server sent one)
  std::string_view client_id;         // decoded
  std::string_view error;             // decoded
  std::string_view subscription;      // decoded when a string, raw text when an array
  std::string_view data;              // raw JSON text, empty when absent
  std::string_view ext;               // raw JSON text, empty when absent
  std::string_view connection_types;  // raw JSON text of supportedConnectionTypes
  std::string_view advice_json;       // raw JSON text of advice, empty when absent
  std::optional<bool> successful;
  bool has_advice = false;
  advice adv;

  // See detail::is_reply().
  bool is_reply() const noexcept;
};

// The one definition of a reply to one of our requests (it says "successful", or it is on a
// /meta/ channel), as opposed to a data message delivered to a subscription. Replies are matched
// to requests by id and channel, never routed.
bool is_reply(std::string_view channel, bool has_successful) noexcept;

// The session's message ids are decimal integers ("id":"42"; a server may echo them as numbers).
bool parse_message_id(std::string_view text, std::uint64_t& out) noexcept;

// Decoded strings of one message (escaped channel names, ids, ...). Slots keep their memory
// between messages; a slot that grew past a few KiB is given back on reset().
class string_arena {
 public:
  std::string& take();
  void reset() noexcept;

 private:
  std::deque<std::string> slots_;  // a deque never moves its elements: views stay valid
  std::size_t used_ = 0;
};

// Walks the messages of one frame in order. A message that is not usable (not an object, no
// valid channel, a member of the wrong type or repeated, an invalid escape, nesting deeper than
// json::max_depth) is skipped with the reason, and the messages after it are read as usual:
// one bad message never costs the frame. Only a frame whose structure is broken (not a JSON
// array, truncated, garbage between messages) ends with status::malformed.
class frame_reader {
 public:
  enum class status { message, skipped, end, malformed };
  // Where a walk stands; a reader made from it continues there (a frame's text is walked once
  // when it arrives, and its data messages again one at a time as they are dispatched).
  struct cursor {
    std::size_t pos = 0;
    std::size_t index = 0;
    std::uint8_t phase = 0;
  };

  explicit frame_reader(std::string_view text) noexcept : text_(text) {}
  frame_reader(std::string_view text, cursor at) noexcept
      : text_(text), pos_(at.pos), index_(at.index), phase_(static_cast<phase>(at.phase)) {}

  // The next message into `m` (its views into the text or `arena`, which is reset first).
  // skipped and malformed set `why` (errc::bad_response, naming the message and the member).
  status next(wire_message& m, string_arena& arena, error& why);

  cursor save() const noexcept { return {pos_, index_, static_cast<std::uint8_t>(phase_)}; }

 private:
  enum class phase : std::uint8_t { start, first, rest, single, done };
  std::string_view text_;
  std::size_t pos_ = 0;
  std::size_t index_ = 0;
  phase phase_ = phase::start;
  std::vector<std::string_view> names_;  // names of the current message beyond the known ones
};

// Every message of a frame at once (tests and benchmarks; the session walks frames with
// frame_reader instead).
struct decoded_frame {
  std::vector<wire_message> messages;
  std::vector<error> skipped;  // why each skipped message was skipped
  std::deque<string_arena> arenas;
  void clear() {
    messages.clear();
    skipped.clear();
    arenas.clear();
  }
};

// Decodes `text`. Returns errc::bad_response with what is wrong when the frame is malformed
// (`out` then holds the messages before the fault); skipped messages are listed in out.skipped.
error decode_frame(std::string_view text, decoded_frame& out);

// Decodes a JSON array of strings (supportedConnectionTypes); non-strings are skipped.
std::vector<std::string> decode_string_array(std::string_view raw);

}  // namespace uvcometd::detail
