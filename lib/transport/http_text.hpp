// Small text checks both transports and the websocket handshake share for HTTP header lines.
#pragma once

#include <algorithm>
#include <string_view>

namespace uvcometd::detail {

// True when `s` holds CR, LF or NUL: as a header name or value it would inject lines of its own.
inline bool has_ctl(std::string_view s) noexcept {
  return std::any_of(s.begin(), s.end(), [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

// `s` without the spaces and tabs around it (HTTP's optional whitespace).
inline std::string_view trim_ows(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// True when `s` is an RFC 9110 token: what a header name is made of.
inline bool is_token(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    (u > 0x20 && u < 0x7f &&
                     std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos);
    if (!ok) return false;
  }
  return true;
}

}  // namespace uvcometd::detail
