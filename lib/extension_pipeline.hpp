// Runs batches through the extensions in order. No I/O: the client feeds it frames as batches and
// gets each batch back once every extension is done with it, which may be at once or much later
// (an extension may finish asynchronously). Batches of one direction leave in the order they came.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "uvcometd/extension.hpp"

namespace uvcometd::detail {

enum class direction { outgoing, incoming };

// Splits a frame (a JSON array of objects) into messages; false when it is not one.
bool split_frame(std::string_view frame, std::vector<bayeux_message>& out);

// The client's private access to a message's tag (the id of the outgoing message it carries,
// whatever an extension edits) and to a batch's resend requests.
struct message_access {
  static std::uint64_t tag(const bayeux_message& m) noexcept { return m.tag_; }
  static void set_tag(bayeux_message& m, std::uint64_t tag) noexcept { m.tag_ = tag; }
  static const std::vector<std::uint64_t>& resends(const message_batch& b) noexcept {
    return b.resend_ids_;
  }
};
// The JSON array of `messages`.
std::string join_frame(const std::vector<bayeux_message>& messages);

class extension_pipeline {
 public:
  // Runs once per job, with the batch as the extensions left it (empty for a pass-through job)
  // and the error that stopped it, if any.
  using finish_fn = std::function<void(message_batch&& batch, const error& err)>;
  using log_fn = std::function<void(log_level, std::string_view)>;

  extension_pipeline(std::vector<std::shared_ptr<extension>> extensions,
                     std::shared_ptr<auth_extension> auth, log_fn log);
  ~extension_pipeline();
  extension_pipeline(const extension_pipeline&) = delete;
  extension_pipeline& operator=(const extension_pipeline&) = delete;

  // True when there is no extension at all (the client then bypasses the pipeline).
  bool empty() const noexcept { return order_.empty(); }

  // Queues a batch (or, without one, a pass-through job that only keeps its place in the order:
  // a transport event that must not overtake the frames before it). `finish` may run inside
  // this call. `tag` is what cancel() selects on.
  void push(direction d, std::optional<message_batch> batch, std::uint64_t tag, finish_fn finish);
  // Queues batches made only when their turn comes: `make` fills the next batch just before
  // the first extension sees it, and says whether another follows; `finish` runs for each. The
  // consecutive batches of one large frame never exist all at once, and no other batch of the
  // direction comes between them.
  void push_lazy(direction d, std::function<bool(message_batch&)> make, std::uint64_t tag,
                 finish_fn finish);

  // Forgets the jobs of direction `d` with tag `tag` (queued or running): their finish never runs.
  // A job an extension is working on still holds the lane until that extension calls done, so
  // no extension ever has two batches of one direction at once. `events_only`: only
  // pass-through jobs (batches keep going).
  void cancel(direction d, std::uint64_t tag, bool events_only = false);
  // Forgets every job.
  void cancel_all();

 private:
  struct job {
    std::uint64_t seq = 0;
    std::uint64_t tag = 0;
    // Shared with the extension's continuation: an extension still working on a cancelled job
    // keeps writing into a live batch.
    std::shared_ptr<message_batch> batch;
    std::function<bool(message_batch&)> make;  // push_lazy(): makes each batch when it starts
    bool more = false;                         // push_lazy(): another batch follows this one
    finish_fn finish;
    std::size_t next = 0;  // index of the extension to run next
    bool waiting = false;  // an extension has it and has not called done yet
    bool cancelled = false;
    error err;
  };
  struct lane {
    std::deque<job> jobs;
    bool pumping = false;
  };

  lane& lane_of(direction d) noexcept { return d == direction::outgoing ? out_ : in_; }
  void pump(direction d);
  void on_done(direction d, std::uint64_t seq, std::size_t index, const error& err);

  std::vector<std::shared_ptr<extension>> order_;  // registration order, auth last
  log_fn log_;
  lane out_, in_;
  std::uint64_t last_seq_ = 0;
  std::shared_ptr<char>
      alive_;  // continuations hold a weak_ptr: late calls after destruction are no-ops
};

}  // namespace uvcometd::detail
