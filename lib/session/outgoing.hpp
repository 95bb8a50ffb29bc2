// A message the session sends: queued, in flight awaiting its reply, or held for credentials.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "codec.hpp"
#include "uvcometd/error.hpp"

namespace uvcometd::detail {

using completion_fn = std::function<void(const error&)>;

struct outgoing {
  explicit outgoing(message_kind k) : kind(k) {}
  message_kind kind;
  std::uint64_t id = 0;       // assigned when it leaves
  std::string channel;
  std::string payload;        // publish: data JSON; (un)subscribe: the pattern
  completion_fn done;
  std::uint64_t request = 0;  // the request that carried it
  std::uint64_t epoch = 0;    // the handshake (attempt) it belongs to
  bool first_connect = false;
  bool resubscribe = false;   // restores a subscription after a new handshake
  bool resent = false;        // an extension had it sent again once already
  bool auth_retried = false;  // sent again once after authenticate()
};

}  // namespace uvcometd::detail
