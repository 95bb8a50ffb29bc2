// Channel names: validation and wildcard matching.
#pragma once

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

// Does `pattern` (exact, "/a/*" or "/a/**") match the concrete `channel`?
bool channel_matches(std::string_view pattern, std::string_view channel) noexcept;

}  // namespace uvcometd::detail
