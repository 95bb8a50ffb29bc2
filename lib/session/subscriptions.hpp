// The local subscriptions and what the server has been asked for: one server subscription per
// channel pattern however many local subscriptions share it, released with the last of them.
// No I/O: reconcile() says what the session must send.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "uvcometd/error.hpp"
#include "uvcometd/message.hpp"

namespace uvcometd::detail {

using completion_fn = std::function<void(const error&)>;
using handler_fn = std::function<void(const message&)>;

struct local_sub {
  std::uint64_t id = 0;
  std::string pattern;
  handler_fn handler;
  completion_fn done;  // until the server answered
  bool alive = true;   // false once unsubscribed or ended: its handler never runs again
};
using sub_ptr = std::shared_ptr<local_sub>;

class subscription_table {
 public:
  struct pattern_state {
    std::vector<sub_ptr> subs;
    bool server_subscribed = false;
    bool in_flight = false;  // a (un)subscribe for it awaits its reply
    std::vector<completion_fn> unsub_waiters;
    std::string ext;  // the "ext" its /meta/subscribe carries (the first subscription's)
  };
  // What the server must be told about a pattern.
  enum class action { none, subscribe, unsubscribe, forgotten };

  // A new local subscription. `server_has_it`: the server already delivers the pattern (its
  // completion can run at once).
  sub_ptr add(std::string_view pattern, handler_fn handler, std::string_view ext,
              bool& server_has_it);
  // Ends a local subscription: its handler never runs again. Null when unknown.
  sub_ptr remove(std::uint64_t id);
  // Ends `sub` after the server refused it (or failed its first subscribe).
  void drop(const sub_ptr& sub);

  // Decides about `pattern`: subscribe (local subscriptions, no server one), unsubscribe (the
  // reverse), forgotten (nothing left: the entry is gone and `waiters` are its unsubscribe
  // completions), or none (in flight, or as it should be). Marks the pattern in flight for the
  // first two: the session must then send the message.
  action reconcile(const std::string& pattern, std::vector<completion_fn>& waiters);
  // Every pattern (reconcile may erase entries, so a copy).
  std::vector<std::string> patterns() const;

  pattern_state* find(const std::string& pattern) noexcept;
  // A new session on the server: nothing is subscribed there any more.
  void server_forgot_all() noexcept;
  // Every local subscription whose pattern matches `channel`, in pattern order (exact first).
  void collect(std::string_view channel, std::vector<sub_ptr>& out);
  // Everything, for cancelling it (the table is empty afterwards).
  std::unordered_map<std::string, pattern_state> take_all() noexcept;

 private:
  std::unordered_map<std::string, pattern_state> patterns_;
  std::unordered_map<std::uint64_t, sub_ptr> subs_;
  std::size_t wildcards_ = 0;
  std::uint64_t last_id_ = 0;
  std::string scratch_;      // candidate patterns of a channel
  std::string scratch_key_;  // the map's key type is std::string
};

}  // namespace uvcometd::detail
