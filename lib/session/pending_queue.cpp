#include "session/pending_queue.hpp"

namespace uvcometd::detail {

void pending_queue::push(std::shared_ptr<const std::string> text,
                         std::vector<queued_message> decoded, frame_reader::cursor at,
                         std::size_t rest) {
  if (decoded.empty() && rest == 0) return;
  count_ += decoded.size() + rest;
  frames_.push_back(frame{std::move(text), std::move(decoded), 0, at, rest});
}

bool pending_queue::take(queued_message& m, std::shared_ptr<const std::string>& hold) {
  while (!frames_.empty()) {
    frame& f = frames_.front();
    hold = f.text;
    --count_;
    if (f.next < f.decoded.size()) {
      m = f.decoded[f.next++];
      if (f.next == f.decoded.size() && f.remaining == 0) frames_.pop_front();
      return true;
    }
    frame_reader reader(*hold, f.at);
    wire_message w;
    error why;
    frame_reader::status st;
    do {
      st = reader.next(w, arena_, why);
    } while (st == frame_reader::status::skipped ||
             (st == frame_reader::status::message && w.is_reply()));
    f.at = reader.save();
    if (--f.remaining == 0) frames_.pop_front();
    // The walk that counted it found it; anything else would be a reader bug: skip it.
    if (st == frame_reader::status::message) {
      m = queued_message::of(w);
      return true;
    }
  }
  return false;
}

void pending_queue::clear() noexcept {
  frames_.clear();
  count_ = 0;
  arena_.reset();
}

}  // namespace uvcometd::detail
