// Reconnect delays: exponential from an initial delay up to a cap, randomised down by a jitter,
// or whatever the application's reconnect_delay hook says. A pure function plus a seeded RNG,
// so tests get the same delays every run.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

namespace uvcometd::detail {

// The delay before attempt `n` (1, 2, ...): initial × 2^(n-1), at most `cap`, times
// (1 - jitter × unit) for a `unit` in [0, 1); never below 1 ms. Jitter outside [0, 1] (NaN
// included) is clamped; nothing overflows whatever the inputs.
std::chrono::milliseconds backoff_delay(unsigned n, std::chrono::milliseconds initial,
                                        std::chrono::milliseconds cap, double jitter,
                                        double unit) noexcept;

class backoff {
 public:
  using hook = std::function<std::chrono::milliseconds(unsigned, std::chrono::milliseconds)>;

  backoff(std::chrono::milliseconds initial, std::chrono::milliseconds cap, double jitter,
          std::uint64_t seed, hook custom);

  // One more consecutive failure: the delay before the next attempt.
  std::chrono::milliseconds next();
  // The delay a given count of consecutive failures earns, without counting one (the floor
  // between connects a server answers at once uses it).
  std::chrono::milliseconds delay_for(unsigned n);
  // A held connect succeeded: the next failure starts from the initial delay again.
  void reset() noexcept { failures_ = 0; }
  unsigned failures() const noexcept { return failures_; }
  // Set when the hook threw (the default delay was used); cleared on reading.
  bool hook_failed() noexcept;

 private:
  double unit() noexcept;

  std::chrono::milliseconds initial_, cap_;
  double jitter_;
  hook custom_;
  std::uint64_t rng_;
  unsigned failures_ = 0;
  bool hook_failed_ = false;
};

}  // namespace uvcometd::detail
