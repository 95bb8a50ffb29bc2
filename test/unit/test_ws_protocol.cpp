// The websocket protocol without I/O (lib/transport/ws_protocol.*): the upgrade handshake and
// RFC 6455 framing, including every malformed input a server could send. Frames are built by hand
// here and the outgoing ones decoded by hand, so that neither side checks itself.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "transport/ws_protocol.hpp"

namespace ws = uvcometd::detail::ws;
using event = ws::frame_reader::event;
using ustate = ws::upgrade_reader::state;
using Catch::Matchers::Contains;

namespace {

// ---- hashes ---------------------------------------------------------------------------------

std::string hex(const std::array<unsigned char, 20>& digest) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (const unsigned char b : digest) {
    out += digits[b >> 4];
    out += digits[b & 0xF];
  }
  return out;
}

std::string b64(std::string_view s) {
  return ws::base64(reinterpret_cast<const unsigned char*>(s.data()), s.size());
}

// Bytes of every value, so that a signed char anywhere would show.
std::string pattern(std::size_t n, unsigned seed = 0) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 31 + seed * 7 + 5) & 0xFF);
  return s;
}

// ---- upgrade --------------------------------------------------------------------------------

// RFC 6455 section 1.3's example key and the answer it calls for.
constexpr std::string_view rfc_key = "dGhlIHNhbXBsZSBub25jZQ==";
constexpr std::string_view rfc_accept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

const std::string good_headers =
    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
    std::string(rfc_accept) + "\r\n";

// A 101 with `headers` (each line ending in CRLF) and the empty line.
std::string switching(std::string_view headers) {
  return "HTTP/1.1 101 Switching Protocols\r\n" + std::string(headers) + "\r\n";
}

// Feeds `bytes` in pieces ending at `cuts` (ascending, then the end), all of them even after a
// final state; returns the total the reader said it used.
std::size_t feed_pieces(ws::upgrade_reader& r, std::string_view bytes,
                        const std::vector<std::size_t>& cuts) {
  std::size_t used = 0, start = 0;
  auto piece = [&](std::size_t end) {
    const std::size_t n = r.feed(bytes.data() + start, end - start);
    if (n > end - start) FAIL("feed used " << n << " of " << end - start << " bytes");
    used += n;
    start = end;
  };
  for (const std::size_t c : cuts) piece(c);
  piece(bytes.size());
  return used;
}

// ---- frames ---------------------------------------------------------------------------------

constexpr unsigned fin = 0x80;

// The header of an unmasked (server) frame: `b0` is FIN, RSV and opcode; the length in its
// shortest form, or in the 64-bit form when `long_form`.
std::string frame_header(unsigned b0, std::uint64_t len, bool long_form = false) {
  std::string h(1, static_cast<char>(b0));
  if (len < 126 && !long_form) {
    h += static_cast<char>(len);
  } else if (len <= 0xFFFF && !long_form) {
    h += static_cast<char>(126);
    h += static_cast<char>(len >> 8);
    h += static_cast<char>(len & 0xFF);
  } else {
    h += static_cast<char>(127);
    for (int i = 7; i >= 0; --i) h += static_cast<char>((len >> (8 * i)) & 0xFF);
  }
  return h;
}

std::string frame(unsigned b0, std::string_view payload) {
  return frame_header(b0, payload.size()) + std::string(payload);
}

std::string close_payload(unsigned code, std::string_view reason) {
  return std::string{static_cast<char>(code >> 8), static_cast<char>(code & 0xFF)} +
         std::string(reason);
}

// What a frame_reader reported: one line per event, messages kept apart (they can be large).
struct transcript {
  std::vector<std::string> events;  // "message", "ping:<payload>", "close:<code>:<payload>", ...
  std::vector<std::string> messages;
  std::size_t consumed = 0;
  std::string what;
  uvcometd::errc code{};
  unsigned close_status = 0;
};

// Feeds `bytes` in pieces ending at `cuts` (ascending, then the end), calling next until it
// returns none for each piece; stops at an error or a close.
transcript read(ws::frame_reader& r, std::string_view bytes,
                const std::vector<std::size_t>& cuts = {}) {
  transcript t;
  std::size_t start = 0;
  std::vector<std::size_t> ends = cuts;
  ends.push_back(bytes.size());
  for (const std::size_t end : ends) {
    const char* p = bytes.data() + start;
    std::size_t n = end - start;
    for (;;) {
      std::size_t used = n + 1;
      const event e = r.next(p, n, used);
      if (used > n) FAIL("next used " << used << " of " << n << " bytes");
      t.consumed += used;
      p += used;
      n -= used;
      if (e == event::none) {
        if (n != 0) FAIL("next returned none with " << n << " bytes unread");
        break;
      }
      switch (e) {
        case event::message:
          t.events.push_back("message");
          t.messages.push_back(r.take_message());
          break;
        case event::ping: t.events.push_back("ping:" + r.control_payload()); break;
        case event::pong: t.events.push_back("pong:" + r.control_payload()); break;
        case event::close:
          t.events.push_back("close:" + std::to_string(r.close_code()) + ":" + r.control_payload());
          return t;
        case event::error:
          t.events.push_back("error:" + std::to_string(r.close_status()));
          t.what = r.what();
          t.code = r.error_code();
          t.close_status = r.close_status();
          return t;
        case event::none: break;
      }
    }
    start = end;
  }
  return t;
}

std::vector<std::size_t> every_byte(std::size_t n) {
  std::vector<std::size_t> cuts;
  for (std::size_t i = 1; i < n; ++i) cuts.push_back(i);
  return cuts;
}

// Cut points at random distances of 1 to `max_piece` bytes.
std::vector<std::size_t> random_cuts(std::size_t n, std::size_t max_piece, std::mt19937& rng) {
  std::uniform_int_distribution<std::size_t> step(1, max_piece);
  std::vector<std::size_t> cuts;
  for (std::size_t at = step(rng); at < n; at += step(rng)) cuts.push_back(at);
  return cuts;
}

// A client frame decoded by hand (RFC 6455 5.2), payload unmasked.
struct decoded {
  bool fin = false;
  unsigned rsv = 0;
  unsigned op = 0;
  bool masked = false;
  bool shortest_length = false;  // the length used the shortest of its three forms
  std::size_t header = 0;
  std::string payload;
};

decoded decode_client_frame(const char* f, std::size_t total) {
  decoded d;
  const auto* u = reinterpret_cast<const unsigned char*>(f);
  REQUIRE(total >= 2);
  d.fin = (u[0] & 0x80) != 0;
  d.rsv = (u[0] >> 4) & 0x7;
  d.op = u[0] & 0x0F;
  d.masked = (u[1] & 0x80) != 0;
  std::uint64_t len = u[1] & 0x7F;
  std::size_t at = 2;
  if (len == 126) {
    REQUIRE(total >= 4);
    len = (std::uint64_t{u[2]} << 8) | u[3];
    d.shortest_length = len >= 126;
    at = 4;
  } else if (len == 127) {
    REQUIRE(total >= 10);
    len = 0;
    for (int i = 2; i < 10; ++i) len = (len << 8) | u[i];
    d.shortest_length = len > 0xFFFF;
    at = 10;
  } else {
    d.shortest_length = true;
  }
  unsigned char key[4] = {};
  if (d.masked) {
    REQUIRE(total >= at + 4);
    for (int i = 0; i < 4; ++i) key[i] = u[at + i];
    at += 4;
  }
  d.header = at;
  REQUIRE(total == at + len);
  for (std::size_t i = 0; i < len; ++i) {
    d.payload += static_cast<char>(u[at + i] ^ (d.masked ? key[i % 4] : 0));
  }
  return d;
}

constexpr std::array<unsigned char, 4> key_a = {0x12, 0x34, 0x56, 0x78};
constexpr std::array<unsigned char, 4> key_b = {0xFF, 0x80, 0x01, 0xA5};

}  // namespace

// ---- sha1, base64, accept -------------------------------------------------------------------

TEST_CASE("sha1 matches the FIPS 180 vectors", "[ws_protocol]") {
  CHECK(hex(ws::sha1("")) == "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  CHECK(hex(ws::sha1("abc")) == "a9993e364706816aba3e25717850c26c9cd0d89d");
  CHECK(hex(ws::sha1("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")) ==
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
  CHECK(hex(ws::sha1(std::string(1000000, 'a'))) == "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
}

TEST_CASE("sha1 pads inputs around the 56 and 64 byte block boundaries", "[ws_protocol]") {
  // Computed with sha1sum over n 'a's.
  CHECK(hex(ws::sha1(std::string(55, 'a'))) == "c1c8bbdc22796e28c0e15163d20899b65621d65a");
  CHECK(hex(ws::sha1(std::string(56, 'a'))) == "c2db330f6083854c99d4b5bfb6e8f29f201be699");
  CHECK(hex(ws::sha1(std::string(63, 'a'))) == "03f09f5b158a7a8cdad920bddc29b81c18a551f5");
  CHECK(hex(ws::sha1(std::string(64, 'a'))) == "0098ba824b5c16427bd7a1122a5a442a25ec644d");
  CHECK(hex(ws::sha1(std::string(65, 'a'))) == "11655326c708d70319be2610e8a57d9a5b959d3b");
}

TEST_CASE("sha1 hashes bytes above 0x7f as unsigned", "[ws_protocol]") {
  std::string all;
  for (int round = 0; round < 4; ++round) {
    for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  }
  // Computed with Python's hashlib over bytes(range(256)) * 4.
  CHECK(hex(ws::sha1(all)) == "5b00669c480d5cffbdfa8bdba99561160f2d1b77");
}

TEST_CASE("base64 matches the RFC 4648 vectors", "[ws_protocol]") {
  CHECK(b64("") == "");
  CHECK(b64("f") == "Zg==");
  CHECK(b64("fo") == "Zm8=");
  CHECK(b64("foo") == "Zm9v");
  CHECK(b64("foob") == "Zm9vYg==");
  CHECK(b64("fooba") == "Zm9vYmE=");
  CHECK(b64("foobar") == "Zm9vYmFy");
}

TEST_CASE("base64 uses + and / for the last two digits and reads bytes as unsigned",
          "[ws_protocol]") {
  CHECK(b64("\xfb\xff") == "+/8=");
  CHECK(b64("\xff\xff\xff") == "////");
  CHECK(b64(std::string(3, '\0')) == "AAAA");
}

TEST_CASE("Sec-WebSocket-Accept of RFC 6455's example key", "[ws_protocol]") {
  CHECK(ws::accept_for(rfc_key) == rfc_accept);
}

// ---- connect_request (proxy tunnel) ---------------------------------------------------------

TEST_CASE("the CONNECT request names host:port, with Proxy-Authorization only when given",
          "[ws_protocol]") {
  CHECK(ws::connect_request("example.com:443", "") ==
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
  CHECK(ws::connect_request("[::1]:8080", "Basic dTpw") ==
        "CONNECT [::1]:8080 HTTP/1.1\r\nHost: [::1]:8080\r\n"
        "Proxy-Authorization: Basic dTpw\r\n\r\n");
}

TEST_CASE("a proxy's answer to CONNECT reads as a refusal with its status, the rest untouched",
          "[ws_protocol]") {
  ws::upgrade_reader r{std::string()};
  const std::string answer = "HTTP/1.1 200 Connection established\r\n\r\n";
  const std::string after = "\x16\x03\x01";  // the tunnel's first bytes
  const std::string in = answer + after;
  CHECK(r.feed(in.data(), in.size()) == answer.size());
  CHECK(r.status_state() == ws::upgrade_reader::state::refused);
  CHECK(r.status() == 200);
  CHECK(r.reason() == "Connection established");
}

// ---- upgrade_request ------------------------------------------------------------------------

TEST_CASE("the upgrade request is a GET with the websocket headers and an empty line",
          "[ws_protocol]") {
  CHECK(ws::upgrade_request("example.com:8080", "/cometd?x=1", rfc_key, {}, "") ==
        "GET /cometd?x=1 HTTP/1.1\r\n"
        "Host: example.com:8080\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n");
}

TEST_CASE("the upgrade request carries the given headers and the cookie", "[ws_protocol]") {
  CHECK(ws::upgrade_request("h", "/", "k", {{"Authorization", "Bearer x"}, {"X-A", ""}},
                            "a=1; b=2") ==
        "GET / HTTP/1.1\r\n"
        "Host: h\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Key: k\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Authorization: Bearer x\r\n"
        "X-A: \r\n"
        "Cookie: a=1; b=2\r\n"
        "\r\n");
}

TEST_CASE("the upgrade request has no Cookie header when the cookie is empty", "[ws_protocol]") {
  const std::string r = ws::upgrade_request("h", "/", "k", {{"X-A", "1"}}, "");
  CHECK_THAT(r, !Contains("Cookie", Catch::CaseSensitive::No));
  CHECK_THAT(r, Contains("\r\nX-A: 1\r\n\r\n"));
}

// ---- upgrade_reader -------------------------------------------------------------------------

TEST_CASE("a 101 with the right headers is accepted whole", "[ws_protocol]") {
  ws::upgrade_reader r{std::string(rfc_key)};
  const std::string head = switching(good_headers);
  CHECK(r.feed(head.data(), head.size()) == head.size());
  CHECK(r.status_state() == ustate::accepted);
  CHECK(r.status() == 101);
  CHECK(r.reason() == "Switching Protocols");
  CHECK(r.what().empty());
}

TEST_CASE("a 101 answering another key with its accept_for is accepted", "[ws_protocol]") {
  const std::string key = b64(pattern(16));
  ws::upgrade_reader r{key};
  const std::string head = switching(
      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: " +
      ws::accept_for(key) + "\r\n");
  CHECK(r.feed(head.data(), head.size()) == head.size());
  CHECK(r.status_state() == ustate::accepted);
}

TEST_CASE("a 101 is accepted whatever the split of its bytes", "[ws_protocol]") {
  const std::string head = switching(good_headers);
  SECTION("one byte at a time") {
    ws::upgrade_reader r{std::string(rfc_key)};
    CHECK(feed_pieces(r, head, every_byte(head.size())) == head.size());
    CHECK(r.status_state() == ustate::accepted);
  }
  SECTION("in two pieces, at every split point") {
    for (std::size_t k = 1; k < head.size(); ++k) {
      CAPTURE(k);
      ws::upgrade_reader r{std::string(rfc_key)};
      CHECK(feed_pieces(r, head, {k}) == head.size());
      CHECK(r.status_state() == ustate::accepted);
    }
  }
  SECTION("the empty line straddling two pieces") {
    for (std::size_t back = 1; back <= 3; ++back) {
      CAPTURE(back);
      ws::upgrade_reader r{std::string(rfc_key)};
      const std::size_t k = head.size() - back;
      CHECK(r.feed(head.data(), k) == k);
      CHECK(r.status_state() == ustate::incomplete);
      CHECK(r.feed(head.data() + k, back) == back);
      CHECK(r.status_state() == ustate::accepted);
    }
  }
}

TEST_CASE("the bytes after the upgrade answer are left for the frame reader", "[ws_protocol]") {
  const std::string head = switching(good_headers);
  const std::string frames = frame(fin | 0x1, "[{\"x\":1}]");
  const std::string bytes = head + frames;
  SECTION("in one piece") {
    ws::upgrade_reader r{std::string(rfc_key)};
    CHECK(r.feed(bytes.data(), bytes.size()) == head.size());
    CHECK(r.status_state() == ustate::accepted);
  }
  SECTION("the head ending in the middle of a piece") {
    ws::upgrade_reader r{std::string(rfc_key)};
    const std::size_t k = head.size() - 2;
    CHECK(r.feed(bytes.data(), k) == k);
    CHECK(r.feed(bytes.data() + k, bytes.size() - k) == 2);
    CHECK(r.status_state() == ustate::accepted);
  }
  SECTION("the rest is a frame") {
    ws::upgrade_reader u{std::string(rfc_key)};
    const std::size_t used = u.feed(bytes.data(), bytes.size());
    ws::frame_reader f(0);
    const transcript t = read(f, std::string_view(bytes).substr(used));
    CHECK(t.events == std::vector<std::string>{"message"});
    CHECK(t.messages == std::vector<std::string>{"[{\"x\":1}]"});
  }
}

TEST_CASE("upgrade header names and the websocket token are case-insensitive", "[ws_protocol]") {
  ws::upgrade_reader r{std::string(rfc_key)};
  const std::string head =
      switching("UPGRADE: WebSocket\r\nconnection: upgrade\r\nsec-websocket-ACCEPT:" +
                std::string(rfc_accept) + "  \r\nSec-WebSocket-Extensions:\r\n");
  r.feed(head.data(), head.size());
  CHECK(r.status_state() == ustate::accepted);
}

TEST_CASE("Connection is read as a token list", "[ws_protocol]") {
  const std::string connection =
      GENERATE(as<std::string>{}, "Connection: keep-alive, Upgrade\r\n",
               "Connection: Upgrade,keep-alive\r\n", "Connection: keep-alive ,\tupgrade \r\n",
               "Connection: Upgrade\r\nConnection: keep-alive\r\n",
               "Connection: keep-alive\r\nConnection: Upgrade\r\n");
  CAPTURE(connection);
  ws::upgrade_reader r{std::string(rfc_key)};
  const std::string head = switching("Upgrade: websocket\r\n" + connection +
                                     "Sec-WebSocket-Accept: " + std::string(rfc_accept) + "\r\n");
  r.feed(head.data(), head.size());
  CHECK(r.status_state() == ustate::accepted);
}

TEST_CASE("a 101 without the websocket handshake headers is invalid and says why",
          "[ws_protocol]") {
  const std::string accept = "Sec-WebSocket-Accept: " + std::string(rfc_accept) + "\r\n";
  struct bad_case {
    std::string headers;
    std::string why;
  };
  const bad_case c = GENERATE_COPY(values<bad_case>({
      {"Upgrade: websocket\r\nConnection: Upgrade\r\n", "Sec-WebSocket-Accept"},
      {"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
           ws::accept_for("another key") + "\r\n",
       "Sec-WebSocket-Accept"},
      {"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: \r\n",
       "Sec-WebSocket-Accept"},
      {"Connection: Upgrade\r\n" + accept, "Upgrade"},
      {"Upgrade: h2c\r\nConnection: Upgrade\r\n" + accept, "Upgrade"},
      {"Upgrade: websocket\r\n" + accept, "Connection"},
      {"Upgrade: websocket\r\nConnection: keep-alive\r\n" + accept, "Connection"},
      {good_headers + "Sec-WebSocket-Extensions: permessage-deflate\r\n", "extensions"},
      {good_headers + "no colon here\r\n", "malformed header"},
      {good_headers + ": no name\r\n", "malformed header"},
  }));
  CAPTURE(c.headers);
  ws::upgrade_reader r{std::string(rfc_key)};
  const std::string head = switching(c.headers);
  CHECK(r.feed(head.data(), head.size()) == head.size());
  CHECK(r.status_state() == ustate::invalid);
  CHECK_THAT(r.what(), Contains(c.why));
}

TEST_CASE("another HTTP status refuses the upgrade with its status and reason", "[ws_protocol]") {
  struct refusal {
    std::string line;
    int status;
    std::string reason;
  };
  const refusal c = GENERATE(values<refusal>({
      {"HTTP/1.1 401 Unauthorized", 401, "Unauthorized"},
      {"HTTP/1.1 403 Forbidden", 403, "Forbidden"},
      {"HTTP/1.1 500 Internal Server Error", 500, "Internal Server Error"},
      {"HTTP/1.0 200 OK", 200, "OK"},
      {"HTTP/1.1 302 ", 302, ""},
  }));
  CAPTURE(c.line);
  ws::upgrade_reader r{std::string(rfc_key)};
  const std::string head = c.line + "\r\nContent-Length: 5\r\n\r\n";
  const std::string bytes = head + "body!";
  CHECK(r.feed(bytes.data(), bytes.size()) == head.size());
  CHECK(r.status_state() == ustate::refused);
  CHECK(r.status() == c.status);
  CHECK(r.reason() == c.reason);
}

TEST_CASE("a head that does not start with an HTTP/1.x status line is invalid", "[ws_protocol]") {
  const std::string line = GENERATE(
      as<std::string>{}, "HTTP/1.1 abc", "FOO", "HTTP/2 101", "HTTP/2.0 101 Switching Protocols",
      "HTTP/1.1 10 x", "HTTP/1.1 x01 x", "HTTP/1.1 1x1 x", "HTTP/1.1 10x x", "HTTP/1.1 1010 x",
      "HTTP/1.1  101 x", "http/1.1 101 x", "", " HTTP/1.1 101 x");
  CAPTURE(line);
  ws::upgrade_reader r{std::string(rfc_key)};
  const std::string head = line + "\r\n" + good_headers + "\r\n";
  CHECK(r.feed(head.data(), head.size()) == head.size());
  CHECK(r.status_state() == ustate::invalid);
  CHECK_THAT(r.what(), Contains("status line"));
}

TEST_CASE("a status line without a reason phrase is read", "[ws_protocol]") {
  SECTION("101 with the handshake headers is accepted") {
    ws::upgrade_reader r{std::string(rfc_key)};
    const std::string head = "HTTP/1.1 101\r\n" + good_headers + "\r\n";
    r.feed(head.data(), head.size());
    CHECK(r.status_state() == ustate::accepted);
    CHECK(r.reason().empty());
  }
  SECTION("101 and nothing else is invalid") {
    ws::upgrade_reader r{std::string(rfc_key)};
    const std::string head = "HTTP/1.1 101\r\n\r\n";
    CHECK(r.feed(head.data(), head.size()) == head.size());
    CHECK(r.status_state() == ustate::invalid);
    CHECK_THAT(r.what(), Contains("Upgrade"));
  }
  SECTION("404 is refused") {
    ws::upgrade_reader r{std::string(rfc_key)};
    const std::string head = "HTTP/1.1 404\r\n\r\n";
    r.feed(head.data(), head.size());
    CHECK(r.status_state() == ustate::refused);
    CHECK(r.status() == 404);
    CHECK(r.reason().empty());
  }
}

TEST_CASE("a head larger than max_head is invalid however it arrives", "[ws_protocol]") {
  constexpr std::size_t max = ws::upgrade_reader::max_head;
  // A 101 of exactly `total` bytes, empty line included, padded with an X-Pad header.
  auto head_of = [](std::size_t total) {
    const std::size_t fixed = switching(good_headers + "X-Pad: \r\n").size();
    return switching(good_headers + "X-Pad: " + std::string(total - fixed, 'p') + "\r\n");
  };
  SECTION("max_head bytes with the empty line are accepted") {
    const std::string head = head_of(max);
    REQUIRE(head.size() == max);
    ws::upgrade_reader whole{std::string(rfc_key)};
    CHECK(whole.feed(head.data(), head.size()) == head.size());
    CHECK(whole.status_state() == ustate::accepted);
    ws::upgrade_reader bytewise{std::string(rfc_key)};
    CHECK(feed_pieces(bytewise, head, every_byte(head.size())) == head.size());
    CHECK(bytewise.status_state() == ustate::accepted);
  }
  SECTION("one byte more is invalid") {
    for (std::size_t extra = 1; extra <= 4; ++extra) {
      CAPTURE(extra);
      const std::string head = head_of(max + extra);
      ws::upgrade_reader whole{std::string(rfc_key)};
      whole.feed(head.data(), head.size());
      CHECK(whole.status_state() == ustate::invalid);
      CHECK_THAT(whole.what(), Contains(std::to_string(max)));
      ws::upgrade_reader bytewise{std::string(rfc_key)};
      feed_pieces(bytewise, head, every_byte(head.size()));
      CHECK(bytewise.status_state() == ustate::invalid);
    }
  }
  SECTION("without an empty line, invalid once max_head bytes are in") {
    const std::string endless = "HTTP/1.1 101 OK\r\nX-Pad: " + std::string(2 * max, 'p');
    ws::upgrade_reader whole{std::string(rfc_key)};
    CHECK(whole.feed(endless.data(), endless.size()) <= max);
    CHECK(whole.status_state() == ustate::invalid);
    CHECK_THAT(whole.what(), Contains(std::to_string(max)));

    ws::upgrade_reader pieces{std::string(rfc_key)};
    CHECK(pieces.feed(endless.data(), max - 1) == max - 1);
    CHECK(pieces.status_state() == ustate::incomplete);
    pieces.feed(endless.data() + max - 1, 1);
    CHECK(pieces.status_state() == ustate::invalid);
  }
}

TEST_CASE("the upgrade reader reads nothing after a final state", "[ws_protocol]") {
  const std::string head =
      GENERATE(as<std::string>{}, switching(good_headers),
               std::string("HTTP/1.1 403 Forbidden\r\n\r\n"), std::string("FOO\r\n\r\n"));
  CAPTURE(head);
  ws::upgrade_reader r{std::string(rfc_key)};
  r.feed(head.data(), head.size());
  const ustate final_state = r.status_state();
  REQUIRE(final_state != ustate::incomplete);
  CHECK(r.feed(head.data(), head.size()) == 0);
  CHECK(r.status_state() == final_state);
}

// ---- frame_reader: messages -----------------------------------------------------------------

TEST_CASE("text frames of every length form are delivered whole", "[ws_protocol]") {
  const std::size_t n = GENERATE(as<std::size_t>{}, 0, 1, 125, 126, 127, 65535, 65536, 70000);
  CAPTURE(n);
  const std::string payload = pattern(n);
  const std::string bytes = frame(fin | 0x1, payload);
  CHECK(bytes.size() == n + (n < 126 ? 2 : n <= 0xFFFF ? 4 : 10));
  ws::frame_reader r(0);
  const transcript t = read(r, bytes);
  CHECK(t.events == std::vector<std::string>{"message"});
  REQUIRE(t.messages.size() == 1);
  CHECK(t.messages[0].size() == n);
  CHECK((t.messages[0] == payload));
  CHECK(t.consumed == bytes.size());
}

TEST_CASE("a frame split anywhere gives the same message", "[ws_protocol]") {
  SECTION("a small frame, at every split point and one byte at a time") {
    const std::string payload = "hello";
    const std::string bytes = frame(fin | 0x1, payload);
    for (std::size_t k = 1; k < bytes.size(); ++k) {
      CAPTURE(k);
      ws::frame_reader r(0);
      const transcript t = read(r, bytes, {k});
      CHECK(t.messages == std::vector<std::string>{payload});
    }
    ws::frame_reader r(0);
    CHECK(read(r, bytes, every_byte(bytes.size())).messages == std::vector<std::string>{payload});
  }
  SECTION("the 16-bit length form, one byte at a time") {
    const std::string payload = pattern(300);
    const std::string bytes = frame(fin | 0x2, payload);
    ws::frame_reader r(0);
    CHECK(read(r, bytes, every_byte(bytes.size())).messages == std::vector<std::string>{payload});
  }
  SECTION("big frames at random split points") {
    std::mt19937 rng(20240607);
    for (const std::size_t n :
         {std::size_t{126}, std::size_t{65535}, std::size_t{65536}, std::size_t{70000}}) {
      for (int round = 0; round < 5; ++round) {
        CAPTURE(n, round);
        const std::string payload = pattern(n, static_cast<unsigned>(round));
        const std::string bytes = frame(fin | 0x1, payload);
        ws::frame_reader r(0);
        const transcript t = read(r, bytes, random_cuts(bytes.size(), 5000, rng));
        REQUIRE(t.messages.size() == 1);
        CHECK((t.messages[0] == payload));
        CHECK(t.consumed == bytes.size());
      }
    }
  }
}

TEST_CASE("a length in a longer form than needed is read", "[ws_protocol]") {
  ws::frame_reader r(0);
  const std::string bytes =
      frame_header(fin | 0x1, 3, true) + "abc" + frame_header(fin | 0x1, 0, true);
  CHECK(read(r, bytes).messages == std::vector<std::string>{"abc", ""});
}

TEST_CASE("each call to next returns one event and says what it consumed", "[ws_protocol]") {
  const std::string a = frame(fin | 0x1, "first");
  const std::string b = frame(fin | 0x9, "pp");
  const std::string c = frame(fin | 0x2, std::string("\0\xff", 2));
  const std::string bytes = a + b + c;
  ws::frame_reader r(0);
  std::size_t used = 0;
  const char* p = bytes.data();
  CHECK(r.next(p, bytes.size(), used) == event::message);
  CHECK(used == a.size());
  CHECK(r.take_message() == "first");
  p += used;
  CHECK(r.next(p, b.size() + c.size(), used) == event::ping);
  CHECK(used == b.size());
  CHECK(r.control_payload() == "pp");
  p += used;
  CHECK(r.next(p, c.size(), used) == event::message);
  CHECK(used == c.size());
  CHECK(r.take_message() == std::string("\0\xff", 2));
  CHECK(r.next(p + used, 0, used) == event::none);
  CHECK(used == 0);
}

TEST_CASE("a fragmented message is reassembled around control frames", "[ws_protocol]") {
  const std::string bytes = frame(0x1, "Hel") + frame(fin | 0x9, "are you there?") +
                            frame(0x0, "") + frame(0x0, "lo, ") + frame(fin | 0xA, "") +
                            frame(fin | 0x0, "world") + frame(fin | 0x1, "next");
  const std::vector<std::string> events = {"ping:are you there?", "pong:", "message", "message"};
  const std::vector<std::string> messages = {"Hello, world", "next"};
  SECTION("in one piece") {
    ws::frame_reader r(0);
    const transcript t = read(r, bytes);
    CHECK(t.events == events);
    CHECK(t.messages == messages);
  }
  SECTION("one byte at a time") {
    ws::frame_reader r(0);
    const transcript t = read(r, bytes, every_byte(bytes.size()));
    CHECK(t.events == events);
    CHECK(t.messages == messages);
  }
  SECTION("buffered counts the fragments read so far") {
    ws::frame_reader r(0);
    const std::string first = frame(0x1, "Hel");
    std::size_t used = 0;
    CHECK(r.next(first.data(), first.size(), used) == event::none);
    CHECK(r.buffered() == 3);
  }
}

TEST_CASE("a binary message is delivered as is", "[ws_protocol]") {
  std::string payload;
  for (int b = 0; b < 256; ++b) payload += static_cast<char>(b);
  ws::frame_reader r(0);
  const transcript t =
      read(r, frame(0x2, payload.substr(0, 100)) + frame(fin, payload.substr(100)));
  CHECK(t.events == std::vector<std::string>{"message"});
  CHECK(t.messages == std::vector<std::string>{payload});
}

TEST_CASE("ping and pong payloads are returned", "[ws_protocol]") {
  const std::string big(125, 'x');
  ws::frame_reader r(0);
  const transcript t = read(r, frame(fin | 0x9, "") + frame(fin | 0x9, big) +
                                   frame(fin | 0xA, "pong!") + frame(fin | 0x9, "b"));
  CHECK(t.events == std::vector<std::string>{"ping:", "ping:" + big, "pong:pong!", "ping:b"});
}

// ---- frame_reader: close --------------------------------------------------------------------

TEST_CASE("a close frame gives its code and reason", "[ws_protocol]") {
  ws::frame_reader r(0);
  CHECK(read(r, frame(fin | 0x8, close_payload(1001, "going away"))).events ==
        std::vector<std::string>{"close:1001:going away"});
  ws::frame_reader code_only(0);
  CHECK(read(code_only, frame(fin | 0x8, close_payload(4000, ""))).events ==
        std::vector<std::string>{"close:4000:"});
  ws::frame_reader high(0);
  CHECK(read(high, frame(fin | 0x8, close_payload(0xFFFF, ""))).events ==
        std::vector<std::string>{"close:65535:"});
}

TEST_CASE("a close frame without payload has code 0", "[ws_protocol]") {
  ws::frame_reader r(0);
  CHECK(read(r, frame(fin | 0x8, "")).events == std::vector<std::string>{"close:0:"});
}

TEST_CASE("a close frame with a 1-byte payload is a protocol error", "[ws_protocol]") {
  ws::frame_reader r(0);
  const transcript t = read(r, frame(fin | 0x8, "x"));
  CHECK(t.events == std::vector<std::string>{"error:1002"});
  CHECK(t.code == uvcometd::errc::transport_error);
  CHECK_THAT(t.what, Contains("close"));
}

TEST_CASE("nothing is read after a close frame", "[ws_protocol]") {
  const std::string close = frame(fin | 0x8, close_payload(1000, "bye"));
  const std::string after = frame(fin | 0x1, "late");
  const std::string bytes = close + after;
  ws::frame_reader r(0);
  std::size_t used = 0;
  CHECK(r.next(bytes.data(), bytes.size(), used) == event::close);
  CHECK(used == close.size());
  CHECK(r.next(after.data(), after.size(), used) == event::close);
  CHECK(used == 0);
  CHECK(r.close_code() == 1000);
  CHECK(r.control_payload() == "bye");
}

// ---- frame_reader: protocol violations ------------------------------------------------------

TEST_CASE("a protocol violation is an error with status 1002", "[ws_protocol]") {
  struct violation {
    std::string name;
    std::string bytes;
    std::string why;
  };
  const violation c = GENERATE(values<violation>({
      {"masked frame", std::string{'\x81', '\x81', '\1', '\2', '\3', '\4', 'x'}, "masked"},
      {"RSV1", frame(fin | 0x40 | 0x1, "x"), "reserved"},
      {"RSV2", frame(fin | 0x20 | 0x1, "x"), "reserved"},
      {"RSV3", frame(fin | 0x10 | 0x1, "x"), "reserved"},
      {"RSV on a continuation", frame(0x1, "a") + frame(fin | 0x10, "b"), "reserved"},
      {"fragmented ping", frame(0x9, "x"), "fragmented control"},
      {"fragmented close", frame(0x8, ""), "fragmented control"},
      {"ping of 126 bytes", frame(fin | 0x9, std::string(126, 'x')), "126 bytes"},
      {"pong of 126 bytes", frame(fin | 0xA, std::string(126, 'x')), "126 bytes"},
      {"close of 126 bytes", frame(fin | 0x8, std::string(126, 'x')), "126 bytes"},
      {"continuation without a message", frame(fin | 0x0, "x"), "continuation"},
      {"continuation after a finished message", frame(fin | 0x1, "a") + frame(fin, "b"),
       "continuation"},
      {"text while a fragmented message is open", frame(0x1, "a") + frame(fin | 0x1, "b"),
       "before the fragmented one ended"},
      {"binary while a fragmented message is open", frame(0x2, "a") + frame(0x2, "b"),
       "before the fragmented one ended"},
      {"64-bit length with its top bit set", frame_header(fin | 0x2, std::uint64_t{1} << 63),
       "top bit"},
      {"64-bit length of all ones", frame_header(fin | 0x2, ~std::uint64_t{0}), "top bit"},
  }));
  CAPTURE(c.name);
  ws::frame_reader r(0);
  const transcript t = read(r, c.bytes);
  CHECK(t.events.size() >= 1);
  CHECK(t.events.back() == "error:1002");
  CHECK(t.code == uvcometd::errc::transport_error);
  CHECK(t.close_status == 1002);
  CHECK_THAT(t.what, Contains(c.why));
}

TEST_CASE("an unknown opcode is an error with status 1002", "[ws_protocol]") {
  const unsigned op = GENERATE(range(3u, 8u), range(0xBu, 0x10u));
  CAPTURE(op);
  for (const unsigned f : {fin, 0u}) {
    ws::frame_reader r(0);
    const transcript t = read(r, frame(f | op, "x"));
    CHECK(t.events == std::vector<std::string>{"error:1002"});
    CHECK(t.code == uvcometd::errc::transport_error);
    CHECK_THAT(t.what, Contains("opcode " + std::to_string(op)));
  }
}

TEST_CASE("the reader stays dead after an error", "[ws_protocol]") {
  ws::frame_reader r(0);
  const std::string bad = frame(fin | 0x40 | 0x1, "x");
  std::size_t used = 0;
  REQUIRE(r.next(bad.data(), bad.size(), used) == event::error);
  const std::string what = r.what();
  const std::string good = frame(fin | 0x1, "fine");
  CHECK(r.next(good.data(), good.size(), used) == event::error);
  CHECK(used == 0);
  CHECK(r.what() == what);
  CHECK(r.close_status() == 1002);
  CHECK(r.next(good.data(), 0, used) == event::error);
}

// ---- frame_reader: max_message --------------------------------------------------------------

TEST_CASE("max_message accepts a message of exactly that size", "[ws_protocol]") {
  const std::size_t max = GENERATE(as<std::size_t>{}, 1, 125, 126, 70000);
  CAPTURE(max);
  ws::frame_reader whole(max);
  CHECK(read(whole, frame(fin | 0x1, pattern(max))).events == std::vector<std::string>{"message"});
  ws::frame_reader fragments(max);
  const std::string bytes = frame(0x1, pattern(max - max / 2)) + frame(fin, pattern(max / 2));
  CHECK(read(fragments, bytes).events == std::vector<std::string>{"message"});
}

TEST_CASE("max_message refuses a frame from its header, before the payload", "[ws_protocol]") {
  const std::size_t max = GENERATE(as<std::size_t>{}, 10, 125, 200, 65535, 70000);
  CAPTURE(max);
  for (const unsigned b0 : {fin | 0x1, fin | 0x2, 0x1u}) {
    CAPTURE(b0);
    ws::frame_reader r(max);
    const std::string header = frame_header(b0, max + 1);
    std::size_t used = 0;
    CHECK(r.next(header.data(), header.size(), used) == event::error);
    CHECK(used == header.size());
    CHECK(r.error_code() == uvcometd::errc::message_too_large);
    CHECK(r.close_status() == 1009);
    CHECK_THAT(r.what(), Contains(std::to_string(max)));
  }
}

TEST_CASE("max_message refuses a fragmented message at the fragment that crosses it",
          "[ws_protocol]") {
  ws::frame_reader r(10);
  const std::string first = frame(0x1, "12345") + frame(fin | 0x9, "") + frame(0x0, "1234");
  const transcript t = read(r, first);
  CHECK(t.events == std::vector<std::string>{"ping:"});
  CHECK(r.buffered() == 9);
  const std::string crossing = frame_header(fin | 0x0, 2);
  std::size_t used = 0;
  CHECK(r.next(crossing.data(), crossing.size(), used) == event::error);
  CHECK(r.error_code() == uvcometd::errc::message_too_large);
  CHECK(r.close_status() == 1009);
  CHECK(r.buffered() == 0);
}

TEST_CASE("control frames do not count towards max_message", "[ws_protocol]") {
  ws::frame_reader r(3);
  const transcript t =
      read(r, frame(0x1, "ab") + frame(fin | 0x9, std::string(125, 'p')) + frame(fin, "c"));
  CHECK(t.events == std::vector<std::string>{"ping:" + std::string(125, 'p'), "message"});
  CHECK(t.messages == std::vector<std::string>{"abc"});
}

TEST_CASE("a huge announced length without a limit allocates nothing ahead", "[ws_protocol]") {
  const std::uint64_t len = GENERATE(std::uint64_t{1} << 32, std::uint64_t{1} << 40,
                                     std::uint64_t{1} << 62, ~std::uint64_t{0} >> 1);
  CAPTURE(len);
  ws::frame_reader r(0);
  const std::string header = frame_header(fin | 0x2, len);
  std::size_t used = 0;
  event e = event::error;
  CHECK_NOTHROW(e = r.next(header.data(), header.size(), used));
  CHECK(e == event::none);
  CHECK(used == header.size());
  CHECK(r.buffered() == 0);
  const std::string some = pattern(1000);
  CHECK_NOTHROW(e = r.next(some.data(), some.size(), used));
  CHECK(e == event::none);
  CHECK(r.buffered() == 1000);
}

// ---- outgoing frames ------------------------------------------------------------------------

TEST_CASE("header_size covers the length form and the mask key", "[ws_protocol]") {
  CHECK(ws::header_size(0) == 6);
  CHECK(ws::header_size(125) == 6);
  CHECK(ws::header_size(126) == 8);
  CHECK(ws::header_size(65535) == 8);
  CHECK(ws::header_size(65536) == 14);
  CHECK(ws::header_size(std::size_t{1} << 32) == 14);
}

TEST_CASE("frame_in_place writes a final masked frame that decodes to the payload",
          "[ws_protocol]") {
  const std::size_t n = GENERATE(as<std::size_t>{}, 0, 1, 7, 8, 9, 125, 126, 65535, 65536, 100000);
  CAPTURE(n);
  for (const auto op : {ws::opcode::text, ws::opcode::binary, ws::opcode::ping}) {
    if (op == ws::opcode::ping && n > 125) continue;
    for (const auto& key : {key_a, key_b}) {
      const std::string payload = pattern(n, key[0]);
      std::string buf(14, '\xEE');
      buf += payload;
      char* const body = buf.data() + 14;
      char* const start = ws::frame_in_place(body, n, op, key);
      CHECK(start == body - ws::header_size(n));
      CHECK(std::all_of(buf.data(), start, [](char c) { return c == '\xEE'; }));
      const std::size_t total = static_cast<std::size_t>(buf.data() + buf.size() - start);
      const decoded d = decode_client_frame(start, total);
      CHECK(d.fin);
      CHECK(d.rsv == 0);
      CHECK(d.op == static_cast<unsigned>(op));
      CHECK(d.masked);
      CHECK(d.shortest_length);
      CHECK(d.header == ws::header_size(n));
      CHECK(std::equal(key.begin(), key.end(), start + d.header - 4,
                       [](unsigned char k, char c) { return k == static_cast<unsigned char>(c); }));
      CHECK(d.payload.size() == n);
      CHECK((d.payload == payload));
      if (n >= 4) CHECK((std::string_view(body, n) != payload));  // masked on the wire
    }
  }
}

TEST_CASE("mask XORs with the key from the first byte at any alignment", "[ws_protocol]") {
  for (std::size_t offset = 0; offset < 8; ++offset) {
    for (std::size_t len = 0; len <= 40; ++len) {
      for (const auto& key : {key_a, key_b}) {
        CAPTURE(offset, len, key[0]);
        const std::string original = pattern(8 + 40 + 8, static_cast<unsigned>(len));
        std::string expected = original;
        for (std::size_t i = 0; i < len; ++i) {
          expected[offset + i] = static_cast<char>(original[offset + i] ^ key[i % 4]);
        }
        std::string buf = original;
        ws::mask(buf.data() + offset, len, key);
        REQUIRE(buf == expected);  // bytes outside [offset, offset + len) untouched too
        ws::mask(buf.data() + offset, len, key);
        REQUIRE(buf == original);
      }
    }
  }
}

// ---- round trip -----------------------------------------------------------------------------

TEST_CASE("an outgoing frame with its mask removed is read back by frame_reader", "[ws_protocol]") {
  const std::size_t n = GENERATE(as<std::size_t>{}, 0, 1, 125, 126, 65535, 65536, 100000);
  CAPTURE(n);
  const std::string payload = pattern(n, 3);
  std::string buf(14, '\0');
  buf += payload;
  char* const start = ws::frame_in_place(buf.data() + 14, n, ws::opcode::binary, key_b);
  const std::size_t hs = ws::header_size(n);
  // The server's frame: the same header without the mask bit and key, the payload unmasked.
  std::string server(start, hs - 4);
  server[1] = static_cast<char>(server[1] & 0x7F);
  std::string body(start + hs, n);
  ws::mask(body.data(), n, key_b);
  server += body;

  ws::frame_reader r(0);
  std::mt19937 rng(7);
  const transcript t = read(r, server, random_cuts(server.size(), 3000, rng));
  CHECK(t.events == std::vector<std::string>{"message"});
  REQUIRE(t.messages.size() == 1);
  CHECK((t.messages[0] == payload));
}
