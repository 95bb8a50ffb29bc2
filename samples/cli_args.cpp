// uvcometd-cli — command-line parsing and output formatting.
#include "cli_args.hpp"

#include <uvcometd/checks.hpp>

#include <getopt.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <limits>

namespace uvcometd_cli {
namespace {

enum long_only : int {
  opt_connection_timeout = 256,
  opt_max_pending,
  opt_ext,
  opt_insecure,
  opt_cacert,
  opt_version,
  opt_debug,
  opt_format,
  opt_timestamps,
  opt_ack,
  opt_replay_from,
  opt_header_file,
  opt_forever,
  opt_call,
  opt_call_timeout,
  opt_meta,
};

const option long_options[] = {
    {"subscribe", required_argument, nullptr, 's'},
    {"publish", required_argument, nullptr, 'p'},
    {"transport", required_argument, nullptr, 't'},
    {"count", required_argument, nullptr, 'n'},
    {"connection-timeout", required_argument, nullptr, opt_connection_timeout},
    {"forever", no_argument, nullptr, opt_forever},
    {"max-pending", required_argument, nullptr, opt_max_pending},
    {"header", required_argument, nullptr, 'H'},
    {"header-file", required_argument, nullptr, opt_header_file},
    {"ext", required_argument, nullptr, opt_ext},
    {"ack", no_argument, nullptr, opt_ack},
    {"replay-from", required_argument, nullptr, opt_replay_from},
    {"format", required_argument, nullptr, opt_format},
    {"timestamps", no_argument, nullptr, opt_timestamps},
    {"verbose", no_argument, nullptr, 'v'},
    {"debug", no_argument, nullptr, opt_debug},
    {"insecure", no_argument, nullptr, opt_insecure},
    {"cacert", required_argument, nullptr, opt_cacert},
    {"help", no_argument, nullptr, 'h'},
    {"version", no_argument, nullptr, opt_version},
    {"call", required_argument, nullptr, opt_call},
    {"call-timeout", required_argument, nullptr, opt_call_timeout},
    {"meta", no_argument, nullptr, opt_meta},
    {nullptr, 0, nullptr, 0},
};

// '-': non-options come back in order as option 1 (also under POSIXLY_CORRECT);
// ':': getopt prints nothing and reports a missing argument as ':'.
const char short_options[] = "-:s:p:t:n:H:vh";

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

bool is_json_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decimal digits only (no sign, no space), within `max`.
std::optional<std::uint64_t> parse_unsigned(std::string_view s, std::uint64_t max) noexcept {
  if (s.empty()) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) {
    if (!is_digit(c)) return std::nullopt;
    const auto d = static_cast<std::uint64_t>(c - '0');
    if (v > (max - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

// An optional '-' then decimal digits, within int64.
std::optional<std::int64_t> parse_signed(std::string_view s) noexcept {
  const bool negative = !s.empty() && s.front() == '-';
  if (negative) s.remove_prefix(1);
  const auto max = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  const auto v = parse_unsigned(s, negative ? max + 1 : max);
  if (!v) return std::nullopt;
  if (!negative) return static_cast<std::int64_t>(*v);
  if (*v == max + 1) return std::numeric_limits<std::int64_t>::min();
  return -static_cast<std::int64_t>(*v);
}

// "SECONDS[.FRACTION]"; a positive value below 1 ms becomes 1 ms so that it never means "forever".
std::optional<std::chrono::milliseconds> parse_seconds(std::string_view s) noexcept {
  const auto dot = s.find('.');
  const std::string_view whole = s.substr(0, dot);
  const std::string_view frac =
      dot == std::string_view::npos ? std::string_view{} : s.substr(dot + 1);
  if (whole.empty() && frac.empty()) return std::nullopt;
  if (dot != std::string_view::npos && frac.empty()) return std::nullopt;  // "5."
  std::uint64_t secs = 0;
  if (!whole.empty()) {
    auto w = parse_unsigned(whole, 1000000000);  // ~31 years is plenty
    if (!w) return std::nullopt;
    secs = *w;
  }
  std::uint64_t ms = 0;
  bool nonzero_rest = false;
  for (std::size_t i = 0; i < frac.size(); ++i) {
    if (!is_digit(frac[i])) return std::nullopt;
    if (i < 3) {
      ms = ms * 10 + static_cast<std::uint64_t>(frac[i] - '0');
    } else if (frac[i] != '0') {
      nonzero_rest = true;
    }
  }
  for (std::size_t i = frac.size(); i < 3; ++i) ms *= 10;
  std::uint64_t total = secs * 1000 + ms;
  if (total == 0 && nonzero_rest) total = 1;
  return std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(total));
}

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::optional<uvcometd::connection_type> transport_by_name(std::string_view name) noexcept {
  if (name == "websocket") return uvcometd::connection_type::websocket;
  if (name == "long-polling") return uvcometd::connection_type::long_polling;
  return std::nullopt;
}

// RFC 9110 token character.
bool is_tchar(char c) noexcept {
  if (is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Why `h` is not a "Name: value" header, or empty if it is one.
std::string header_problem(std::string_view h) {
  if (h.find_first_of("\r\n") != std::string_view::npos) return "must be one line";
  const auto colon = h.find(':');
  if (colon == std::string_view::npos) return "expected 'Name: value'";
  const std::string_view name = h.substr(0, colon);
  if (name.empty()) return "empty header name";
  if (!std::all_of(name.begin(), name.end(), is_tchar)) return "invalid header name";
  return {};
}

// ---------------------------------------------------------------------------------------------
// UTF-8

constexpr std::string_view replacement_char = "\xef\xbf\xbd";  // U+FFFD

// The length of the well-formed UTF-8 sequence (Unicode table 3-7) starting at s[i], a byte
// >= 0x80, or 0 when it is ill-formed; then `bad` is the length of its maximal ill-formed
// subpart (at least 1), which is replaced by one U+FFFD as Unicode recommends.
std::size_t utf8_length(std::string_view s, std::size_t i, std::size_t& bad) noexcept {
  const auto b0 = static_cast<unsigned char>(s[i]);
  std::size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;  // no encoded surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    bad = 1;
    return 0;
  }
  std::size_t k = 1;
  for (; k < len && i + k < s.size(); ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    const unsigned char min = k == 1 ? lo : 0x80;
    const unsigned char max = k == 1 ? hi : 0xBF;
    if (b < min || b > max) break;
  }
  if (k == len) return len;
  bad = k;
  return 0;
}

// The code point of the well-formed sequence s[i, i + len).
unsigned utf8_decode(std::string_view s, std::size_t i, std::size_t len) noexcept {
  const auto b = [&](std::size_t k) {
    return static_cast<unsigned>(static_cast<unsigned char>(s[i + k]));
  };
  switch (len) {
    case 2: return ((b(0) & 0x1Fu) << 6) | (b(1) & 0x3Fu);
    case 3: return ((b(0) & 0x0Fu) << 12) | ((b(1) & 0x3Fu) << 6) | (b(2) & 0x3Fu);
    default:
      return ((b(0) & 0x07u) << 18) | ((b(1) & 0x3Fu) << 12) | ((b(2) & 0x3Fu) << 6) |
             (b(3) & 0x3Fu);
  }
}

// Appends s[i...] from a byte >= 0x80: the well-formed sequence, or U+FFFD. Returns the index
// just past what was consumed.
std::size_t append_utf8_repaired(std::string_view s, std::size_t i, std::string& out) {
  std::size_t bad = 0;
  const std::size_t len = utf8_length(s, i, bad);
  if (len == 0) {
    out += replacement_char;
    return i + bad;
  }
  out.append(s.substr(i, len));
  return i + len;
}

// ---------------------------------------------------------------------------------------------
// JSON

enum class json_status { ok, syntax, too_deep };

// Reads the four hex digits of a \u escape at text[i] (just past the 'u').
bool read_hex4(std::string_view text, std::size_t i, unsigned& out) noexcept {
  if (i + 4 > text.size()) return false;
  out = 0;
  for (std::size_t k = 0; k < 4; ++k) {
    const int v = hex_value(text[i + k]);
    if (v < 0) return false;
    out = out * 16 + static_cast<unsigned>(v);
  }
  return true;
}

// The containers ('{' or '[') open around the current value: as the deepest value allowed is at
// depth max_json_depth, at most max_json_depth + 1 of them.
struct nesting {
  char open[max_json_depth + 1];
  std::size_t n = 0;

  bool empty() const noexcept { return n == 0; }
  std::size_t size() const noexcept { return n; }
  char back() const noexcept { return open[n - 1]; }
  void push_back(char c) noexcept { open[n++] = c; }
  void pop_back() noexcept { --n; }
};

// The special bytes of the 8 bytes of `x`: '"', '\\', a control character, or a byte >= 0x80
// (which needs a UTF-8 check), each marked by its high bit. The classic "has a zero byte" test on
// x ^ '"' and x ^ '\\' and "has a byte below 0x20" on x: a borrow can only mark bytes above a
// real hit, so the lowest mark is exact.
std::uint64_t special_bytes(std::uint64_t x) noexcept {
  constexpr std::uint64_t ones = 0x0101010101010101ULL;
  constexpr std::uint64_t highs = 0x8080808080808080ULL;
  const std::uint64_t q = x ^ (ones * '"');
  const std::uint64_t b = x ^ (ones * '\\');
  const std::uint64_t zq = (q - ones) & ~q;
  const std::uint64_t zb = (b - ones) & ~b;
  const std::uint64_t lt = (x - ones * 0x20) & ~x;
  return (zq | zb | lt | x) & highs;
}

// The index of the first special byte (see special_bytes) of p[i, n), or n. String contents are
// where messages spend their bytes, so plain runs are skipped 16 (SSE2) or 8 bytes at a time.
std::size_t skip_plain(const char* p, std::size_t i, std::size_t n) noexcept {
#if defined(__SSE2__)
  const __m128i quote = _mm_set1_epi8('"');
  const __m128i backslash = _mm_set1_epi8('\\');
  const __m128i ctl_max = _mm_set1_epi8(0x1F);
  while (i + 16 <= n) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    const __m128i hit =
        _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                     _mm_cmpeq_epi8(_mm_min_epu8(v, ctl_max), v));  // unsigned v <= 0x1F
    // movemask of v itself: the bytes >= 0x80.
    const unsigned mask = static_cast<unsigned>(_mm_movemask_epi8(hit) | _mm_movemask_epi8(v));
    if (mask != 0) return i + static_cast<std::size_t>(__builtin_ctz(mask));
    i += 16;
  }
#endif
  while (i + 8 <= n) {
    std::uint64_t x;
    std::memcpy(&x, p + i, 8);
    if (const std::uint64_t bits = special_bytes(x); bits != 0) {
      return i + static_cast<std::size_t>(__builtin_ctzll(bits)) / 8;  // little-endian
    }
    i += 8;
  }
  while (i < n) {
    const auto c = static_cast<unsigned char>(p[i]);
    if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\') break;
    ++i;
  }
  return i;
}

// Scans the string whose opening quote is at text[pos] and leaves `pos` just past it; when `out`
// is not null, copies it there with its UTF-8 and lone surrogate escapes repaired. A function of
// its own, on local copies, so that the hot loop keeps its state in registers.
bool scan_string(std::string_view text, std::size_t& pos, std::string* out) {
  const char* const p = text.data();
  const std::size_t n = text.size();
  std::size_t i = pos + 1;
  std::size_t run = pos;  // the start of the bytes not yet copied (the quote included)
  const auto flush = [&](std::size_t to) {
    if (out != nullptr) out->append(p + run, to - run);
  };
  while (i < n) {
    i = skip_plain(p, i, n);
    if (i >= n) break;
    const auto c = static_cast<unsigned char>(p[i]);
    if (c == '"') {
      ++i;
      flush(i);
      pos = i;
      return true;
    }
    if (c < 0x20) return false;
    if (c == '\\') {
      if (i + 1 >= n) return false;
      const char x = p[i + 1];
      if (x == 'u') {
        unsigned cp = 0;
        if (!read_hex4(text, i + 2, cp)) return false;
        if (cp >= 0xD800 && cp <= 0xDFFF) {
          unsigned low = 0;
          const bool paired = cp <= 0xDBFF && i + 12 <= n && p[i + 6] == '\\' && p[i + 7] == 'u' &&
                              read_hex4(text, i + 8, low) && low >= 0xDC00 && low <= 0xDFFF;
          if (paired) {
            i += 12;
          } else {
            flush(i);
            if (out != nullptr) out->append("\\ufffd");
            i += 6;
            run = i;
          }
        } else {
          i += 6;
        }
      } else if (std::string_view("\"\\/bfnrt").find(x) != std::string_view::npos) {
        i += 2;
      } else {
        return false;
      }
      continue;
    }
    if (out == nullptr) {  // bytes >= 0x80 are only checked when copying
      ++i;
      continue;
    }
    std::size_t bad = 0;
    const std::size_t len = utf8_length(text, i, bad);
    if (len != 0) {
      i += len;
    } else {
      flush(i);
      out->append(replacement_char);
      i += bad;
      run = i;
    }
  }
  return false;
}

// Validates `text` as one JSON value nested at most max_json_depth deep; when `out` is not null,
// also writes it there compactly (see append_compact_json). Iterative, so that deep nesting
// cannot overflow the stack; it allocates nothing but the output.
json_status scan_json(std::string_view text, std::string* out) {
  const std::size_t n = text.size();
  std::size_t i = 0;
  nesting stack;
  enum class expect { value, value_or_close, key, key_or_close, after_value } e = expect::value;

  auto emit = [&](std::string_view s) {
    if (out != nullptr) out->append(s);
  };
  auto put = [&](char c) {
    if (out != nullptr) out->push_back(c);
  };
  auto skip_space = [&] {
    while (i < n && is_json_space(text[i])) ++i;
  };
  auto string = [&]() -> bool { return scan_string(text, i, out); };
  auto digits = [&]() -> bool {
    const std::size_t start = i;
    while (i < n && is_digit(text[i])) ++i;
    return i > start;
  };
  auto number = [&]() -> bool {
    const std::size_t start = i;
    if (text[i] == '-') ++i;
    if (i < n && text[i] == '0') {
      ++i;
    } else if (!digits()) {
      return false;
    }
    if (i < n && text[i] == '.') {
      ++i;
      if (!digits()) return false;
    }
    if (i < n && (text[i] == 'e' || text[i] == 'E')) {
      ++i;
      if (i < n && (text[i] == '+' || text[i] == '-')) ++i;
      if (!digits()) return false;
    }
    emit(text.substr(start, i - start));
    return true;
  };
  auto literal = [&](std::string_view word) -> bool {
    if (text.substr(i, word.size()) != word) return false;
    emit(word);
    i += word.size();
    return true;
  };
  // The value about to be read sits at depth stack.size() (the top value at 0).
  auto too_deep = [&] { return stack.size() > static_cast<std::size_t>(max_json_depth); };

  for (;;) {
    skip_space();
    if (e == expect::after_value && stack.empty()) {
      return i == n ? json_status::ok : json_status::syntax;
    }
    if (i >= n) return json_status::syntax;
    const char c = text[i];
    switch (e) {
      case expect::key_or_close:
        if (c == '}') {
          stack.pop_back();
          put('}');
          ++i;
          e = expect::after_value;
          break;
        }
        [[fallthrough]];
      case expect::key:
        if (c != '"' || !string()) return json_status::syntax;
        skip_space();
        if (i >= n || text[i] != ':') return json_status::syntax;
        put(':');
        ++i;
        e = expect::value;
        break;
      case expect::value_or_close:
        if (c == ']') {
          stack.pop_back();
          put(']');
          ++i;
          e = expect::after_value;
          break;
        }
        [[fallthrough]];
      case expect::value:
        if (too_deep()) return json_status::too_deep;
        if (c == '{' || c == '[') {
          stack.push_back(c);
          put(c);
          ++i;
          e = c == '{' ? expect::key_or_close : expect::value_or_close;
          break;
        }
        if (c == '"') {
          if (!string()) return json_status::syntax;
        } else if (c == '-' || is_digit(c)) {
          if (!number()) return json_status::syntax;
        } else if (!literal("true") && !literal("false") && !literal("null")) {
          return json_status::syntax;
        }
        e = expect::after_value;
        break;
      case expect::after_value:
        if (c == ',') {
          e = stack.back() == '{' ? expect::key : expect::value;
        } else if ((c == '}' && stack.back() == '{') || (c == ']' && stack.back() == '[')) {
          stack.pop_back();
        } else {
          return json_status::syntax;
        }
        put(c);
        ++i;
        break;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// the parser

struct parser {
  parse_result result;
  bool timeout_given = false;
  bool forever = false;

  void fail(std::string message) {
    if (result.action != parse_action::usage_error) {
      result.action = parse_action::usage_error;
      result.error = std::move(message);
    }
  }

  void option_with(int opt, const std::string& arg) {
    cli_config& c = result.config;
    switch (opt) {
      case 's': {
        const std::string why = uvcometd::channel_problem(arg, uvcometd::channel_use::subscribe);
        if (!why.empty()) return fail("--subscribe: " + why + ": '" + arg + "'");
        c.subscribe.push_back(arg);
        return;
      }
      case 'p': {
        const auto eq = arg.find('=');
        if (eq == std::string::npos) {
          return fail("--publish: expected CHANNEL=JSON or CHANNEL=-: '" + arg + "'");
        }
        publish_spec p{arg.substr(0, eq), arg.substr(eq + 1)};
        const std::string why =
            uvcometd::channel_problem(p.channel, uvcometd::channel_use::publish);
        if (!why.empty()) return fail("--publish: " + why + ": '" + p.channel + "'");
        if (p.data == "-") {
          const bool again = std::any_of(c.publish.begin(), c.publish.end(),
                                         [](const publish_spec& q) { return q.from_stdin; });
          if (again) return fail("--publish: only one CHANNEL=- may read stdin");
          p.data.clear();
          p.from_stdin = true;
        } else if (const std::string bad = json_problem(p.data); !bad.empty()) {
          return fail("--publish: " + bad + " for " + p.channel + ": " + p.data);
        }
        c.publish.push_back(std::move(p));
        return;
      }
      case 't': {
        std::vector<uvcometd::connection_type> types;
        std::string_view rest = arg;
        for (;;) {
          const auto comma = rest.find(',');
          const std::string_view name = trim(rest.substr(0, comma));
          const auto t = transport_by_name(name);
          if (!t) {
            return fail("--transport: unknown transport '" + std::string(name) +
                        "' (expected websocket, long-polling)");
          }
          if (std::find(types.begin(), types.end(), *t) != types.end()) {
            return fail("--transport: '" + std::string(name) + "' given twice");
          }
          types.push_back(*t);
          if (comma == std::string_view::npos) break;
          rest.remove_prefix(comma + 1);
        }
        c.connection_types = std::move(types);
        return;
      }
      case 'n': {
        const auto n = parse_unsigned(arg, std::numeric_limits<std::size_t>::max());
        if (!n || *n == 0) return fail("--count: expected a positive integer: '" + arg + "'");
        c.count = static_cast<std::size_t>(*n);
        return;
      }
      case opt_connection_timeout: {
        const auto t = parse_seconds(arg);
        if (!t) return fail("--connection-timeout: expected seconds (0 = forever): '" + arg + "'");
        c.connection_timeout = *t;
        timeout_given = true;
        return;
      }
      case opt_max_pending: {
        const auto n = parse_unsigned(arg, std::numeric_limits<std::size_t>::max());
        if (!n) return fail("--max-pending: expected a non-negative integer: '" + arg + "'");
        c.max_pending_count = static_cast<std::size_t>(*n);
        return;
      }
      case 'H': {
        const std::string why = header_problem(arg);
        if (!why.empty()) return fail("--header: " + why + ": '" + arg + "'");
        c.headers.push_back(arg);
        return;
      }
      case opt_header_file:
        if (arg.empty()) return fail("--header-file: empty file name");
        c.header_files.push_back(arg);
        return;
      case opt_ext: {
        const std::string_view text = arg;
        const auto first = text.find_first_not_of(" \t\r\n");
        if (first == std::string_view::npos || text[first] != '{') {
          return fail("--ext: expected a JSON object: '" + arg + "'");
        }
        if (const std::string bad = json_problem(text); !bad.empty()) {
          return fail("--ext: expected a JSON object (" + bad + "): '" + arg + "'");
        }
        c.handshake_ext = arg;
        return;
      }
      case opt_replay_from: {
        const auto id = parse_signed(arg);
        if (!id || *id < -2) {
          return fail("--replay-from: expected -2 (all kept), -1 (new only) or an event id: '" +
                      arg + "'");
        }
        c.replay_from = *id;
        return;
      }
      case opt_format:
        if (arg == "json") {
          c.format = output_format::json;
        } else if (arg == "data") {
          c.format = output_format::data;
        } else {
          return fail("--format: expected json or data: '" + arg + "'");
        }
        return;
      case opt_cacert:
        if (arg.empty()) return fail("--cacert: empty file name");
        c.ca_file = arg;
        return;
      case opt_call: {
        const auto eq = arg.find('=');
        if (eq == std::string::npos || eq == 0) {
          return fail("--call: expected TARGET=JSON: '" + arg + "'");
        }
        call_spec call{arg.substr(0, eq), arg.substr(eq + 1)};
        const std::string why =
            uvcometd::channel_problem("/service/" + call.target, uvcometd::channel_use::publish);
        if (call.target.front() == '/' || !why.empty()) {
          return fail("--call: TARGET names /service/TARGET (" +
                      (why.empty() ? std::string("no leading '/'") : why) + "): '" + call.target +
                      "'");
        }
        if (const std::string bad = json_problem(call.data); !bad.empty()) {
          return fail("--call: " + bad + " for " + call.target + ": " + call.data);
        }
        c.calls.push_back(std::move(call));
        return;
      }
      case opt_call_timeout: {
        const auto t = parse_seconds(arg);
        if (!t || t->count() <= 0)
          return fail("--call-timeout: expected positive seconds: '" + arg + "'");
        c.call_timeout = *t;
        return;
      }
      case 1:  // positional
        if (arg.empty()) return fail("empty URL");
        // Several URLs are a cluster's servers, in order of preference (failover).
        if (c.url.empty())
          c.url = arg;
        else
          c.fallbacks.push_back(arg);
        return;
      default: return fail("internal error: unhandled option");
    }
  }
};

}  // namespace

parse_result parse_args(int argc, char* argv[]) {
  parser p;
  bool help = false;
  bool version = false;

  optind = 0;  // glibc: full re-initialisation, so that parse_args can be called again
  opterr = 0;
  for (;;) {
    const int opt = getopt_long(argc, argv, short_options, long_options, nullptr);
    if (opt == -1) break;
    // The element getopt just looked at (for messages about long options).
    const std::string element = optind - 1 >= 1 && optind - 1 < argc ? argv[optind - 1] : "";
    switch (opt) {
      case 'v': ++p.result.config.verbose; break;
      case opt_debug: p.result.config.debug = true; break;
      case opt_insecure: p.result.config.tls_verify = false; break;
      case opt_timestamps: p.result.config.timestamps = true; break;
      case opt_ack: p.result.config.ack = true; break;
      case opt_meta: p.result.config.meta = true; break;
      case opt_forever: p.forever = true; break;
      case 'h': help = true; break;
      case opt_version: version = true; break;
      case ':':
        if (element.rfind("--", 0) == 0) {
          p.fail("option '" + element + "' requires an argument");
        } else {
          p.fail(std::string("option '-") + static_cast<char>(optopt) + "' requires an argument");
        }
        break;
      case '?':
        if (element.rfind("--", 0) == 0) {
          p.fail("unrecognized or ambiguous option '" + element + "'");
        } else {
          p.fail(std::string("invalid option '-") + static_cast<char>(optopt) + "'");
        }
        break;
      default: p.option_with(opt, optarg != nullptr ? std::string(optarg) : std::string()); break;
    }
  }
  // Arguments after "--" are not returned as option 1.
  for (int i = optind; i < argc; ++i) p.option_with(1, argv[i]);

  if (!p.result.ok()) return std::move(p.result);
  if (help) {
    p.result.action = parse_action::help;
    return std::move(p.result);
  }
  if (version) {
    p.result.action = parse_action::version;
    return std::move(p.result);
  }
  cli_config& c = p.result.config;
  if (p.forever) c.connection_timeout = std::chrono::milliseconds(0);
  if (p.forever && p.timeout_given) {
    p.fail("--forever and --connection-timeout exclude each other");
  } else if (c.url.empty()) {
    p.fail("missing URL");
  } else if (const std::string why = url_problem(c.url); !why.empty()) {
    p.fail("invalid URL '" + c.url + "': " + why);
  } else if (const auto bad =
                 std::find_if(c.fallbacks.begin(), c.fallbacks.end(),
                              [](const std::string& u) { return !url_problem(u).empty(); });
             bad != c.fallbacks.end()) {
    p.fail("invalid URL '" + *bad + "': " + url_problem(*bad));
  } else if (c.count && c.subscribe.empty()) {
    p.fail("--count needs at least one --subscribe");
  }
  return std::move(p.result);
}

std::vector<std::string> long_option_names() {
  std::vector<std::string> names;
  for (const option* o = long_options; o->name != nullptr; ++o) names.emplace_back(o->name);
  return names;
}

std::string usage() {
  return "Usage: uvcometd-cli [options] URL [URL...]\n"
         "\n"
         "Connects to the Bayeux (CometD) server at URL (http:// or https://), subscribes and\n"
         "publishes; several URLs are the servers of a cluster, tried in order (failover).\n"
         "Each message received is printed on stdout as one JSON line:\n"
         "  {\"channel\":\"/x\",\"data\":...}\n"
         "\n"
         "Options:\n"
         "  -s, --subscribe CHANNEL       subscribe to CHANNEL (repeatable; /a/* and /a/** "
         "allowed)\n"
         "  -p, --publish CHANNEL=JSON    publish JSON to CHANNEL once connected and subscribed\n"
         "                                (repeatable); without -s, exit once every publish is\n"
         "                                acknowledged\n"
         "  -p, --publish CHANNEL=-       publish each line of stdin (one JSON value per line)\n"
         "      --call TARGET=JSON        remote call to /service/TARGET once connected and\n"
         "                                subscribed (repeatable): each reply's data is printed\n"
         "                                as one JSON line; without -s, exit once all answered\n"
         "      --call-timeout SECONDS    how long a call may wait for its reply (default 5)\n"
         "  -t, --transport LIST          comma-separated preference: websocket,long-polling;\n"
         "                                a single name forces that transport\n"
         "  -n, --count N                 exit 0 after N messages received (needs -s)\n"
         "      --connection-timeout SECONDS\n"
         "                                give up when no session for SECONDS (default 10;\n"
         "                                0 = retry forever)\n"
         "      --forever                 retry forever (--connection-timeout 0)\n"
         "      --max-pending N           received messages buffered before fetching pauses\n"
         "  -H, --header 'Name: value'    extra HTTP header (repeatable)\n"
         "      --header-file FILE        extra HTTP headers, one 'Name: value' per line\n"
         "                                (repeatable; also $UVCOMETD_HEADERS)\n"
         "      --ext JSON                handshake ext object\n"
         "      --ack                     acknowledged messages (CometD's ack extension)\n"
         "      --replay-from ID          replay extension: start after event ID\n"
         "                                (-1 new events only, -2 every event kept)\n"
         "      --format json|data        print {\"channel\",\"data\"} lines (default), or the\n"
         "                                data alone\n"
         "      --timestamps              add the time of receipt (ISO 8601 UTC): a \"ts\" field,\n"
         "                                or a prefix in data format\n"
         "      --insecure                do not verify the server's TLS certificate\n"
         "      --cacert FILE             CA certificates (PEM) to verify the server with\n"
         "  -v, --verbose                 state changes and the library's log on stderr;\n"
         "                                -vv adds debug lines\n"
         "      --debug                   the library's whole log on stderr\n"
         "      --meta                    with -v, every meta reply on stderr, one line each\n"
         "  -h, --help                    this help\n"
         "      --version                 print the version\n"
         "\n"
         "Without -s and -p, exits 0 once connected. With -s and without -n, runs until SIGINT,\n"
         "SIGTERM or SIGHUP (then disconnects and exits 0; a second signal stops waiting).\n"
         "\n"
         "Exit status: 0 done, 1 refused by the server or failed (a call refused or unanswered\n"
         "too), 2 usage, 3 connection timeout, 128+N ended by signal N before a session or with\n"
         "publishes unacknowledged, 141 stdout closed by its reader. See uvcometd-cli(1).\n";
}

std::string parse_header_text(std::string_view text, std::string_view source,
                              std::vector<std::string>& out) {
  std::vector<std::string> found;
  std::size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const std::string_view t = trim(line);
    if (t.empty() || t.front() == '#') continue;
    const std::string why = header_problem(line);
    if (!why.empty()) {
      return std::string(source) + ":" + std::to_string(line_no) + ": " + why;
    }
    found.emplace_back(line);
  }
  out.insert(out.end(), found.begin(), found.end());
  return {};
}

std::string url_problem(std::string_view url) {
  // The client's own rule: what its constructor would refuse.
  uvcometd::options o;
  o.url = std::string(url);
  return uvcometd::options_problem(o);
}

std::string json_problem(std::string_view text) {
  // The library decides (what publish() and the handshake take); the CLI's own scanner only
  // finds the words for a refusal.
  if (uvcometd::is_valid_json(text)) return {};
  if (scan_json(text, nullptr) == json_status::too_deep) {
    return "nested deeper than " + std::to_string(max_json_depth) + " levels";
  }
  return "invalid JSON";
}

bool append_compact_json(std::string_view text, std::string& out) {
  const std::size_t size = out.size();
  if (scan_json(text, &out) == json_status::ok) return true;
  out.resize(size);
  return false;
}

std::string json_quote(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  append_json_string(out, text);
  return out;
}

void append_json_string(std::string& out, std::string_view text) {
  static const char hex[] = "0123456789abcdef";
  out.push_back('"');
  for (std::size_t i = 0; i < text.size();) {
    const char ch = text[i];
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x80) {
      i = append_utf8_repaired(text, i, out);
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out.push_back(hex[c >> 4]);
          out.push_back(hex[c & 0xf]);
        } else {
          out.push_back(ch);
        }
    }
    ++i;
  }
  out.push_back('"');
}

std::string terminal_safe(std::string_view text) {
  static const char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      std::size_t bad = 0;
      const std::size_t len = utf8_length(text, i, bad);
      if (len == 0) {
        out += replacement_char;
        i += bad;
        continue;
      }
      const unsigned cp = utf8_decode(text, i, len);
      const bool invisible = (cp >= 0x80 && cp <= 0x9F) ||                    // C1 controls
                             cp == 0x061C || cp == 0x200E || cp == 0x200F ||  // bidi marks
                             (cp >= 0x202A && cp <= 0x202E) ||  // bidi embeddings, overrides
                             (cp >= 0x2066 && cp <= 0x2069) ||  // bidi isolates
                             cp == 0x2028 || cp == 0x2029;      // line, paragraph separators
      if (invisible) {
        out += "\\u";
        for (int shift = 12; shift >= 0; shift -= 4) out.push_back(hex[(cp >> shift) & 0xF]);
      } else {
        out.append(text.substr(i, len));
      }
      i += len;
      continue;
    }
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case 0x1b: out += "\\e"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += "\\x";
          out.push_back(hex[c >> 4]);
          out.push_back(hex[c & 0xF]);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
    ++i;
  }
  return out;
}

std::string iso8601_utc(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto since = t.time_since_epoch();
  auto secs = duration_cast<seconds>(since);
  auto ms = duration_cast<milliseconds>(since - secs).count();
  if (ms < 0) {  // before 1970: floor, not truncation
    secs -= seconds(1);
    ms += 1000;
  }
  const std::time_t tt = static_cast<std::time_t>(secs.count());
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[40];
  const auto n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out(buf, n);
  char frac[8];
  std::snprintf(frac, sizeof frac, ".%03dZ", static_cast<int>(ms));
  out += frac;
  return out;
}

bool append_message_line(std::string& out, output_format format, std::string_view channel,
                         std::string_view data, std::string_view timestamp) {
  const std::size_t size = out.size();
  if (format == output_format::json) {
    out += "{\"channel\":";
    append_json_string(out, channel);
    out += ",\"data\":";
  } else if (!timestamp.empty()) {
    out.append(timestamp).append(" ");
  }
  if (data.empty()) {
    out += "null";
  } else if (!append_compact_json(data, out)) {
    out.resize(size);
    return false;
  }
  if (format == output_format::json) {
    if (!timestamp.empty()) out.append(",\"ts\":\"").append(timestamp).append("\"");
    out += '}';
  }
  out += '\n';
  return true;
}

std::string format_message_line(std::string_view channel, std::string_view data) {
  std::string out;
  append_message_line(out, output_format::json, channel, data);
  return out;
}

}  // namespace uvcometd_cli
