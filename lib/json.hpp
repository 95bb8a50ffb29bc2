// A strict, allocation-free JSON scanner (RFC 8259) used to split frames into messages and keep
// values as raw text spans, plus the few writing helpers the encoder needs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace uvcometd::detail::json {

// Deeper nesting is rejected (a peer must not be able to exhaust the stack).
inline constexpr int max_depth = 256;

inline bool is_space(char c) noexcept { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

inline void skip_space(std::string_view s, std::size_t& pos) noexcept {
  while (pos < s.size() && is_space(s[pos])) ++pos;
}

// Skips one JSON value starting at `pos` (whitespace already skipped), validating it strictly
// (strings included: valid escapes, and valid UTF-8 as RFC 8259 requires).
// On success `pos` is just past the value. `depth` is the current nesting level.
bool skip_value(std::string_view s, std::size_t& pos, int depth = 0) noexcept;

inline constexpr std::size_t npos = static_cast<std::size_t>(-1);

// True for the bytes that end a run of plain string content: '"', '\\' and the control
// characters, which JSON forbids raw. Bytes >= 0x80 are plain (UTF-8 is passed through as is).
inline bool is_special(char c) noexcept {
  return c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20;
}

// Whether any of the 8 bytes of `x` is special: the classic "has a zero byte" test on x ^ '"'
// and x ^ '\\', and "has a byte below 0x20" on x. Exact for the word as a whole (a borrow only
// marks bytes above a real hit), so the caller finds the byte one at a time.
inline bool has_special(std::uint64_t x) noexcept {
  constexpr std::uint64_t ones = 0x0101010101010101ULL;
  constexpr std::uint64_t highs = 0x8080808080808080ULL;
  const std::uint64_t q = x ^ (ones * '"');
  const std::uint64_t b = x ^ (ones * '\\');
  const std::uint64_t zq = (q - ones) & ~q;
  const std::uint64_t zb = (b - ones) & ~b;
  const std::uint64_t lt = (x - ones * 0x20) & ~x;
  return ((zq | zb | lt) & highs) != 0;
}

// The index of the first special byte of p[i, n), or n; with `StopAtNonAscii`, also of the first
// byte >= 0x80 (the start of a UTF-8 sequence the caller validates). Strings are where a Bayeux
// frame spends its bytes (channel names, payloads), so plain runs are skipped 16 bytes (SSE2) or
// 8 bytes (SWAR) at a time. Loads never reach past p + n.
template <bool StopAtNonAscii>
inline std::size_t skip_plain_run(const char* p, std::size_t i, std::size_t n) noexcept {
#if defined(__SSE2__)
  const __m128i quote = _mm_set1_epi8('"');
  const __m128i backslash = _mm_set1_epi8('\\');
  const __m128i ctl_max = _mm_set1_epi8(0x1F);
  while (i + 16 <= n) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    const __m128i hit =
        _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                     _mm_cmpeq_epi8(_mm_min_epu8(v, ctl_max), v));  // unsigned v <= 0x1F
    unsigned mask = static_cast<unsigned>(_mm_movemask_epi8(hit));
    if (StopAtNonAscii) mask |= static_cast<unsigned>(_mm_movemask_epi8(v));  // the high bits
    if (mask != 0) return i + static_cast<std::size_t>(__builtin_ctz(mask));
    i += 16;
  }
#endif
  while (i + 8 <= n) {
    std::uint64_t x;
    std::memcpy(&x, p + i, 8);
    if (has_special(x) || (StopAtNonAscii && (x & 0x8080808080808080ULL) != 0)) break;
    i += 8;  // the byte loop below finds which one
  }
  while (i < n && !is_special(p[i]) &&
         !(StopAtNonAscii && static_cast<unsigned char>(p[i]) >= 0x80)) {
    ++i;
  }
  return i;
}

// The index of the first special byte of p[i, n), or n (bytes >= 0x80 are plain: the encoder
// copies UTF-8 as it is).
inline std::size_t skip_plain(const char* p, std::size_t i, std::size_t n) noexcept {
  return skip_plain_run<false>(p, i, n);
}

// The index just past the UTF-8 sequence starting at p[i] (a byte >= 0x80), or npos when it is
// not one well-formed sequence (RFC 3629: no overlong forms, no surrogates, nothing past
// U+10FFFF, no stray continuation byte).
std::size_t skip_utf8(const char* p, std::size_t i, std::size_t n) noexcept;

// The index just past the escape sequence whose backslash is at s[i], or npos when it is not
// a valid JSON escape (\u needs four hex digits; surrogates are checked by unescape).
std::size_t skip_escape(std::string_view s, std::size_t i) noexcept;

// From a UTF-8 sequence at p[i] on, the index of the next special byte ('"', '\\', a control
// byte) or n, with every byte on the way valid UTF-8; npos at the first that is not. Text that is
// mostly non-ASCII is checked here one character at a time (the two-byte case inline) instead
// of going back to the block scan after each character.
inline std::size_t skip_utf8_run(const char* p, std::size_t i, std::size_t n) noexcept {
  while (i < n) {
    const auto b = static_cast<unsigned char>(p[i]);
    if (b < 0x80) {
      if (is_special(static_cast<char>(b))) return i;
      ++i;
    } else if (b >= 0xC2 && b <= 0xDF) {
      if (i + 1 >= n || (static_cast<unsigned char>(p[i + 1]) & 0xC0) != 0x80) return npos;
      i += 2;
    } else {
      i = skip_utf8(p, i, n);
      if (i == npos) return npos;
    }
  }
  return i;
}

// Scans a string starting at the opening quote at `pos`; `content` receives the raw text between
// the quotes (escapes not decoded), `escaped` whether it contains a backslash. Fails on a raw
// control character, an invalid escape or invalid UTF-8; on failure `pos` is left unchanged.
// Inline: member names and values are mostly short strings, which the decoder reads without a call.
inline bool scan_string(std::string_view s, std::size_t& pos, std::string_view& content,
                        bool& escaped) noexcept {
  const std::size_t n = s.size();
  if (pos >= n || s[pos] != '"') return false;
  const char* const p = s.data();
  const std::size_t start = pos + 1;
  std::size_t i = start;
  escaped = false;
  for (;;) {
    i = skip_plain_run<true>(p, i, n);
    if (i >= n) return false;
    const char c = p[i];
    if (c == '"') {
      content = std::string_view(p + start, i - start);
      pos = i + 1;
      return true;
    }
    if (static_cast<unsigned char>(c) >= 0x80) {
      i = skip_utf8_run(p, i, n);  // a frame must be UTF-8 (RFC 8259): a broken sequence fails
    } else if (c == '\\') {
      escaped = true;
      i = skip_escape(s, i);
    } else {
      return false;  // a raw control character
    }
    if (i == npos) return false;
  }
}

// Decodes the escapes of a raw string content (as returned by scan_string) into UTF-8.
// Returns false on an invalid escape or lone surrogate.
bool unescape(std::string_view raw, std::string& out);

// True when `text` is exactly one JSON value, surrounded by optional whitespace.
bool is_valid(std::string_view text) noexcept;

// True when `text` is exactly one JSON object, surrounded by optional whitespace.
bool is_object(std::string_view text) noexcept;

// Appends `s` as a JSON string literal (quotes included).
void append_string(std::string& out, std::string_view s);

// Parses a JSON number's raw text as an integer, truncating fractions and saturating at the
// int64 range. Returns false when `raw` is not a number.
bool to_int64(std::string_view raw, std::int64_t& out) noexcept;

}  // namespace uvcometd::detail::json
