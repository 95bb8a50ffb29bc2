// What the client is given, checked and turned into what its parts use: the options checks
// (public in checks.hpp), the session's config, and the request headers as pairs.
#include "config.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "json.hpp"
#include "transport/http_text.hpp"
#include "transport/transport.hpp"
#include "url.hpp"
#include "uvcometd/checks.hpp"
#include "uvcometd/extension.hpp"

namespace uvcometd {

bool is_valid_json(std::string_view text) noexcept { return detail::json::is_valid(text); }

std::string options_problem(const options& o) {
  std::string why;
  if (!o.url.empty() && !o.urls.empty()) return "set url or urls, not both";
  if (o.urls.empty()) {
    if (!detail::parse_server_url(o.url, why)) return why;
  }
  for (std::size_t i = 0; i < o.urls.size(); ++i) {
    if (!detail::parse_server_url(o.urls[i], why)) {
      return "urls[" + std::to_string(i) + "]: " + why;
    }
  }
  if (o.failback_after.count() < 0) return "failback_after must not be negative";
  if (o.connection_types.empty()) return "no connection type allowed";
  if (!o.handshake_ext.empty() && !detail::json::is_object(o.handshake_ext)) {
    return "handshake_ext must be a JSON object";
  }
  if (!std::isfinite(o.backoff_jitter) || o.backoff_jitter < 0 || o.backoff_jitter > 1) {
    return "backoff_jitter must be a number from 0 to 1";
  }
  const std::pair<const char*, std::chrono::milliseconds> durations[] = {
      {"connection_timeout", o.connection_timeout},
      {"max_network_delay", o.max_network_delay},
      {"websocket_connect_timeout", o.websocket_connect_timeout},
      {"backoff_initial", o.backoff_initial},
      {"backoff_max", o.backoff_max},
      {"websocket_ping_interval", o.websocket_ping_interval},
      {"disconnect_timeout", o.disconnect_timeout},
  };
  for (const auto& [name, d] : durations) {
    if (d.count() < 0) return std::string(name) + " must not be negative";
  }
  for (std::size_t i = 0; i < o.headers.size(); ++i) {
    // The text itself is not quoted: a header may carry a secret.
    const std::string_view line = o.headers[i];
    const auto colon = line.find(':');
    const std::string which = "header " + std::to_string(i + 1);
    if (colon == std::string_view::npos) return which + " is not \"Name: value\"";
    if (!detail::is_token(detail::trim_ows(line.substr(0, colon)))) {
      return which + " has an invalid name";
    }
    if (!detail::valid_header(detail::trim_ows(line.substr(0, colon)), line.substr(colon + 1))) {
      return which + " holds a line break or NUL";
    }
  }
  if (!o.ca_file.empty() && ::access(o.ca_file.c_str(), R_OK) != 0) {
    return "ca_file " + o.ca_file + " cannot be read: " + std::strerror(errno);
  }
  return {};
}

namespace detail {

session_config make_session_config(const options& o) {
  session_config c;
  c.urls = o.urls.empty() ? std::vector<std::string>{o.url} : o.urls;
  c.failback_after = o.failback_after;
  c.connection_types = o.connection_types;
  c.connection_timeout = o.connection_timeout;
  c.max_pending_count = o.max_pending_count;
  c.handshake_ext = o.handshake_ext;
  c.max_network_delay = o.max_network_delay;
  c.backoff_initial = o.backoff_initial;
  c.backoff_max = o.backoff_max;
  c.backoff_jitter = o.backoff_jitter;
  c.disconnect_timeout = o.disconnect_timeout;
  c.reconnect_delay = o.reconnect_delay;
  c.queue_while_reconnecting = o.queue_while_reconnecting;
  c.max_queued_messages = o.max_queued_messages;
  c.websocket_failures_before_fallback = o.websocket_failures_before_fallback;
  c.websocket_connect_timeout = o.websocket_connect_timeout;
  c.has_auth = static_cast<bool>(o.auth);
  c.notify_delivered = c.has_auth || std::any_of(o.extensions.begin(), o.extensions.end(),
                                                 [](const auto& e) { return e != nullptr; });
  return c;
}

// Options are checked once, here: what the client would only find out on the network (a URL
// without host, an unreadable CA file) or could not compute with (a NaN jitter, a negative delay)
// is refused when the client is made.
const options& validated(const options& o) {
  if (std::string why = options_problem(o); !why.empty()) {
    throw std::system_error(make_error_code(errc::invalid_argument), "uvcometd: " + why);
  }
  return o;
}

namespace {

// What both transports take from the options alike.
template <class Config>
Config common_config(const options& o, const std::string& url, const header_list& headers) {
  Config c;
  c.url = url;
  c.headers = headers;
  c.tls_verify = o.tls_verify;
  c.ca_file = o.ca_file;
  c.max_message_size = o.max_message_size;
  c.log = o.log;
  return c;
}

}  // namespace

long_polling_config make_long_polling_config(const options& o, const std::string& url,
                                             const header_list& headers) {
  return common_config<long_polling_config>(o, url, headers);
}

websocket_config make_websocket_config(const options& o, const std::string& url,
                                       const header_list& headers) {
  auto c = common_config<websocket_config>(o, url, headers);
  c.connect_timeout = o.websocket_connect_timeout;
  c.ping_interval = o.websocket_ping_interval;
  return c;
}

long_polling_config make_long_polling_config(const options& o, const std::string& url) {
  return make_long_polling_config(o, url, parse_header_lines(o.headers));
}

websocket_config make_websocket_config(const options& o, const std::string& url) {
  return make_websocket_config(o, url, parse_header_lines(o.headers));
}

header_list parse_header_lines(const std::vector<std::string>& lines) {
  header_list out;
  for (const auto& line : lines) {
    const auto colon = line.find(':');
    std::string_view name = std::string_view(line).substr(0, colon);
    std::string_view value =
        colon == std::string::npos ? std::string_view{} : std::string_view(line).substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
    out.emplace_back(std::string(name), std::string(value));
  }
  return out;
}

}  // namespace detail
}  // namespace uvcometd
