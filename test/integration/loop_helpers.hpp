// Test helpers: a libuv loop the tests own, run until a condition holds or a deadline passes.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

#include <uv.h>

namespace uvcometd::test {

// How long a test watches for something that must NOT happen (a delivery after unsubscribing,
// a retry after giving up, a late duplicate). Longer than the longest retry delay the rigs
// configure (backoff_max 500 ms) and than many round trips on the loopback. Something that must
// happen is waited for as an event (run_until), never for a fixed time.
inline constexpr std::chrono::milliseconds quiet_period{600};

class test_loop {
 public:
  test_loop() { uv_loop_init(&loop_); }
  ~test_loop() {
    if (!closed_) close();
  }
  test_loop(const test_loop&) = delete;
  test_loop& operator=(const test_loop&) = delete;

  uv_loop_t* get() noexcept { return &loop_; }

  // Runs the loop until `pred()` is true (checked every `every`) or `limit` passed. Returns
  // pred(). A predicate that asks a server over HTTP (a blocking call) wants a longer `every`.
  bool run_until(const std::function<bool()>& pred,
                 std::chrono::milliseconds limit = std::chrono::seconds(15),
                 std::chrono::milliseconds every = std::chrono::milliseconds(2)) {
    if (pred()) return true;
    struct ctx_t {
      const std::function<bool()>* pred;
      std::chrono::steady_clock::time_point deadline;
    } ctx{&pred, std::chrono::steady_clock::now() + limit};
    uv_timer_t poll;
    uv_timer_init(&loop_, &poll);
    poll.data = &ctx;
    uv_timer_t* const outer = polling_;
    polling_ = &poll;
    const auto period = static_cast<std::uint64_t>(every.count() > 0 ? every.count() : 1);
    uv_timer_start(
        &poll,
        [](uv_timer_t* t) {
          auto* c = static_cast<ctx_t*>(t->data);
          if ((*c->pred)() || std::chrono::steady_clock::now() >= c->deadline) uv_stop(t->loop);
        },
        period, period);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_close(reinterpret_cast<uv_handle_t*>(&poll), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);
    polling_ = outer;
    return pred();
  }

  // The timer run_until() polls with while it runs (null otherwise): not one of the test's handles.
  const uv_handle_t* poll_handle() const noexcept {
    return reinterpret_cast<const uv_handle_t*>(polling_);
  }

  // Runs for `d` whatever happens: for "nothing (more) happens" checks, with `d` quiet_period.
  void run_for(std::chrono::milliseconds d) {
    run_until([] { return false; }, d);
  }

  // One loop iteration that does not wait for I/O: what is due now runs (idle and check
  // handles, expired timers, ready sockets).
  void turn() { uv_run(&loop_, UV_RUN_NOWAIT); }

  // Runs the loop until no handle is left (bounded). Returns whether none is left.
  bool drain() {
    for (int i = 0; i < 2000 && uv_loop_alive(&loop_); ++i) {
      uv_run(&loop_, UV_RUN_ONCE);
    }
    return !uv_loop_alive(&loop_);
  }

  // Runs the loop until no handle is left (bounded), then closes it; returns uv_loop_close's
  // result.
  int close() {
    drain();
    closed_ = true;
    return uv_loop_close(&loop_);
  }

 private:
  uv_loop_t loop_{};
  uv_timer_t* polling_ = nullptr;
  bool closed_ = false;
};

}  // namespace uvcometd::test
