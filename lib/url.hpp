// Server URLs: http(s)://host[:port][/path][?query], checked once when the client is created.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace uvcometd::detail {

struct server_url {
  bool secure = false;     // https
  std::string host;        // without brackets for IPv6 literals
  std::uint16_t port = 0;  // explicit, or 80 / 443
  bool explicit_port = false;
  std::string path;  // "/..." with the query, "/" when absent

  // "host:port" as the Host header wants it (IPv6 in brackets; the port only when explicit).
  std::string authority() const;
  // The websocket URL on the same host and path (ws:// or wss://).
  std::string websocket() const;
};

// Parses `text`; on failure returns nullopt and says why in `why` (the URL itself is not
// repeated: it may carry a token).
std::optional<server_url> parse_server_url(std::string_view text, std::string& why);

}  // namespace uvcometd::detail
