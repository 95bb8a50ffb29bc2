#include "session/exchanges.hpp"

#include <algorithm>

namespace uvcometd::detail {
namespace {

void oldest_first(std::vector<outgoing>& v) {
  std::sort(v.begin(), v.end(), [](const outgoing& a, const outgoing& b) { return a.id < b.id; });
}

}  // namespace

void exchanges::open(std::uint64_t number, request r, std::vector<outgoing>&& messages) {
  r.ids.clear();
  for (auto& m : messages) {
    r.ids.push_back(m.id);
    awaiting_.emplace(m.id, std::move(m));
  }
  r.remaining = r.ids.size();
  if (r.holds != slot::none) slots_[static_cast<int>(r.holds)] = number;
  if (r.deadline) deadlines_.emplace(*r.deadline, number);
  requests_.emplace(number, std::move(r));
}

const exchanges::request* exchanges::find(std::uint64_t number) const noexcept {
  const auto it = requests_.find(number);
  return it == requests_.end() ? nullptr : &it->second;
}

outgoing* exchanges::awaiting(std::uint64_t id) noexcept {
  const auto it = awaiting_.find(id);
  return it == awaiting_.end() ? nullptr : &it->second;
}

outgoing exchanges::take(std::uint64_t id) {
  const auto it = awaiting_.find(id);
  outgoing out = std::move(it->second);
  awaiting_.erase(it);
  // A stream request is over once every message it carried has been answered (or taken back).
  const auto r = requests_.find(out.request);
  if (r != requests_.end() && r->second.stream && --r->second.remaining == 0) {
    release(r->first, r->second);
    requests_.erase(r);
  }
  return out;
}

void exchanges::answered(std::uint64_t number) noexcept {
  const auto it = requests_.find(number);
  if (it != requests_.end()) release(number, it->second);
}

std::vector<outgoing> exchanges::close(std::uint64_t number) {
  std::vector<outgoing> left;
  const auto it = requests_.find(number);
  if (it == requests_.end()) return left;
  for (const auto id : it->second.ids) {
    const auto a = awaiting_.find(id);
    if (a == awaiting_.end()) continue;
    left.push_back(std::move(a->second));
    awaiting_.erase(a);
  }
  release(number, it->second);
  requests_.erase(it);
  oldest_first(left);
  return left;
}

std::vector<outgoing> exchanges::close_all(connection_type t) {
  std::vector<std::uint64_t> numbers;
  for (const auto& [number, r] : requests_) {
    if (r.type == t) numbers.push_back(number);
  }
  std::vector<outgoing> left;
  for (const auto number : numbers) {
    auto some = close(number);
    left.insert(left.end(), std::make_move_iterator(some.begin()),
                std::make_move_iterator(some.end()));
  }
  oldest_first(left);
  return left;
}

std::vector<outgoing> exchanges::take_everything() {
  std::vector<outgoing> left;
  for (auto& [id, m] : awaiting_) left.push_back(std::move(m));
  awaiting_.clear();
  requests_.clear();
  std::fill(std::begin(slots_), std::end(slots_), 0);
  deadlines_ = {};
  oldest_first(left);
  return left;
}

std::optional<std::pair<clock::time_point, std::uint64_t>> exchanges::next_deadline() {
  while (!deadlines_.empty()) {
    const auto top = deadlines_.top();
    const auto it = requests_.find(top.second);
    if (it != requests_.end() && it->second.deadline == top.first) return top;
    deadlines_.pop();
  }
  return std::nullopt;
}

void exchanges::release(std::uint64_t number, const request& r) noexcept {
  if (r.holds != slot::none && slots_[static_cast<int>(r.holds)] == number) {
    slots_[static_cast<int>(r.holds)] = 0;
  }
}

}  // namespace uvcometd::detail
