// A message the session sends: queued, in flight awaiting its reply, or held for credentials.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "codec.hpp"
#include "uvcometd/error.hpp"
#include "uvcometd/message.hpp"

namespace uvcometd::detail {

using completion_fn = std::function<void(const error&)>;
// A remote call's completion: the error, and the server's reply (empty views when none came).
using call_fn = std::function<void(const error&, const message&)>;

struct outgoing {
  explicit outgoing(message_kind k) : kind(k) {}
  message_kind kind;
  std::uint64_t id = 0;  // assigned when it leaves
  std::string channel;
  std::string payload;  // publish: data JSON; (un)subscribe: the pattern
  completion_fn done;
  std::string ext;            // its own "ext" object (JSON text), or empty
  call_fn call_done;          // a remote call: completes with the reply message
  std::uint64_t call = 0;     // a remote call's number (the key of its deadline), else 0
  std::uint64_t request = 0;  // the request that carried it
  std::uint64_t epoch = 0;    // the handshake (attempt) it belongs to
  bool first_connect = false;
  std::uint32_t hold_ms = 0;  // a first connect: how long the server may hold it
  bool resubscribe = false;   // restores a subscription after a new handshake
  bool resent = false;        // an extension had it sent again once already
  bool auth_retried = false;  // sent again once after authenticate()
};

}  // namespace uvcometd::detail
