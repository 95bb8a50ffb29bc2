/// @file
/// uvcometd — the checks the client applies to what it is given, for applications that check
/// earlier (a command line, a configuration file) and want the very same rules.
#pragma once

#include <string>
#include <string_view>

#include "uvcometd/export.hpp"
#include "uvcometd/options.hpp"

namespace uvcometd {

/// What a channel name is to be used for.
enum class channel_use {
  subscribe,  ///< a subscription: an exact channel, or a pattern "/a/*" or "/a/**"
  publish,    ///< a publish: one exact channel, no wildcard
};

/// Why `channel` cannot be used for `use` by the rules client::subscribe() and client::publish()
/// apply (they fail with errc::invalid_channel then), or an empty string when it can. The rules:
/// "/" and non-empty segments without spaces or control characters; a wildcard ("*" or "**")
/// only as the whole last segment, and only to subscribe; no /meta channel.
UVCOMETD_API std::string channel_problem(std::string_view channel, channel_use use);

/// Whether the subscription `pattern` (exact, "/a/*": one more segment, "/a/**": one or more)
/// matches the concrete `channel`: the rule received messages are routed by.
UVCOMETD_API bool channel_matches(std::string_view pattern, std::string_view channel) noexcept;

/// Whether `text` is one JSON value (RFC 8259, surrounding whitespace allowed) nested at most
/// 256 levels deep: what client::publish() accepts as data and options::handshake_ext as an
/// object. Strings are not checked for valid UTF-8.
UVCOMETD_API bool is_valid_json(std::string_view text) noexcept;

/// Why the client's constructor would refuse `opts` (it throws std::system_error with
/// errc::invalid_argument and this text then), or an empty string when it would not. Reads
/// options::ca_file's permissions; never touches the network.
UVCOMETD_API std::string options_problem(const options& opts);

}  // namespace uvcometd
