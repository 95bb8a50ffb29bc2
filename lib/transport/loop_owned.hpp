// The one lifetime idiom for objects that own uv handles (uvw's self-reference): such an object
// keeps itself alive while any of its handles (or uv requests) is open, and lets go in the last
// close callback. Its owner may drop it at any time, even from inside one of its callbacks:
// no uv callback ever reaches freed memory, and nothing calls `delete this`.
#pragma once

#include <memory>
#include <utility>

namespace uvcometd::detail {

// T derives from loop_owned<T>, is made by std::make_shared, and has `void all_closed()`: it runs
// once the last handle counted by opened() is closed, with the object still alive.
template <class T>
class loop_owned : public std::enable_shared_from_this<T> {
 protected:
  loop_owned() = default;
  ~loop_owned() = default;
  loop_owned(const loop_owned&) = delete;
  loop_owned& operator=(const loop_owned&) = delete;

  // `n` more handles or requests are open: the object stays alive until each is closed_one().
  // Not from a constructor (it needs the shared_ptr that owns the object).
  void opened(int n = 1) {
    open_ += n;
    if (!self_) self_ = this->shared_from_this();
  }

  // One of them is closed (called from its close callback). After the last, T::all_closed()
  // runs; the object may be freed when this returns, so the caller touches nothing afterwards.
  void closed_one() {
    if (--open_ > 0) return;
    const std::shared_ptr<T> last = std::move(self_);
    static_cast<T*>(this)->all_closed();
  }

  int open_count() const noexcept { return open_; }

 private:
  std::shared_ptr<T> self_;  // set while open_ > 0
  int open_ = 0;
};

}  // namespace uvcometd::detail
