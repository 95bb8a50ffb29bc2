#include "session/pending_queue.hpp"

namespace uvcometd::detail {

void pending_queue::push(std::shared_ptr<const std::string> text, frame_reader::cursor at,
                         std::size_t count) {
  if (count == 0) return;
  count_ += count;
  frames_.push_back(frame{std::move(text), at, count});
}

bool pending_queue::take(wire_message& m, std::shared_ptr<const std::string>& hold) {
  while (!frames_.empty()) {
    frame& f = frames_.front();
    hold = f.text;
    frame_reader reader(*hold, f.at);
    error why;
    frame_reader::status st;
    do {
      st = reader.next(m, arena_, why);
    } while (st == frame_reader::status::skipped ||
             (st == frame_reader::status::message && m.is_reply()));
    --count_;
    f.at = reader.save();
    if (--f.remaining == 0) frames_.pop_front();
    // The walk that counted it found it; anything else would be a reader bug: skip it.
    if (st == frame_reader::status::message) return true;
  }
  return false;
}

void pending_queue::clear() noexcept {
  frames_.clear();
  count_ = 0;
  arena_.reset();
}

}  // namespace uvcometd::detail
