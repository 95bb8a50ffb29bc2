// Websocket transport: libwebsockets 4.1 driven by the application's libuv loop (foreign loop).
//
// - lws carries every connection (socket, loop integration) as a "RAW" client connection; the
//   rest is uvcometd's: the websocket protocol on top of it (the upgrade, framing, masking,
//   ping/pong, close) is ws_protocol.*, TLS for wss:// is OpenSSL over in-memory buffers
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
//   carrying up to ws_context::capacity transports (creating a context costs ~1.3 ms of CPU in lws
//   4.1, which scans the library directory for its libuv plugin, plus its buffer and fd tables;
//   an SSL_CTX loads the trust store). A transport takes
//   its reference on its first send(), so a client that never uses websocket pays nothing but
//   two idle uv timers; the last transport's close destroys the context and completes once lws
//   let go of the loop. lws_service() is never called: lws adds its own uv handles to the loop.
// - Frames queue in `out_` and leave one per RAW_WRITEABLE, masked in place. Incoming messages
//   are reassembled from fragments and refused by the length a frame announces when they would
//   exceed max_message_size. Server pings are answered; a server close is echoed.
// - pause_receive stops lws reading (rx flow control); bytes already read are kept, unparsed,
//   until the receive resumes, so no message is delivered while paused. On wss what lws read is
//   decrypted at once (OpenSSL keeps nothing back) and the plaintext is what is held.
// - Events are delivered straight from lws/uv callbacks, except while one of our own entry points
//   (send, abort, close, pause_receive) is on the stack: lws can report a connection error from
//   inside lws_client_connect_via_info, so those are posted to the client's reactor, and so is
//   every event after them until they ran (order is kept). abort() and close() drop what is
//   posted and not run yet.
// - Each connection attempt gets an id from its context, stored as the wsi's opaque user data;
//   the context routes a wsi's callbacks to the core whose current connection that id is.
//   Callbacks of a wsi that is no core's current connection (aborted, timed out, its transport
//   closed or gone) reach no core and close it.
// - Ping: lws 4.1 dropped ws_ping_pong_interval; its replacement (the retry/idle "validity"
//   policy) hangs up without telling why. So the transport pings on its own uv timer
//   (websocket_config::ping_interval, options::websocket_ping_interval) and turns lws's validity
//   checks off; no pong or data for two intervals is reported as errc::timeout.
// - Host names are resolved with uv_getaddrinfo (Debian's lws 4.1 has no async DNS and would
//   block the loop in getaddrinfo); lws gets the first address, the Host header keeps the name.
// - lws logging is process-global in 4.1 (lws_set_log_level); see quiet_lws_logging().
// - Cookies: the upgrade carries the client's cookies for the server (cookie_jar), and the
//   Set-Cookie of the upgrade's answer goes into the jar.
#include "transport/websocket_core.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "reactor.hpp"
#include "transport/http_text.hpp"

namespace uvcometd::detail {

websocket_core::websocket_core(const transport_env& env, websocket_config config,
                               transport_events& events)
    : env_(env), config_(std::move(config)), events_(&events) {
  endpoint_ = parse_endpoint(config_.url, endpoint_error_);
}

void websocket_core::init() {
  for (uv_timer_t* t : {&connect_timer_, &ping_timer_}) {
    uv_timer_init(env_.loop, t);
    t->data = this;
  }
  uv_prepare_init(env_.loop, &flow_prepare_);
  flow_prepare_.data = this;
  opened(3);
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

void websocket_core::send(std::uint64_t request, std::string body, bool alone) {
  api_scope scope(*this);
  if (phase_ != phase::open) return;
  const bool mergeable = !alone && body.size() > 2 && body.front() == '[' && body.back() == ']';
  // Merged frames stay bounded, so the server starts on one while the next is being written.
  if (mergeable && last_mergeable_ && !out_.empty() &&
      out_.back().bytes.size() + body.size() <= config_.max_merged_frame) {
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
  if (conn_.id == 0) {
    open_connection();
  } else if (conn_.up && conn_.wsi) {
    lws_callback_on_writable(conn_.wsi);
  }
}

void websocket_core::abort() {
  api_scope scope(*this);
  if (phase_ != phase::open) return;
  ++event_generation_;  // what was posted is dropped
  posted_ = 0;
  drop_connection();
}

void websocket_core::pause_receive(bool paused) {
  api_scope scope(*this);
  if (phase_ != phase::open || paused == paused_) return;
  paused_ = paused;
  conn_.last_rx_ms = uv_now(env_.loop);  // no pong can arrive while paused: restart the clock
  // Applied when the next connection is established (or to the bytes held after its end).
  if (!conn_.up || (!conn_.wsi && !conn_.ended)) return;
  // What was read while paused is parsed first, after this call returns (order is kept behind
  // any posted event); reading resumes once it is.
  if (!paused && !conn_.held_rx.empty()) post_held();
  update_reading();
}

void websocket_core::close(std::function<void()> done) {
  api_scope scope(*this);
  if (phase_ == phase::closed) {
    // Every handle is closed: `done` runs later, never from inside this call.
    if (done) env_.tasks->post(std::move(done));
    return;
  }
  if (done) done_.push_back(std::move(done));
  if (phase_ == phase::closing) return;
  phase_ = phase::closing;
  events_ = nullptr;
  ++event_generation_;
  posted_ = 0;
  // Other transports may go on using the context: end this one's connection only (a kill, or,
  // when its own lws callback is on the stack, that callback's -1), and route nothing more here.
  drop_connection();
  if (shared_) {
    // The last user's close also waits for the context to let go of the loop, so that
    // uv_loop_close() succeeds once the last `done` ran.
    opened();
    shared_->set_log(config_.log);
    if (!ws_context::shared::release(shared_, [this] { closed_one(); })) closed_one();
    shared_.reset();
  }
  for (uv_timer_t* t : {&connect_timer_, &ping_timer_}) {
    uv_timer_stop(t);
    uv_close(reinterpret_cast<uv_handle_t*>(t), &websocket_core::on_handle_closed);
  }
  uv_prepare_stop(&flow_prepare_);
  uv_close(reinterpret_cast<uv_handle_t*>(&flow_prepare_), &websocket_core::on_handle_closed);
}

// ---- connection ---------------------------------------------------------------------------------

bool websocket_core::acquire_context() {
  context_settings settings;
  settings.tls = endpoint_ && endpoint_->tls;
  if (settings.tls) settings.ca_file = config_.ca_file;  // nothing else reads it
  settings.buffer_size = static_cast<unsigned>(
      std::clamp<std::size_t>(config_.rx_chunk_size, min_read_size, 1u << 24));
  // lws has connect/handshake timeouts of its own (20 s); keep them behind ours.
  const auto connect_s = static_cast<unsigned>(
      std::clamp<long long>(config_.connect_timeout.count() / 1000 + 5, 0, 86400));
  settings.timeout_s = std::max(20u, connect_s);
  shared_ = ws_context::shared::acquire(env_.loop, settings);
  if (!shared_) {
    log(log_level::error,
        "websocket: lws_create_context failed (is the libwebsockets libuv plugin installed?)");
    return false;
  }
  lws_timeout_s_ = static_cast<int>(settings.timeout_s);
  // The environment is read once, with the context, as lws used to.
  const char* proxy = std::getenv("http_proxy");
  const char* no_proxy = std::getenv("no_proxy");
  if (proxy && *proxy && endpoint_ && !(no_proxy && proxy_exempt(no_proxy, endpoint_->address))) {
    proxy_ = parse_proxy(proxy, proxy_auth_, proxy_error_);
  }
  return true;
}

void websocket_core::open_connection() {
  const auto refuse = [&](std::string why) {
    out_.clear();
    emit(
        {event::kind::down, {}, make_error(errc::transport_error, "websocket: " + why), false, {}});
  };
  if (!endpoint_) return refuse(endpoint_error_);
  if (!shared_ && !acquire_context()) return refuse("could not create the lws context");
  if (!proxy_error_.empty()) return refuse(proxy_error_);
  conn_ = {};
  conn_.id = shared_->route(this);  // forgotten by drop_connection()
  const std::uint64_t id = conn_.id;
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
  const int rc = uv_getaddrinfo(env_.loop, &q->req, &websocket_core::on_resolved,
                                first_hop.address.c_str(), nullptr, &hints);
  if (rc != 0) {
    connection_lost(
        make_error(errc::transport_error,
                   "websocket: could not resolve " + first_hop.address + ": " + uv_strerror(rc)));
    return;
  }
  dns_.push_back(q.release());
  opened();  // a pending request would make uv_loop_close() fail: the close waits for it
}

void websocket_core::on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res) {
  std::unique_ptr<dns_query> q(static_cast<dns_query*>(req->data));
  websocket_core* self = q->self;
  self->dns_.erase(std::find(self->dns_.begin(), self->dns_.end(), q.get()));
  try {
    if (self->phase_ == phase::open && q->conn == self->conn_.id) {
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
        self->connection_lost(make_error(errc::transport_error,
                                         "websocket: could not resolve " + hop.address + ": " +
                                             (status < 0 ? uv_strerror(status) : "no address")));
      }
    }
  } catch (...) {
    self->fail_quietly("websocket: internal error after name resolution");
  }
  uv_freeaddrinfo(res);
  self->closed_one();  // last: the core may be freed
}

void websocket_core::connect_to(const char* address) {
  const std::uint64_t id = conn_.id;
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
  if (conn_.id != id) return;  // failed inside the call, already reported
  if (!wsi) {
    connection_lost(
        make_error(errc::transport_error, "websocket: could not connect to " + describe()));
    return;
  }
  conn_.wsi = wsi;
  log(log_level::debug, "websocket: connecting to " + describe() +
                            (proxy_ ? " through the proxy " + proxy_->host_port() : ""));
}

// The current connection ended: drop it and report once.
void websocket_core::connection_lost(error err) {
  if (conn_.id == 0) return;
  const bool was_up = conn_.up;
  log(log_level::debug, "websocket: connection down: " + err.message);
  // What is still queued never reached the socket: the session may send it again safely.
  std::vector<std::uint64_t> unsent;
  for (const auto& f : out_) unsent.insert(unsent.end(), f.requests.begin(), f.requests.end());
  drop_connection();
  emit({event::kind::down, {}, std::move(err), was_up, std::move(unsent)});
}

// Forgets the current connection (killing its wsi) and the frames not sent on it.
void websocket_core::drop_connection() {
  if (conn_.wsi && conn_.wsi != cb_wsi_) kill(conn_.wsi);
  cancel_dns();
  if (conn_.id != 0 && shared_) shared_->forget(conn_.id);
  conn_ = {};  // frees the TLS session, a partial message, held input
  out_.clear();
  last_mergeable_ = false;
  uv_timer_stop(&connect_timer_);
  uv_timer_stop(&ping_timer_);
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
  // on_down from inside lws's close path is posted too: a receiver that reconnects (send) or
  // closes from on_down then never does so while lws is tearing that wsi down.
  if (api_depth_ > 0 || posted_ > 0 || (ev.what == event::kind::down && cb_wsi_)) {
    post(std::move(ev));
    return false;
  }
  deliver(ev);
  return true;
}

// To the client's reactor, behind what this transport posted before (abort/close drop it).
void websocket_core::post(event ev) {
  ++posted_;
  env_.tasks->post([weak = weak_from_this(), generation = event_generation_,
                    ev = std::make_shared<event>(std::move(ev))] {
    const auto self = weak.lock();
    if (!self || self->event_generation_ != generation) return;
    --self->posted_;
    try {
      self->deliver(*ev);
    } catch (...) {
      self->fail_quietly("websocket: internal error while reporting an event");
    }
  });
}

// Bytes held while paused (or behind posted events) are parsed from the reactor, in order.
void websocket_core::post_held() {
  if (conn_.held_queued) return;
  conn_.held_queued = true;
  ++posted_;
  env_.tasks->post([weak = weak_from_this(), generation = event_generation_, id = conn_.id] {
    const auto self = weak.lock();
    if (!self || self->event_generation_ != generation) return;
    --self->posted_;
    if (self->conn_.id != id) return;
    try {
      self->parse_held();
    } catch (...) {
      self->fail_quietly("websocket: internal error while reading held bytes");
    }
  });
}

// Reading follows the state: off while paused, while a write is stalled, and while bytes are held
// (read, not parsed yet) unless their parse is posted and they are less than one read: then what
// lws reads meanwhile is appended behind them, so that the resume after a pause costs nothing.
// Held bytes stay under two reads; a receiver that falls behind stops the reading instead of
// making the held bytes grow (each parse of them would copy what is left: quadratic).
bool websocket_core::wants_reading() const noexcept {
  if (paused_ || conn_.write_stalled) return false;
  return conn_.held_rx.empty() ||
         (conn_.held_queued && conn_.held_rx.size() < config_.rx_chunk_size);
}

// A change is applied just before the loop next polls, not at once: at batches larger than
// max_pending_count every frame pauses the receive and the dispatch of the next iteration resumes
// it, which cost two epoll_ctl, an eventfd write and read and a wakeup each time. Nothing is read
// in between (lws reads only when the loop polls), so a pause still stops the next read.
void websocket_core::update_reading() {
  if (!conn_.up || !conn_.wsi) return;
  if (wants_reading() == conn_.reading) {
    uv_prepare_stop(&flow_prepare_);  // undone before it was applied
  } else {
    uv_prepare_start(&flow_prepare_, &websocket_core::on_flow_prepare);
  }
}

void websocket_core::on_flow_prepare(uv_prepare_t* p) {
  auto* self = static_cast<websocket_core*>(p->data);
  uv_prepare_stop(p);
  self->apply_reading();
}

void websocket_core::apply_reading() {
  if (!conn_.up || !conn_.wsi) return;
  const bool want = wants_reading();
  if (want == conn_.reading) return;
  conn_.reading = want;
  lws_rx_flow_control(conn_.wsi, want ? 1 : 0);
  // lws hands over data it already buffered from its idle handle, which only runs after lws's
  // own I/O: wake it through its event pipe.
  if (want) lws_cancel_service(lws_get_context(conn_.wsi));
}

void websocket_core::deliver(event& ev) {
  if (!events_) return;
  try {
    switch (ev.what) {
      case event::kind::up: events_->on_up(); break;
      case event::kind::frame: events_->on_frame(0, std::move(ev.body), {}); break;
      case event::kind::down: events_->on_down(ev.err, ev.was_up, ev.unsent); break;
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

void websocket_core::on_connect_timer(uv_timer_t* t) {
  auto* self = static_cast<websocket_core*>(t->data);
  try {
    if (self->conn_.id == 0 || self->conn_.up) return;
    self->connection_lost(make_error(
        errc::timeout, "websocket: connection to " + self->describe() + " not established within " +
                           std::to_string(self->config_.connect_timeout.count()) + " ms"));
  } catch (...) {
    self->fail_quietly("websocket: internal error in the connect timer");
  }
}

void websocket_core::on_ping_timer(uv_timer_t* t) {
  auto* self = static_cast<websocket_core*>(t->data);
  connection& c = self->conn_;
  try {
    if (c.id == 0 || !c.up || !c.wsi) return;
    const std::uint64_t now = uv_now(self->env_.loop);
    const auto interval = static_cast<std::uint64_t>(self->config_.ping_interval.count());
    if (self->paused_ || c.write_stalled) {
      // Not reading (paused, or lws will not read before the stalled write drains): a pong
      // could not be seen, and a ping could not be sent.
      c.last_rx_ms = now;
      return;
    }
    if (now - c.last_rx_ms >= 2 * interval) {
      self->connection_lost(
          make_error(errc::timeout, "websocket: no pong or data from the server for " +
                                        std::to_string(now - c.last_rx_ms) + " ms"));
      return;
    }
    c.ping_due = true;
    lws_callback_on_writable(c.wsi);
  } catch (...) {
    self->fail_quietly("websocket: internal error in the ping timer");
  }
}

// ---- teardown -----------------------------------------------------------------------------------

void websocket_core::on_handle_closed(uv_handle_t* h) {
  static_cast<websocket_core*>(h->data)->closed_one();
}

// Every handle is closed and no name resolution is pending (a pending uv request would make
// uv_loop_close() fail): the close completed.
void websocket_core::all_closed() {
  phase_ = phase::closed;
  auto done = std::move(done_);
  for (auto& fn : done) {
    try {
      fn();
    } catch (...) {
      log(log_level::error, "websocket: close callback threw");
    }
  }
}

// ---- the transport object -----------------------------------------------------------------------

namespace {

class websocket_transport final : public transport {
 public:
  websocket_transport(const transport_env& env, websocket_config config, transport_events& events)
      : core_(std::make_shared<websocket_core>(env, std::move(config), events)) {
    core_->init();
  }
  // Destroyed before its close completed: it closes silently, and the core lives on until then.
  ~websocket_transport() override { core_->close(nullptr); }
  websocket_transport(const websocket_transport&) = delete;
  websocket_transport& operator=(const websocket_transport&) = delete;

  transport_traits traits() const noexcept override {
    return {/*request_response=*/false, /*pausable=*/true, /*merges_frames=*/true};
  }
  void send(std::uint64_t request, std::string body, std::chrono::milliseconds,
            bool alone = false) override {
    core_->send(request, std::move(body), alone);
  }
  void abort() override { core_->abort(); }
  void pause_receive(bool paused) override { core_->pause_receive(paused); }
  void set_headers(const header_list& headers) override { core_->set_headers(headers); }
  void close(std::function<void()> done) override { core_->close(std::move(done)); }

 private:
  std::shared_ptr<websocket_core> core_;  // lives on until its close completed (loop_owned)
};

}  // namespace

std::unique_ptr<transport> make_websocket_transport(const transport_env& env,
                                                    websocket_config config,
                                                    transport_events& events) {
  return std::make_unique<websocket_transport>(env, std::move(config), events);
}

}  // namespace uvcometd::detail
