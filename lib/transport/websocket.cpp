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
#include "transport/websocket.hpp"

#include <libwebsockets.h>
#include <uv.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "transport/http_text.hpp"
#include "transport/tls_client.hpp"
#include "transport/transport.hpp"
#include "transport/ws_protocol.hpp"

#if LWS_LIBRARY_VERSION_MAJOR < 4 || \
    (LWS_LIBRARY_VERSION_MAJOR == 4 && LWS_LIBRARY_VERSION_MINOR < 1)
#error "uvcometd needs libwebsockets 4.1 or later"
#endif

// 4.1.x on a foreign loop never finishes a single lws_context_destroy(); see
// ws_context::on_teardown_timer.
#if LWS_LIBRARY_VERSION_MAJOR == 4 && LWS_LIBRARY_VERSION_MINOR == 1
#define UVCOMETD_LWS_TWO_STEP_DESTROY 1
#else
#define UVCOMETD_LWS_TWO_STEP_DESTROY 0
#endif

namespace uvcometd::detail {
namespace {

// lws reads at most this much per receive (websocket_tuning::rx_chunk_size, with this floor).
constexpr std::size_t min_read_size = 1024;
// Room before a queued frame's payload: the largest client frame header (lws_write of RAW bytes
// needs no LWS_PRE).
constexpr std::size_t frame_headroom = 14;
// Decrypted bytes are taken from OpenSSL this much at a time (a TLS record holds at most 16 KiB).
constexpr std::size_t plaintext_chunk = 16 * 1024;
// The most lws hands to one send() (the protocol's tx_packet_size).
constexpr std::size_t max_send = 1u << 20;
// The transports one shared context carries; the next one of the same loop and settings gets
// another context. lws needs one fd-table slot per socket: a transport's connection and a
// previous one still closing, plus the event pipe (lws adds its own two). Without a limit lws
// would size its tables from `ulimit -n`. Past the limit lws refuses the socket (a connection
// error). With a limit below `ulimit -n` lws finds a wsi from its fd by scanning the table (up to
// the live sockets), so the limit is kept moderate rather than one context per loop.
constexpr std::size_t users_per_context = 256;
constexpr unsigned fd_limit = 2 * users_per_context + 4;
// How often close() looks whether lws's uv handles are gone (4.1 two-step destroy).
constexpr std::uint64_t teardown_poll_ms = 5;
constexpr const char* protocol_name = "uvcometd-bayeux";

// Zero hangup time disables lws's own ping/idle-hangup ("validity") for our connections.
const lws_retry_bo_t no_validity_policy = {};

void lws_log_nowhere(int, const char*) {}

// lws 4.1 logs to stderr by default (a notice on every context creation) and its log settings are
// process-global. Once, when the first context is created, errors-only to a sink that drops them:
// the library prints nothing, and lws's log level cannot be routed per client anyway.
void quiet_lws_logging() {
  static std::once_flag once;
  std::call_once(once, [] {
    // UVCOMETD_LWS_DEBUG set: lws's own log, down to info, on stderr (for debugging lws itself).
    if (std::getenv("UVCOMETD_LWS_DEBUG") != nullptr) {
      lws_set_log_level(LLL_ERR | LLL_WARN | LLL_NOTICE | LLL_INFO, nullptr);
    } else {
      lws_set_log_level(LLL_ERR, lws_log_nowhere);
    }
  });
}

struct ws_endpoint {
  bool tls = false;
  std::string address;  // for connect(): host without IPv6 brackets
  std::string host;     // Host header: the URL's authority
  int port = 0;
  std::string path;      // path and query
  bool numeric = false;  // address is an IP literal: no name resolution
  bool explicit_port = false;  // the URL names the port

  // host:port, the port always there ("[::1]:443" for IPv6): for messages and CONNECT.
  std::string host_port() const {
    const bool v6 = address.find(':') != std::string::npos;
    return (v6 ? "[" + address + "]" : address) + ":" + std::to_string(port);
  }
};

// http(s)://host[:port]/path (ws/wss accepted too) → where the upgrade goes.
std::optional<ws_endpoint> parse_endpoint(std::string_view url, std::string& why) {
  const auto sep = url.find("://");
  if (sep == std::string_view::npos || has_ctl(url) || url.find(' ') != std::string_view::npos) {
    why = "invalid URL '" + std::string(url) + "'";
    return std::nullopt;
  }
  std::string scheme(url.substr(0, sep));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  ws_endpoint ep;
  if (scheme == "https" || scheme == "wss") {
    ep.tls = true;
  } else if (scheme != "http" && scheme != "ws") {
    why = "unsupported URL scheme '" + scheme + "'";
    return std::nullopt;
  }
  std::string_view rest = url.substr(sep + 3);
  const auto auth_end = rest.find_first_of("/?#");
  const std::string_view authority = rest.substr(0, auth_end);
  std::string_view tail = auth_end == std::string_view::npos ? "" : rest.substr(auth_end);
  if (const auto hash = tail.find('#'); hash != std::string_view::npos) tail = tail.substr(0, hash);
  if (authority.find('@') != std::string_view::npos) {
    why = "credentials in the URL are not supported";
    return std::nullopt;
  }
  std::string_view host = authority, port;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) {
      why = "invalid IPv6 host in '" + std::string(url) + "'";
      return std::nullopt;
    }
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        why = "invalid host in '" + std::string(url) + "'";
        return std::nullopt;
      }
      port = after.substr(1);
    }
  } else if (const auto colon = authority.find(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) {
    why = "no host in '" + std::string(url) + "'";
    return std::nullopt;
  }
  ep.port = ep.tls ? 443 : 80;
  if (!port.empty()) {
    int p = 0;
    for (char c : port) {
      if (c < '0' || c > '9' || p > 65535) {
        p = -1;
        break;
      }
      p = p * 10 + (c - '0');
    }
    if (p <= 0 || p > 65535) {
      why = "invalid port in '" + std::string(url) + "'";
      return std::nullopt;
    }
    ep.port = p;
    ep.explicit_port = true;
  }
  ep.address = std::string(host);
  ep.host = std::string(authority);
  unsigned char probe[sizeof(in6_addr)];
  ep.numeric = uv_inet_pton(AF_INET, ep.address.c_str(), probe) == 0 ||
               uv_inet_pton(AF_INET6, ep.address.c_str(), probe) == 0;
  if (tail.empty()) {
    ep.path = "/";
  } else if (tail.front() == '?') {
    ep.path = "/" + std::string(tail);
  } else {
    ep.path = std::string(tail);
  }
  return ep;
}

// Does `no_proxy` (comma-separated names, ".suffix" or "*") exempt `host` from the proxy? As
// libcurl reads it for long-polling, without CIDR ranges.
bool proxy_exempt(std::string_view no_proxy, std::string_view host) {
  std::string h(host);
  std::transform(h.begin(), h.end(), h.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  while (!no_proxy.empty()) {
    const auto comma = no_proxy.find(',');
    std::string entry(trim_ows(no_proxy.substr(0, comma)));
    no_proxy = comma == std::string_view::npos ? std::string_view{} : no_proxy.substr(comma + 1);
    std::transform(entry.begin(), entry.end(), entry.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (entry == "*") return true;
    if (!entry.empty() && entry.front() == '.') entry.erase(0, 1);
    if (entry.size() > 2 && entry.front() == '[' && entry.back() == ']') {
      entry = entry.substr(1, entry.size() - 2);
    }
    if (entry.empty()) continue;
    if (h == entry ||
        (h.size() > entry.size() && h.compare(h.size() - entry.size(), entry.size(), entry) == 0 &&
         h[h.size() - entry.size() - 1] == '.')) {
      return true;
    }
  }
  return false;
}

// `http_proxy` ("[http://][user:password@]host[:port][/]", port 1080 when none, as libcurl reads
// it) → where connections go first. Credentials become `auth`, a Proxy-Authorization value.
std::optional<ws_endpoint> parse_proxy(std::string_view value, std::string& auth,
                                       std::string& why) {
  std::string v(trim_ows(value));
  if (v.find("://") == std::string::npos) v.insert(0, "http://");
  const auto sep = v.find("://");
  std::string scheme = v.substr(0, sep);
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::string rest = v.substr(sep + 3);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (scheme != "http") {
    why = "unsupported http_proxy scheme '" + scheme + "' (http:// only)";
    return std::nullopt;
  }
  if (const auto at = rest.rfind('@'); at != std::string::npos) {
    const std::string credentials = rest.substr(0, at);
    auth = "Basic " + ws::base64(reinterpret_cast<const unsigned char*>(credentials.data()),
                                 credentials.size());
    rest.erase(0, at + 1);
  }
  std::string inner;
  auto ep = parse_endpoint("http://" + rest, inner);
  if (!ep) {
    why = "invalid http_proxy: " + inner;
    return std::nullopt;
  }
  if (!ep->explicit_port) ep->port = 1080;
  return ep;
}

error make_error(errc code, std::string message) {
  return error{make_error_code(code), std::move(message)};
}

// The lws callbacks of a connection; lws's other callbacks (protocol, vhost, ...) are ignored.
bool is_connection_reason(lws_callback_reasons reason) {
  switch (reason) {
    case LWS_CALLBACK_RAW_CONNECTED:
    case LWS_CALLBACK_RAW_WRITEABLE:
    case LWS_CALLBACK_RAW_RX:
    case LWS_CALLBACK_RAW_CLOSE:
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
    case LWS_CALLBACK_WSI_DESTROY:
      return true;
    default:
      return false;
  }
}

// The answer to a callback of a wsi that is no connection's current one (aborted, timed out,
// its transport closed): close it where lws lets the callback do so, else let lws go on closing.
int stray_answer(lws_callback_reasons reason) {
  switch (reason) {
    case LWS_CALLBACK_RAW_CONNECTED:
    case LWS_CALLBACK_RAW_WRITEABLE:
    case LWS_CALLBACK_RAW_RX:
      return -1;
    default:
      return 0;
  }
}

class websocket_core;

// What an lws context is made with; transports share a context only when these are equal.
struct context_settings {
  bool tls = false;          // wss: the context has an SSL_CTX for its connections
  std::string ca_file;       // its trust store (empty: the system's)
  unsigned buffer_size = 0;  // pt_serv_buf_size
  unsigned timeout_s = 20;   // timeout_secs and connect_timeout_secs

  bool operator==(const context_settings& o) const {
    return tls == o.tls && ca_file == o.ca_file && buffer_size == o.buffer_size &&
           timeout_s == o.timeout_s;
  }
};

// One lws context shared by up to users_per_context websocket transports of one uv loop made with
// equal settings. Created by the first (acquire), torn down once the last releases it; frees
// itself once lws let go of the loop, then tells that last core. Never shared across loops.
// lws calls back with the wsi; each connection's opaque user data is an id this context maps to
// the core whose current connection it is. A wsi whose id maps to no core (aborted, timed out,
// its core closed or freed) is answered without any core and closes.
class ws_context {
 public:
  // A context of `loop` with these settings and room for `user`, made if none has room. Null
  // when lws fails; throws std::bad_alloc.
  static ws_context* acquire(uv_loop_t* loop, const context_settings& settings,
                             websocket_core* user);

  // `user` (whose connection is dropped already) stops using the context. True when it was the
  // last user: user->context_closed() then runs once lws let go of the loop.
  bool release(websocket_core* user);

  lws_context* handle() const noexcept { return ctx_; }
  const context_settings& settings() const noexcept { return settings_; }
  // The TLS settings of the context's wss connections (null unless settings().tls).
  const tls::context* tls() const noexcept { return tls_.get(); }

  // A buffer for decrypted bytes, lent for one receive: the transports of a context run on its
  // loop's thread, one lws callback at a time. Empty when it is lent already.
  std::vector<char> borrow_plaintext_buffer() {
    std::vector<char> b;
    b.swap(plaintext_);
    return b;
  }
  void return_plaintext_buffer(std::vector<char>&& b) noexcept {
    if (plaintext_.empty()) plaintext_.swap(b);
  }

  // A new connection id whose callbacks go to `core` until forget(id).
  std::uint64_t route(websocket_core* core);
  void forget(std::uint64_t id) noexcept;
  void saw_wsi(const lws* wsi);

  ws_context(const ws_context&) = delete;
  ws_context& operator=(const ws_context&) = delete;

 private:
  struct registry {
    std::mutex mutex;  // two loops may run on two threads; a context is used by its loop's only
    std::vector<ws_context*> live;
  };
  static registry& contexts() {
    static registry r;
    return r;
  }

  ws_context(uv_loop_t* loop, context_settings settings);
  ~ws_context() = default;

  int dispatch(lws* wsi, lws_callback_reasons reason, void* in, std::size_t len);
  bool lws_handles_remain() const;
  void close_orphaned_watchers();
  void finish_teardown();
  void log(log_level level, std::string_view msg) const;

  static int lws_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                          std::size_t len);
  static void on_teardown_timer(uv_timer_t* t);
  static void on_teardown_poll(uv_timer_t* t);

  uv_loop_t* loop_;
  context_settings settings_;
  lws_protocols protocols_[2];
  lws_context* ctx_ = nullptr;  // also lws's pcontext: lws clears it when the context is freed
  std::unique_ptr<tls::context> tls_;
  std::vector<char> plaintext_;  // see borrow_plaintext_buffer()
  std::vector<websocket_core*> users_;
  std::unordered_map<std::uint64_t, websocket_core*> routes_;  // id → core of that connection
  std::uint64_t next_id_ = 1;
  // Every wsi this context created: lws 4.1.6 leaves the uv_poll watcher of a connection that
  // failed before the upgrade completed open (never closed, never freed); teardown closes those.
  std::unordered_set<const void*> wsis_;
  websocket_core* last_user_ = nullptr;  // told once the torn-down context let go of the loop
  std::uint64_t teardown_polls_ = 0;
  uv_timer_t teardown_timer_{};
};

// The transport's state. It lives on the heap apart from the transport object so that it can
// finish closing its handles after the owner has dropped the transport.
class websocket_core {
 public:
  websocket_core(uv_loop_t* loop, transport_config config, transport_events& events,
                 const websocket_tuning& tuning);
  websocket_core(const websocket_core&) = delete;
  websocket_core& operator=(const websocket_core&) = delete;

  void send(std::uint64_t request, std::string body, bool alone);
  void abort();
  void pause_receive(bool paused);
  void set_cookie_header(std::string cookies) { cookie_ = std::move(cookies); }
  void set_headers(const header_list& headers);
  void close(std::function<void()> done);
  // The transport object is gone: report nothing more, close if needed, free self when closed.
  void detach();

 private:
  enum class phase { open, closing, closed };

  struct event {
    enum class kind { up, frame, down, held } what;  // held: parse what arrived while paused
    std::string body;
    error err;
    bool was_up = false;
    std::vector<std::uint64_t> unsent;  // down: requests whose frames never left
  };

  // A host name being resolved for connection `conn` (lws 4.1 as Debian builds it would call a
  // blocking getaddrinfo() on the loop thread, so names are resolved here, off the loop).
  struct dns_query {
    uv_getaddrinfo_t req;
    websocket_core* self;
    std::uint64_t conn;
  };

  // Marks our own entry points: events raised meanwhile are deferred.
  class api_scope {
   public:
    explicit api_scope(websocket_core& c) : c_(c) { ++c_.api_depth_; }
    ~api_scope() { --c_.api_depth_; }
    api_scope(const api_scope&) = delete;
    api_scope& operator=(const api_scope&) = delete;

   private:
    websocket_core& c_;
  };

  ~websocket_core() = default;

  friend class ws_context;

  void log(log_level level, std::string_view msg) const;
  bool acquire_context();
  void update_reading();
  void open_connection();
  void connect_to(const char* address);
  void cancel_dns();
  void maybe_finished();
  void connection_lost(error err);
  void fail_quietly(const char* what, const char* detail = nullptr) noexcept;
  void drop_connection();
  void clear_connection_state();
  void kill(lws* wsi);
  bool emit(event ev);  // true when delivered now, false when deferred (or no receiver)
  void deliver(event& ev);
  void context_closed();
  std::string describe() const { return config_.url; }

  // A callback of the wsi of connection `id`, which ws_context routed here.
  int on_lws_callback(lws* wsi, std::uint64_t id, lws_callback_reasons reason, void* in,
                      std::size_t len);
  int on_lws(lws* wsi, std::uint64_t id, lws_callback_reasons reason, void* in, std::size_t len);
  int on_established(lws* wsi, std::uint64_t id);
  error upgrade_refused(int status, std::string_view reason) const;
  int on_connected(lws* wsi);
  int start_stream(lws* wsi);
  void prepare_upgrade(lws* wsi);
  int on_writeable(lws* wsi);
  int write_bytes(lws* wsi, const char* data, std::size_t len);
  int flush_tls(lws* wsi);
  int tls_failed(lws* wsi);
  int write_frame(lws* wsi, std::string& bytes, ws::opcode op);
  int on_receive(lws* wsi, std::uint64_t id, const char* in, std::size_t len);
  int on_tunnel_answer(lws* wsi, const char*& in, std::size_t& len);
  int on_tls_receive(lws* wsi, std::uint64_t id, const char* in, std::size_t len);
  int on_stream(lws* wsi, std::uint64_t id, const char* in, std::size_t len);
  int on_upgrade_answer(lws* wsi, std::uint64_t id, const char*& in, std::size_t& len);
  int read_frames(lws* wsi, std::uint64_t id, const char* in, std::size_t len);
  void parse_held();
  std::array<unsigned char, 4> next_mask();
  std::string control_frame(std::string_view payload) const;

  static void on_defer_timer(uv_timer_t* t);
  static void on_connect_timer(uv_timer_t* t);
  static void on_ping_timer(uv_timer_t* t);
  static void on_handle_closed(uv_handle_t* h);
  static void on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res);

  uv_loop_t* loop_;
  transport_config config_;
  transport_events* events_;  // null once closed or detached
  websocket_tuning tuning_;
  std::optional<ws_endpoint> endpoint_;
  std::string endpoint_error_;
  std::vector<std::pair<std::string, std::string>> headers_;  // {"Name", "value"}
  std::string cookie_;

  ws_context* shared_ = nullptr;  // a reference on the loop's context, released by close()
  int lws_timeout_s_ = 20;
  // http_proxy (read with the context): connections go there first, then CONNECT to the server.
  std::optional<ws_endpoint> proxy_;
  std::string proxy_auth_;   // Proxy-Authorization value from the proxy URL's credentials
  std::string proxy_error_;  // http_proxy set but unusable: every connection fails with this

  std::uint64_t conn_ = 0;  // current connection attempt; 0 when none
  lws* wsi_ = nullptr;     // wsi of conn_ once known
  lws* cb_wsi_ = nullptr;  // wsi whose lws callback is on the stack (it closes by returning -1)
  // Where a connection that is not up yet is (see the top of the file); frames flow once up_.
  enum class stage { connecting, tunnel, tls, upgrade };
  stage stage_ = stage::connecting;
  bool up_ = false;
  bool paused_ = false;
  bool ping_due_ = false;
  std::uint64_t last_rx_ms_ = 0;
  std::string peer_close_;       // the server's close frame, for the on_down message
  // The connection's websocket protocol state.
  std::string key_;                          // Sec-WebSocket-Key
  std::string request_;                      // the CONNECT or upgrade request until written
  bool request_sent_ = false;
  std::optional<ws::upgrade_reader> tunnel_;  // the proxy's answer to CONNECT
  std::unique_ptr<tls::stream> tls_;          // wss: the TLS session under the websocket
  std::optional<ws::upgrade_reader> upgrade_;
  std::optional<ws::frame_reader> reader_;
  std::string held_rx_;  // read while paused, not parsed yet
  bool held_queued_ = false;   // a `held` event is in deferred_
  bool reading_ = true;        // lws reads the current connection (rx flow control)
  bool write_stalled_ = false;  // lws holds part of a frame the socket has not taken yet
  std::optional<std::string> pong_;   // a pong to send (the ping's payload)
  std::optional<std::string> close_;  // the close frame to echo; the connection ends after it
  std::array<unsigned char, 256> random_{};  // mask keys, refilled from uv_random
  std::size_t random_used_ = sizeof random_;
  struct out_frame {
    std::string bytes;                    // frame_headroom bytes, then the payload
    std::vector<std::uint64_t> requests;  // the sends merged into it
  };
  std::deque<out_frame> out_;
  bool last_mergeable_ = false;  // the newest frame in out_ may take more messages

  std::deque<event> deferred_;
  int api_depth_ = 0;
  std::vector<dns_query*> dns_;  // in flight (cancelled ones too, until their callback)

  phase phase_ = phase::open;
  std::vector<std::function<void()>> done_;
  bool detached_ = false;
  bool in_final_ = false;
  int open_handles_ = 0;  // the timers, plus the context when this core was its last user
  bool handles_closed_ = false;

  uv_timer_t defer_timer_;
  uv_timer_t connect_timer_;
  uv_timer_t ping_timer_;
};

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

// ---- lws callbacks ------------------------------------------------------------------------------

int websocket_core::on_lws_callback(lws* wsi, std::uint64_t id, lws_callback_reasons reason,
                                    void* in, std::size_t len) {
  lws* outer = cb_wsi_;
  cb_wsi_ = wsi;
  int rc;
  try {
    rc = on_lws(wsi, id, reason, in, len);
  } catch (const std::exception& e) {
    fail_quietly("websocket: internal error: ", e.what());
    rc = -1;
  } catch (...) {
    fail_quietly("websocket: internal error");
    rc = -1;
  }
  cb_wsi_ = outer;
  return rc;
}

// Last resort inside a C callback: end the connection, and let nothing escape (not even
// bad_alloc while building the report).
void websocket_core::fail_quietly(const char* what, const char* detail) noexcept {
  try {
    connection_lost(make_error(errc::transport_error, std::string(what) + (detail ? detail : "")));
  } catch (...) {
    try {
      drop_connection();
    } catch (...) {
    }
  }
}

int websocket_core::on_lws(lws* wsi, std::uint64_t id, lws_callback_reasons reason, void* in,
                           std::size_t len) {
  const bool current = id != 0 && id == conn_ && phase_ == phase::open;
  if (!current) return stray_answer(reason);
  if (!wsi_) wsi_ = wsi;  // callbacks from inside lws_client_connect_via_info

  switch (reason) {
    case LWS_CALLBACK_RAW_CONNECTED:
      return on_connected(wsi);

    case LWS_CALLBACK_RAW_WRITEABLE:
      return on_writeable(wsi);

    case LWS_CALLBACK_RAW_RX:
      return on_receive(wsi, id, static_cast<const char*>(in), len);

    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
      wsi_ = nullptr;  // lws frees it after this callback
      std::string msg = "websocket: connection to " + describe();
      if (proxy_) msg += " through the proxy " + proxy_->host_port();
      msg += " failed";
      if (in) {
        const auto* text = static_cast<const char*>(in);
        msg += ": " + std::string(text, ::strnlen(text, len > 0 ? len : 256));
      }
      connection_lost(make_error(errc::transport_error, std::move(msg)));
      return 0;
    }

    case LWS_CALLBACK_RAW_CLOSE: {
      wsi_ = nullptr;
      std::string msg;
      if (up_) {
        msg = "websocket: connection closed by " + describe() + peer_close_;
      } else {
        msg = "websocket: connection to " + describe() + " closed ";
        switch (stage_) {
          case stage::tunnel: msg += "by the proxy before it answered CONNECT"; break;
          case stage::tls: msg += "during the TLS handshake"; break;
          default: msg += "before the upgrade completed"; break;
        }
      }
      connection_lost(make_error(errc::transport_error, std::move(msg)));
      return 0;
    }

    case LWS_CALLBACK_WSI_DESTROY:
      // Destroyed without RAW_CLOSE / CONNECTION_ERROR (lws's own timeouts, ...).
      wsi_ = nullptr;
      connection_lost(
          make_error(errc::transport_error, "websocket: connection to " + describe() + " lost"));
      return 0;

    default:
      return 0;
  }
}

// TCP is up (to the proxy, or to the server).
int websocket_core::on_connected(lws* wsi) {
  // Without a connect timeout of ours, lws's own bounds the wait for the answers (lws clears it
  // for RAW connections).
  if (config_.connect_timeout.count() <= 0) {
    lws_set_timeout(wsi, PENDING_TIMEOUT_AWAITING_SERVER_RESPONSE, lws_timeout_s_);
  }
  if (!proxy_) return start_stream(wsi);
  stage_ = stage::tunnel;
  request_ = ws::connect_request(endpoint_->host_port(), proxy_auth_);
  request_sent_ = false;
  tunnel_.emplace(std::string());
  lws_callback_on_writable(wsi);
  return 0;
}

// The byte stream to the server is there (directly or through the proxy's tunnel): start TLS on
// it for wss, else ask for the upgrade.
int websocket_core::start_stream(lws* wsi) {
  if (!endpoint_->tls) {
    prepare_upgrade(wsi);
    return 0;
  }
  stage_ = stage::tls;
  tls_ = std::make_unique<tls::stream>(*shared_->tls(), endpoint_->address, endpoint_->numeric,
                                       config_.tls_verify);
  // The ClientHello, or an unusable trust store.
  if (tls_->handshake() == tls::stream::status::failed) return tls_failed(wsi);
  if (flush_tls(wsi) < 0) {
    connection_lost(make_error(errc::transport_error,
                               "websocket: starting TLS with " + describe() + " failed"));
    return -1;
  }
  return 0;
}

// Builds the upgrade request; on_writeable sends it.
void websocket_core::prepare_upgrade(lws* wsi) {
  stage_ = stage::upgrade;
  unsigned char nonce[16];
  for (std::size_t i = 0; i < sizeof nonce; i += 4) {
    const auto m = next_mask();
    std::memcpy(nonce + i, m.data(), 4);
  }
  key_ = ws::base64(nonce, sizeof nonce);
  std::string_view cookie = cookie_;
  if (has_ctl(cookie)) {
    log(log_level::warning, "websocket: ignoring a cookie header with control characters");
    cookie = {};
  }
  request_ = ws::upgrade_request(endpoint_->host, endpoint_->path, key_, headers_, cookie);
  request_sent_ = false;
  upgrade_.emplace(key_);
  lws_callback_on_writable(wsi);
}

// 4 bytes of the loop-independent system CSPRNG per frame (RFC 6455 wants unpredictable mask
// keys), fetched 256 bytes at a time.
std::array<unsigned char, 4> websocket_core::next_mask() {
  if (random_used_ + 4 > random_.size()) {
    if (uv_random(nullptr, nullptr, random_.data(), random_.size(), 0, nullptr) != 0 &&
        (!shared_ ||
         lws_get_random(shared_->handle(), random_.data(), random_.size()) != random_.size())) {
      throw std::runtime_error("no random bytes for the websocket mask");
    }
    random_used_ = 0;
  }
  std::array<unsigned char, 4> m;
  std::memcpy(m.data(), random_.data() + random_used_, 4);
  random_used_ += 4;
  return m;
}

// A control frame's bytes: headroom, then the payload (at most 125 bytes).
std::string websocket_core::control_frame(std::string_view payload) const {
  std::string f(frame_headroom, '\0');
  f.append(payload.substr(0, 125));
  return f;
}

// Bytes for the server: through TLS on wss, else as they are. lws keeps what the socket does not
// take and sends it, in order, before anything written later and before the next writeable
// callback. -1 when the connection cannot take them.
int websocket_core::write_bytes(lws* wsi, const char* data, std::size_t len) {
  if (tls_) {
    if (!tls_->write(data, len)) {
      log(log_level::error, "websocket: TLS write failed: " + tls_->what());
      return -1;
    }
    return flush_tls(wsi);
  }
  auto* p = reinterpret_cast<unsigned char*>(const_cast<char*>(data));
  return lws_write(wsi, p, len, LWS_WRITE_RAW) < static_cast<int>(len) ? -1 : 0;
}

// Hands what TLS has for the server (records, handshake messages, alerts) to lws.
int websocket_core::flush_tls(lws* wsi) {
  std::string out;
  tls_->take_output(out);
  if (out.empty()) return 0;
  return lws_write(wsi, reinterpret_cast<unsigned char*>(&out[0]), out.size(), LWS_WRITE_RAW) <
                 static_cast<int>(out.size())
             ? -1
             : 0;
}

// TLS failed (tls_->what() says why): report the connection lost and close it. A refused
// certificate is errc::certificate_error: retrying cannot help.
int websocket_core::tls_failed(lws* wsi) {
  flush_tls(wsi);  // the alert that tells the server why, if any; best effort
  const std::string peer = endpoint_->host_port();
  error err = tls_->certificate_refused()
                  ? make_error(errc::certificate_error,
                               "websocket: TLS certificate of " + peer + " refused: " + tls_->what())
                  : make_error(errc::transport_error,
                               "websocket: TLS with " + peer + " failed: " + tls_->what());
  connection_lost(std::move(err));
  return -1;
}

// Writes `bytes` (frame_headroom, then the payload) as one frame, masked in place.
int websocket_core::write_frame(lws* wsi, std::string& bytes, ws::opcode op) {
  const std::size_t n = bytes.size() - frame_headroom;
  const char* start = ws::frame_in_place(&bytes[frame_headroom], n, op, next_mask());
  return write_bytes(wsi, start, n + ws::header_size(n));
}

int websocket_core::on_writeable(lws* wsi) {
  if (!up_) {
    // Until the upgrade: the CONNECT request (in the clear, to the proxy), then the upgrade.
    if (request_sent_ || request_.empty()) return 0;  // nothing to send yet
    request_sent_ = true;
    const bool connect = stage_ == stage::tunnel;
    const int rc = connect ? lws_write(wsi, reinterpret_cast<unsigned char*>(&request_[0]),
                                       request_.size(), LWS_WRITE_RAW) <
                                     static_cast<int>(request_.size())
                                 ? -1
                                 : 0
                           : write_bytes(wsi, request_.data(), request_.size());
    if (rc < 0) {
      connection_lost(make_error(
          errc::transport_error,
          connect ? "websocket: sending CONNECT to the proxy " + proxy_->host_port() + " failed"
                  : "websocket: sending the upgrade request to " + describe() + " failed"));
      return -1;
    }
    std::string().swap(request_);
    return 0;
  }
  if (write_stalled_) {
    // lws calls this only once what it held has left: read again.
    write_stalled_ = false;
    update_reading();
  }
  int rc = 0;
  if (close_) {
    // The server closed: echo its close frame, then end the connection.
    std::string f = control_frame(*close_);
    write_frame(wsi, f, ws::opcode::close);
    connection_lost(make_error(errc::transport_error,
                               "websocket: connection closed by " + describe() + peer_close_));
    return -1;
  }
  if (pong_) {
    std::string f = control_frame(*pong_);
    pong_.reset();
    rc = write_frame(wsi, f, ws::opcode::pong);
  } else if (ping_due_) {
    ping_due_ = false;
    std::string f = control_frame({});
    rc = write_frame(wsi, f, ws::opcode::ping);
  } else if (!out_.empty()) {
    std::string frame = std::move(out_.front().bytes);
    out_.pop_front();
    if (out_.empty()) last_mergeable_ = false;
    rc = write_frame(wsi, frame, ws::opcode::text);
  }
  if (rc < 0) {
    connection_lost(make_error(errc::transport_error, "websocket: sending a frame failed"));
    return -1;
  }
  if (lws_partial_buffered(wsi)) {
    // The socket did not take the whole frame; lws sends the rest as it drains, and calls this
    // again once it is gone. lws 4.1's RAW role does not read meanwhile, so stop asking it to.
    write_stalled_ = true;
    update_reading();
    lws_callback_on_writable(wsi);
    return 0;
  }
  if (pong_ || ping_due_ || !out_.empty()) lws_callback_on_writable(wsi);
  return 0;
}

int websocket_core::on_receive(lws* wsi, std::uint64_t id, const char* in, std::size_t len) {
  last_rx_ms_ = uv_now(loop_);
  if (stage_ == stage::tunnel) {
    if (on_tunnel_answer(wsi, in, len) < 0) return -1;
    if (stage_ == stage::tunnel || len == 0) return 0;
  }
  if (tls_) return on_tls_receive(wsi, id, in, len);
  return on_stream(wsi, id, in, len);
}

// The proxy's answer to CONNECT; on success the tunnel carries the rest (`in`/`len` are left at
// the first byte past the answer).
int websocket_core::on_tunnel_answer(lws* wsi, const char*& in, std::size_t& len) {
  const std::size_t used = tunnel_->feed(in, len);
  in += used;
  len -= used;
  const std::string proxy = "the proxy " + proxy_->host_port();
  switch (tunnel_->status_state()) {
    case ws::upgrade_reader::state::incomplete:
      return 0;
    case ws::upgrade_reader::state::invalid:
      connection_lost(make_error(errc::transport_error, "websocket: invalid answer from " + proxy +
                                                            " to CONNECT: " + tunnel_->what()));
      return -1;
    case ws::upgrade_reader::state::accepted:  // a 101, no answer to CONNECT
    case ws::upgrade_reader::state::refused:
      break;
  }
  if (tunnel_->status() / 100 != 2) {
    std::string msg = "websocket: " + proxy + " refused the tunnel to " + endpoint_->host_port() +
                      ": HTTP " + std::to_string(tunnel_->status());
    if (!tunnel_->reason().empty()) msg += " " + tunnel_->reason();
    connection_lost(make_error(errc::transport_error, std::move(msg)));
    return -1;
  }
  tunnel_.reset();
  return start_stream(wsi);
}

// wss: ciphertext from the server. Decrypts everything it completes (while paused too: the
// plaintext is then held like ws:// bytes), sending what TLS answers.
int websocket_core::on_tls_receive(lws* wsi, std::uint64_t id, const char* in, std::size_t len) {
  if (!tls_->feed(in, len)) {
    connection_lost(make_error(errc::transport_error, "websocket: " + tls_->what()));
    return -1;
  }
  if (stage_ == stage::tls) {
    const auto st = tls_->handshake();
    if (st == tls::stream::status::failed) return tls_failed(wsi);
    if (st == tls::stream::status::closed) {
      connection_lost(make_error(errc::transport_error, "websocket: " + describe() +
                                                            " ended the TLS session during the "
                                                            "handshake"));
      return -1;
    }
    if (flush_tls(wsi) < 0) {
      connection_lost(make_error(errc::transport_error,
                                 "websocket: TLS handshake with " + describe() + " failed"));
      return -1;
    }
    if (st == tls::stream::status::again) return 0;
    log(log_level::debug, "websocket: TLS established with " + describe());
    prepare_upgrade(wsi);
  }
  // The context's buffer; returned below whatever happens (the context outlives this callback
  // even when the transport closes from inside it: its teardown starts from a timer).
  ws_context* ctx = shared_;
  std::vector<char> buf = ctx->borrow_plaintext_buffer();
  struct give_back {
    ws_context* ctx;
    std::vector<char>& buf;
    ~give_back() { ctx->return_plaintext_buffer(std::move(buf)); }
  } guard{ctx, buf};
  if (buf.size() < plaintext_chunk) buf.resize(plaintext_chunk);
  for (;;) {
    std::size_t n = 0;
    const auto st = tls_->read(buf.data(), buf.size(), n);
    if (st == tls::stream::status::again) break;
    if (st == tls::stream::status::closed) {
      // close_notify: the server ended the session; what it sent before was delivered.
      connection_lost(make_error(
          errc::transport_error,
          up_ ? "websocket: connection closed by " + describe() + peer_close_
              : "websocket: " + describe() + " ended the TLS session before the upgrade"));
      return -1;
    }
    if (st == tls::stream::status::failed) return tls_failed(wsi);
    if (on_stream(wsi, id, buf.data(), n) < 0 || conn_ != id) return -1;
  }
  // TLS may answer what it read (a key update).
  return flush_tls(wsi) < 0 ? -1 : 0;
}

// The byte stream from the server (decrypted on wss): the upgrade answer, then frames.
int websocket_core::on_stream(lws* wsi, std::uint64_t id, const char* in, std::size_t len) {
  if (close_) return 0;  // nothing after the server's close frame counts
  if (!up_) {
    if (on_upgrade_answer(wsi, id, in, len) < 0) return -1;
    if (!up_ || len == 0) return 0;
  }
  if (paused_ || !held_rx_.empty()) {
    held_rx_.append(in, len);  // parsed once the receive resumes, in order
    return 0;
  }
  return read_frames(wsi, id, in, len);
}

// The server's answer to the upgrade; on success `in`/`len` are left at the first frame byte.
int websocket_core::on_upgrade_answer(lws* wsi, std::uint64_t id, const char*& in,
                                      std::size_t& len) {
  if (!upgrade_) return -1;  // bytes before the request was written: not a server we speak to
  const std::size_t used = upgrade_->feed(in, len);
  in += used;
  len -= used;
  switch (upgrade_->status_state()) {
    case ws::upgrade_reader::state::incomplete:
      return 0;
    case ws::upgrade_reader::state::refused:
      connection_lost(upgrade_refused(upgrade_->status(), upgrade_->reason()));
      return -1;
    case ws::upgrade_reader::state::invalid:
      connection_lost(make_error(errc::transport_error, "websocket: invalid upgrade response from " +
                                                            describe() + ": " + upgrade_->what()));
      return -1;
    case ws::upgrade_reader::state::accepted:
      break;
  }
  upgrade_.reset();
  reader_.emplace(config_.max_message_size);
  return on_established(wsi, id);
}

// The server answered the upgrade with another status than 101.
error websocket_core::upgrade_refused(int status, std::string_view reason) const {
  std::string msg = "websocket upgrade refused: HTTP " + std::to_string(status);
  if (!reason.empty()) msg.append(" ").append(reason);
  msg += " from " + describe();
  // The status says what it was: the session tells authentication failures (401/403, the auth
  // extension's business) and client errors that retrying will not change from the rest.
  error e = make_error(errc::http_error, std::move(msg));
  e.http_status = status;
  return e;
}

// The websocket is open.
int websocket_core::on_established(lws* wsi, std::uint64_t id) {
  up_ = true;
  uv_timer_stop(&connect_timer_);
  last_rx_ms_ = uv_now(loop_);
  if (tuning_.ping_interval.count() > 0) {
    const auto iv = static_cast<std::uint64_t>(tuning_.ping_interval.count());
    uv_timer_start(&ping_timer_, &websocket_core::on_ping_timer, iv, iv);
  }
  if (config_.connect_timeout.count() <= 0) lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
  update_reading();
  log(log_level::debug, "websocket: connected to " + describe());
  emit({event::kind::up, {}, {}, false, {}});
  if (conn_ != id) return -1;  // aborted or closed from on_up
  if (!out_.empty()) lws_callback_on_writable(wsi);
  return 0;
}

int websocket_core::read_frames(lws* wsi, std::uint64_t id, const char* in, std::size_t len) {
  for (;;) {
    std::size_t used = 0;
    const auto ev = reader_->next(in, len, used);
    in += used;
    len -= used;
    switch (ev) {
      case ws::frame_reader::event::none:
        return 0;
      case ws::frame_reader::event::message: {
        const bool now = emit({event::kind::frame, reader_->take_message(), {}, false, {}});
        if (conn_ != id) return -1;  // aborted, closed or failed from on_frame
        if (len > 0 && (paused_ || !now)) {
          // Paused by on_frame, or the frame waits behind deferred events (whose receiver may
          // yet pause): the rest waits, unparsed, in order.
          held_rx_.insert(0, in, len);
          if (!paused_ && !held_queued_) {
            held_queued_ = true;
            deferred_.push_back({event::kind::held, {}, {}, false, {}});
            uv_timer_start(&defer_timer_, &websocket_core::on_defer_timer, 0, 0);
          }
          update_reading();
          return 0;
        }
        break;
      }
      case ws::frame_reader::event::ping:
        pong_ = reader_->control_payload();
        lws_callback_on_writable(wsi);
        break;
      case ws::frame_reader::event::pong:
        break;
      case ws::frame_reader::event::close: {
        std::string echo;
        if (const unsigned code = reader_->close_code(); code != 0) {
          peer_close_ = " (close code " + std::to_string(code);
          if (!reader_->control_payload().empty()) peer_close_ += ": " + reader_->control_payload();
          peer_close_ += ")";
          echo.push_back(static_cast<char>(code >> 8));
          echo.push_back(static_cast<char>(code & 0xFF));
        }
        close_ = std::move(echo);
        lws_callback_on_writable(wsi);
        return 0;
      }
      case ws::frame_reader::event::error: {
        // Tell the server why (1002 protocol error, 1009 too big), unless lws still holds part
        // of a frame: a close frame must not land inside it.
        if (!lws_partial_buffered(wsi)) {
          const unsigned status = reader_->close_status();
          const char code[2] = {static_cast<char>(status >> 8), static_cast<char>(status & 0xFF)};
          std::string f = control_frame(std::string_view(code, 2));
          write_frame(wsi, f, ws::opcode::close);
        }
        // Inside its callback the wsi closes by returning -1; from parse_held it is killed.
        connection_lost(make_error(reader_->error_code(),
                                   reader_->what() + " (from " + describe() + ")"));
        return -1;
      }
    }
  }
}

// The receive resumed: parse what was read while it was paused (from the deferred-event timer).
void websocket_core::parse_held() {
  held_queued_ = false;
  if (!up_ || !wsi_ || !reader_ || held_rx_.empty()) return;
  if (paused_) return;  // paused again before this ran: stays held until the next resume
  std::string held;
  held.swap(held_rx_);
  const std::uint64_t id = conn_;
  // May hold the rest again; a failure there kills the connection.
  read_frames(wsi_, id, held.data(), held.size());
  if (conn_ == id) update_reading();
}

// ---- the shared lws context ---------------------------------------------------------------------

ws_context::ws_context(uv_loop_t* loop, context_settings settings)
    : loop_(loop), settings_(std::move(settings)) {
  std::memset(protocols_, 0, sizeof protocols_);
  protocols_[0].name = protocol_name;
  protocols_[0].callback = &ws_context::lws_callback;
  // lws writes at most this much of a frame per send() (its default is the 16 KiB read buffer):
  // a merged frame leaves in one call when the socket takes it, rather than stalling reading for
  // several loop iterations while lws drains the rest.
  protocols_[0].tx_packet_size = max_send;
}

ws_context* ws_context::acquire(uv_loop_t* loop, const context_settings& settings,
                                websocket_core* user) {
  registry& reg = contexts();
  std::lock_guard<std::mutex> lock(reg.mutex);
  for (ws_context* c : reg.live) {
    if (c->loop_ == loop && c->users_.size() < users_per_context && c->settings_ == settings) {
      c->users_.push_back(user);
      return c;
    }
  }
  reg.live.reserve(reg.live.size() + 1);
  auto* c = new ws_context(loop, settings);
  try {
    c->users_.push_back(user);
  } catch (...) {
    delete c;
    throw;
  }

  if (settings.tls) {
    try {
      c->tls_ = std::make_unique<tls::context>(settings.ca_file);
    } catch (...) {
      delete c;
      throw;
    }
  }
  quiet_lws_logging();
  lws_context_creation_info info;
  std::memset(&info, 0, sizeof info);
  info.options = LWS_SERVER_OPTION_LIBUV;
  // The transport tunnels through http_proxy itself; an empty address keeps lws from reading the
  // variable and tunnelling every RAW connection it makes (lws then logs an error nobody sees).
  info.http_proxy_address = "";
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.protocols = c->protocols_;
  void* loops[1] = {loop};
  info.foreign_loops = loops;
  info.pcontext = &c->ctx_;
  info.user = c;
  info.pt_serv_buf_size = settings.buffer_size;
  info.fd_limit_per_thread = fd_limit;
  info.count_threads = 1;
  info.timeout_secs = settings.timeout_s;
  info.connect_timeout_secs = settings.timeout_s;
  c->ctx_ = lws_create_context(&info);
  if (!c->ctx_) {
    delete c;
    return nullptr;
  }
  uv_timer_init(loop, &c->teardown_timer_);
  c->teardown_timer_.data = c;
  reg.live.push_back(c);  // cannot throw: reserved above
  return c;
}

bool ws_context::release(websocket_core* user) {
  users_.erase(std::remove(users_.begin(), users_.end(), user), users_.end());
  if (!users_.empty()) return false;
  {
    // From now on the loop's next transport with these settings gets a new context.
    registry& reg = contexts();
    std::lock_guard<std::mutex> lock(reg.mutex);
    reg.live.erase(std::remove(reg.live.begin(), reg.live.end(), this), reg.live.end());
  }
  last_user_ = user;
  // lws_context_destroy must not run inside an lws callback: start from our own uv callback.
  uv_timer_start(&teardown_timer_, &ws_context::on_teardown_timer, 0, 0);
  return true;
}

std::uint64_t ws_context::route(websocket_core* core) {
  const std::uint64_t id = next_id_++;
  routes_.emplace(id, core);
  return id;
}

void ws_context::forget(std::uint64_t id) noexcept { routes_.erase(id); }

void ws_context::saw_wsi(const lws* wsi) {
  try {
    wsis_.insert(wsi);
  } catch (...) {
    // Out of memory: at worst a watcher lws leaves open is not closed at teardown.
  }
}

void ws_context::log(log_level level, std::string_view msg) const {
  if (last_user_) last_user_->log(level, msg);
}

int ws_context::lws_callback(lws* wsi, lws_callback_reasons reason, void*, void* in,
                             std::size_t len) {
  if (!wsi || !is_connection_reason(reason)) return 0;
  lws_context* cx = lws_get_context(wsi);
  auto* self = cx ? static_cast<ws_context*>(lws_context_user(cx)) : nullptr;
  if (!self) return 0;
  return self->dispatch(wsi, reason, in, len);
}

int ws_context::dispatch(lws* wsi, lws_callback_reasons reason, void* in, std::size_t len) {
  saw_wsi(wsi);
  const auto id =
      static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(lws_get_opaque_user_data(wsi)));
  const auto it = id == 0 ? routes_.end() : routes_.find(id);
  if (it == routes_.end()) return stray_answer(reason);
  return it->second->on_lws_callback(wsi, id, reason, in, len);  // catches everything
}

// lws 4.1.6 on a foreign loop (checked with valgrind and ASan on Debian's 4.1.6-3):
// - one lws_context_destroy() closes lws's uv handles but never frees the context (4.1 calls the
//   last destroy stage only for loops lws owns);
// - a second one after those handles have closed frees it synchronously (ctx_ becomes null);
// - a second one while their close callbacks are pending crashes (the plugin holding the callbacks
//   is unloaded).
// So, once the last user is gone: first destroy from our own uv callback, then poll until no
// handle on the loop has data == context (lws's idle and timer handles do; a private 4.1 detail),
// then destroy again.

void ws_context::on_teardown_timer(uv_timer_t* t) {
  auto* self = static_cast<ws_context*>(t->data);
  if (self->ctx_) lws_context_destroy(self->ctx_);
  if (!self->ctx_) {
    self->finish_teardown();
    return;
  }
  uv_timer_start(&self->teardown_timer_, &ws_context::on_teardown_poll, teardown_poll_ms,
                 teardown_poll_ms);
}

void ws_context::on_teardown_poll(uv_timer_t* t) {
  auto* self = static_cast<ws_context*>(t->data);
#if UVCOMETD_LWS_TWO_STEP_DESTROY
  if (self->ctx_ && !self->lws_handles_remain()) lws_context_destroy(self->ctx_);
#endif
  if (self->ctx_) {
    // Waiting on lws; a context that never lets go would keep the loop alive, so say so.
    if (++self->teardown_polls_ == 5000 / teardown_poll_ms) {
      self->log(log_level::warning,
                "websocket: libwebsockets context still not destroyed after 5 s");
    }
    return;
  }
  uv_timer_stop(&self->teardown_timer_);
  self->finish_teardown();
}

bool ws_context::lws_handles_remain() const {
  struct probe {
    const void* ctx;
    bool found;
  } p{ctx_, false};
  uv_walk(
      loop_,
      [](uv_handle_t* h, void* arg) {
        auto* pr = static_cast<probe*>(arg);
        if (h->data == pr->ctx) pr->found = true;
      },
      &p);
  return p.found;
}

void ws_context::close_orphaned_watchers() {
  // Runs once the context is destroyed, so lws will never touch these handles again. A watcher
  // lws still used would be active; the orphans are stopped, not closing, and point at one of our
  // (dead) wsis. lws allocated them with its realloc-based allocator: free() releases them.
  // The current connections of the loop's other contexts are left alone: one of them may have
  // been allocated where a dead wsi of this context was, and its watcher is stopped while paused.
  std::unordered_set<const void*> live;
  {
    registry& reg = contexts();
    std::lock_guard<std::mutex> lock(reg.mutex);
    for (const ws_context* c : reg.live) {
      if (c->loop_ != loop_) continue;
      for (const websocket_core* u : c->users_) {
        if (u->wsi_) live.insert(u->wsi_);
      }
    }
  }
  struct probe {
    const std::unordered_set<const void*>* wsis;
    const std::unordered_set<const void*>* live;
    std::vector<uv_handle_t*> found;
  } p{&wsis_, &live, {}};
  uv_walk(
      loop_,
      [](uv_handle_t* h, void* arg) {
        auto* pr = static_cast<probe*>(arg);
        if (h->type == UV_POLL && !uv_is_closing(h) && !uv_is_active(h) &&
            pr->wsis->count(h->data) && !pr->live->count(h->data)) {
          pr->found.push_back(h);
        }
      },
      &p);
  for (uv_handle_t* h : p.found) uv_close(h, [](uv_handle_t* closed) { std::free(closed); });
  if (!p.found.empty()) {
    log(log_level::debug, "websocket: closed " + std::to_string(p.found.size()) +
                              " watcher(s) libwebsockets left open");
  }
  wsis_.clear();
}

// Frees this once its timer is closed, then lets the last user finish its close.
void ws_context::finish_teardown() {
#if UVCOMETD_LWS_TWO_STEP_DESTROY
  try {
    if (!ctx_) close_orphaned_watchers();
  } catch (...) {
    // Out of memory: the orphans stay (as if lws had not left them); the teardown goes on.
  }
#endif
  uv_close(reinterpret_cast<uv_handle_t*>(&teardown_timer_), [](uv_handle_t* h) {
    auto* self = static_cast<ws_context*>(h->data);
    websocket_core* last = self->last_user_;
    delete self;
    if (last) last->context_closed();
  });
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
