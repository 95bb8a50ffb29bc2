// A received frame through both readers the client runs it through: the frame decoder
// (lib/codec.* decode_frame, which the session acts on) and the extension splitter
// (lib/extension_pipeline.* split_frame and bayeux_message::parse, which incoming extensions see).
//
// Differential checks (issue 11, findings 18 and 19): a frame the decoder accepts must be one the
// splitter accepts too (otherwise the client hands it to the session without any incoming
// extension having seen it), and where both accept they must read the same messages: count,
// channel, id, successful, whether advice is present and what it says (reconnect, interval,
// timeout). Then the splitter's messages must
// survive join_frame and a second split unchanged.
//
// Input: the frame text, as it came off the wire.
#include <cstdlib>
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
  auto opt = [](const std::optional<std::int64_t>& v) { return v ? std::to_string(*v) : std::string("-"); };
  return "{reconnect " + std::to_string(static_cast<int>(a.reconnect)) + ", interval " +
         opt(a.interval) + ", timeout " + opt(a.timeout) + "}";
}

// The id as the decoder keeps it: a string decoded, anything else as its raw text.
std::string splitter_id(const uvcometd::bayeux_message& m) {
  if (auto s = m.string_field("id")) return *s;
  return std::string(m.field("id"));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  d::decoded_frame frame;
  const uvcometd::error err = d::decode_frame(text, frame);
  std::vector<uvcometd::bayeux_message> split;
  const bool split_ok = d::split_frame(text, split);

  if (err) {
    FUZZ_CHECK(!err.message.empty(), "a decoder error must say what is wrong");
  } else {
    // What the session uses of each message must be readable without surprises.
    for (const auto& m : frame.messages) {
      FUZZ_CHECK(!m.json.empty() && m.json.front() == '{' && m.json.back() == '}', quoted(m.json));
      (void)d::decode_string_array(m.connection_types);
    }
  }

  // UVCOMETD_FUZZ_FRAME_ONLY_BOTH=1 skips this check, to look past it while it fails often.
  static const bool only_both = std::getenv("UVCOMETD_FUZZ_FRAME_ONLY_BOTH") != nullptr;
  FUZZ_CHECK(err || split_ok || only_both,
             "the decoder accepts a frame that the extension splitter refuses: " + quoted(text));
  if (!err && split_ok) {
    FUZZ_CHECK(frame.messages.size() == split.size(),
               "message count: decoder " + std::to_string(frame.messages.size()) + ", splitter " +
                   std::to_string(split.size()) + " in " + quoted(text));
    for (std::size_t i = 0; i < split.size(); ++i) {
      const auto& a = frame.messages[i];
      const auto& b = split[i];
      const std::string at = " of message " + std::to_string(i) + " in " + quoted(text);
      FUZZ_CHECK(a.channel == b.channel(), "channel: decoder " + quoted(a.channel) +
                                               ", splitter " + quoted(b.channel()) + at);
      FUZZ_CHECK(a.id == splitter_id(b), "id: decoder " + quoted(a.id) + ", splitter " +
                                             quoted(splitter_id(b)) + at);
      FUZZ_CHECK(a.successful == b.successful(), "successful differs" + at);
      FUZZ_CHECK(a.has_advice == !b.field("advice").empty(),
                 std::string("advice: decoder ") + (a.has_advice ? "present" : "absent") +
                     ", splitter " + (b.field("advice").empty() ? "absent" : "present") + at);
      // What extensions see of the advice is what the session acts on (a repeated "advice"
      // member must not be merged by one reader and replaced by the other).
      if (a.has_advice) {
        const auto seen = advice_of(b.field("advice"));
        FUZZ_CHECK(seen && seen->reconnect == a.adv.reconnect && seen->interval == a.adv.interval &&
                       seen->timeout == a.adv.timeout,
                   "advice: decoder " + show(a.adv) + ", splitter " +
                       (seen ? show(*seen) : std::string("unreadable")) + at);
      }
    }
  }

  if (split_ok) {
    // What extensions send on (join_frame) reads back as the same messages.
    const std::string joined = d::join_frame(split);
    std::vector<uvcometd::bayeux_message> again;
    FUZZ_CHECK(d::split_frame(joined, again), "join_frame output does not split: " + quoted(joined));
    FUZZ_CHECK(again.size() == split.size(), quoted(joined));
    for (std::size_t i = 0; i < split.size(); ++i) {
      FUZZ_CHECK(again[i].fields() == split[i].fields(),
                 "message " + std::to_string(i) + " changed through join_frame: " + quoted(joined));
    }
  }
  return 0;
}
