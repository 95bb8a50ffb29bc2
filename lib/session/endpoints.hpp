// The servers a client may use and which one is current: the small policy the session asks
// "where next?" (issue 14). Pure: no clock of its own, no I/O.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace uvcometd::detail {

class endpoint_list {
 public:
  // `urls`: the configured servers, in order of preference (at least one).
  explicit endpoint_list(std::vector<std::string> urls);

  const std::string& current() const noexcept { return urls_[current_]; }
  std::size_t index() const noexcept { return current_; }
  std::size_t size() const noexcept { return urls_.size(); }
  const std::vector<std::string>& all() const noexcept { return urls_; }

  // A failure on the current server. True when the session should move on: the retry on it
  // failed too (two failures in a row there), and there is somewhere else to go.
  bool failed() noexcept;
  // Moves to the next server (round robin). True when every server has been tried since the
  // last success: a full round is over, the backoff applies before the next.
  bool advance() noexcept;
  // A connect the server held succeeded on the current server.
  void succeeded() noexcept;

  // A server's advice.hosts (URLs, or host[:port] taken with the current URL's scheme and path):
  // merged into the list for the session's lifetime, and remembered for the next re-handshake.
  void advise(const std::vector<std::string>& hosts);
  // A re-handshake is due: when advice.hosts does not name the current server, its first host
  // becomes current (the Bayeux spec: try them in order). True when the server changed.
  bool rehandshake() noexcept;

  // Goes back to the first server (failback). True when it was elsewhere.
  bool go_first() noexcept;

 private:
  std::size_t find(std::string_view url) const noexcept;

  std::vector<std::string> urls_;
  std::size_t current_ = 0;
  unsigned fails_here_ = 0;  // consecutive failures on the current server
  std::size_t tried_ = 1;    // servers tried since the last success, the current one included
  std::vector<std::size_t> advised_;  // advice.hosts, as indexes into urls_, in order
};

// advice.hosts' entry `host` as a URL: itself when it is one, else "host[:port]" with the scheme
// and path of `like`. Empty when it cannot be made one.
std::string host_url(std::string_view host, std::string_view like);

}  // namespace uvcometd::detail
