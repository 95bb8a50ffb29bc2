// The one way a client defers work: a FIFO of tasks run on later loop iterations by one uv_idle
// handle, with the session's deferred work drained after them. No event or completion is ever
// delivered from inside an API call: it is posted here. (libuv's rule for callbacks, applied to
// the whole client.)
#pragma once

#include <uv.h>

#include <functional>
#include <string_view>
#include <vector>

namespace uvcometd::detail {

class reactor {
 public:
  using task = std::function<void()>;
  // `report` is told of what a task threw (nothing crosses into libuv's frames).
  reactor(uv_loop_t* loop, std::function<void(std::string_view)> report);
  reactor(const reactor&) = delete;
  reactor& operator=(const reactor&) = delete;

  // Runs `t` on a later loop iteration, after everything posted before it.
  void post(task t);
  // True while posted tasks wait (a task that must keep its place behind them is posted too).
  bool busy() const noexcept { return !tasks_.empty(); }
  // Runs `drain` once after the posted tasks of the next round (the session's deferred work).
  void set_drain(task drain) { drain_ = std::move(drain); }
  void request_drain();
  // Closes the handle; nothing runs any more. `closed` runs from its close callback.
  void close(task closed);
  bool closing() const noexcept { return closing_; }

 private:
  void wake();
  static void on_idle(uv_idle_t* h);
  static void on_closed(uv_handle_t* h);
  void run_guarded(const task& t) noexcept;

  uv_idle_t idle_{};
  std::vector<task> tasks_;
  task drain_;
  task closed_;
  std::function<void(std::string_view)> report_;
  bool drain_requested_ = false;
  bool closing_ = false;
};

}  // namespace uvcometd::detail
