// Small text checks both transports and the websocket handshake share for HTTP header lines.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace uvcometd::detail {

// HTTP headers as {name, value} pairs, in order (the same type as the public
// uvcometd::header_list of extension.hpp, without that header).
using header_list = std::vector<std::pair<std::string, std::string>>;

// True when `s` holds CR, LF or NUL: as a header name or value it would inject lines of its own.
inline bool has_ctl(std::string_view s) noexcept {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
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

// The one rule for a request header the client sends (options::headers, and headers an extension
// set): the name is a token, and neither name nor value can inject lines of their own.
inline bool valid_header(std::string_view name, std::string_view value) noexcept {
  return is_token(name) && !has_ctl(value);
}

}  // namespace uvcometd::detail
