// Where a websocket connection goes: the server's URL and the http_proxy of the environment,
// parsed into host, port and path. No I/O, so unit tests reach it directly.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace uvcometd::detail {

struct ws_endpoint {
  bool tls = false;
  std::string address;  // for connect(): host without IPv6 brackets
  std::string host;     // Host header: the URL's authority
  int port = 0;
  std::string path;            // path and query
  bool numeric = false;        // address is an IP literal: no name resolution
  bool explicit_port = false;  // the URL names the port

  // host:port, the port always there ("[::1]:443" for IPv6): for messages and CONNECT.
  std::string host_port() const {
    const bool v6 = address.find(':') != std::string::npos;
    return (v6 ? "[" + address + "]" : address) + ":" + std::to_string(port);
  }
};

// http(s)://host[:port]/path (ws/wss accepted too) → where the upgrade goes; nullopt and `why`
// when the URL is not usable.
std::optional<ws_endpoint> parse_endpoint(std::string_view url, std::string& why);

// Does `no_proxy` (comma-separated names, ".suffix" or "*") exempt `host` from the proxy? As
// libcurl reads it for long-polling, without CIDR ranges.
bool proxy_exempt(std::string_view no_proxy, std::string_view host);

// `http_proxy` ("[http://][user:password@]host[:port][/]", port 1080 when none, as libcurl reads
// it) → where connections go first. Credentials become `auth`, a Proxy-Authorization value.
std::optional<ws_endpoint> parse_proxy(std::string_view value, std::string& auth, std::string& why);

}  // namespace uvcometd::detail
