// Received data messages waiting to be dispatched. A frame is kept as its text and where its
// walk stands; each message is read again from the text when its turn comes, so the queue costs
// the frames' text and nothing per message (a 15 MiB frame of tiny messages must not cost ten
// times that).
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <string>

#include "codec.hpp"

namespace uvcometd::detail {

class pending_queue {
 public:
  // Queues the `count` data messages of `text`, the first of which starts at `at`.
  void push(std::shared_ptr<const std::string> text, frame_reader::cursor at, std::size_t count);

  // Takes the next data message into `m` (its views into `*hold`, which keeps the text alive
  // for the caller, or into the queue's arena until the next call). False when empty.
  bool take(wire_message& m, std::shared_ptr<const std::string>& hold);

  std::size_t size() const noexcept { return count_; }
  bool empty() const noexcept { return count_ == 0; }
  void clear() noexcept;
  // Gives back what the last take() decoded (call once a dispatch round is over).
  void release_scratch() noexcept { arena_.reset(); }

 private:
  struct frame {
    std::shared_ptr<const std::string> text;
    frame_reader::cursor at;
    std::size_t remaining = 0;
  };
  std::deque<frame> frames_;
  std::size_t count_ = 0;
  string_arena arena_;
};

}  // namespace uvcometd::detail
