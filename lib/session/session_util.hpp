// Small helpers the session's files share.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "session/exchanges.hpp"
#include "uvcometd/error.hpp"

namespace uvcometd::detail {

inline constexpr std::chrono::milliseconds default_server_timeout{60000};
// No transport is asked for a deadline further than this (libcurl adds it to its clock).
inline constexpr std::chrono::milliseconds longest_request = std::chrono::hours(24 * 30);

inline error make_error(errc code, std::string text) {
  return error{make_error_code(code), std::move(text)};
}

inline const error& closed_error() {
  static const error e = make_error(errc::cancelled, "the client was closed");
  return e;
}

// `now + d`, saturating: a delay from the server, the options or reconnect_delay can be anything
// up to milliseconds::max(), which would overflow the clock.
inline clock::time_point later(clock::time_point now, std::chrono::milliseconds d) noexcept {
  if (d.count() <= 0) return now;
  const auto room =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock::time_point::max() - now);
  return d >= room ? clock::time_point::max() : now + d;
}

}  // namespace uvcometd::detail
