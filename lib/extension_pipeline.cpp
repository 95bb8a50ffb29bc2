#include "extension_pipeline.hpp"

#include <exception>
#include <utility>

#include "json.hpp"

namespace uvcometd::detail {

bool split_frame(std::string_view s, std::vector<bayeux_message>& out) {
  std::size_t pos = 0;
  json::skip_space(s, pos);
  if (pos < s.size() && s[pos] == '{') {
    // Some servers answer a single object (the codec accepts it too): a batch of one.
    try {
      out.push_back(bayeux_message::parse(s));
    } catch (const std::system_error&) {
      return false;
    }
    return true;
  }
  if (pos >= s.size() || s[pos] != '[') return false;
  ++pos;
  json::skip_space(s, pos);
  if (pos < s.size() && s[pos] == ']') {
    ++pos;
  } else {
    for (;;) {
      json::skip_space(s, pos);
      const std::size_t start = pos;
      if (pos >= s.size() || s[pos] != '{' || !json::skip_value(s, pos, 1)) return false;
      try {
        out.push_back(bayeux_message::parse(s.substr(start, pos - start)));
      } catch (const std::system_error&) {
        return false;
      }
      json::skip_space(s, pos);
      if (pos < s.size() && s[pos] == ',') {
        ++pos;
        continue;
      }
      if (pos < s.size() && s[pos] == ']') {
        ++pos;
        break;
      }
      return false;
    }
  }
  json::skip_space(s, pos);
  return pos == s.size();
}

std::string join_frame(const std::vector<bayeux_message>& messages) {
  std::string out;
  out.reserve(64 * messages.size() + 2);
  out += '[';
  for (std::size_t i = 0; i < messages.size(); ++i) {
    if (i) out += ',';
    messages[i].append_json(out);
  }
  out += ']';
  return out;
}

extension_pipeline::extension_pipeline(std::vector<std::shared_ptr<extension>> extensions,
                                       std::shared_ptr<auth_extension> auth, log_fn log)
    : log_(std::move(log)), alive_(std::make_shared<char>(0)) {
  for (auto& e : extensions) {
    if (e) order_.push_back(std::move(e));
  }
  if (auth) order_.push_back(std::move(auth));
}

extension_pipeline::~extension_pipeline() = default;

void extension_pipeline::push(direction d, std::optional<message_batch> batch, std::uint64_t tag,
                              finish_fn finish) {
  job j;
  j.seq = ++last_seq_;
  j.tag = tag;
  if (batch) j.batch = std::make_shared<message_batch>(std::move(*batch));
  j.finish = std::move(finish);
  lane_of(d).jobs.push_back(std::move(j));
  pump(d);
}

void extension_pipeline::push_lazy(direction d, std::function<bool(message_batch&)> make,
                                   std::uint64_t tag, finish_fn finish) {
  job j;
  j.seq = ++last_seq_;
  j.tag = tag;
  j.make = std::move(make);
  j.finish = std::move(finish);
  lane_of(d).jobs.push_back(std::move(j));
  pump(d);
}

void extension_pipeline::cancel(direction d, std::uint64_t tag, bool events_only) {
  // Only marked: pump() may be walking the queue further up the stack.
  for (auto& j : lane_of(d).jobs) {
    if (j.tag == tag && (!events_only || (!j.batch && !j.make))) j.cancelled = true;
  }
}

void extension_pipeline::cancel_all() {
  for (auto* l : {&out_, &in_}) {
    for (auto& j : l->jobs) j.cancelled = true;
  }
}

void extension_pipeline::pump(direction d) {
  lane& l = lane_of(d);
  if (l.pumping) return;  // the loop further up the stack picks the new state up
  l.pumping = true;
  const std::weak_ptr<char> alive = alive_;
  while (!l.jobs.empty()) {
    job& j = l.jobs.front();
    // A cancelled job an extension still holds keeps its place until that extension is done
    // with it: an extension never gets a second batch of one direction before finishing the one
    // it has, cancelled or not.
    if (j.waiting) break;  // an extension finishes it later
    if (j.cancelled) {
      l.jobs.pop_front();
      continue;
    }
    if (j.make && !j.batch) {
      j.batch = std::make_shared<message_batch>();
      try {
        j.more = j.make(*j.batch);
      } catch (const std::exception& e) {
        j.more = false;
        j.err = error(make_error_code(errc::extension_error), e.what());
      }
      if (alive.expired()) return;
      if (!j.more) j.make = nullptr;
    }
    if (j.more && j.err) {
      // A failed batch ends a lazy job: what follows it is not made.
      j.more = false;
      j.make = nullptr;
    }
    if (j.more && j.next >= order_.size()) {
      // A batch of a lazy job is through; the job keeps its place for the next one.
      message_batch b = std::move(*j.batch);
      j.batch.reset();
      j.next = 0;
      try {
        j.finish(std::move(b), {});
      } catch (const std::exception& e) {
        if (log_)
          log_(log_level::error,
               std::string("uvcometd internal error after an extension: ") + e.what());
      }
      if (alive.expired()) return;
      continue;
    }
    if (!j.batch || j.err || j.next >= order_.size()) {
      job done = std::move(j);
      l.jobs.pop_front();
      message_batch b = done.batch ? std::move(*done.batch) : message_batch{};
      try {
        done.finish(std::move(b), done.err);
      } catch (const std::exception& e) {
        // Never leave the lane marked busy: log and go on with the next batch.
        if (log_)
          log_(log_level::error,
               std::string("uvcometd internal error after an extension: ") + e.what());
      }
      if (alive.expired()) return;  // the finish destroyed the client and with it this pipeline
      continue;
    }
    const std::size_t index = j.next;
    extension& ext = d == direction::outgoing ? *order_[index] : *order_[order_.size() - 1 - index];
    j.waiting = true;
    const std::uint64_t seq = j.seq;
    extension_done cont = [this, alive, d, seq, index, keep = j.batch](const error& err) {
      if (alive.expired()) return;
      on_done(d, seq, index, err);
    };
    try {
      if (d == direction::outgoing)
        ext.outgoing(*j.batch, std::move(cont));
      else
        ext.incoming(*j.batch, std::move(cont));
    } catch (const std::exception& e) {
      if (alive.expired()) return;
      on_done(d, seq, index,
              error(make_error_code(errc::extension_error),
                    std::string("an extension threw: ") + e.what()));
    } catch (...) {
      if (alive.expired()) return;
      on_done(
          d, seq, index,
          error(make_error_code(errc::extension_error), "an extension threw a non-std exception"));
    }
    if (alive.expired()) return;
  }
  l.pumping = false;
}

void extension_pipeline::on_done(direction d, std::uint64_t seq, std::size_t index,
                                 const error& err) {
  lane& l = lane_of(d);
  // The job is the front one unless it was cancelled (then it may be gone already).
  if (l.jobs.empty() || l.jobs.front().seq != seq) return;
  job& j = l.jobs.front();
  if (!j.waiting || j.next != index) {
    if (log_)
      log_(log_level::error,
           "an extension called its done continuation more than once (or threw after it)");
    return;
  }
  j.waiting = false;
  ++j.next;
  if (err) {
    j.err = err;
    if (j.err.code != errc::extension_error) {
      // Keep the extension's text, under the code the documentation promises.
      j.err = error(make_error_code(errc::extension_error), err.to_string());
    }
  }
  pump(d);
}

}  // namespace uvcometd::detail
