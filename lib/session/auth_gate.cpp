#include "session/auth_gate.hpp"

#include <utility>

namespace uvcometd::detail {

bool is_auth_failure(const error& err) noexcept {
  return (err.code == errc::server_error && (err.server_code == 401 || err.server_code == 403)) ||
         (err.code == errc::http_error && (err.http_status == 401 || err.http_status == 403));
}

bool auth_gate::ask(waiter then, bool& start) {
  start = false;
  if (!enabled_) return false;
  if (!in_flight_) {
    if (used_) return false;  // once per success or backoff delay: never a tight loop
    used_ = true;
    in_flight_ = true;
    start = true;
  }
  waiters_.push_back(std::move(then));
  return true;
}

std::vector<auth_gate::waiter> auth_gate::answered() {
  if (!in_flight_) return {};
  in_flight_ = false;
  return std::exchange(waiters_, {});
}

std::vector<auth_gate::waiter> auth_gate::cancel() {
  in_flight_ = false;  // its answer, when it comes, is ignored
  return std::exchange(waiters_, {});
}

}  // namespace uvcometd::detail
