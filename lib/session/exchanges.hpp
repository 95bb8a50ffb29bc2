// The request ledger: the messages sent and awaiting their replies (by id), the requests that
// carried them (by request number), which request holds each of the session's slots (the held
// connect, the handshake, the disconnect, long-polling's one other exchange), and the deadlines
// of stream requests (a stream has no exchange of its own to time out).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <queue>
#include <unordered_map>
#include <utility>
#include <vector>

#include "session/outgoing.hpp"
#include "uvcometd/options.hpp"

namespace uvcometd::detail {

using clock = std::chrono::steady_clock;

class exchanges {
 public:
  enum class slot : std::uint8_t { none, normal, connect, handshake, disconnect };

  struct request {
    connection_type type = connection_type::long_polling;
    bool stream = false;             // not request_response: its replies come one by one
    std::vector<std::uint64_t> ids;  // messages sent in it, answered or not
    std::size_t remaining = 0;       // stream requests: replies still expected
    slot holds = slot::none;
    std::optional<clock::time_point> deadline;  // stream requests only
    std::chrono::milliseconds timeout{0};
  };

  // Records a request and the messages it carries (moved in, awaiting their replies).
  void open(std::uint64_t number, request r, std::vector<outgoing>&& messages);
  // The request holding `s`, or 0.
  std::uint64_t holder(slot s) const noexcept { return slots_[static_cast<int>(s)]; }
  bool busy(slot s) const noexcept { return holder(s) != 0; }
  bool is_open(std::uint64_t number) const noexcept { return requests_.count(number) != 0; }
  const request* find(std::uint64_t number) const noexcept;

  // The message awaiting the reply with `id`, or null.
  outgoing* awaiting(std::uint64_t id) noexcept;
  // Takes a message out of the ledger; a stream request whose last reply this was is closed.
  outgoing take(std::uint64_t id);
  // The response of a request/response exchange arrived: its slot is free again (the request
  // stays open while its replies are handled; close() ends it).
  void answered(std::uint64_t number) noexcept;
  // Closes a request: it is forgotten, and the messages it carried that got no reply are taken
  // out and returned (oldest first).
  std::vector<outgoing> close(std::uint64_t number);
  // Closes every request on `t`, returning their unanswered messages, oldest first.
  std::vector<outgoing> close_all(connection_type t);
  // Everything: every unanswered message (oldest first); the ledger is empty afterwards.
  std::vector<outgoing> take_everything();

  // The earliest stream deadline still standing, and the request it belongs to.
  std::optional<std::pair<clock::time_point, std::uint64_t>> next_deadline();

 private:
  void release(std::uint64_t number, const request& r) noexcept;

  std::unordered_map<std::uint64_t, outgoing> awaiting_;
  std::unordered_map<std::uint64_t, request> requests_;
  std::uint64_t slots_[5] = {0, 0, 0, 0, 0};
  // Earliest first; entries of requests closed since are dropped when they come up.
  std::priority_queue<std::pair<clock::time_point, std::uint64_t>,
                      std::vector<std::pair<clock::time_point, std::uint64_t>>, std::greater<>>
      deadlines_;
};

}  // namespace uvcometd::detail
