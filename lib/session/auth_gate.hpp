// Authentication failures and the auth extension's authenticate(): asked once for concurrent
// failures, never again before a held connect succeeded or a backoff delay passed (a bad
// credential never loops), and what waits for the answer.
#pragma once

#include <functional>
#include <vector>

#include "session/outgoing.hpp"

namespace uvcometd::detail {

// 401/403 from the server (Bayeux error code) or from HTTP.
bool is_auth_failure(const error& err) noexcept;

class auth_gate {
 public:
  using waiter = std::function<void(const error&)>;

  explicit auth_gate(bool enabled) noexcept : enabled_(enabled) {}

  bool enabled() const noexcept { return enabled_; }
  // authenticate() may be asked now (or already is).
  bool available() const noexcept { return enabled_ && (in_flight_ || !used_); }
  bool in_flight() const noexcept { return in_flight_; }
  // Queues `then` for the answer. False when not available. `start` is set when authenticate()
  // must be called now (the first waiter).
  bool ask(waiter then, bool& start);
  // A held connect succeeded, or a backoff delay passed: a new failure may ask again.
  void rearm() noexcept { used_ = false; }
  // The answer: the waiters to call (in order). Empty when none was expected.
  std::vector<waiter> answered();
  // Forgets the request in flight (its answer will be ignored): the waiters to cancel.
  std::vector<waiter> cancel();
  // Messages refused with 401/403, sent again once the answer came.
  std::vector<outgoing> held;

 private:
  bool enabled_;
  bool in_flight_ = false;
  bool used_ = false;
  std::vector<waiter> waiters_;
};

}  // namespace uvcometd::detail
