#include "fault_proxy.hpp"

#include <cassert>
#include <cstring>
#include <iterator>
#include <memory>
#include <new>
#include <stdexcept>
#include <utility>

#include <netinet/in.h>
#include <sys/socket.h>

namespace uvcometd::test {

namespace {

constexpr std::size_t read_buffer_size = 64 * 1024;
constexpr int client_side = 0;
constexpr int upstream_side = 1;

uv_handle_t* as_handle(uv_tcp_t* t) { return reinterpret_cast<uv_handle_t*>(t); }
uv_stream_t* as_stream(uv_tcp_t* t) { return reinterpret_cast<uv_stream_t*>(t); }

// Closes `t` with an RST: uv_tcp_close_reset, or (it refuses while a shutdown is pending, and
// fails without a socket) SO_LINGER {1, 0} by hand and a plain uv_close.
void reset_handle(uv_tcp_t* t, uv_close_cb cb) noexcept {
  if (uv_is_closing(as_handle(t))) return;
  if (uv_tcp_close_reset(t, cb) == 0) return;
  uv_os_fd_t fd;
  if (uv_fileno(as_handle(t), &fd) == 0) {
    struct linger l {};
    l.l_onoff = 1;
    l.l_linger = 0;
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  }
  uv_close(as_handle(t), cb);
}

}  // namespace

struct fault_proxy::listener {
  uv_tcp_t tcp{};
  fault_proxy* owner = nullptr;  // nullptr: closed on its own (failed to listen)
};

struct fault_proxy::conn_pair {
  struct side_t {
    uv_tcp_t tcp{};
    uv_shutdown_t shutdown{};
    bool inited = false;
    bool eof = false;            // EOF read from this side
    bool shutdown_sent = false;  // uv_shutdown issued on this side (the peer side sent EOF)
    bool shutdown_done = false;
  };

  fault_proxy* owner = nullptr;
  std::list<conn_pair>::iterator self;
  side_t side[2];  // client_side, upstream_side
  uv_connect_t connect{};
  bool connected = false;  // upstream connected
  bool closing = false;    // reset or closed: no more forwarding
  int open = 0;            // handles of this pair whose close callback has not run
  std::string pending;     // client bytes read before the upstream connected

  int side_of(const void* tcp) const noexcept { return tcp == &side[0].tcp ? 0 : 1; }
};

struct fault_proxy::write_req {
  uv_write_t req{};
  std::unique_ptr<char[]> data;
  std::size_t len = 0;
  int to = 0;
};

fault_proxy::fault_proxy(uv_loop_t* loop, int target_port)
    : loop_(loop), target_port_(target_port) {
  int r = listen_on(0);
  if (r != 0) {
    closing_ = true;
    throw std::runtime_error(std::string("fault_proxy: cannot listen on 127.0.0.1: ") +
                             uv_strerror(r));
  }
}

fault_proxy::~fault_proxy() {
  // close(done) and run the loop until done ran, first: the handles point back at this object.
  assert(closing_ && open_handles_ == 0 && pairs_.empty() && listener_ == nullptr);
}

std::string fault_proxy::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + path;
}

std::string fault_proxy::ws_url(const std::string& path) const {
  return "ws://127.0.0.1:" + std::to_string(port_) + path;
}

std::size_t fault_proxy::live_connections() const {
  std::size_t n = 0;
  for (const auto& p : pairs_) {
    if (!p.closing) ++n;
  }
  return n;
}

int fault_proxy::listen_on(int port) {
  auto* l = new listener;
  int r = uv_tcp_init(loop_, &l->tcp);
  if (r != 0) {
    delete l;
    return r;
  }
  l->tcp.data = l;
  sockaddr_in addr{};
  r = uv_ip4_addr("127.0.0.1", port, &addr);
  if (r == 0) r = uv_tcp_bind(&l->tcp, reinterpret_cast<const sockaddr*>(&addr), 0);
  if (r == 0) r = uv_listen(as_stream(&l->tcp), 128, &fault_proxy::connection_cb);
  if (r == 0 && port == 0) {
    sockaddr_storage name{};
    int len = sizeof(name);
    r = uv_tcp_getsockname(&l->tcp, reinterpret_cast<sockaddr*>(&name), &len);
    if (r == 0) port_ = ntohs(reinterpret_cast<sockaddr_in*>(&name)->sin_port);
  }
  if (r != 0) {
    l->owner = nullptr;  // closes on its own: this object may be gone before its callback
    uv_close(as_handle(&l->tcp), &fault_proxy::listener_close_cb);
    return r;
  }
  l->owner = this;
  ++open_handles_;
  listener_ = l;
  return 0;
}

void fault_proxy::stop_listening() {
  if (!listener_) return;
  uv_close(as_handle(&listener_->tcp), &fault_proxy::listener_close_cb);
  listener_ = nullptr;
}

int fault_proxy::start_listening() {
  if (listener_ || closing_) return 0;
  return listen_on(port_);
}

void fault_proxy::cut_all() {
  for (auto& p : pairs_) reset_pair(&p);
}

void fault_proxy::close(std::function<void()> done) {
  if (closing_) return;
  closing_ = true;
  done_ = std::move(done);
  stop_listening();
  for (auto& p : pairs_) close_pair(&p);
  if (open_handles_ == 0 && done_) {
    auto d = std::move(done_);
    done_ = nullptr;
    d();
  }
}

// --- callbacks --------------------------------------------------------------------------------

void fault_proxy::connection_cb(uv_stream_t* server, int status) noexcept {
  auto* l = static_cast<listener*>(server->data);
  if (l->owner) l->owner->on_connection(l, status);
}

void fault_proxy::on_connection(listener* l, int status) noexcept {
  if (status < 0 || closing_ || l != listener_) return;
  conn_pair* p = nullptr;
  try {
    pairs_.emplace_back();
  } catch (...) {
    return;  // left in the backlog
  }
  p = &pairs_.back();
  p->owner = this;
  p->self = std::prev(pairs_.end());

  auto& client = p->side[client_side];
  if (uv_tcp_init(loop_, &client.tcp) != 0) {
    pairs_.pop_back();
    return;
  }
  client.inited = true;
  client.tcp.data = p;
  ++p->open;
  ++open_handles_;
  if (uv_accept(as_stream(&l->tcp), as_stream(&client.tcp)) != 0) {
    close_pair(p);
    return;
  }
  ++accepted_;
  if (refuse_) {
    reset_pair(p);
    return;
  }
  uv_tcp_nodelay(&client.tcp, 1);

  auto& up = p->side[upstream_side];
  if (uv_tcp_init(loop_, &up.tcp) != 0) {
    reset_pair(p);
    return;
  }
  up.inited = true;
  up.tcp.data = p;
  ++p->open;
  ++open_handles_;
  sockaddr_in addr{};
  p->connect.data = p;
  if (uv_ip4_addr("127.0.0.1", target_port_, &addr) != 0 ||
      uv_tcp_connect(&p->connect, &up.tcp, reinterpret_cast<const sockaddr*>(&addr),
                     &fault_proxy::connect_cb) != 0 ||
      uv_read_start(as_stream(&client.tcp), &fault_proxy::alloc_cb, &fault_proxy::read_cb) != 0) {
    reset_pair(p);
  }
}

void fault_proxy::connect_cb(uv_connect_t* req, int status) noexcept {
  auto* p = static_cast<conn_pair*>(req->data);
  fault_proxy* self = p->owner;
  if (p->closing) return;  // includes UV_ECANCELED
  if (status < 0) {        // target down: the client gets an RST
    self->reset_pair(p);
    return;
  }
  p->connected = true;
  auto& up = p->side[upstream_side];
  uv_tcp_nodelay(&up.tcp, 1);
  if (uv_read_start(as_stream(&up.tcp), &fault_proxy::alloc_cb, &fault_proxy::read_cb) != 0) {
    self->reset_pair(p);
    return;
  }
  if (!p->pending.empty()) {
    char* data = new (std::nothrow) char[p->pending.size()];
    if (!data) {
      self->reset_pair(p);
      return;
    }
    std::memcpy(data, p->pending.data(), p->pending.size());
    std::size_t len = p->pending.size();
    std::string().swap(p->pending);
    if (!self->write_to(p, upstream_side, data, len)) return;
  }
  if (p->side[client_side].eof) self->shutdown_side(p, upstream_side);
}

void fault_proxy::alloc_cb(uv_handle_t*, std::size_t, uv_buf_t* buf) noexcept {
  char* base = new (std::nothrow) char[read_buffer_size];
  *buf = uv_buf_init(base, base ? static_cast<unsigned>(read_buffer_size) : 0);  // 0: UV_ENOBUFS
}

void fault_proxy::read_cb(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept {
  auto* p = static_cast<conn_pair*>(s->data);
  fault_proxy* self = p->owner;
  int from = p->side_of(s);
  if (nread > 0 && !p->closing) {
    self->forward(p, from, buf->base, static_cast<std::size_t>(nread));  // takes the buffer
    return;
  }
  delete[] buf->base;
  if (nread == 0 || p->closing) return;
  if (nread == UV_EOF) {
    p->side[from].eof = true;
    self->shutdown_side(p, 1 - from);  // after the bytes queued for the other side
  } else {
    self->reset_pair(p);  // ECONNRESET and friends: propagate as an RST
  }
}

void fault_proxy::forward(conn_pair* p, int from, char* data, std::size_t len) noexcept {
  if (blackhole_) {
    swallowed_ += len;
    delete[] data;
    return;
  }
  if (from == client_side && !p->connected) {
    try {
      p->pending.append(data, len);
    } catch (...) {
      reset_pair(p);
    }
    delete[] data;
    return;
  }
  write_to(p, 1 - from, data, len);
}

bool fault_proxy::write_to(conn_pair* p, int to, char* data, std::size_t len) noexcept {
  auto* w = new (std::nothrow) write_req;
  if (!w) {
    delete[] data;
    reset_pair(p);
    return false;
  }
  w->data.reset(data);
  w->len = len;
  w->to = to;
  w->req.data = w;
  uv_buf_t buf = uv_buf_init(data, static_cast<unsigned>(len));
  if (uv_write(&w->req, as_stream(&p->side[to].tcp), &buf, 1, &fault_proxy::write_cb) != 0) {
    delete w;
    reset_pair(p);
    return false;
  }
  return true;
}

void fault_proxy::write_cb(uv_write_t* req, int status) noexcept {
  std::unique_ptr<write_req> w(static_cast<write_req*>(req->data));
  auto* p = static_cast<conn_pair*>(req->handle->data);
  if (status == 0) {
    (w->to == upstream_side ? p->owner->bytes_up_ : p->owner->bytes_down_) += w->len;
  } else if (!p->closing) {
    p->owner->reset_pair(p);
  }
}

void fault_proxy::shutdown_side(conn_pair* p, int side) noexcept {
  auto& s = p->side[side];
  if (p->closing || s.shutdown_sent) return;
  if (side == upstream_side && !p->connected) return;  // connect_cb does it
  s.shutdown_sent = true;
  s.shutdown.data = p;
  if (uv_shutdown(&s.shutdown, as_stream(&s.tcp), &fault_proxy::shutdown_cb) != 0) reset_pair(p);
}

void fault_proxy::shutdown_cb(uv_shutdown_t* req, int status) noexcept {
  auto* p = static_cast<conn_pair*>(req->data);
  if (p->closing) return;  // includes UV_ECANCELED
  if (status < 0) {
    p->owner->reset_pair(p);
    return;
  }
  int side = req == &p->side[0].shutdown ? 0 : 1;
  p->side[side].shutdown_done = true;
  if (p->side[0].shutdown_done && p->side[1].shutdown_done) p->owner->close_pair(p);
}

void fault_proxy::reset_pair(conn_pair* p) noexcept {
  if (p->closing) return;
  p->closing = true;
  std::string().swap(p->pending);
  for (auto& s : p->side) {
    if (s.inited) reset_handle(&s.tcp, &fault_proxy::pair_close_cb);
  }
}

void fault_proxy::close_pair(conn_pair* p) noexcept {
  if (p->closing) return;
  p->closing = true;
  std::string().swap(p->pending);
  for (auto& s : p->side) {
    if (s.inited && !uv_is_closing(as_handle(&s.tcp))) {
      uv_close(as_handle(&s.tcp), &fault_proxy::pair_close_cb);
    }
  }
}

void fault_proxy::pair_close_cb(uv_handle_t* h) noexcept {
  auto* p = static_cast<conn_pair*>(h->data);
  fault_proxy* self = p->owner;
  if (--p->open == 0) self->pairs_.erase(p->self);
  self->handle_closed();
}

void fault_proxy::listener_close_cb(uv_handle_t* h) noexcept {
  auto* l = static_cast<listener*>(h->data);
  fault_proxy* owner = l->owner;
  delete l;
  if (owner) owner->handle_closed();
}

void fault_proxy::handle_closed() noexcept {
  --open_handles_;
  if (closing_ && open_handles_ == 0 && done_) {
    auto d = std::move(done_);
    done_ = nullptr;
    d();  // may destroy this object: nothing after
  }
}

}  // namespace uvcometd::test
