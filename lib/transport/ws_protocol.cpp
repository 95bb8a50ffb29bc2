#include "transport/ws_protocol.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "transport/http_text.hpp"

namespace uvcometd::detail::ws {
namespace {

constexpr std::string_view ws_guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
// A buffer grows with the frames that fill it, not with what a header claims, past this.
constexpr std::uint64_t max_reserve = 1u << 20;

std::uint32_t rotl(std::uint32_t v, int n) { return (v << n) | (v >> (32 - n)); }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// True when the comma-separated `list` holds `token` (case-insensitive).
bool has_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    const auto comma = list.find(',');
    if (iequals(trim_ows(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

std::array<unsigned char, 20> sha1(std::string_view data) {
  std::uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
  std::string msg(data);
  const std::uint64_t bits = static_cast<std::uint64_t>(data.size()) * 8;
  msg.push_back(static_cast<char>(0x80));
  while (msg.size() % 64 != 56) msg.push_back('\0');
  for (int i = 7; i >= 0; --i) msg.push_back(static_cast<char>((bits >> (i * 8)) & 0xFF));
  for (std::size_t off = 0; off < msg.size(); off += 64) {
    std::uint32_t w[80];
    for (int i = 0; i < 16; ++i) {
      const auto* p = reinterpret_cast<const unsigned char*>(msg.data() + off + 4 * i);
      w[i] = (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) |
             (std::uint32_t{p[2]} << 8) | p[3];
    }
    for (int i = 16; i < 80; ++i) w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; ++i) {
      std::uint32_t f, k;
      if (i < 20) {
        f = (b & c) | (~b & d);
        k = 0x5A827999u;
      } else if (i < 40) {
        f = b ^ c ^ d;
        k = 0x6ED9EBA1u;
      } else if (i < 60) {
        f = (b & c) | (b & d) | (c & d);
        k = 0x8F1BBCDCu;
      } else {
        f = b ^ c ^ d;
        k = 0xCA62C1D6u;
      }
      const std::uint32_t t = rotl(a, 5) + f + e + k + w[i];
      e = d;
      d = c;
      c = rotl(b, 30);
      b = a;
      a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
  }
  std::array<unsigned char, 20> out{};
  for (int i = 0; i < 5; ++i) {
    for (int j = 0; j < 4; ++j) out[4 * i + j] = static_cast<unsigned char>(h[i] >> (24 - 8 * j));
  }
  return out;
}

std::string base64(const unsigned char* data, std::size_t len) {
  static constexpr char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((len + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= len; i += 3) {
    const std::uint32_t v =
        (std::uint32_t{data[i]} << 16) | (std::uint32_t{data[i + 1]} << 8) | data[i + 2];
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.push_back(alphabet[(v >> 6) & 63]);
    out.push_back(alphabet[v & 63]);
  }
  if (len - i == 1) {
    const std::uint32_t v = std::uint32_t{data[i]} << 16;
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.append("==");
  } else if (len - i == 2) {
    const std::uint32_t v = (std::uint32_t{data[i]} << 16) | (std::uint32_t{data[i + 1]} << 8);
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.push_back(alphabet[(v >> 6) & 63]);
    out.push_back('=');
  }
  return out;
}

std::string accept_for(std::string_view key) {
  std::string s(key);
  s.append(ws_guid);
  const auto digest = sha1(s);
  return base64(digest.data(), digest.size());
}

std::string upgrade_request(std::string_view host, std::string_view path, std::string_view key,
                            const std::vector<std::pair<std::string, std::string>>& headers,
                            std::string_view cookie) {
  std::string r;
  r.reserve(256 + cookie.size());
  r.append("GET ").append(path).append(" HTTP/1.1\r\nHost: ").append(host);
  r.append("\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ").append(key);
  r.append("\r\nSec-WebSocket-Version: 13\r\n");
  for (const auto& [name, value] : headers)
    r.append(name).append(": ").append(value).append("\r\n");
  if (!cookie.empty()) r.append("Cookie: ").append(cookie).append("\r\n");
  r.append("\r\n");
  return r;
}

std::string connect_request(std::string_view authority, std::string_view proxy_auth) {
  std::string r;
  r.append("CONNECT ").append(authority).append(" HTTP/1.1\r\nHost: ").append(authority);
  r.append("\r\n");
  if (!proxy_auth.empty()) r.append("Proxy-Authorization: ").append(proxy_auth).append("\r\n");
  r.append("\r\n");
  return r;
}

// ---- upgrade_reader -----------------------------------------------------------------------------

std::size_t upgrade_reader::feed(const char* data, std::size_t len) {
  if (state_ != state::incomplete) return 0;
  // The end of the head may straddle the previous feed: look from 3 bytes back.
  const std::size_t before = head_.size();  // < max_head while incomplete
  const std::size_t take = std::min(len, max_head - before);
  head_.append(data, take);
  const std::size_t from = before >= 3 ? before - 3 : 0;
  const auto end = head_.find("\r\n\r\n", from);
  if (end == std::string::npos) {
    // The empty line can no longer fit, whatever the next feed brings.
    if (head_.size() >= max_head) {
      fail("the upgrade response headers exceed " + std::to_string(max_head) + " bytes");
    }
    return take;
  }
  const std::size_t used = end + 4 - before;
  head_.resize(end + 2);  // keep the last header's CRLF
  parse_head();
  return used;
}

upgrade_reader::state upgrade_reader::fail(std::string why) {
  what_ = std::move(why);
  state_ = state::invalid;
  return state_;
}

void upgrade_reader::parse_head() {
  std::string_view rest(head_);
  const auto eol = rest.find("\r\n");
  const std::string_view line = rest.substr(0, eol);
  rest.remove_prefix(eol + 2);
  // HTTP/1.x SP 3DIGIT SP reason
  if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || (line[7] != '0' && line[7] != '1') ||
      line[8] != ' ' || !std::isdigit(static_cast<unsigned char>(line[9])) ||
      !std::isdigit(static_cast<unsigned char>(line[10])) ||
      !std::isdigit(static_cast<unsigned char>(line[11])) ||
      (line.size() > 12 && line[12] != ' ')) {
    fail("the upgrade response does not start with an HTTP status line: '" +
         std::string(line.substr(0, 80)) + "'");
    return;
  }
  status_ = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
  if (line.size() > 13) reason_ = std::string(trim_ows(line.substr(13)));
  if (status_ != 101) {
    state_ = state::refused;
    return;
  }
  bool upgrade = false, connection = false, accepted = false;
  while (!rest.empty()) {
    const auto e = rest.find("\r\n");
    const std::string_view h = rest.substr(0, e);
    rest.remove_prefix(e + 2);
    const auto colon = h.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      fail("malformed header line in the upgrade response: '" + std::string(h.substr(0, 80)) + "'");
      return;
    }
    const std::string_view name = h.substr(0, colon);
    const std::string_view value = trim_ows(h.substr(colon + 1));
    if (iequals(name, "upgrade")) {
      upgrade = iequals(value, "websocket");
    } else if (iequals(name, "connection")) {
      // A list field: several Connection lines add up.
      connection = connection || has_token(value, "upgrade");
    } else if (iequals(name, "sec-websocket-accept")) {
      accepted = value == accept_;
      if (!accepted) {
        fail("the server's Sec-WebSocket-Accept '" + std::string(value.substr(0, 64)) +
             "' does not match the key sent");
        return;
      }
    } else if (iequals(name, "set-cookie")) {
      set_cookies_.emplace_back(value);
    } else if (iequals(name, "sec-websocket-extensions") && !value.empty()) {
      // None was offered: an extension would change the framing.
      fail("the server chose websocket extensions that were not offered: '" +
           std::string(value.substr(0, 80)) + "'");
      return;
    }
  }
  if (!upgrade) {
    fail("the 101 response has no 'Upgrade: websocket' header");
  } else if (!connection) {
    fail("the 101 response has no 'Connection: Upgrade' header");
  } else if (!accepted) {
    fail("the 101 response has no Sec-WebSocket-Accept header");
  } else {
    state_ = state::accepted;
  }
}

// ---- frame_reader -------------------------------------------------------------------------------

frame_reader::event frame_reader::fail(errc code, unsigned status, std::string why) {
  dead_ = true;
  err_ = code;
  close_status_ = status;
  what_ = std::move(why);
  std::string().swap(msg_);
  return event::error;
}

frame_reader::event frame_reader::next(const char* data, std::size_t len, std::size_t& consumed) {
  consumed = 0;
  if (dead_) return closed_ ? event::close : event::error;
  while (consumed < len) {
    if (!in_payload_) {
      // Header bytes: 2, then as many more as the second byte announces.
      while (hdr_len_ < hdr_need_ && consumed < len) {
        hdr_[hdr_len_++] = static_cast<unsigned char>(data[consumed++]);
        if (hdr_len_ == 2) {
          if (hdr_[1] & 0x80) {
            return fail(errc::transport_error, 1002, "websocket: the server sent a masked frame");
          }
          const unsigned len7 = hdr_[1] & 0x7F;
          hdr_need_ = len7 == 126 ? 4 : len7 == 127 ? 10 : 2;
        }
      }
      if (hdr_len_ < hdr_need_) return event::none;
      const event e = header_done();
      if (e != event::none) return e;
      continue;
    }
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, len - consumed));
    if ((static_cast<unsigned>(op_) & 0x8) != 0) {
      ctl_.append(data + consumed, n);
    } else {
      msg_.append(data + consumed, n);
    }
    consumed += n;
    remaining_ -= n;
    if (remaining_ == 0) {
      const event e = frame_done();
      if (e != event::none) return e;
    }
  }
  return event::none;
}

frame_reader::event frame_reader::header_done() {
  const unsigned b0 = hdr_[0];
  fin_ = (b0 & 0x80) != 0;
  if (b0 & 0x70) {
    return fail(errc::transport_error, 1002,
                "websocket: the server set reserved frame bits (no extension was negotiated)");
  }
  const unsigned op = b0 & 0x0F;
  std::uint64_t len = hdr_[1] & 0x7F;
  if (len == 126) {
    len = (std::uint64_t{hdr_[2]} << 8) | hdr_[3];
  } else if (len == 127) {
    len = 0;
    for (int i = 2; i < 10; ++i) len = (len << 8) | hdr_[i];
    if (len >> 63) {
      return fail(errc::transport_error, 1002, "websocket: frame length has its top bit set");
    }
  }
  hdr_len_ = 0;
  hdr_need_ = 2;
  switch (op) {
    case 0x8:
    case 0x9:
    case 0xA:
      if (!fin_) {
        return fail(errc::transport_error, 1002, "websocket: fragmented control frame");
      }
      if (len > 125) {
        return fail(errc::transport_error, 1002,
                    "websocket: control frame of " + std::to_string(len) + " bytes (at most 125)");
      }
      ctl_.clear();
      break;
    case 0x0:
      if (!in_message_) {
        return fail(errc::transport_error, 1002,
                    "websocket: continuation frame without a message to continue");
      }
      break;
    case 0x1:
    case 0x2:
      if (in_message_) {
        return fail(errc::transport_error, 1002,
                    "websocket: new message before the fragmented one ended");
      }
      msg_.clear();
      break;
    default:
      return fail(errc::transport_error, 1002,
                  "websocket: unknown frame opcode " + std::to_string(op));
  }
  op_ = static_cast<opcode>(op);
  if ((op & 0x8) == 0) {
    // Refused from the length the frame announces, before anything is buffered for it.
    if (max_ != 0 && (len > max_ || msg_.size() > max_ - len)) {
      return fail(errc::message_too_large, 1009,
                  "websocket: incoming message of at least " + std::to_string(msg_.size() + len) +
                      " bytes exceeds max_message_size " + std::to_string(max_));
    }
    if (len > 0 && len <= max_reserve) msg_.reserve(msg_.size() + static_cast<std::size_t>(len));
  }
  remaining_ = len;
  in_payload_ = true;
  if (len == 0) return frame_done();
  return event::none;
}

frame_reader::event frame_reader::frame_done() {
  in_payload_ = false;
  switch (op_) {
    case opcode::ping: return event::ping;
    case opcode::pong: return event::pong;
    case opcode::close:
      if (ctl_.size() == 1) {
        return fail(errc::transport_error, 1002, "websocket: close frame with a 1-byte payload");
      }
      close_code_ = 0;
      if (ctl_.size() >= 2) {
        close_code_ =
            (static_cast<unsigned char>(ctl_[0]) << 8) | static_cast<unsigned char>(ctl_[1]);
        ctl_.erase(0, 2);
      }
      dead_ = closed_ = true;  // nothing may follow a close frame
      return event::close;
    default:
      if (!fin_) {
        in_message_ = true;
        return event::none;
      }
      in_message_ = false;
      return event::message;
  }
}

// ---- outgoing -----------------------------------------------------------------------------------

std::size_t header_size(std::size_t payload_len) noexcept {
  return (payload_len < 126 ? 2 : payload_len <= 0xFFFF ? 4 : 10) + 4;
}

void mask(char* data, std::size_t len, const std::array<unsigned char, 4>& key) noexcept {
  unsigned char k8[8];
  for (int i = 0; i < 8; ++i) k8[i] = key[i & 3];
  std::uint64_t k;
  std::memcpy(&k, k8, 8);
  std::size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    std::uint64_t v;
    std::memcpy(&v, data + i, 8);
    v ^= k;
    std::memcpy(data + i, &v, 8);
  }
  for (; i < len; ++i) data[i] = static_cast<char>(data[i] ^ key[i & 3]);
}

char* frame_in_place(char* payload, std::size_t len, opcode op,
                     const std::array<unsigned char, 4>& key) noexcept {
  const std::size_t hs = header_size(len);
  auto* h = reinterpret_cast<unsigned char*>(payload - hs);
  h[0] = static_cast<unsigned char>(0x80 | static_cast<unsigned>(op));
  std::size_t at = 2;
  if (len < 126) {
    h[1] = static_cast<unsigned char>(0x80 | len);
  } else if (len <= 0xFFFF) {
    h[1] = 0x80 | 126;
    h[2] = static_cast<unsigned char>(len >> 8);
    h[3] = static_cast<unsigned char>(len);
    at = 4;
  } else {
    h[1] = 0x80 | 127;
    const auto l = static_cast<std::uint64_t>(len);
    for (int i = 0; i < 8; ++i) h[2 + i] = static_cast<unsigned char>(l >> (56 - 8 * i));
    at = 10;
  }
  std::memcpy(h + at, key.data(), 4);
  mask(payload, len, key);
  return reinterpret_cast<char*>(h);
}

}  // namespace uvcometd::detail::ws
