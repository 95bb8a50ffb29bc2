#include "reactor.hpp"

#include <exception>
#include <string>
#include <utility>

namespace uvcometd::detail {

reactor::reactor(uv_loop_t* loop, std::function<void(std::string_view)> report)
    : report_(std::move(report)) {
  uv_idle_init(loop, &idle_);
  idle_.data = this;
}

void reactor::post(task t) {
  if (closing_) return;
  tasks_.push_back(std::move(t));
  wake();
}

void reactor::request_drain() {
  if (closing_) return;
  drain_requested_ = true;
  wake();
}

void reactor::wake() { uv_idle_start(&idle_, &reactor::on_idle); }

void reactor::close(task closed) {
  closing_ = true;
  closed_ = std::move(closed);
  tasks_.clear();
  uv_idle_stop(&idle_);
  uv_close(reinterpret_cast<uv_handle_t*>(&idle_), &reactor::on_closed);
}

void reactor::run_guarded(const task& t) noexcept {
  try {
    t();
  } catch (const std::exception& e) {
    if (report_) report_(std::string("uvcometd internal error: ") + e.what());
  } catch (...) {
    if (report_) report_("uvcometd internal error");
  }
}

void reactor::on_idle(uv_idle_t* h) {
  auto* self = static_cast<reactor*>(h->data);
  uv_idle_stop(h);
  // This round's tasks; what they post runs in the next round, after the drain.
  auto round = std::exchange(self->tasks_, {});
  for (auto& t : round) {
    if (self->closing_) return;
    self->run_guarded(t);
  }
  if (self->closing_ || !self->drain_requested_ || !self->drain_) return;
  self->drain_requested_ = false;
  self->run_guarded(self->drain_);
}

void reactor::on_closed(uv_handle_t* h) {
  auto* self = static_cast<reactor*>(h->data);
  auto closed = std::move(self->closed_);
  if (closed) closed();
}

}  // namespace uvcometd::detail
