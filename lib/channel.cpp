#include "channel.hpp"

#include "uvcometd/checks.hpp"
#include "uvcometd/error.hpp"

namespace uvcometd::detail {

bool is_valid_channel(std::string_view ch) noexcept {
  if (ch.size() < 2 || ch[0] != '/' || ch.back() == '/') return false;
  // One pass (every data message's channel goes through here): segments are not empty, and a
  // '*' appears only as the whole last segment "*" or "**".
  std::size_t segment = 1;  // where the current segment starts
  for (std::size_t i = 1; i < ch.size(); ++i) {
    const auto c = static_cast<unsigned char>(ch[i]);
    if (c == '/') {
      if (i == segment) return false;
      segment = i + 1;
    } else if (c == '*') {
      const std::string_view last = ch.substr(segment);
      return last == "*" || last == "**";
    } else if (c <= 0x20 || c == 0x7f) {
      // Control characters and spaces have no place in a channel; everything else is the
      // server's business.
      return false;
    }
  }
  return true;
}

bool is_wildcard(std::string_view ch) noexcept { return !ch.empty() && ch.back() == '*'; }

bool is_meta(std::string_view ch) noexcept { return ch.substr(0, 6) == "/meta/"; }
bool is_service(std::string_view ch) noexcept { return ch.substr(0, 9) == "/service/"; }

std::error_code check_subscribe_channel(std::string_view ch) noexcept {
  if (!is_valid_channel(ch) || is_meta(ch) || ch == "/meta") return errc::invalid_channel;
  return {};
}

std::error_code check_publish_channel(std::string_view ch) noexcept {
  if (!is_valid_channel(ch) || is_meta(ch) || ch == "/meta" ||
      ch.find('*') != std::string_view::npos) {
    return errc::invalid_channel;
  }
  return {};
}

bool channel_matches(std::string_view pattern, std::string_view channel) {
  if (!is_valid_channel(channel) || is_wildcard(channel)) return false;
  std::string scratch;
  bool found = false;
  for_each_matching_pattern(channel, scratch,
                            [&](std::string_view p) { found = found || p == pattern; });
  return found;
}

}  // namespace uvcometd::detail

namespace uvcometd {

std::string channel_problem(std::string_view ch, channel_use use) {
  const bool publish = use == channel_use::publish;
  if ((publish ? detail::check_publish_channel(ch) : detail::check_subscribe_channel(ch)) ==
      std::error_code{}) {
    return {};
  }
  // Only a refused name pays for finding the words.
  if (ch.empty() || ch.front() != '/') return "channel must start with '/'";
  if (ch.size() < 2) return "channel '/' has no name";
  if (ch.back() == '/') return "channel must not end with '/'";
  if (ch == "/meta" || detail::is_meta(ch)) return "/meta channels belong to the protocol";
  if (publish && ch.find('*') != std::string_view::npos)
    return "cannot publish to a wildcard channel";
  std::size_t start = 1;
  for (;;) {
    auto end = ch.find('/', start);
    const bool last = end == std::string_view::npos;
    if (last) end = ch.size();
    const std::string_view seg = ch.substr(start, end - start);
    if (seg.empty()) return "empty segment ('//') in channel";
    if (seg.find('*') != std::string_view::npos && !(last && (seg == "*" || seg == "**"))) {
      return "a wildcard must be the whole last segment ('/a/*' or '/a/**')";
    }
    if (last) break;
    start = end + 1;
  }
  return "spaces and control characters are not allowed in a channel";
}

bool channel_matches(std::string_view pattern, std::string_view channel) noexcept {
  try {
    return detail::channel_matches(pattern, channel);
  } catch (...) {
    return false;  // only an allocation could fail
  }
}

}  // namespace uvcometd
