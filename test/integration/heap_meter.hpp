// Test helper: the heap this process has in use, and its peak over a stretch of a test, from
// AddressSanitizer's allocator (the default test build). Under ASan freed blocks sit in a
// quarantine and stay resident, so RSS says little about what the code holds; the allocator's own
// count of live bytes does. Without ASan `available` is false and the callers skip, visibly.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#if defined(__SANITIZE_ADDRESS__)
#define UVCOMETD_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UVCOMETD_TEST_ASAN 1
#endif
#endif

#ifdef UVCOMETD_TEST_ASAN
// The sanitizer runtime's interface (<sanitizer/allocator_interface.h>, which GCC does not ship;
// libasan exports the functions).
extern "C" {
std::size_t __sanitizer_get_current_allocated_bytes(void);
std::size_t __sanitizer_get_allocated_size(const volatile void* p);
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void*,
                                                                  std::size_t),
                                              void (*free_hook)(const volatile void*));
}
#endif

namespace uvcometd::test::heap {

#ifdef UVCOMETD_TEST_ASAN
inline constexpr bool available = true;

// Live heap bytes of the whole process (every thread), as ASan counts them.
inline std::size_t in_use() { return __sanitizer_get_current_allocated_bytes(); }

namespace detail {
inline std::atomic<std::int64_t>& live() {
  static std::atomic<std::int64_t> v{0};
  return v;
}
inline std::atomic<std::int64_t>& peak() {
  static std::atomic<std::int64_t> v{0};
  return v;
}
inline void on_malloc(const volatile void*, std::size_t size) {
  const std::int64_t now =
      live().fetch_add(static_cast<std::int64_t>(size), std::memory_order_relaxed) +
      static_cast<std::int64_t>(size);
  std::int64_t p = peak().load(std::memory_order_relaxed);
  while (now > p && !peak().compare_exchange_weak(p, now, std::memory_order_relaxed)) {
  }
}
inline void on_free(const volatile void* ptr) {
  if (ptr)
    live().fetch_sub(static_cast<std::int64_t>(__sanitizer_get_allocated_size(ptr)),
                     std::memory_order_relaxed);
}
}  // namespace detail

// Peak of the live heap since the last reset_peak(), measured by malloc/free hooks (installed on
// first use; they count from then on, which is all a difference needs).
class peak_meter {
 public:
  peak_meter() {
    static const bool installed = [] {
      __sanitizer_install_malloc_and_free_hooks(&detail::on_malloc, &detail::on_free);
      return true;
    }();
    (void)installed;
    reset();
  }
  // Starts a stretch: the peak and the baseline become the heap in use now.
  void reset() {
    base_ = detail::live().load();
    detail::peak().store(base_);
  }
  // How far the heap in use rose above the baseline during the stretch, in bytes.
  std::int64_t rise() const { return detail::peak().load() - base_; }

 private:
  std::int64_t base_ = 0;
};
#else
inline constexpr bool available = false;
inline std::size_t in_use() { return 0; }
class peak_meter {
 public:
  void reset() {}
  std::int64_t rise() const { return 0; }
};
#endif

}  // namespace uvcometd::test::heap
