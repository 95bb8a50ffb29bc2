#include "session/backoff.hpp"

#include <algorithm>
#include <cmath>

namespace uvcometd::detail {

std::chrono::milliseconds backoff_delay(unsigned n, std::chrono::milliseconds initial,
                                        std::chrono::milliseconds cap, double jitter,
                                        double unit) noexcept {
  const std::int64_t first = std::max<std::int64_t>(1, initial.count());
  const std::int64_t most = std::max<std::int64_t>(first, cap.count());
  const unsigned shift = std::min(n > 0 ? n - 1 : 0u, 62u);
  const std::int64_t base = first > (most >> shift) ? most : std::min(most, first << shift);
  const double j = std::isfinite(jitter) ? std::clamp(jitter, 0.0, 1.0) : 0.0;
  const double u = std::isfinite(unit) ? std::clamp(unit, 0.0, 1.0) : 0.0;
  const double scaled = static_cast<double>(base) * (1.0 - j * u);
  // A double near 2^63 no longer fits an int64: saturate instead of converting.
  if (scaled >= 9.2e18) return std::chrono::milliseconds::max();
  return std::chrono::milliseconds(std::max<std::int64_t>(1, static_cast<std::int64_t>(scaled)));
}

backoff::backoff(std::chrono::milliseconds initial, std::chrono::milliseconds cap, double jitter,
                 std::uint64_t seed, hook custom)
    : initial_(initial),
      cap_(cap),
      jitter_(jitter),
      custom_(std::move(custom)),
      rng_(seed != 0 ? seed : 1) {}

double backoff::unit() noexcept {
  // xorshift64*: cheap, deterministic under a fixed seed.
  rng_ ^= rng_ >> 12;
  rng_ ^= rng_ << 25;
  rng_ ^= rng_ >> 27;
  return static_cast<double>((rng_ * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

std::chrono::milliseconds backoff::delay_for(unsigned n) {
  return backoff_delay(n, initial_, cap_, jitter_, unit());
}

std::chrono::milliseconds backoff::next() {
  ++failures_;
  auto delay = delay_for(failures_);
  if (custom_) {
    try {
      delay = std::max(std::chrono::milliseconds(0), custom_(failures_, delay));
    } catch (...) {
      hook_failed_ = true;
    }
  }
  return delay;
}

bool backoff::hook_failed() noexcept {
  const bool f = hook_failed_;
  hook_failed_ = false;
  return f;
}

}  // namespace uvcometd::detail
