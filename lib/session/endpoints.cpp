#include "session/endpoints.hpp"

#include <algorithm>

#include "url.hpp"

namespace uvcometd::detail {

endpoint_list::endpoint_list(std::vector<std::string> urls) : urls_(std::move(urls)) {
  if (urls_.empty()) urls_.emplace_back();
}

std::size_t endpoint_list::find(std::string_view url) const noexcept {
  const auto it = std::find(urls_.begin(), urls_.end(), url);
  return it == urls_.end() ? urls_.size() : static_cast<std::size_t>(it - urls_.begin());
}

bool endpoint_list::failed() noexcept { return ++fails_here_ >= 2 && urls_.size() > 1; }

bool endpoint_list::advance() noexcept {
  current_ = (current_ + 1) % urls_.size();
  fails_here_ = 0;
  if (++tried_ > urls_.size()) {
    tried_ = 1;
    return true;
  }
  return false;
}

void endpoint_list::succeeded() noexcept {
  fails_here_ = 0;
  tried_ = 1;
}

void endpoint_list::advise(const std::vector<std::string>& hosts) {
  std::vector<std::size_t> order;
  for (const auto& h : hosts) {
    const std::string url = host_url(h, current());
    if (url.empty()) continue;
    std::size_t i = find(url);
    if (i == urls_.size()) urls_.push_back(url);
    if (std::find(order.begin(), order.end(), i) == order.end()) order.push_back(i);
  }
  // Advice received later supersedes what came before.
  advised_ = std::move(order);
}

bool endpoint_list::rehandshake() noexcept {
  if (advised_.empty() || std::find(advised_.begin(), advised_.end(), current_) != advised_.end()) {
    return false;
  }
  current_ = advised_.front();
  fails_here_ = 0;
  return true;
}

bool endpoint_list::go_first() noexcept {
  if (current_ == 0) return false;
  current_ = 0;
  fails_here_ = 0;
  return true;
}

std::string host_url(std::string_view host, std::string_view like) {
  std::string why;
  if (host.rfind("http://", 0) == 0 || host.rfind("https://", 0) == 0) {
    return parse_server_url(host, why) ? std::string(host) : std::string();
  }
  const auto base = parse_server_url(like, why);
  // A bare host[:port]: anything with a path or another scheme is not one.
  if (!base || host.empty() || host.find_first_of("/?#@") != std::string_view::npos) return {};
  std::string url = (base->secure ? "https://" : "http://") + std::string(host) + base->path;
  return parse_server_url(url, why) ? url : std::string();
}

}  // namespace uvcometd::detail
