// The cookies of one client, shared by its transports: long-polling sends them with every request
// and stores every response's Set-Cookie; websocket sends them with the upgrade and stores the
// upgrade answer's (so a websocket-only client keeps CometD's BAYEUX_BROWSER across reconnects).
//
// Cookies are kept per server: per origin, scheme://host:port of the URL (ws:// counts as http://,
// wss:// as https://). A cookie one server set is never sent to another, not even to another port
// of the same host (a cluster's nodes often differ only by port), whatever its Domain attribute
// says. Within an origin, Path, Expires and Max-Age apply as RFC 6265 says; HttpOnly changes
// nothing here (there are no scripts) and Secure cookies are only taken from https/wss.
// Memory is bounded: at most max_per_origin cookies per server (the oldest goes first) and
// max_cookie_bytes per cookie (a larger one is ignored).
#pragma once

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

namespace uvcometd::detail {

class cookie_jar {
 public:
  static constexpr std::size_t max_per_origin = 64;
  static constexpr std::size_t max_cookie_bytes = 4096;

  // Stores the cookie of one Set-Cookie header value received from `url` at `now` (a cookie that
  // is already expired removes the one of the same name and path).
  void store(std::string_view url, std::string_view set_cookie, std::time_t now);

  // The Cookie header value for a request to `url` at `now` ("a=1; b=2"), "" when none.
  std::string header_for(std::string_view url, std::time_t now) const;

  // Moves whenever what header_for() returns may have changed: a cookie was stored or removed, or
  // one expired by `now`. Transports keep their request headers until it moves.
  std::uint64_t version(std::time_t now);

  std::size_t size() const noexcept { return cookies_.size(); }

 private:
  struct cookie {
    std::string origin;  // scheme://host:port
    std::string name;
    std::string value;
    std::string path;
    std::time_t expires = 0;  // 0: until the client is gone
    std::uint64_t created = 0;
  };
  void purge(std::time_t now);

  std::vector<cookie> cookies_;
  std::uint64_t version_ = 0;
  std::uint64_t created_ = 0;
  std::time_t next_expiry_ = 0;  // the earliest `expires` of any cookie; 0 when none expires
};

// scheme://host:port of `url` (lowercase, ws → http, wss → https, the default port spelt out),
// and its path ("/" when none). False when `url` has no scheme or host.
bool url_origin(std::string_view url, std::string& origin, std::string& path);

}  // namespace uvcometd::detail
