// What every fuzz target shares: the libFuzzer entry point, a check that aborts with a message
// (libFuzzer and the corpus replay both report an abort as a crash, with the input that caused
// it), and a reader that takes bytes off the input as the target's decisions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace uvcometd_fuzz {

[[noreturn]] inline void violated(const char* file, int line, const char* what,
                                  const std::string& detail) {
  std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n%s%s", file, line, what, detail.c_str(),
               detail.empty() || detail.back() == '\n' ? "" : "\n");
  std::fflush(stderr);
  std::abort();
}

// FUZZ_CHECK(cond, detail): aborts with `detail` (a std::string expression) when cond is false.
#define FUZZ_CHECK(cond, detail)                                                 \
  do {                                                                           \
    if (!(cond)) ::uvcometd_fuzz::violated(__FILE__, __LINE__, #cond, (detail)); \
  } while (0)

// Takes the input apart from the front: bytes, small numbers and byte strings. Past the end every
// read gives zeros, so a target never has to check the length itself.
class input {
 public:
  input(const std::uint8_t* data, std::size_t size) : p_(data), n_(size) {}

  bool empty() const noexcept { return i_ >= n_; }
  std::size_t left() const noexcept { return i_ < n_ ? n_ - i_ : 0; }

  std::uint8_t byte() noexcept { return i_ < n_ ? p_[i_++] : 0; }
  // A byte from the other end: a second stream of decisions that does not shift the first one
  // when it is read more or fewer times.
  std::uint8_t back_byte() noexcept { return i_ < n_ ? p_[--n_] : 0; }
  // A number in [0, n) (n > 0).
  std::size_t pick(std::size_t n) noexcept { return n <= 256 ? byte() % n : word() % n; }
  std::uint16_t word() noexcept {
    const std::uint16_t hi = byte();
    return static_cast<std::uint16_t>((hi << 8) | byte());
  }
  bool flag() noexcept { return (byte() & 1) != 0; }
  // Up to `max` bytes, the length taken from the input first.
  std::string bytes(std::size_t max) {
    const std::size_t len = pick(max + 1);
    return take(len);
  }
  // The next `len` bytes (fewer at the end).
  std::string take(std::size_t len) {
    const std::size_t k = len < left() ? len : left();
    std::string s(reinterpret_cast<const char*>(p_ + i_), k);
    i_ += k;
    return s;
  }
  // Everything not read yet.
  std::string rest() { return take(left()); }

 private:
  const std::uint8_t* p_;
  std::size_t n_;
  std::size_t i_ = 0;
};

}  // namespace uvcometd_fuzz
