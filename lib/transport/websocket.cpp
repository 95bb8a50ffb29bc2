// Websocket transport: libwebsockets 4.1 driven by the application's libuv loop (foreign loop).
//
// - lws carries every connection (socket, loop integration) as a "RAW" client connection; the
//   rest is uvcometd's: the websocket protocol on top of it (the upgrade, framing, masking,
//   ping/pong, close) is ws_protocol.*, TLS for wss:// is OpenSSL over memory BIOs
//   (tls_client.*), and a proxy tunnel is a CONNECT request of ours. So ws://, wss:// and both
//   through a proxy read frames the same way: a frame's payload with one append (lws 4.1's own
//   websocket role parses every byte through a per-byte state machine, 87% of a firehose
//   client's CPU), an oversized frame refused by the length its header announces, a masked server
//   frame refused. lws's own TLS is not used: 4.1 built without its async DNS (as Debian builds
//   it) starts TLS on a RAW client connection before the socket is connected ("tls start fail"),
//   and its certificate errors reach the callback as opaque text.
// - Stages of a connection: name resolution (uv_getaddrinfo), TCP connect (to the proxy when
//   `http_proxy` names one, `no_proxy` permitting), the proxy's CONNECT answer, the TLS
//   handshake (wss), the upgrade request and its 101, then frames. connect_timeout bounds all
//   of them. A certificate the client refuses ends the attempt with errc::certificate_error,
//   naming the cause. The upgrade does not follow redirects: a 3xx is a refused upgrade.
// - Reading stops while the receive is paused, while bytes read earlier still wait to
//   be parsed, and while lws holds part of a frame the socket did not take (lws 4.1's RAW role
//   would otherwise spin on a readable socket it refuses to read until the write drains).
// - The transports of one uv loop share lws contexts (`ws_context`): one per set of context
//   settings (TLS and its ca_file: one SSL_CTX per context; receive buffer size, lws timeouts),
//   carrying up to users_per_context transports (creating a context costs ~1.3 ms of CPU in lws
//   4.1, which scans the library directory for its libuv plugin, plus its buffer and fd tables;
//   an SSL_CTX loads the trust store). A transport takes
//   its reference on its first send(), so a client that never uses websocket pays nothing but
//   three idle uv timers; the last transport's close destroys the context and completes once lws
//   let go of the loop. lws_service() is never called: lws adds its own uv handles to the loop.
// - Frames queue in `out_` and leave one per RAW_WRITEABLE, masked in place. Incoming messages
//   are reassembled from fragments and refused by the length a frame announces when they would
//   exceed max_message_size. Server pings are answered; a server close is echoed.
// - pause_receive stops lws reading (rx flow control); bytes already read are kept, unparsed,
//   until the receive resumes, so no message is delivered while paused. On wss what lws read is
//   decrypted at once (OpenSSL keeps nothing back) and the plaintext is what is held.
// - Events are delivered straight from lws/uv callbacks, except while one of our own entry points
//   (send, abort, close, pause_receive) is on the stack: lws can report a connection error from
//   inside lws_client_connect_via_info, so those go through a 0 ms timer, and so does everything
//   after them (order is kept).
// - Each connection attempt gets an id from its context, stored as the wsi's opaque user data;
//   the context routes a wsi's callbacks to the core whose current connection that id is.
//   Callbacks of a wsi that is no core's current connection (aborted, timed out, its transport
//   closed or gone) reach no core and close it.
// - Ping: lws 4.1 dropped ws_ping_pong_interval; its replacement (the retry/idle "validity"
//   policy) hangs up without telling why. So the transport pings on its own uv timer
//   (websocket_tuning::ping_interval, 15 s) and turns lws's validity checks off; no pong or data
//   for two intervals is reported as errc::timeout.
// - Host names are resolved with uv_getaddrinfo (Debian's lws 4.1 has no async DNS and would
//   block the loop in getaddrinfo); lws gets the first address, the Host header keeps the name.
// - lws logging is process-global in 4.1 (lws_set_log_level); see quiet_lws_logging().
#include "transport/websocket_core.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "transport/http_text.hpp"

namespace uvcometd::detail {

websocket_core::websocket_core(uv_loop_t* loop, transport_config config, transport_events& events,
                               const websocket_tuning& tuning)
    : loop_(loop), config_(std::move(config)), events_(&events), tuning_(tuning) {
  endpoint_ = parse_endpoint(config_.url, endpoint_error_);
  for (const auto& line : config_.headers) {
    const auto colon = line.find(':');
    const std::string_view name = colon == std::string::npos
                                      ? std::string_view{}
                                      : trim_ows(std::string_view(line).substr(0, colon));
    if (name.empty() || has_ctl(line) || name.find(' ') != std::string_view::npos) {
      log(log_level::warning, "websocket: ignoring malformed header '" + line + "'");
      continue;
    }
    headers_.emplace_back(std::string(name),
                          std::string(trim_ows(std::string_view(line).substr(colon + 1))));
  }
  for (uv_timer_t* t : {&defer_timer_, &connect_timer_, &ping_timer_}) {
    uv_timer_init(loop_, t);
    t->data = this;
    ++open_handles_;
  }
}

void websocket_core::log(log_level level, std::string_view msg) const {
  if (!config_.log) return;
  try {
    config_.log(level, msg);
  } catch (...) {
    // A throwing log sink must not break the transport.
  }
}

// ---- entry points -------------------------------------------------------------------------------

void websocket_core::set_headers(const header_list& headers) {
  headers_.clear();
  for (const auto& [name, value] : headers) {
    if (name.empty() || has_ctl(name) || has_ctl(value) || name.find_first_of(" \t:") != std::string::npos) {
      log(log_level::warning, "websocket: ignoring malformed header '" + name + "'");
      continue;
    }
    headers_.emplace_back(name, value);
  }
}

void websocket_core::send(std::uint64_t request, std::string body, bool alone) {
  api_scope scope(*this);
  if (phase_ != phase::open) return;
  const bool mergeable = !alone && body.size() > 2 && body.front() == '[' && body.back() == ']';
  // Merged frames stay bounded, so the server starts on one while the next is being written.
  if (mergeable && last_mergeable_ && !out_.empty() &&
      out_.back().bytes.size() + body.size() <= tuning_.max_merged_frame) {
    // Not written yet: "[a,b]" + "[c]" leave together as "[a,b,c]".
    out_frame& last = out_.back();
    last.bytes.back() = ',';  // frames are masked when written, so still plain text here
    last.bytes.append(body, 1, std::string::npos);
    last.requests.push_back(request);
    return;  // a write is already requested for the queued frame
  }
  last_mergeable_ = mergeable;
  std::string frame;
  frame.reserve(frame_headroom + body.size());
  frame.append(frame_headroom, '\0');
  frame.append(body);
  out_.push_back(out_frame{std::move(frame), {request}});
  if (conn_ == 0) {
    open_connection();
  } else if (up_ && wsi_) {
    lws_callback_on_writable(wsi_);
  }
}

void websocket_core::abort() {
  api_scope scope(*this);
  if (phase_ != phase::open) return;
  deferred_.clear();
  drop_connection();
}

void websocket_core::pause_receive(bool paused) {
  api_scope scope(*this);
  if (phase_ != phase::open || paused == paused_) return;
  paused_ = paused;
  last_rx_ms_ = uv_now(loop_);  // no pong can arrive while paused: restart the dead-peer clock
  if (!up_ || !wsi_) return;    // applied when the next connection is established
  // What was read while paused is parsed first, after this call returns (order is kept behind
  // any deferred event); reading resumes once it is.
  if (!paused && !held_rx_.empty() && !held_queued_) {
    held_queued_ = true;
    deferred_.push_back({event::kind::held, {}, {}, false, {}});
    uv_timer_start(&defer_timer_, &websocket_core::on_defer_timer, 0, 0);
  }
  update_reading();
}

void websocket_core::close(std::function<void()> done) {
  api_scope scope(*this);
  if (phase_ == phase::closed) return;  // every handle is closed: nothing could run `done`
  if (done) done_.push_back(std::move(done));
  if (phase_ == phase::closing) return;
  phase_ = phase::closing;
  events_ = nullptr;
  deferred_.clear();
  // Other transports may go on using the context: end this one's connection only (a kill, or,
  // when its own lws callback is on the stack, that callback's -1), and route nothing more here.
  drop_connection();
  if (shared_) {
    // The last user's close also waits for the context to let go of the loop, so that
    // uv_loop_close() succeeds once the last `done` ran.
    if (shared_->release(this)) ++open_handles_;
    shared_ = nullptr;
  }
  for (uv_timer_t* t : {&defer_timer_, &connect_timer_, &ping_timer_}) {
    uv_timer_stop(t);
    uv_close(reinterpret_cast<uv_handle_t*>(t), &websocket_core::on_handle_closed);
  }
}

void websocket_core::detach() {
  detached_ = true;
  events_ = nullptr;
  if (phase_ == phase::open) {
    close(nullptr);
  } else if (phase_ == phase::closed && !in_final_) {
    delete this;
  }
}

// ---- connection ---------------------------------------------------------------------------------

bool websocket_core::acquire_context() {
  context_settings settings;
  settings.tls = endpoint_ && endpoint_->tls;
  if (settings.tls) settings.ca_file = config_.ca_file;  // nothing else reads it
  settings.buffer_size = static_cast<unsigned>(
      std::clamp<std::size_t>(tuning_.rx_chunk_size, min_read_size, 1u << 24));
  // lws has connect/handshake timeouts of its own (20 s); keep them behind ours.
  const auto connect_s = static_cast<unsigned>(
      std::clamp<long long>(config_.connect_timeout.count() / 1000 + 5, 0, 86400));
  settings.timeout_s = std::max(20u, connect_s);
  shared_ = ws_context::acquire(loop_, settings, this);
  if (!shared_) {
    log(log_level::error,
        "websocket: lws_create_context failed (is the libwebsockets libuv plugin installed?)");
    return false;
  }
  lws_timeout_s_ = static_cast<int>(settings.timeout_s);
  // The environment is read once, with the context, as lws used to.
  const char* proxy = std::getenv("http_proxy");
  const char* no_proxy = std::getenv("no_proxy");
  if (proxy && *proxy && endpoint_ &&
      !(no_proxy && proxy_exempt(no_proxy, endpoint_->address))) {
    proxy_ = parse_proxy(proxy, proxy_auth_, proxy_error_);
  }
  return true;
}

void websocket_core::open_connection() {
  if (!endpoint_) {
    out_.clear();
    emit({event::kind::down,
          {},
          make_error(errc::transport_error, "websocket: " + endpoint_error_),
          false,
          {}});
    return;
  }
  if (!shared_ && !acquire_context()) {
    out_.clear();
    emit({event::kind::down,
          {},
          make_error(errc::transport_error, "websocket: could not create the lws context"),
          false,
          {}});
    return;
  }
  if (!proxy_error_.empty()) {
    out_.clear();
    emit({event::kind::down, {}, make_error(errc::transport_error, "websocket: " + proxy_error_),
          false, {}});
    return;
  }
  const std::uint64_t id = shared_->route(this);  // forgotten by drop_connection()
  conn_ = id;
  clear_connection_state();
  if (config_.connect_timeout.count() > 0) {
    uv_timer_start(&connect_timer_, &websocket_core::on_connect_timer,
                   static_cast<std::uint64_t>(config_.connect_timeout.count()), 0);
  }

  const ws_endpoint& first_hop = proxy_ ? *proxy_ : *endpoint_;
  if (first_hop.numeric) {
    connect_to(first_hop.address.c_str());
    return;
  }
  auto q = std::make_unique<dns_query>();
  q->self = this;
  q->conn = id;
  q->req.data = q.get();
  addrinfo hints;
  std::memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  dns_.reserve(dns_.size() + 1);
  const int rc = uv_getaddrinfo(loop_, &q->req, &websocket_core::on_resolved,
                                first_hop.address.c_str(), nullptr, &hints);
  if (rc != 0) {
    connection_lost(
        make_error(errc::transport_error,
                   "websocket: could not resolve " + first_hop.address + ": " + uv_strerror(rc)));
    return;
  }
  dns_.push_back(q.release());
}

void websocket_core::on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res) {
  std::unique_ptr<dns_query> q(static_cast<dns_query*>(req->data));
  websocket_core* self = q->self;
  self->dns_.erase(std::find(self->dns_.begin(), self->dns_.end(), q.get()));
  try {
    if (self->phase_ == phase::open && q->conn == self->conn_) {
      char ip[INET6_ADDRSTRLEN] = "";
      if (status == 0 && res && res->ai_family == AF_INET6) {
        uv_ip6_name(reinterpret_cast<const sockaddr_in6*>(res->ai_addr), ip, sizeof ip);
      } else if (status == 0 && res && res->ai_family == AF_INET) {
        uv_ip4_name(reinterpret_cast<const sockaddr_in*>(res->ai_addr), ip, sizeof ip);
      }
      if (ip[0] != '\0') {
        self->connect_to(ip);  // the first address only, as lws would
      } else {
        const ws_endpoint& hop = self->proxy_ ? *self->proxy_ : *self->endpoint_;
        self->connection_lost(make_error(
            errc::transport_error, "websocket: could not resolve " + hop.address + ": " +
                                       (status < 0 ? uv_strerror(status) : "no address")));
      }
    }
  } catch (...) {
    self->fail_quietly("websocket: internal error after name resolution");
  }
  uv_freeaddrinfo(res);
  self->maybe_finished();
}

void websocket_core::connect_to(const char* address) {
  const std::uint64_t id = conn_;
  lws_client_connect_info ci;
  std::memset(&ci, 0, sizeof ci);
  ci.context = shared_->handle();
  ci.address = address;
  ci.port = proxy_ ? proxy_->port : endpoint_->port;
  ci.path = endpoint_->path.c_str();
  ci.host = endpoint_->host.c_str();
  ci.local_protocol_name = protocol_name;
  ci.method = "RAW";  // lws carries the bytes; the rest is ours (see the top of the file)
  ci.opaque_user_data = reinterpret_cast<void*>(static_cast<std::uintptr_t>(id));
  ci.retry_and_idle_policy = &no_validity_policy;
  lws* wsi = lws_client_connect_via_info(&ci);
  if (wsi) shared_->saw_wsi(wsi);
  if (conn_ != id) return;  // failed inside the call, already reported
  if (!wsi) {
    connection_lost(
        make_error(errc::transport_error, "websocket: could not connect to " + describe()));
    return;
  }
  wsi_ = wsi;
  log(log_level::debug, "websocket: connecting to " + describe() +
                            (proxy_ ? " through the proxy " + proxy_->host_port() : ""));
}

// The current connection ended: drop it and report once.
void websocket_core::connection_lost(error err) {
  if (conn_ == 0) return;
  const bool was_up = up_;
  log(log_level::debug, "websocket: connection down: " + err.message);
  // What is still queued never reached the socket: the session may send it again safely.
  std::vector<std::uint64_t> unsent;
  for (const auto& f : out_) unsent.insert(unsent.end(), f.requests.begin(), f.requests.end());
  drop_connection();
  emit({event::kind::down, {}, std::move(err), was_up, std::move(unsent)});
}

// Forgets the current connection (killing its wsi) and the frames not sent on it.
void websocket_core::drop_connection() {
  if (wsi_ && wsi_ != cb_wsi_) kill(wsi_);
  cancel_dns();
  if (conn_ != 0 && shared_) shared_->forget(conn_);
  conn_ = 0;
  out_.clear();
  clear_connection_state();
  uv_timer_stop(&connect_timer_);
  uv_timer_stop(&ping_timer_);
}

// What belongs to one connection, back to its state before any: nothing large stays allocated
// (a partial message, held input).
void websocket_core::clear_connection_state() {
  wsi_ = nullptr;
  stage_ = stage::connecting;
  up_ = false;
  ping_due_ = false;
  peer_close_.clear();
  reading_ = true;
  write_stalled_ = false;
  request_sent_ = false;
  tunnel_.reset();
  tls_.reset();  // frees the SSL and its BIOs
  upgrade_.reset();
  reader_.reset();
  pong_.reset();
  close_.reset();
  std::string().swap(held_rx_);
  std::string().swap(request_);
}

// A query already running in the thread pool cannot be cancelled; its callback then sees that
// its connection is gone.
void websocket_core::cancel_dns() {
  for (dns_query* q : dns_) uv_cancel(reinterpret_cast<uv_req_t*>(&q->req));
}

void websocket_core::kill(lws* wsi) {
  lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
  // lws 4.1 only looks at its timeouts after its own I/O: wake it through its event pipe, or the
  // kill waits for the next packet.
  lws_cancel_service(lws_get_context(wsi));
}

// ---- events -------------------------------------------------------------------------------------

bool websocket_core::emit(event ev) {
  if (!events_) return false;
  // on_down from inside lws's close path is deferred too: a receiver that reconnects (send) or
  // closes from on_down then never does so while lws is tearing that wsi down.
  if (api_depth_ > 0 || !deferred_.empty() || (ev.what == event::kind::down && cb_wsi_)) {
    deferred_.push_back(std::move(ev));
    uv_timer_start(&defer_timer_, &websocket_core::on_defer_timer, 0, 0);
    return false;
  }
  deliver(ev);
  return true;
}

// Reading follows the state: off while paused, while held bytes wait, while a write is stalled.
void websocket_core::update_reading() {
  if (!up_ || !wsi_) return;
  const bool want = !paused_ && held_rx_.empty() && !write_stalled_;
  if (want == reading_) return;
  reading_ = want;
  lws_rx_flow_control(wsi_, want ? 1 : 0);
  // lws hands over data it already buffered from its idle handle, which only runs after lws's
  // own I/O: wake it through its event pipe.
  if (want) lws_cancel_service(lws_get_context(wsi_));
}

void websocket_core::deliver(event& ev) {
  if (!events_) return;
  try {
    switch (ev.what) {
      case event::kind::up:
        events_->on_up();
        break;
      case event::kind::frame:
        events_->on_frame(0, std::move(ev.body), {});
        break;
      case event::kind::down:
        events_->on_down(ev.err, ev.was_up, ev.unsent);
        break;
      case event::kind::held:
        parse_held();
        break;
    }
  } catch (const std::exception& e) {
    log(log_level::error, std::string("websocket: event handler threw: ") + e.what());
    if (ev.what != event::kind::down) {
      connection_lost(make_error(errc::transport_error,
                                 std::string("websocket: event handler threw: ") + e.what()));
    }
  } catch (...) {
    log(log_level::error, "websocket: event handler threw");
    if (ev.what != event::kind::down) {
      connection_lost(make_error(errc::transport_error, "websocket: event handler threw"));
    }
  }
}

void websocket_core::on_defer_timer(uv_timer_t* t) {
  auto* self = static_cast<websocket_core*>(t->data);
  try {
    while (!self->deferred_.empty() && self->events_) {
      event ev = std::move(self->deferred_.front());
      self->deferred_.pop_front();
      self->deliver(ev);  // may call back into us; abort/close clear deferred_
    }
  } catch (...) {
    self->fail_quietly("websocket: internal error while reporting an event");
  }
}

void websocket_core::on_connect_timer(uv_timer_t* t) {
  auto* self = static_cast<websocket_core*>(t->data);
  try {
    if (self->conn_ == 0 || self->up_) return;
    self->connection_lost(make_error(
        errc::timeout, "websocket: connection to " + self->describe() + " not established within " +
                           std::to_string(self->config_.connect_timeout.count()) + " ms"));
  } catch (...) {
    self->fail_quietly("websocket: internal error in the connect timer");
  }
}

void websocket_core::on_ping_timer(uv_timer_t* t) {
  auto* self = static_cast<websocket_core*>(t->data);
  try {
    if (self->conn_ == 0 || !self->up_ || !self->wsi_) return;
    const std::uint64_t now = uv_now(self->loop_);
    const auto interval = static_cast<std::uint64_t>(self->tuning_.ping_interval.count());
    if (self->paused_ || self->write_stalled_) {
      // Not reading (paused, or lws will not read before the stalled write drains): a pong
      // could not be seen, and a ping could not be sent.
      self->last_rx_ms_ = now;
      return;
    }
    if (now - self->last_rx_ms_ >= 2 * interval) {
      self->connection_lost(
          make_error(errc::timeout, "websocket: no pong or data from the server for " +
                                        std::to_string(now - self->last_rx_ms_) + " ms"));
      return;
    }
    self->ping_due_ = true;
    lws_callback_on_writable(self->wsi_);
  } catch (...) {
    self->fail_quietly("websocket: internal error in the ping timer");
  }
}

// ---- teardown -----------------------------------------------------------------------------------

void websocket_core::context_closed() {
  if (--open_handles_ > 0) return;
  handles_closed_ = true;
  maybe_finished();
}

void websocket_core::on_handle_closed(uv_handle_t* h) {
  auto* self = static_cast<websocket_core*>(h->data);
  if (--self->open_handles_ > 0) return;
  self->handles_closed_ = true;
  self->maybe_finished();
}

// Closing ends when every handle is closed and no name resolution is pending (a pending uv
// request would make uv_loop_close() fail).
void websocket_core::maybe_finished() {
  if (!handles_closed_ || !dns_.empty() || phase_ != phase::closing) return;
  phase_ = phase::closed;
  auto done = std::move(done_);
  in_final_ = true;
  for (auto& fn : done) {
    try {
      fn();
    } catch (...) {
      log(log_level::error, "websocket: close callback threw");
    }
  }
  in_final_ = false;
  if (detached_) delete this;
}

// ---- the transport object -----------------------------------------------------------------------

namespace {

class websocket_transport final : public transport {
 public:
  websocket_transport(uv_loop_t* loop, transport_config config, transport_events& events,
                      const websocket_tuning& tuning)
      : core_(new websocket_core(loop, std::move(config), events, tuning)) {}
  ~websocket_transport() override { core_->detach(); }
  websocket_transport(const websocket_transport&) = delete;
  websocket_transport& operator=(const websocket_transport&) = delete;

  connection_type type() const noexcept override { return connection_type::websocket; }
  void send(std::uint64_t request, std::string body, std::chrono::milliseconds, bool alone = false) override {
    core_->send(request, std::move(body), alone);
  }
  void abort() override { core_->abort(); }
  void pause_receive(bool paused) override { core_->pause_receive(paused); }
  void set_cookie_header(std::string cookies) override {
    core_->set_cookie_header(std::move(cookies));
  }
  void set_headers(const header_list& headers) override { core_->set_headers(headers); }
  void close(std::function<void()> done) override { core_->close(std::move(done)); }

 private:
  websocket_core* core_;  // frees itself once detached and closed
};

}  // namespace

std::unique_ptr<transport> make_websocket_transport(uv_loop_t* loop, transport_config config,
                                                    transport_events& events,
                                                    const websocket_tuning& tuning) {
  return std::make_unique<websocket_transport>(loop, std::move(config), events, tuning);
}

std::unique_ptr<transport> make_websocket_transport(uv_loop_t* loop, transport_config config,
                                                    transport_events& events) {
  websocket_tuning tuning;
  tuning.ping_interval = config.ping_interval;
  return make_websocket_transport(loop, std::move(config), events, tuning);
}

}  // namespace uvcometd::detail
