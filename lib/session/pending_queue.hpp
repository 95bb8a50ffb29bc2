// Received data messages waiting to be dispatched. A frame is kept as its text, the messages
// its arrival walk read (at most max_decoded of them, as views into the text), and where that
// walk stood after them: messages past those are read again from the text when their turn
// comes. So a frame's data messages are usually decoded once, and the queue costs at most
// max_decoded × 80 bytes per frame beyond its text (a 15 MiB frame of tiny messages must not
// cost ten times that).
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "codec.hpp"

namespace uvcometd::detail {

// What dispatching a data message needs of it.
struct queued_message {
  std::string_view channel, data, id, ext, json;

  static queued_message of(const wire_message& m) noexcept {
    return {m.channel, m.data, m.id, m.ext, m.json};
  }
};

class pending_queue {
 public:
  // Messages of one frame kept as read; past that, they are read again when dispatched.
  static constexpr std::size_t max_decoded = 1024;

  // Queues the data messages of `text`: `decoded` (their views into `text`), then `rest` more,
  // the first of which starts at `at`.
  void push(std::shared_ptr<const std::string> text, std::vector<queued_message> decoded,
            frame_reader::cursor at, std::size_t rest);

  // Takes the next data message into `m` (its views into `*hold`, which keeps the text alive
  // for the caller, or into the queue's arena until the next call). False when empty.
  bool take(queued_message& m, std::shared_ptr<const std::string>& hold);

  std::size_t size() const noexcept { return count_; }
  bool empty() const noexcept { return count_ == 0; }
  void clear() noexcept;
  // Gives back what the last take() decoded (call once a dispatch round is over).
  void release_scratch() noexcept { arena_.reset(); }

 private:
  struct frame {
    std::shared_ptr<const std::string> text;
    std::vector<queued_message> decoded;
    std::size_t next = 0;  // the next of `decoded` to take
    frame_reader::cursor at;
    std::size_t remaining = 0;  // after `decoded`
  };

  std::deque<frame> frames_;
  std::size_t count_ = 0;
  string_arena arena_;
};

}  // namespace uvcometd::detail
