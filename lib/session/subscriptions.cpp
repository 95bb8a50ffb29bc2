#include "session/subscriptions.hpp"

#include <algorithm>

#include "channel.hpp"

namespace uvcometd::detail {

sub_ptr subscription_table::add(std::string_view pattern, handler_fn handler, std::string_view ext,
                                bool& server_has_it) {
  auto sub = std::make_shared<local_sub>();
  sub->id = ++last_id_;
  sub->pattern = std::string(pattern);
  sub->handler = std::move(handler);
  auto [it, inserted] = patterns_.try_emplace(sub->pattern);
  if (inserted && is_wildcard(pattern)) ++wildcards_;
  if (it->second.ext.empty()) it->second.ext = std::string(ext);
  server_has_it = it->second.server_subscribed && !it->second.in_flight;
  it->second.subs.push_back(sub);
  subs_.emplace(sub->id, sub);
  return sub;
}

sub_ptr subscription_table::remove(std::uint64_t id) {
  const auto it = subs_.find(id);
  if (it == subs_.end()) return nullptr;
  sub_ptr sub = it->second;
  subs_.erase(it);
  sub->alive = false;
  if (auto* p = find(sub->pattern)) {
    auto& v = p->subs;
    v.erase(std::remove(v.begin(), v.end(), sub), v.end());
  }
  return sub;
}

void subscription_table::drop(const sub_ptr& sub) {
  sub->alive = false;
  subs_.erase(sub->id);
  if (auto* p = find(sub->pattern)) {
    auto& v = p->subs;
    v.erase(std::remove(v.begin(), v.end(), sub), v.end());
  }
}

subscription_table::action subscription_table::reconcile(const std::string& pattern,
                                                         std::vector<completion_fn>& waiters) {
  const auto it = patterns_.find(pattern);
  if (it == patterns_.end()) return action::none;
  pattern_state& e = it->second;
  if (e.in_flight) return action::none;
  if (!e.subs.empty() && !e.server_subscribed) {
    e.in_flight = true;
    return action::subscribe;
  }
  if (e.subs.empty() && e.server_subscribed) {
    e.in_flight = true;
    return action::unsubscribe;
  }
  if (!e.subs.empty()) return action::none;
  waiters = std::move(e.unsub_waiters);
  if (is_wildcard(pattern) && wildcards_ > 0) --wildcards_;
  patterns_.erase(it);
  return action::forgotten;
}

std::vector<std::string> subscription_table::patterns() const {
  std::vector<std::string> out;
  out.reserve(patterns_.size());
  for (const auto& p : patterns_) out.push_back(p.first);
  return out;
}

subscription_table::pattern_state* subscription_table::find(const std::string& pattern) noexcept {
  const auto it = patterns_.find(pattern);
  return it == patterns_.end() ? nullptr : &it->second;
}

void subscription_table::server_forgot_all() noexcept {
  for (auto& [pattern, e] : patterns_) {
    e.server_subscribed = false;
    e.in_flight = false;
  }
}

void subscription_table::collect(std::string_view channel, std::vector<sub_ptr>& out) {
  out.clear();
  const auto add = [&](std::string_view pattern) {
    scratch_key_.assign(pattern.data(), pattern.size());
    const auto it = patterns_.find(scratch_key_);
    if (it == patterns_.end()) return;
    out.insert(out.end(), it->second.subs.begin(), it->second.subs.end());
  };
  if (wildcards_ == 0) {
    add(channel);
    return;
  }
  for_each_matching_pattern(channel, scratch_, add);
}

std::unordered_map<std::string, subscription_table::pattern_state>
subscription_table::take_all() noexcept {
  auto all = std::move(patterns_);
  patterns_.clear();
  subs_.clear();
  wildcards_ = 0;
  return all;
}

}  // namespace uvcometd::detail
