#include "transport/ws_endpoint.hpp"

#include <uv.h>

#include <algorithm>
#include <cctype>

#include "transport/http_text.hpp"
#include "transport/ws_protocol.hpp"

namespace uvcometd::detail {

std::optional<ws_endpoint> parse_endpoint(std::string_view url, std::string& why) {
  const auto sep = url.find("://");
  if (sep == std::string_view::npos || has_ctl(url) || url.find(' ') != std::string_view::npos) {
    why = "invalid URL '" + std::string(url) + "'";
    return std::nullopt;
  }
  std::string scheme(url.substr(0, sep));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  ws_endpoint ep;
  if (scheme == "https" || scheme == "wss") {
    ep.tls = true;
  } else if (scheme != "http" && scheme != "ws") {
    why = "unsupported URL scheme '" + scheme + "'";
    return std::nullopt;
  }
  std::string_view rest = url.substr(sep + 3);
  const auto auth_end = rest.find_first_of("/?#");
  const std::string_view authority = rest.substr(0, auth_end);
  std::string_view tail = auth_end == std::string_view::npos ? "" : rest.substr(auth_end);
  if (const auto hash = tail.find('#'); hash != std::string_view::npos) tail = tail.substr(0, hash);
  if (authority.find('@') != std::string_view::npos) {
    why = "credentials in the URL are not supported";
    return std::nullopt;
  }
  std::string_view host = authority, port;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) {
      why = "invalid IPv6 host in '" + std::string(url) + "'";
      return std::nullopt;
    }
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        why = "invalid host in '" + std::string(url) + "'";
        return std::nullopt;
      }
      port = after.substr(1);
    }
  } else if (const auto colon = authority.find(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) {
    why = "no host in '" + std::string(url) + "'";
    return std::nullopt;
  }
  ep.port = ep.tls ? 443 : 80;
  if (!port.empty()) {
    int p = 0;
    for (char c : port) {
      if (c < '0' || c > '9' || p > 65535) {
        p = -1;
        break;
      }
      p = p * 10 + (c - '0');
    }
    if (p <= 0 || p > 65535) {
      why = "invalid port in '" + std::string(url) + "'";
      return std::nullopt;
    }
    ep.port = p;
    ep.explicit_port = true;
  }
  ep.address = std::string(host);
  ep.host = std::string(authority);
  unsigned char probe[sizeof(in6_addr)];
  ep.numeric = uv_inet_pton(AF_INET, ep.address.c_str(), probe) == 0 ||
               uv_inet_pton(AF_INET6, ep.address.c_str(), probe) == 0;
  if (tail.empty()) {
    ep.path = "/";
  } else if (tail.front() == '?') {
    ep.path = "/" + std::string(tail);
  } else {
    ep.path = std::string(tail);
  }
  return ep;
}

bool proxy_exempt(std::string_view no_proxy, std::string_view host) {
  std::string h(host);
  std::transform(h.begin(), h.end(), h.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  while (!no_proxy.empty()) {
    const auto comma = no_proxy.find(',');
    std::string entry(trim_ows(no_proxy.substr(0, comma)));
    no_proxy = comma == std::string_view::npos ? std::string_view{} : no_proxy.substr(comma + 1);
    std::transform(entry.begin(), entry.end(), entry.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (entry == "*") return true;
    if (!entry.empty() && entry.front() == '.') entry.erase(0, 1);
    if (entry.size() > 2 && entry.front() == '[' && entry.back() == ']') {
      entry = entry.substr(1, entry.size() - 2);
    }
    if (entry.empty()) continue;
    if (h == entry ||
        (h.size() > entry.size() && h.compare(h.size() - entry.size(), entry.size(), entry) == 0 &&
         h[h.size() - entry.size() - 1] == '.')) {
      return true;
    }
  }
  return false;
}

std::optional<ws_endpoint> parse_proxy(std::string_view value, std::string& auth,
                                       std::string& why) {
  std::string v(trim_ows(value));
  if (v.find("://") == std::string::npos) v.insert(0, "http://");
  const auto sep = v.find("://");
  std::string scheme = v.substr(0, sep);
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::string rest = v.substr(sep + 3);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (scheme != "http") {
    why = "unsupported http_proxy scheme '" + scheme + "' (http:// only)";
    return std::nullopt;
  }
  if (const auto at = rest.rfind('@'); at != std::string::npos) {
    const std::string credentials = rest.substr(0, at);
    auth = "Basic " + ws::base64(reinterpret_cast<const unsigned char*>(credentials.data()),
                                 credentials.size());
    rest.erase(0, at + 1);
  }
  std::string inner;
  auto ep = parse_endpoint("http://" + rest, inner);
  if (!ep) {
    why = "invalid http_proxy: " + inner;
    return std::nullopt;
  }
  if (!ep->explicit_port) ep->port = 1080;
  return ep;
}

}  // namespace uvcometd::detail
