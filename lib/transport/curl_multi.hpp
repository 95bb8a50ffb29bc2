// The CURLM every long-polling transport of one uv loop drives its transfers through: the
// canonical curl multi-socket wiring (one uv_timer for curl's timeout, one uv_poll per socket curl
// watches, poll errors handed back to curl), shared through loop_shared (a CURLM costs ~40 kB of
// hash tables, more than the rest of an idle client; connections and the DNS cache are pooled).
//
// Reentrancy: finished transfers are dispatched to their owners after libcurl returned, from uv
// callbacks only; an owner may then start, abort or close transfers of any user of the multi, or
// release it. While it dispatches, the multi is not torn down under its own feet: the last
// release tears it down once the dispatch returned. libcurl is never re-entered from one of its own
// callbacks.
#pragma once

#include <curl/curl.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "transport/loop_owned.hpp"
#include "transport/loop_shared.hpp"

namespace uvcometd::detail {

// Library policy: libcurl is initialised once per process, on first use, and never cleaned up
// (curl_global_cleanup is not safe while anything else in the process may still use libcurl).
void ensure_curl_global_init();

class curl_multi_user;

// What every easy handle's CURLOPT_PRIVATE points to: who is told when it finished.
struct curl_transfer {
  CURL* easy = nullptr;
  curl_multi_user* owner = nullptr;
};

// A user of the multi: one long-polling transport.
class curl_multi_user {
 public:
  // The transfer finished (the multi took its easy handle out already).
  virtual void transfer_done(curl_transfer& t, CURLcode result) = 0;
  // The multi is unusable: every transfer of this user failed with `msg`.
  virtual void multi_failed(const std::string& msg) = 0;
  virtual void log(std::string_view msg) const = 0;

 protected:
  ~curl_multi_user() = default;
};

class curl_multi final : public loop_owned<curl_multi> {
 public:
  struct any {  // one multi per loop, whatever the settings (they are per easy handle)
    bool operator==(const any&) const noexcept { return true; }
  };
  using shared = loop_shared<curl_multi, any>;
  static constexpr std::size_t capacity = std::numeric_limits<std::size_t>::max();

  // loop_shared's interface.
  static std::shared_ptr<curl_multi> create(uv_loop_t* loop, const any&);
  void tear_down(std::function<void()> closed);
  // loop_owned's: every uv handle of a torn-down multi is closed.
  void all_closed();

  explicit curl_multi(uv_loop_t* loop) : loop_(loop) {}
  ~curl_multi();

  CURLM* handle() const noexcept { return multi_; }
  // Set on every easy handle driven by this multi: it learns of each connection socket curl
  // opens and closes, so a socket's uv_poll_t lives as long as the socket, not one transfer
  // (no epoll_ctl per request on a kept-alive connection).
  void attach(CURL* easy) noexcept;
  // `u` is told of multi failures (from acquiring until it leaves).
  void join(curl_multi_user* u) { users_.push_back(u); }
  void leave(curl_multi_user* u);

 private:
  struct poll_ctx;

  void socket_action(curl_socket_t fd, int flags);
  void drain();
  void fail_all(const std::string& msg);
  void shut_down();
  void close_poll(poll_ctx* p);
  poll_ctx* find_poll(curl_socket_t fd) const noexcept;
  void forget_poll(curl_socket_t fd) noexcept;
  bool watch(poll_ctx* p) noexcept;
  bool is_connection(curl_socket_t fd) const noexcept;

  static int on_socket(CURL* easy, curl_socket_t fd, int what, void* userp, void* socketp);
  static int on_sockopt(void* clientp, curl_socket_t fd, curlsocktype purpose);
  static int on_close_socket(void* clientp, curl_socket_t fd);
  static int on_curl_timer_set(CURLM* multi, long timeout_ms, void* userp);
  static void on_poll(uv_poll_t* handle, int status, int events);
  static void on_curl_timeout(uv_timer_t* handle);

  uv_loop_t* loop_;
  CURLM* multi_ = nullptr;
  uv_timer_t curl_timer_{};  // CURLMOPT_TIMERFUNCTION
  std::vector<poll_ctx*> polls_;
  // The connection sockets curl opened (CURLOPT_SOCKOPTFUNCTION) and has not closed yet
  // (CURLOPT_CLOSESOCKETFUNCTION): only their watchers outlive a transfer. Other sockets (the
  // resolver's) are closed by curl without telling: theirs go when curl stops watching them.
  std::vector<curl_socket_t> sockets_;
  std::vector<curl_multi_user*> users_;
  std::function<void()> closed_;  // the last user's, once torn down
  int dispatching_ = 0;           // socket_action frames on the stack: no tear-down under them
  bool tearing_down_ = false;     // the last user left
  bool shut_down_ = false;        // curl_multi_cleanup ran
};

}  // namespace uvcometd::detail
