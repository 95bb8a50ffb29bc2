// A received frame through both readers the client runs it through: the frame decoder
// (lib/codec.* decode_frame, which the session acts on) and the extension splitter
// (lib/extension_pipeline.* split_frame and bayeux_message::parse, which incoming extensions see).
//
// Differential checks (issue 11, findings 18 and 19): every message the decoder uses must be one
// bayeux_message::parse takes (the client hands incoming extensions exactly that), and both must
// read it the same: channel, id, successful, whether advice is present and what it says. What
// extensions hand on (join_frame) must decode to the same messages; a message read again from a
// saved cursor (as the session does at dispatch) must be the same; where split_frame and the
// decoder both take a whole frame they agree, and split messages survive join_frame.
//
// Input: the frame text, as it came off the wire.
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "codec.hpp"
#include "extension_pipeline.hpp"
#include "fuzz_target.hpp"
#include "uvcometd/extension.hpp"

namespace {

namespace d = uvcometd::detail;

// `s` in quotes, bytes outside printable ASCII as \xNN.
std::string quoted(std::string_view s) {
  std::string out = "'";
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) {
      static const char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 15];
    } else {
      out += c;
    }
  }
  return out + "'";
}

// The advice of `raw` (one JSON value) as the decoder reads it: through a frame of one message.
std::optional<d::advice> advice_of(std::string_view raw) {
  d::decoded_frame f;
  const std::string text = "[{\"channel\":\"/x\",\"advice\":" + std::string(raw) + "}]";
  if (d::decode_frame(text, f) || f.messages.size() != 1) return std::nullopt;
  return f.messages[0].adv;
}

std::string show(const d::advice& a) {
  auto opt = [](const std::optional<std::int64_t>& v) {
    return v ? std::to_string(*v) : std::string("-");
  };
  return "{reconnect " + std::to_string(static_cast<int>(a.reconnect)) + ", interval " +
         opt(a.interval) + ", timeout " + opt(a.timeout) + "}";
}

// The id as the decoder keeps it: a string decoded, anything else as its raw text.
std::string splitter_id(const uvcometd::bayeux_message& m) {
  if (auto s = m.string_field("id")) return *s;
  return std::string(m.field("id"));
}

// What the session and the extensions read of one message must be the same.
void compare(const d::wire_message& a, const uvcometd::bayeux_message& b, const std::string& at) {
  FUZZ_CHECK(a.channel == b.channel(),
             "channel: decoder " + quoted(a.channel) + ", extensions " + quoted(b.channel()) + at);
  FUZZ_CHECK(a.id == splitter_id(b),
             "id: decoder " + quoted(a.id) + ", extensions " + quoted(splitter_id(b)) + at);
  FUZZ_CHECK(a.successful == b.successful(), "successful differs" + at);
  FUZZ_CHECK(a.has_advice == !b.field("advice").empty(),
             std::string("advice: decoder ") + (a.has_advice ? "present" : "absent") +
                 ", extensions " + (b.field("advice").empty() ? "absent" : "present") + at);
  if (a.has_advice) {
    // A repeated "advice" must not be merged by one reader and replaced by the other.
    const auto seen = advice_of(b.field("advice"));
    FUZZ_CHECK(seen && seen->reconnect == a.adv.reconnect && seen->interval == a.adv.interval &&
                   seen->timeout == a.adv.timeout,
               "advice: decoder " + show(a.adv) + ", extensions " +
                   (seen ? show(*seen) : std::string("unreadable")) + at);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  d::decoded_frame frame;
  const uvcometd::error err = d::decode_frame(text, frame);
  if (err) FUZZ_CHECK(!err.message.empty(), "a decoder error must say what is wrong");
  for (const auto& why : frame.skipped) FUZZ_CHECK(!why.message.empty(), "a skip must say why");

  // The client hands each usable message to the incoming extensions as bayeux_message::parse of
  // its text: that must work, and read the message as the session does.
  std::vector<uvcometd::bayeux_message> parsed;
  for (std::size_t i = 0; i < frame.messages.size(); ++i) {
    const auto& a = frame.messages[i];
    const std::string at = " of message " + std::to_string(i) + " in " + quoted(text);
    FUZZ_CHECK(!a.json.empty() && a.json.front() == '{' && a.json.back() == '}',
               quoted(a.json) + at);
    (void)d::decode_string_array(a.connection_types);
    try {
      parsed.push_back(uvcometd::bayeux_message::parse(a.json));
    } catch (const std::exception& e) {
      FUZZ_CHECK(false, std::string("bayeux_message::parse refuses a message the decoder uses: ") +
                            e.what() + at);
    }
    compare(a, parsed.back(), at);
  }

  // What the extensions hand on (join_frame) reads back as the same messages.
  if (!parsed.empty()) {
    const std::string joined = d::join_frame(parsed);
    d::decoded_frame again;
    const auto err2 = d::decode_frame(joined, again);
    FUZZ_CHECK(!err2 && again.skipped.empty() && again.messages.size() == parsed.size(),
               "join_frame output does not decode to the same messages: " + quoted(joined));
    for (std::size_t i = 0; i < parsed.size(); ++i) {
      compare(again.messages[i], parsed[i],
              " of message " + std::to_string(i) + " in " + quoted(joined));
    }
  }

  // The session walks a frame once and reads each data message again later from where the walk
  // stood: a reader made from a saved cursor reads the same message.
  {
    d::frame_reader walk(text);
    d::string_arena arena, arena2;
    for (int guard = 0; guard < 100000; ++guard) {
      const auto at = walk.save();
      d::wire_message m;
      uvcometd::error why;
      const auto st = walk.next(m, arena, why);
      if (st == d::frame_reader::status::end || st == d::frame_reader::status::malformed) break;
      if (st != d::frame_reader::status::message) continue;
      const std::string json(m.json), channel(m.channel), id(m.id);
      d::frame_reader again(text, at);
      d::wire_message m2;
      uvcometd::error why2;
      FUZZ_CHECK(again.next(m2, arena2, why2) == d::frame_reader::status::message &&
                     m2.json == json && m2.channel == channel && m2.id == id,
                 "a message read again from its saved cursor differs: " + quoted(json));
    }
  }

  // The splitter (outgoing batches): where it and the decoder both take the whole frame, they
  // agree; and its messages survive join_frame.
  std::vector<uvcometd::bayeux_message> split;
  if (d::split_frame(text, split)) {
    if (!err && frame.skipped.empty()) {
      FUZZ_CHECK(split.size() == frame.messages.size(), "message count differs in " + quoted(text));
      for (std::size_t i = 0; i < split.size(); ++i) {
        compare(frame.messages[i], split[i],
                " of message " + std::to_string(i) + " in " + quoted(text));
      }
    }
    const std::string joined = d::join_frame(split);
    std::vector<uvcometd::bayeux_message> again;
    FUZZ_CHECK(d::split_frame(joined, again),
               "join_frame output does not split: " + quoted(joined));
    FUZZ_CHECK(again.size() == split.size(), quoted(joined));
    for (std::size_t i = 0; i < split.size(); ++i) {
      FUZZ_CHECK(again[i].fields() == split[i].fields(),
                 "message " + std::to_string(i) + " changed through join_frame: " + quoted(joined));
    }
  }
  return 0;
}
