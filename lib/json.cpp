#include "json.hpp"

#include <cmath>
#include <cstdlib>
#include <limits>

namespace uvcometd::detail::json {
namespace {

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool read_hex4(std::string_view s, std::size_t pos, unsigned& out) noexcept {
  if (pos + 4 > s.size()) return false;
  out = 0;
  for (std::size_t i = 0; i < 4; ++i) {
    const int v = hex_value(s[pos + i]);
    if (v < 0) return false;
    out = out * 16 + static_cast<unsigned>(v);
  }
  return true;
}

bool skip_literal(std::string_view s, std::size_t& pos, std::string_view lit) noexcept {
  if (s.substr(pos, lit.size()) != lit) return false;
  pos += lit.size();
  return true;
}

bool skip_number(std::string_view s, std::size_t& pos) noexcept {
  if (pos < s.size() && s[pos] == '-') ++pos;
  if (pos >= s.size()) return false;
  if (s[pos] == '0') {
    ++pos;
  } else if (is_digit(s[pos])) {
    while (pos < s.size() && is_digit(s[pos])) ++pos;
  } else {
    return false;
  }
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    if (pos >= s.size() || !is_digit(s[pos])) return false;
    while (pos < s.size() && is_digit(s[pos])) ++pos;
  }
  if (pos < s.size() && (s[pos] == 'e' || s[pos] == 'E')) {
    ++pos;
    if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) ++pos;
    if (pos >= s.size() || !is_digit(s[pos])) return false;
    while (pos < s.size() && is_digit(s[pos])) ++pos;
  }
  return true;
}

void append_utf8(std::string& out, unsigned cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// A member value or array element at nesting level `depth`. Strings and numbers, the common
// cases, are scanned here without another recursion of skip_value; depth is checked exactly as
// skip_value would (a scalar deeper than max_depth is rejected too).
inline bool skip_element(std::string_view s, std::size_t& pos, int depth) noexcept {
  if (depth <= max_depth && pos < s.size()) {
    const char c = s[pos];
    if (c == '"') {
      std::string_view content;
      bool esc;
      return scan_string(s, pos, content, esc);
    }
    if (c == '-' || is_digit(c)) return skip_number(s, pos);
  }
  return skip_value(s, pos, depth);
}

}  // namespace

std::size_t skip_utf8(const char* p, std::size_t i, std::size_t n) noexcept {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(p[k]); };
  const unsigned lead = b(i);
  std::size_t len;
  unsigned lo = 0x80, hi = 0xBF;  // the range of the second byte
  if (lead >= 0xC2 && lead <= 0xDF) {
    len = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    len = 3;
    if (lead == 0xE0)
      lo = 0xA0;  // no overlong 3-byte form
    else if (lead == 0xED)
      hi = 0x9F;  // no UTF-16 surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    len = 4;
    if (lead == 0xF0)
      lo = 0x90;  // no overlong 4-byte form
    else if (lead == 0xF4)
      hi = 0x8F;  // nothing past U+10FFFF
  } else {
    return npos;  // a continuation byte, an overlong 2-byte lead (C0, C1), or F5..FF
  }
  if (i + len > n || b(i + 1) < lo || b(i + 1) > hi) return npos;
  for (std::size_t k = 2; k < len; ++k) {
    if (b(i + k) < 0x80 || b(i + k) > 0xBF) return npos;
  }
  return i + len;
}

std::size_t skip_escape(std::string_view s, std::size_t i) noexcept {
  if (++i >= s.size()) return npos;
  switch (s[i]) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't': return i + 1;
    case 'u': {
      unsigned v;
      return read_hex4(s, i + 1, v) ? i + 5 : npos;
    }
    default: return npos;
  }
}

namespace {

// After a member or element: a ',' (more follow) or `close` (the container ended), else false.
bool after_item(std::string_view s, std::size_t& pos, char close, bool& more) noexcept {
  skip_space(s, pos);
  if (pos >= s.size() || (s[pos] != ',' && s[pos] != close)) return false;
  more = s[pos] == ',';
  ++pos;
  return true;
}

}  // namespace

bool skip_value(std::string_view s, std::size_t& pos, int depth) noexcept {
  if (depth > max_depth || pos >= s.size()) return false;
  switch (s[pos]) {
    case '{': {
      ++pos;
      skip_space(s, pos);
      if (pos < s.size() && s[pos] == '}') {
        ++pos;
        return true;
      }
      for (bool more = true; more;) {
        std::string_view key;
        bool esc;
        skip_space(s, pos);
        if (!scan_string(s, pos, key, esc)) return false;
        skip_space(s, pos);
        if (pos >= s.size() || s[pos] != ':') return false;
        ++pos;
        skip_space(s, pos);
        if (!skip_element(s, pos, depth + 1) || !after_item(s, pos, '}', more)) return false;
      }
      return true;
    }
    case '[': {
      ++pos;
      skip_space(s, pos);
      if (pos < s.size() && s[pos] == ']') {
        ++pos;
        return true;
      }
      for (bool more = true; more;) {
        skip_space(s, pos);
        if (!skip_element(s, pos, depth + 1) || !after_item(s, pos, ']', more)) return false;
      }
      return true;
    }
    case '"': {
      std::string_view content;
      bool esc;
      return scan_string(s, pos, content, esc);
    }
    case 't': return skip_literal(s, pos, "true");
    case 'f': return skip_literal(s, pos, "false");
    case 'n': return skip_literal(s, pos, "null");
    default: return skip_number(s, pos);
  }
}

bool unescape(std::string_view raw, std::string& out) {
  out.clear();
  out.reserve(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    const char c = raw[i];
    if (c != '\\') {
      out += c;
      continue;
    }
    if (++i >= raw.size()) return false;
    switch (raw[i]) {
      case '"': out += '"'; break;
      case '\\': out += '\\'; break;
      case '/': out += '/'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'u': {
        unsigned cp;
        if (!read_hex4(raw, i + 1, cp)) return false;
        i += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          unsigned lo;
          if (i + 2 >= raw.size() || raw[i + 1] != '\\' || raw[i + 2] != 'u' ||
              !read_hex4(raw, i + 3, lo) || lo < 0xDC00 || lo > 0xDFFF) {
            return false;
          }
          i += 6;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
          return false;
        }
        append_utf8(out, cp);
        break;
      }
      default: return false;
    }
  }
  return true;
}

bool is_valid(std::string_view text) noexcept {
  std::size_t pos = 0;
  skip_space(text, pos);
  if (!skip_value(text, pos)) return false;
  skip_space(text, pos);
  return pos == text.size();
}

bool is_object(std::string_view text) noexcept {
  std::size_t pos = 0;
  skip_space(text, pos);
  return pos < text.size() && text[pos] == '{' && is_valid(text);
}

void append_string(std::string& out, std::string_view s) {
  static const char hex[] = "0123456789abcdef";
  out += '"';
  const char* const p = s.data();
  const std::size_t n = s.size();
  std::size_t run = 0;  // start of the current run of characters needing no escape
  for (std::size_t i = skip_plain(p, 0, n); i < n; i = skip_plain(p, run, n)) {
    const auto c = static_cast<unsigned char>(p[i]);
    out.append(p + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        out += "\\u00";
        out += hex[c >> 4];
        out += hex[c & 0xF];
    }
  }
  out.append(p + run, n - run);
  out += '"';
}

bool to_int64(std::string_view raw, std::int64_t& out) noexcept {
  std::size_t pos = 0;
  if (!skip_number(raw, pos) || pos != raw.size()) return false;
  // Integer part only: fractions truncate, exponents are applied, everything saturates.
  const bool negative = raw[0] == '-';
  std::size_t i = negative ? 1 : 0;
  long double value = 0;
  while (i < raw.size() && is_digit(raw[i])) value = value * 10 + (raw[i++] - '0');
  long double frac_scale = 1;
  if (i < raw.size() && raw[i] == '.') {
    ++i;
    while (i < raw.size() && is_digit(raw[i])) {
      frac_scale /= 10;
      value += (raw[i++] - '0') * frac_scale;
    }
  }
  if (value == 0) {  // zero stays zero whatever the exponent (0e5000 would be 0 * inf)
    out = 0;
    return true;
  }
  if (i < raw.size() && (raw[i] == 'e' || raw[i] == 'E')) {
    ++i;
    bool exp_neg = false;
    if (raw[i] == '+' || raw[i] == '-') exp_neg = raw[i++] == '-';
    long exp = 0;
    while (i < raw.size() && is_digit(raw[i])) {
      if (exp < 100000) exp = exp * 10 + (raw[i] - '0');
      ++i;
    }
    value *= std::pow(10.0L, exp_neg ? -exp : exp);
  }
  if (negative) value = -value;
  constexpr auto hi = static_cast<long double>(std::numeric_limits<std::int64_t>::max());
  constexpr auto lo = static_cast<long double>(std::numeric_limits<std::int64_t>::min());
  if (!(value < hi)) {
    out = std::numeric_limits<std::int64_t>::max();
  } else if (!(value > lo)) {
    out = std::numeric_limits<std::int64_t>::min();
  } else {
    out = static_cast<std::int64_t>(value);
  }
  return true;
}

}  // namespace uvcometd::detail::json
