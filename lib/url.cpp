#include "url.hpp"

#include <charconv>

namespace uvcometd::detail {
namespace {

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// RFC 3986 unreserved and sub-delims: what a registered name is made of (besides %XX escapes
// and, for internationalised names, bytes above 0x7f).
bool is_name_char(char c) noexcept {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  if (static_cast<unsigned char>(c) >= 0x80) return true;
  switch (c) {
    case '-':
    case '.':
    case '_':
    case '~':
    case '!':
    case '$':
    case '&':
    case '\'':
    case '(':
    case ')':
    case '*':
    case '+':
    case ',':
    case ';':
    case '=': return true;
    default: return false;
  }
}

// `s` is made of name characters and well-formed %XX escapes.
bool is_reg_name(std::string_view s) noexcept {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      if (i + 2 >= s.size() || hex_value(s[i + 1]) < 0 || hex_value(s[i + 2]) < 0) return false;
      i += 2;
    } else if (!is_name_char(s[i])) {
      return false;
    }
  }
  return true;
}

bool is_path_char(char c) noexcept {
  const auto u = static_cast<unsigned char>(c);
  return u > 0x20 && u != 0x7f && c != '#';
}

}  // namespace

std::string server_url::authority() const {
  const bool v6 = host.find(':') != std::string::npos;
  std::string out = v6 ? "[" + host + "]" : host;
  if (explicit_port) out += ":" + std::to_string(port);
  return out;
}

std::string server_url::websocket() const {
  return (secure ? "wss://" : "ws://") + authority() + path;
}

std::optional<server_url> parse_server_url(std::string_view text, std::string& why) {
  server_url u;
  if (text.rfind("https://", 0) == 0) {
    u.secure = true;
    text.remove_prefix(8);
  } else if (text.rfind("http://", 0) == 0) {
    text.remove_prefix(7);
  } else {
    why = "the URL must start with http:// or https://";
    return std::nullopt;
  }
  const auto end = text.find_first_of("/?#");
  std::string_view authority = text.substr(0, end);
  std::string_view rest = end == std::string_view::npos ? std::string_view{} : text.substr(end);
  if (authority.find('@') != std::string_view::npos) {
    why = "the URL must not carry credentials (user@host): send them in a header";
    return std::nullopt;
  }
  std::string_view host = authority;
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) {
      why = "the URL's IPv6 address has no closing ']'";
      return std::nullopt;
    }
    host = authority.substr(1, close - 1);
    const auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        why = "unexpected text after the URL's IPv6 address";
        return std::nullopt;
      }
      port = after.substr(1);
    }
    // An address, then maybe a zone ("fe80::1%25eth0").
    const auto zone = host.find('%');
    const std::string_view address = host.substr(0, zone);
    if (address.find(':') == std::string_view::npos ||
        address.find_first_not_of("0123456789abcdefABCDEF:.") != std::string_view::npos ||
        (zone != std::string_view::npos && !is_reg_name(host.substr(zone)))) {
      why = "the URL's IPv6 address is malformed";
      return std::nullopt;
    }
  } else {
    const auto colon = authority.rfind(':');
    if (colon != std::string_view::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);  // "host:" means the default port (RFC 3986)
    }
    if (!is_reg_name(host)) {
      why = "the URL's host has a character that is not allowed there (or a bad %XX escape)";
      return std::nullopt;
    }
  }
  if (host.empty()) {
    why = "the URL has no host";
    return std::nullopt;
  }
  u.host = std::string(host);
  if (!port.empty()) {
    unsigned value = 0;
    const auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || p != port.data() + port.size() || value == 0 || value > 65535) {
      why = "the URL's port must be a number from 1 to 65535";
      return std::nullopt;
    }
    u.port = static_cast<std::uint16_t>(value);
    u.explicit_port = true;
  } else {
    u.port = u.secure ? 443 : 80;
  }
  if (!rest.empty() && rest.front() == '#') rest = {};
  const auto hash = rest.find('#');
  if (hash != std::string_view::npos) rest = rest.substr(0, hash);  // never sent
  for (const char c : rest) {
    if (!is_path_char(c)) {
      why = "the URL's path has a space or control character (percent-encode it)";
      return std::nullopt;
    }
  }
  u.path = rest.empty() ? "/" : std::string(rest);
  if (u.path.front() == '?') u.path.insert(0, "/");
  return u;
}

}  // namespace uvcometd::detail
