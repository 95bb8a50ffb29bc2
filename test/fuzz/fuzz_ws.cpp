// The bytes a websocket server sends after the client's upgrade request: the HTTP answer
// (ws::upgrade_reader) and then the frames (ws::frame_reader) of lib/transport/ws_protocol.*,
// driven the way websocket.cpp drives them. The same bytes are read three ways: in one piece, cut
// at points taken from the input, and one byte at a time. The events (upgrade outcome, messages,
// pings, pongs, close, protocol error) must be the same whatever the cuts, and no message may
// exceed the limit.
//
// Input: byte 0 picks max_message_size; byte 1 the number of cuts (0-15), then two bytes per cut
// (its offset, modulo the stream length); the rest is the stream.
#include <algorithm>
#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_target.hpp"
#include "transport/ws_protocol.hpp"

namespace {

namespace ws = uvcometd::detail::ws;

// The key of RFC 6455's example; seeds answer it with "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".
constexpr std::string_view key = "dGhlIHNhbXBsZSBub25jZQ==";

struct reading {
  std::vector<std::string> events;
  bool done = false;  // the connection ends here (refused, invalid, close or error)
};

class reader {
 public:
  explicit reader(std::size_t max) : max_(max), upgrade_(std::string(key)) {}

  void feed(const char* p, std::size_t len, reading& r) {
    if (r.done) return;
    if (!frames_) {
      const std::size_t used = upgrade_.feed(p, len);
      FUZZ_CHECK(used <= len, "upgrade_reader used more than it was given");
      p += used;
      len -= used;
      switch (upgrade_.status_state()) {
        case ws::upgrade_reader::state::incomplete:
          FUZZ_CHECK(len == 0, "an incomplete upgrade answer left bytes unread");
          return;
        case ws::upgrade_reader::state::refused:
          FUZZ_CHECK(upgrade_.status() != 101, "refused with 101");
          r.events.push_back("refused " + std::to_string(upgrade_.status()) + " " +
                             upgrade_.reason());
          r.done = true;
          return;
        case ws::upgrade_reader::state::invalid:
          FUZZ_CHECK(!upgrade_.what().empty(), "an invalid upgrade answer must say why");
          r.events.push_back("invalid " + upgrade_.what());
          r.done = true;
          return;
        case ws::upgrade_reader::state::accepted:
          r.events.push_back("accepted");
          frames_.emplace(max_);
          break;
      }
      if (len == 0) return;
    }
    for (;;) {
      std::size_t used = 0;
      const auto ev = frames_->next(p, len, used);
      FUZZ_CHECK(used <= len, "frame_reader used more than it was given");
      p += used;
      len -= used;
      if (max_ != 0) {
        FUZZ_CHECK(frames_->buffered() <= max_, "buffered " + std::to_string(frames_->buffered()) +
                                                    " bytes over the limit " +
                                                    std::to_string(max_));
      }
      switch (ev) {
        case ws::frame_reader::event::none:
          FUZZ_CHECK(len == 0, "frame_reader returned none with bytes left");
          return;
        case ws::frame_reader::event::message: {
          std::string m = frames_->take_message();
          FUZZ_CHECK(frames_->buffered() == 0, "take_message left bytes buffered");
          if (max_ != 0) FUZZ_CHECK(m.size() <= max_, "message over max_message_size");
          r.events.push_back("message " + m);
          break;
        }
        case ws::frame_reader::event::ping:
          FUZZ_CHECK(frames_->control_payload().size() <= 125, "ping payload over 125 bytes");
          r.events.push_back("ping " + frames_->control_payload());
          break;
        case ws::frame_reader::event::pong: r.events.push_back("pong"); break;
        case ws::frame_reader::event::close:
          r.events.push_back("close " + std::to_string(frames_->close_code()) + " " +
                             frames_->control_payload());
          r.done = true;
          return;
        case ws::frame_reader::event::error:
          FUZZ_CHECK(frames_->close_status() == 1002 || frames_->close_status() == 1009,
                     "close status " + std::to_string(frames_->close_status()));
          FUZZ_CHECK(!frames_->what().empty(), "a protocol error must say why");
          r.events.push_back("error " + std::to_string(frames_->close_status()) + " " +
                             frames_->what());
          r.done = true;
          return;
      }
      if (len == 0) return;  // the transport only asks again when more bytes arrive
    }
  }

 private:
  std::size_t max_;
  ws::upgrade_reader upgrade_;
  std::optional<ws::frame_reader> frames_;
};

reading read_in_pieces(std::string_view stream, std::size_t max,
                       const std::vector<std::size_t>& cuts) {
  reader rd(max);
  reading r;
  std::size_t from = 0;
  for (const std::size_t to : cuts) {
    rd.feed(stream.data() + from, to - from, r);
    from = to;
  }
  rd.feed(stream.data() + from, stream.size() - from, r);
  return r;
}

std::string describe(const reading& r) {
  std::string s;
  for (const auto& e : r.events) s += "  " + e.substr(0, 200) + "\n";
  return s + (r.done ? "  (ended)\n" : "  (open)\n");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  uvcometd_fuzz::input in(data, size);
  static constexpr std::array<std::size_t, 8> limits = {0, 1, 2, 125, 126, 200, 65536, 1u << 20};
  const std::size_t max = limits[in.pick(limits.size())];
  const std::size_t ncuts = in.byte() % 16;
  std::vector<std::uint16_t> raw_cuts;
  for (std::size_t i = 0; i < ncuts; ++i) raw_cuts.push_back(in.word());
  const std::string stream = in.rest();

  std::vector<std::size_t> cuts;
  for (const auto c : raw_cuts) cuts.push_back(stream.empty() ? 0 : c % (stream.size() + 1));
  std::sort(cuts.begin(), cuts.end());

  const reading whole = read_in_pieces(stream, max, {});
  const reading cut = read_in_pieces(stream, max, cuts);
  FUZZ_CHECK(cut.events == whole.events && cut.done == whole.done,
             "in one piece:\n" + describe(whole) + "cut:\n" + describe(cut));
  if (stream.size() <= 4096) {
    std::vector<std::size_t> every;
    for (std::size_t i = 1; i < stream.size(); ++i) every.push_back(i);
    const reading bytes = read_in_pieces(stream, max, every);
    FUZZ_CHECK(bytes.events == whole.events && bytes.done == whole.done,
               "in one piece:\n" + describe(whole) + "byte by byte:\n" + describe(bytes));
  }

  // The client's own frames: masking twice gives the payload back, and the header is the size
  // header_size() promised.
  std::string payload = stream.substr(0, 300);
  const std::string original = payload;
  const std::array<unsigned char, 4> mask_key = {size ? data[0] : std::uint8_t{0}, 0x5a, 0xa5,
                                                 0x3c};
  std::string buf(ws::header_size(payload.size()), '\0');
  buf += payload;
  char* start = ws::frame_in_place(buf.data() + ws::header_size(payload.size()), payload.size(),
                                   ws::opcode::text, mask_key);
  FUZZ_CHECK(start == buf.data(), "frame_in_place wrote its header elsewhere");
  ws::mask(buf.data() + ws::header_size(payload.size()), payload.size(), mask_key);
  FUZZ_CHECK(buf.substr(ws::header_size(payload.size())) == original,
             "masking twice changed the payload");
  return 0;
}
