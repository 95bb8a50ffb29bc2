#include "transport/curl_multi.hpp"

#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <new>

namespace uvcometd::detail {

void ensure_curl_global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// A uv_poll_t for one socket curl told us about; freed in its close callback.
struct curl_multi::poll_ctx {
  uv_poll_t poll{};
  curl_socket_t fd = CURL_SOCKET_BAD;
  int events = 0;    // what curl wants now (UV_READABLE / UV_WRITABLE); 0: not watched by curl
  int watching = 0;  // what the uv_poll_t was started with (0: stopped)
  curl_multi* owner = nullptr;
};

std::shared_ptr<curl_multi> curl_multi::create(uv_loop_t* loop, const any&) {
  ensure_curl_global_init();
  auto m = std::make_shared<curl_multi>(loop);
  m->multi_ = curl_multi_init();
  if (!m->multi_) return nullptr;
  curl_multi_setopt(m->multi_, CURLMOPT_SOCKETFUNCTION, &curl_multi::on_socket);
  curl_multi_setopt(m->multi_, CURLMOPT_SOCKETDATA, m.get());
  curl_multi_setopt(m->multi_, CURLMOPT_TIMERFUNCTION, &curl_multi::on_curl_timer_set);
  curl_multi_setopt(m->multi_, CURLMOPT_TIMERDATA, m.get());
  // A held /meta/connect occupies one connection; others must not queue behind it.
  curl_multi_setopt(m->multi_, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
  uv_timer_init(loop, &m->curl_timer_);
  m->curl_timer_.data = m.get();
  m->opened();
  return m;
}

curl_multi::~curl_multi() {
  if (multi_) curl_multi_cleanup(multi_);  // only when create() failed half-way
}

void curl_multi::leave(curl_multi_user* u) {
  users_.erase(std::remove(users_.begin(), users_.end(), u), users_.end());
}

void curl_multi::tear_down(std::function<void()> closed) {
  tearing_down_ = true;
  closed_ = std::move(closed);
  if (dispatching_ == 0) shut_down();  // else socket_action() does, once the dispatch returned
}

void curl_multi::shut_down() {
  shut_down_ = true;
  // Every user took its easy handles out already; this closes the pooled connections, telling
  // on_socket CURL_POLL_REMOVE for each of their sockets.
  curl_multi_cleanup(multi_);
  multi_ = nullptr;
  for (poll_ctx* p : polls_) close_poll(p);  // whatever curl did not remove (defensive)
  polls_.clear();
  uv_timer_stop(&curl_timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&curl_timer_),
           [](uv_handle_t* h) { static_cast<curl_multi*>(h->data)->closed_one(); });
}

void curl_multi::all_closed() {
  // Runs the last user's completion; the multi is freed when this returns.
  if (auto closed = std::move(closed_)) closed();
}

void curl_multi::close_poll(poll_ctx* p) {
  if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&p->poll))) return;
  uv_poll_stop(&p->poll);  // before curl closes the fd
  uv_close(reinterpret_cast<uv_handle_t*>(&p->poll), [](uv_handle_t* h) {
    auto* pc = static_cast<poll_ctx*>(h->data);
    curl_multi* owner = pc->owner;
    delete pc;
    owner->closed_one();
  });
}

void curl_multi::attach(CURL* easy) noexcept {
  curl_easy_setopt(easy, CURLOPT_SOCKOPTFUNCTION, &curl_multi::on_sockopt);
  curl_easy_setopt(easy, CURLOPT_SOCKOPTDATA, static_cast<void*>(this));
  curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, &curl_multi::on_close_socket);
  curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, static_cast<void*>(this));
}

curl_multi::poll_ctx* curl_multi::find_poll(curl_socket_t fd) const noexcept {
  for (poll_ctx* p : polls_) {
    if (p->fd == fd) return p;
  }
  return nullptr;
}

// The socket `fd` is closed (or its number is new): its watcher, if any, goes first.
void curl_multi::forget_poll(curl_socket_t fd) noexcept {
  if (poll_ctx* p = find_poll(fd)) {
    polls_.erase(std::remove(polls_.begin(), polls_.end(), p), polls_.end());
    close_poll(p);
  }
}

bool curl_multi::is_connection(curl_socket_t fd) const noexcept {
  return std::find(sockets_.begin(), sockets_.end(), fd) != sockets_.end();
}

// Watches as curl wants. Unchanged interest costs nothing (uv_poll_start would stop and start
// the poll again: an epoll_ctl each). A connection curl stopped watching between two requests
// keeps its interest until it fires (on_poll stops it then) or the next request takes it over.
bool curl_multi::watch(poll_ctx* p) noexcept {
  if (p->events == p->watching && uv_is_active(reinterpret_cast<uv_handle_t*>(&p->poll)))
    return true;
  if (uv_poll_start(&p->poll, p->events, &curl_multi::on_poll) != 0) return false;
  p->watching = p->events;
  return true;
}

// --- libcurl callbacks: no libcurl calls (but curl_multi_assign), no user code, no exceptions ---

int curl_multi::on_sockopt(void* clientp, curl_socket_t fd, curlsocktype /*purpose*/) {
  auto* self = static_cast<curl_multi*>(clientp);
  self->forget_poll(fd);  // a watcher left over from an earlier socket with this number
  try {
    self->sockets_.push_back(fd);
  } catch (...) {
    return CURL_SOCKOPT_ERROR;
  }
  return CURL_SOCKOPT_OK;
}

int curl_multi::on_close_socket(void* clientp, curl_socket_t fd) {
  auto* self = static_cast<curl_multi*>(clientp);
  self->forget_poll(fd);  // out of epoll before the number can be reused
  self->sockets_.erase(std::remove(self->sockets_.begin(), self->sockets_.end(), fd),
                       self->sockets_.end());
  return ::close(fd);
}

int curl_multi::on_socket(CURL* /*easy*/, curl_socket_t fd, int what, void* userp, void* socketp) {
  auto* self = static_cast<curl_multi*>(userp);
  auto* p = static_cast<poll_ctx*>(socketp);
  if (what == CURL_POLL_REMOVE) {
    if (!p) p = self->find_poll(fd);
    if (p) {
      // Not while curl_multi_cleanup runs: the multi is half torn down then.
      if (!self->shut_down_) curl_multi_assign(self->multi_, fd, nullptr);
      p->events = 0;
      if (self->shut_down_ || !self->is_connection(fd)) {
        self->polls_.erase(std::remove(self->polls_.begin(), self->polls_.end(), p),
                           self->polls_.end());
        self->close_poll(p);
      }
      // A connection's watcher stays until the socket closes (on_close_socket) or fires idle.
    }
    return 0;
  }
  if (self->shut_down_) return 0;   // start nothing new
  if (!p) p = self->find_poll(fd);  // a kept-alive connection taken up again
  if (!p) {
    p = new (std::nothrow) poll_ctx;
    if (!p) return -1;
    p->fd = fd;
    p->owner = self;
    p->poll.data = p;
    if (uv_poll_init_socket(self->loop_, &p->poll, fd) != 0) {
      delete p;
      return -1;  // aborts the transfers; they complete with an error
    }
    self->opened();
    try {
      self->polls_.push_back(p);
    } catch (...) {
      self->close_poll(p);
      return -1;
    }
  }
  curl_multi_assign(self->multi_, fd, p);
  p->events = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) p->events |= UV_READABLE;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) p->events |= UV_WRITABLE;
  return self->watch(p) ? 0 : -1;
}

int curl_multi::on_curl_timer_set(CURLM* /*multi*/, long timeout_ms, void* userp) {
  auto* self = static_cast<curl_multi*>(userp);
  if (self->shut_down_) return 0;
  if (timeout_ms < 0) {
    uv_timer_stop(&self->curl_timer_);
  } else {
    uv_timer_start(&self->curl_timer_, &curl_multi::on_curl_timeout,
                   static_cast<std::uint64_t>(timeout_ms), 0);
  }
  return 0;
}

// --- uv callbacks: drive libcurl, then dispatch to the users ---

void curl_multi::on_poll(uv_poll_t* handle, int status, int events) {
  auto* p = static_cast<poll_ctx*>(handle->data);
  if (p->events == 0) {
    // An idle kept-alive connection became readable (the server closed it, say): stop watching
    // it; curl finds out when it next tries the connection.
    uv_poll_stop(&p->poll);
    p->watching = 0;
    return;
  }
  int flags = 0;
  if (status < 0) {
    flags = CURL_CSELECT_ERR;  // libuv stopped the poll; let curl fail or retry the socket
  } else {
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  }
  p->owner->socket_action(p->fd, flags);
  // libuv stopped this poll on the error. curl only calls the socket callback when its wishes
  // change, so if it kept the socket as it was, watch it again rather than stall until the
  // deadline. (The poll_ctx and the multi are freed in close callbacks, never before this returns.)
  if (status < 0 && p->events != 0 && !uv_is_closing(reinterpret_cast<uv_handle_t*>(handle)) &&
      !uv_is_active(reinterpret_cast<uv_handle_t*>(handle))) {
    if (uv_poll_start(&p->poll, p->events, &curl_multi::on_poll) == 0) p->watching = p->events;
  }
}

void curl_multi::on_curl_timeout(uv_timer_t* handle) {
  static_cast<curl_multi*>(handle->data)->socket_action(CURL_SOCKET_TIMEOUT, 0);
}

void curl_multi::socket_action(curl_socket_t fd, int flags) {
  if (shut_down_) return;
  ++dispatching_;  // a handler's release() leaves the tear-down to the end of this frame
  try {
    int running = 0;
    const CURLMcode rc = curl_multi_socket_action(multi_, fd, flags, &running);
    if (rc != CURLM_OK) {
      // The multi handle is unusable: fail everything in flight, of every user.
      fail_all(std::string("libcurl: ") + curl_multi_strerror(rc));
    } else {
      drain();
    }
  } catch (...) {
    if (!users_.empty())
      users_.front()->log("long-polling: unexpected exception while driving libcurl");
  }
  if (--dispatching_ == 0 && tearing_down_ && !shut_down_) shut_down();
}

void curl_multi::drain() {
  CURLMsg* msg = nullptr;
  int left = 0;
  while (!tearing_down_ && (msg = curl_multi_info_read(multi_, &left)) != nullptr) {
    if (msg->msg != CURLMSG_DONE) continue;
    // The message dies with curl_multi_remove_handle: copy it first.
    CURL* easy = msg->easy_handle;
    const CURLcode result = msg->data.result;
    char* priv = nullptr;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
    curl_multi_remove_handle(multi_, easy);
    // Every easy handle in the multi belongs to a live user, which takes its handles out (and
    // curl their messages with them) before it leaves. Its receiver may close or destroy any
    // transport; the next message is looked up afresh.
    if (auto* t = reinterpret_cast<curl_transfer*>(priv)) t->owner->transfer_done(*t, result);
  }
}

void curl_multi::fail_all(const std::string& msg) {
  const std::vector<curl_multi_user*> users = users_;  // a receiver may close any of them
  for (curl_multi_user* u : users) {
    if (std::find(users_.begin(), users_.end(), u) != users_.end()) u->multi_failed(msg);
  }
}

}  // namespace uvcometd::detail
