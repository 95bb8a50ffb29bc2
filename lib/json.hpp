// A strict, allocation-free JSON scanner (RFC 8259) used to split frames into messages and keep
// values as raw text spans, plus the few writing helpers the encoder needs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace uvcometd::detail::json {

// Deeper nesting is rejected (a peer must not be able to exhaust the stack).
inline constexpr int max_depth = 256;

inline bool is_space(char c) noexcept { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

inline void skip_space(std::string_view s, std::size_t& pos) noexcept {
  while (pos < s.size() && is_space(s[pos])) ++pos;
}

// Skips one JSON value starting at `pos` (whitespace already skipped), validating it strictly.
// On success `pos` is just past the value. `depth` is the current nesting level.
bool skip_value(std::string_view s, std::size_t& pos, int depth = 0) noexcept;

// Scans a string starting at the opening quote at `pos`; `content` receives the raw text between
// the quotes (escapes not decoded), `escaped` whether it contains a backslash.
bool scan_string(std::string_view s, std::size_t& pos, std::string_view& content,
                 bool& escaped) noexcept;

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
