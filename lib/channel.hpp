// Channel names: validation and wildcard matching.
#pragma once

#include <string>
#include <string_view>
#include <system_error>

namespace uvcometd::detail {

// A valid channel: "/" followed by non-empty segments separated by "/"; "*" and "**" only as
// the whole last segment.
bool is_valid_channel(std::string_view channel) noexcept;
bool is_wildcard(std::string_view channel) noexcept;
bool is_meta(std::string_view channel) noexcept;
bool is_service(std::string_view channel) noexcept;

// The checks of subscribe() and publish(): an empty error_code, or errc::invalid_channel.
std::error_code check_subscribe_channel(std::string_view channel) noexcept;
std::error_code check_publish_channel(std::string_view channel) noexcept;

// The wildcard rule, in one place: calls `fn(pattern)` for every subscription pattern that
// matches the concrete channel `channel` ("/a/b/c" is matched by itself, "/a/b/*", "/a/b/**",
// "/a/**" and "/**"), using `scratch` to build them. Routing calls it per received message; the
// pattern views are valid during each call only.
template <typename F>
void for_each_matching_pattern(std::string_view channel, std::string& scratch, F&& fn) {
  fn(channel);
  auto slash = channel.rfind('/');
  bool last = true;
  while (slash != std::string_view::npos) {
    scratch.assign(channel.data(), slash + 1);
    if (last) {
      scratch += '*';
      fn(std::string_view(scratch));
      scratch += '*';
    } else {
      scratch += "**";
    }
    fn(std::string_view(scratch));
    last = false;
    if (slash == 0) break;
    slash = channel.rfind('/', slash - 1);
  }
}

// Does `pattern` match the concrete `channel`? The same rule as for_each_matching_pattern: false
// when `channel` is not one valid concrete channel.
bool channel_matches(std::string_view pattern, std::string_view channel);

}  // namespace uvcometd::detail
