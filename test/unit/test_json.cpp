// The strict JSON scanner (lib/json.*): validation, string scanning and decoding, encoding,
// integer conversion.
#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "json.hpp"

namespace json = uvcometd::detail::json;

namespace {

std::string nested_arrays(int depth) {
  return std::string(static_cast<std::size_t>(depth), '[') +
         std::string(static_cast<std::size_t>(depth), ']');
}

std::string nested_objects(int depth) {
  std::string s;
  for (int i = 0; i < depth; ++i) s += "{\"k\":";
  s += "1";
  for (int i = 0; i < depth; ++i) s += '}';
  return s;
}

std::int64_t int64_of(std::string_view raw) {
  std::int64_t v = -12345;
  REQUIRE(json::to_int64(raw, v));
  return v;
}

// The string grammar of RFC 8259 read one byte at a time, as scan_string did before it skipped
// plain bytes in blocks: the specification its fast path must agree with. Bytes >= 0x80 are
// content (UTF-8 is not validated here).
struct scan_result {
  bool ok = false;
  std::size_t end = 0;
  std::string_view content;
  bool escaped = false;
};

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

scan_result reference_scan(std::string_view s, std::size_t pos) {
  scan_result r;
  if (pos >= s.size() || s[pos] != '"') return r;
  const std::size_t start = ++pos;
  while (pos < s.size()) {
    const char c = s[pos];
    if (c == '"') {
      r.ok = true;
      r.end = pos + 1;
      r.content = s.substr(start, pos - start);
      return r;
    }
    if (static_cast<unsigned char>(c) < 0x20) return r;
    if (static_cast<unsigned char>(c) >= 0x80) {
      // UTF-8 by decoding the code point (an independent model of json::skip_utf8).
      const auto u = static_cast<unsigned char>(c);
      const std::size_t len = u >= 0xF0 ? 4 : u >= 0xE0 ? 3 : u >= 0xC0 ? 2 : 0;
      if (len == 0 || pos + len > s.size()) return r;
      unsigned long cp = u & (len == 2 ? 0x1Fu : len == 3 ? 0x0Fu : 0x07u);
      for (std::size_t k = 1; k < len; ++k) {
        const auto b = static_cast<unsigned char>(s[pos + k]);
        if ((b & 0xC0) != 0x80) return r;
        cp = (cp << 6) | (b & 0x3Fu);
      }
      const unsigned long min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
      if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return r;
      pos += len;
      continue;
    }
    if (c == '\\') {
      r.escaped = true;
      if (++pos >= s.size()) return r;
      const char e = s[pos];
      if (e == 'u') {
        if (pos + 5 > s.size()) return r;
        for (std::size_t i = 1; i <= 4; ++i) {
          if (!is_hex(s[pos + i])) return r;
        }
        pos += 5;
      } else if (std::string_view("\"\\/bfnrt").find(e) != std::string_view::npos) {
        ++pos;
      } else {
        return r;
      }
      continue;
    }
    ++pos;
  }
  return r;
}

std::string printable(std::string_view s) {
  std::string out;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7F) {
      out += c;
    } else {
      static const char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 0xF];
    }
  }
  return out;
}

// append_string's escaping one byte at a time: the short escapes, \u00XX for the other control
// characters, everything else (bytes >= 0x80 included) as is.
std::string reference_literal(std::string_view s) {
  static const char hex[] = "0123456789abcdef";
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 0xF];
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

constexpr auto int64_max = std::numeric_limits<std::int64_t>::max();
constexpr auto int64_min = std::numeric_limits<std::int64_t>::min();

}  // namespace

TEST_CASE("well-formed JSON values are valid", "[json]") {
  const std::string text = GENERATE(
      as<std::string>{}, "0", "-0", "1e5", "1E+5", "-1.5e-3", "123456789012345678901234567890",
      "0.25", "true", "false", "null", "\"\"", "\"plain\"", "[]", "{}", " [ 1 , 2 ] ",
      "{\"a\":[1,{\"b\":null}],\"c\":\"d\"}", "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"",
      "\"\\u00e9\\u20AC\"", "\"\\ud83d\\ude00\"", "\"caf\xc3\xa9\"", "\n\t{}\r\n");
  INFO("text: " << text);
  CHECK(json::is_valid(text));
}

TEST_CASE("malformed numbers are invalid", "[json]") {
  const std::string text =
      GENERATE(as<std::string>{}, "01", "-01", "1.", "-", "+1", ".5", "1e", "1e+", "0x10", "1.e5",
               "--1", "NaN", "Infinity", "[01]", "{\"a\":1.}");
  INFO("text: " << text);
  CHECK_FALSE(json::is_valid(text));
}

TEST_CASE("malformed strings, literals and structures are invalid", "[json]") {
  const std::string text = GENERATE(
      as<std::string>{}, "", "   ", "\"unterminated", "\"bad escape \\x\"", "\"short \\u12\"",
      "\"\\uZZZZ\"", std::string("\"control \x01 char\""), "\"raw\nnewline\"",
      std::string("\"nul \0\"", 7), "tru", "nul", "True", "[1,]", "[,1]", "[1 2]", "{\"a\"}",
      "{\"a\":}", "{a:1}", "{\"a\":1,}", "{'a':1}", "[", "{", "]");
  INFO("text: " << text);
  CHECK_FALSE(json::is_valid(text));
}

TEST_CASE("a value followed by anything but whitespace is invalid", "[json]") {
  const std::string text =
      GENERATE(as<std::string>{}, "{} x", "[] []", "1 2", "\"a\"\"b\"", "null,", "true}");
  INFO("text: " << text);
  CHECK_FALSE(json::is_valid(text));
}

TEST_CASE("nesting 200 levels deep is accepted", "[json]") {
  CHECK(json::is_valid(nested_arrays(200)));
  CHECK(json::is_valid(nested_objects(200)));
}

TEST_CASE("nesting 300 levels deep is rejected without exhausting the stack", "[json]") {
  CHECK_FALSE(json::is_valid(nested_arrays(300)));
  CHECK_FALSE(json::is_valid(nested_objects(300)));
  // Far deeper than any stack would survive if the scanner recursed without a limit.
  CHECK_FALSE(json::is_valid(nested_arrays(1000000)));
}

TEST_CASE("skip_value stops just past the value and leaves what follows", "[json]") {
  const std::string s = "{\"a\":[1,2]} ,rest";
  std::size_t pos = 0;
  REQUIRE(json::skip_value(s, pos));
  CHECK(pos == 11);
  CHECK(s.substr(pos) == " ,rest");
}

TEST_CASE("scan_string gives the raw content and says whether it has escapes", "[json]") {
  std::string_view content;
  bool escaped = true;
  {
    const std::string s = "\"plain text\":1";
    std::size_t pos = 0;
    REQUIRE(json::scan_string(s, pos, content, escaped));
    CHECK(content == "plain text");
    CHECK_FALSE(escaped);
    CHECK(pos == 12);
  }
  {
    const std::string s = R"("a\"b\\c")";
    std::size_t pos = 0;
    REQUIRE(json::scan_string(s, pos, content, escaped));
    CHECK(content == R"(a\"b\\c)");
    CHECK(escaped);
    CHECK(pos == s.size());
  }
  {
    const std::string s = "no quote";
    std::size_t pos = 0;
    CHECK_FALSE(json::scan_string(s, pos, content, escaped));
  }
}

TEST_CASE(
    "scan_string agrees with a byte-by-byte scan for every length and every position of "
    "a quote, escape, control or non-ASCII byte",
    "[json]") {
  // Lengths and offsets cross the 8- and 16-byte blocks the scanner skips at once, with the
  // string ending the buffer or followed by more text; the inserted bytes include the ones a
  // block test could confuse with '"' (0x22), '\\' (0x5C) or a control byte (0xA2, 0xDC, 0xA0,
  // 0x80, 0xFF, 0x7F).
  const std::string inserts[] = {"\"",
                                 "\\\\",
                                 "\\n",
                                 "\\/",
                                 "\\u00e9",
                                 "\\uD83D\\uDE00",
                                 "\\u12",
                                 "\\u12G4",
                                 "\\x",
                                 "\\",
                                 std::string(1, '\0'),
                                 "\x01",
                                 "\x1f",
                                 "\n",
                                 "\t",
                                 " ",
                                 "\x7f",
                                 "\x80",
                                 "\xa2",
                                 "\xdc",
                                 "\xa0",
                                 "\xff",
                                 "\xc3\xa9",
                                 "\xf0\x9f\x98\x80"};
  std::size_t cases = 0;
  std::vector<std::string> mismatches;
  for (const std::size_t lead : {std::size_t(0), std::size_t(3)}) {
    for (std::size_t len = 0; len <= 40; ++len) {
      for (std::size_t at = 0; at <= len; ++at) {
        for (const auto& ins : inserts) {
          for (const bool tail : {false, true}) {
            std::string text(lead, ' ');
            text += '"';
            text += std::string(at, 'a') + ins + std::string(len - at, 'b');
            text += '"';
            if (tail) text += ",\"next\":\"0123456789abcdef0123456789\"}";
            const scan_result want = reference_scan(text, lead);
            std::size_t pos = lead;
            std::string_view content;
            bool escaped = false;
            const bool ok = json::scan_string(text, pos, content, escaped);
            ++cases;
            if (ok != want.ok ||
                (ok && (pos != want.end || content != want.content || escaped != want.escaped))) {
              mismatches.push_back(printable(text));
            }
            // The same acceptance through the validator.
            if (!tail && lead == 0 &&
                json::is_valid(text) != (want.ok && want.end == text.size())) {
              mismatches.push_back("is_valid: " + printable(text));
            }
          }
        }
      }
    }
  }
  INFO(cases << " cases, first mismatches: "
             << (mismatches.empty() ? std::string("none") : mismatches.front()));
  CHECK(mismatches.empty());
}

TEST_CASE("scan_string leaves pos where it was when the string is malformed", "[json]") {
  const std::string s = "x\"" + std::string(40, 'a') + "\x01\"";
  std::size_t pos = 1;
  std::string_view content;
  bool escaped = false;
  CHECK_FALSE(json::scan_string(s, pos, content, escaped));
  CHECK(pos == 1);
}

TEST_CASE("a scalar is accepted at the deepest nesting level and rejected one level deeper",
          "[json]") {
  // An element of the innermost of k nested arrays is at depth k: max_depth (256) is the limit
  // whatever the element is, a string or number as much as an array.
  for (const std::string scalar : {"\"s\"", "1", "-2.5e3", "true", "[]"}) {
    INFO("scalar: " << scalar);
    CHECK(json::is_valid(std::string(256, '[') + scalar + std::string(256, ']')));
    CHECK_FALSE(json::is_valid(std::string(257, '[') + scalar + std::string(257, ']')));
    std::string ok_obj;
    std::string deep_obj;
    for (int i = 0; i < 256; ++i) ok_obj += "{\"k\":";
    deep_obj = ok_obj + "{\"k\":";
    CHECK(json::is_valid(ok_obj + scalar + std::string(256, '}')));
    CHECK_FALSE(json::is_valid(deep_obj + scalar + std::string(257, '}')));
  }
}

TEST_CASE("skip_value skips strings and numbers inside containers exactly", "[json]") {
  const std::string s = R"({"a":"x\"y","b":[-0.5e+2,"",12,{"c":"\u00e9"}],"d":1} tail)";
  std::size_t pos = 0;
  REQUIRE(json::skip_value(s, pos));
  CHECK(s.substr(pos) == " tail");
  const std::string bad = GENERATE(as<std::string>{}, R"({"a":-})", R"([1,"x)", R"({"a":01})",
                                   R"(["\q"])", R"({"a":1.})", R"([-])");
  INFO("bad: " << bad);
  std::size_t p = 0;
  CHECK_FALSE(json::skip_value(bad, p));
}

TEST_CASE("unescape decodes every JSON escape into UTF-8", "[json]") {
  std::string out;
  REQUIRE(json::unescape(R"(a\"b\\c\/d\be\ff\ng\rh\ti)", out));
  CHECK(out == "a\"b\\c/d\be\ff\ng\rh\ti");
  REQUIRE(json::unescape(R"(\u0041\u00e9\u20ac)", out));
  CHECK(out == "A\xc3\xa9\xe2\x82\xac");
  REQUIRE(json::unescape(R"(\u0000)", out));
  CHECK(out == std::string(1, '\0'));
}

TEST_CASE("unescape joins a surrogate pair into one 4-byte UTF-8 character", "[json]") {
  std::string out;
  REQUIRE(json::unescape(R"(x\ud83d\ude00y)", out));
  CHECK(out == "x\xf0\x9f\x98\x80y");
  REQUIRE(json::unescape(R"(\uDBFF\uDFFF)", out));  // U+10FFFF, the last code point
  CHECK(out == "\xf4\x8f\xbf\xbf");
}

TEST_CASE("unescape rejects lone surrogates and invalid escapes", "[json]") {
  const std::string raw =
      GENERATE(as<std::string>{}, R"(\ud800)", R"(\ud800x)", R"(\ud800\u0041)", R"(\udc00)",
               R"(\ude00\ud83d)", R"(\ud83d\n)", R"(\x)", R"(\u12)", R"(\u12G4)", "trailing\\");
  INFO("raw: " << raw);
  std::string out;
  CHECK_FALSE(json::unescape(raw, out));
}

TEST_CASE("append_string escapes what JSON requires and round-trips through unescape", "[json]") {
  std::string original;
  for (int c = 1; c < 0x20; ++c) original += static_cast<char>(c);
  original += "\"quote\" back\\slash /slash caf\xc3\xa9 \xf0\x9f\x98\x80 ";
  original += std::string(1, '\0');
  original += "end";

  std::string out = "prefix:";
  json::append_string(out, original);
  REQUIRE(out.rfind("prefix:", 0) == 0);
  const std::string literal = out.substr(7);
  INFO("literal: " << literal);
  CHECK(json::is_valid(literal));
  for (const char c : literal) CHECK(static_cast<unsigned char>(c) >= 0x20);

  std::size_t pos = 0;
  std::string_view content;
  bool escaped = false;
  REQUIRE(json::scan_string(literal, pos, content, escaped));
  CHECK(pos == literal.size());
  CHECK(escaped);
  std::string back;
  REQUIRE(json::unescape(content, back));
  CHECK(back == original);
}

TEST_CASE("append_string uses the short escapes and leaves plain text untouched", "[json]") {
  std::string out;
  json::append_string(out, "a\nb\tc\"d\\e\x01");
  CHECK(out == R"("a\nb\tc\"d\\e\u0001")");
  out.clear();
  json::append_string(out, "/meta/handshake");
  CHECK(out == "\"/meta/handshake\"");
  out.clear();
  json::append_string(out, "");
  CHECK(out == "\"\"");
}

TEST_CASE("append_string escapes the same bytes wherever they are in strings of any length",
          "[json]") {
  std::string bytes;
  for (int c = 0; c <= 0x20; ++c) bytes += static_cast<char>(c);
  bytes += "\"\\/\x7f\x80\xa2\xdc\xa0\xff";
  std::vector<std::string> mismatches;
  for (std::size_t len = 0; len <= 40; ++len) {
    for (std::size_t at = 0; at < len; ++at) {
      for (const char b : bytes) {
        std::string s = std::string(at, 'a') + b + std::string(len - at - 1, 'b');
        if (len > 3) s[len - 1] = b;  // a second one at the end
        std::string out;
        json::append_string(out, s);
        if (out != reference_literal(s)) mismatches.push_back(printable(s));
      }
    }
  }
  INFO("first mismatch: " << (mismatches.empty() ? std::string("none") : mismatches.front()));
  CHECK(mismatches.empty());
}

TEST_CASE("is_object accepts exactly one object", "[json]") {
  CHECK(json::is_object("{}"));
  CHECK(json::is_object("  {\"auth\":{\"token\":\"x\"}} "));
  CHECK_FALSE(json::is_object("[]"));
  CHECK_FALSE(json::is_object("\"{}\""));
  CHECK_FALSE(json::is_object("{} {}"));
  CHECK_FALSE(json::is_object("{"));
  CHECK_FALSE(json::is_object(""));
}

TEST_CASE("to_int64 converts integers exactly", "[json]") {
  CHECK(int64_of("0") == 0);
  CHECK(int64_of("-0") == 0);
  CHECK(int64_of("3000") == 3000);
  CHECK(int64_of("-42") == -42);
  CHECK(int64_of("9223372036854775806") == int64_max - 1);
  CHECK(int64_of("-9223372036854775807") == int64_min + 1);
}

TEST_CASE("to_int64 applies exponents and truncates fractions toward zero", "[json]") {
  CHECK(int64_of("1e5") == 100000);
  CHECK(int64_of("1E+2") == 100);
  CHECK(int64_of("1.5e1") == 15);
  CHECK(int64_of("2500e-3") == 2);
  CHECK(int64_of("1.9") == 1);
  CHECK(int64_of("-1.9") == -1);
  CHECK(int64_of("0.999") == 0);
  CHECK(int64_of("1e-400") == 0);
}

TEST_CASE("to_int64 saturates numbers beyond the int64 range", "[json]") {
  CHECK(int64_of("9223372036854775807") == int64_max);
  CHECK(int64_of("9223372036854775808") == int64_max);
  CHECK(int64_of("123456789012345678901234567890") == int64_max);
  CHECK(int64_of("1e400") == int64_max);
  CHECK(int64_of("1e999999999") == int64_max);
  CHECK(int64_of("-9223372036854775808") == int64_min);
  CHECK(int64_of("-1e400") == int64_min);
  CHECK(int64_of(std::string(5000, '9')) == int64_max);
}

TEST_CASE("to_int64 of zero with a huge exponent is zero", "[json]") {
  // 0 × 10^5000: the scale overflows long double to infinity, and 0 × inf must not become NaN.
  CHECK(int64_of("0e5000") == 0);
  CHECK(int64_of("-0.0e99999") == 0);
}

TEST_CASE("to_int64 rejects text that is not a JSON number", "[json]") {
  const std::string raw = GENERATE(as<std::string>{}, "", "-", "01", "1.", "abc", "\"5\"", "5 ",
                                   " 5", "1e", "true", "null");
  INFO("raw: '" << raw << "'");
  std::int64_t v = 7;
  CHECK_FALSE(json::to_int64(raw, v));
}

TEST_CASE("strings must be valid UTF-8: every well-formed sequence passes", "[json]") {
  // One character of each length and of each special range's edges.
  for (const char* ok :
       {"\xC2\x80", "\xDF\xBF", "\xE0\xA0\x80", "\xE1\x80\x80", "\xEC\xBF\xBF", "\xED\x80\x80",
        "\xED\x9F\xBF", "\xEE\x80\x80", "\xEF\xBF\xBF", "\xF0\x90\x80\x80", "\xF1\x80\x80\x80",
        "\xF3\xBF\xBF\xBF", "\xF4\x80\x80\x80", "\xF4\x8F\xBF\xBF", "caf\xC3\xA9 \xE2\x82\xAC"}) {
    INFO(ok);
    CHECK(json::is_valid("\"" + std::string(ok) + "\""));
  }
}

TEST_CASE("strings must be valid UTF-8: a broken sequence anywhere is invalid", "[json]") {
  const std::vector<std::string> bad = {"\x80",
                                        "\xBF",  // a stray continuation byte
                                        "\xC0\x80",
                                        "\xC1\xBF",  // overlong 2-byte forms
                                        "\xE0\x80\x80",
                                        "\xE0\x9F\xBF",  // overlong 3-byte forms
                                        "\xED\xA0\x80",
                                        "\xED\xBF\xBF",  // UTF-16 surrogates
                                        "\xF0\x80\x80\x80",
                                        "\xF0\x8F\xBF\xBF",  // overlong 4-byte forms
                                        "\xF4\x90\x80\x80",
                                        "\xF5\x80\x80\x80",
                                        "\xFF",  // past U+10FFFF
                                        "\xC3",
                                        "\xE2\x82",
                                        "\xF0\x9F\x98",  // cut short (before the closing quote)
                                        "\xC3\x28",
                                        "\xE2\x28\xA1",
                                        "\xC3\xA9\xFF"};
  // In strings of every length, at every position: the 16- and 8-byte scans must find them.
  for (const auto& seq : bad) {
    for (std::size_t len = 0; len <= 40; len += 3) {
      for (std::size_t at = 0; at <= len; at += 5) {
        const std::string text =
            "\"" + std::string(at, 'a') + seq + std::string(len - at, 'b') + "\"";
        INFO("sequence of " << seq.size() << " bytes at " << at << " in " << len);
        CHECK_FALSE(json::is_valid(text));
        CHECK_FALSE(json::is_valid("{\"k\":" + text + "}"));
        CHECK_FALSE(json::is_valid("{" + text + ":1}"));
      }
    }
  }
}
