// Long-polling transport: libcurl's multi-socket API driven by the application's libuv loop.
//
// Layout: `long_polling_transport` is a thin handle the session owns; the work happens in
// `lp_core`, which owns the easy handles, the cookie jar (a CURLSH) and a timer for deferred
// failures. Every transport of one uv loop drives its transfers through the loop's `lp_multi`: one
// CURLM with its curl timer and socket polls, reference-counted by the cores (a CURLM costs ~40 kB
// of hash tables, more than the rest of an idle client). Connections and the DNS cache are pooled
// by the loop's transports; cookies are not (one CURLSH per core, sharing cookies only).
// The core frees itself once its handles are closed *and* the handle object is gone, so destroying
// the transport early (even from inside one of its own callbacks) never leaves a uv callback
// pointing at freed memory; the multi frees itself once its last user released it and its uv
// handles are closed, and the last user's close() completes only after that.
//
// Reentrancy rules:
// - events are only reported from uv callbacks (poll, timers), after libcurl returned, so the
//   receiver may call send(), abort() or close() on this transport or on any other of the loop,
//   or destroy them, from inside them;
// - the multi dispatches finished transfers to the core owning each easy handle (CURLOPT_PRIVATE
//   is the request_ctx, which names its core); a core that closed removed its easy handles, so no
//   message of it is left. While it dispatches the multi counts as in use, so a release from a
//   handler never destroys it under its own feet: the last release tears down once it returned;
// - libcurl is never re-entered from one of its own callbacks: the only user code that runs inside
//   a curl callback would be config.log, and nothing is logged there.

#include <curl/curl.h>
#include <uv.h>

#include <algorithm>
#include <charconv>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "transport/http_text.hpp"
#include "transport/tls_client.hpp"
#include "transport/transport.hpp"

namespace uvcometd::detail {
namespace {

// Library policy: libcurl is initialised once per process, on first use, and never cleaned up
// (curl_global_cleanup is not safe while anything else in the process may still use libcurl).
void ensure_curl_global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

constexpr std::size_t max_free_requests = 4;  // idle easy handles kept for reuse
constexpr std::size_t body_excerpt = 200;     // body characters quoted in an HTTP error
// Response header bytes kept per request. libcurl's own total limit depends on its version (none
// before 8.3 upstream; 300 kB where it exists) and the lines are kept here as strings: a server
// sending header lines for ever must not grow the client past this.
constexpr std::size_t max_header_bytes = 64 * 1024;

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

class lp_core;
class lp_multi;

// One HTTP exchange; recycled (with its easy handle) through lp_core's free list.
struct request_ctx {
  CURL* easy = nullptr;
  lp_core* owner = nullptr;  // the multi reports the finished transfer to it
  std::shared_ptr<curl_slist> request_headers;  // the list CURLOPT_HTTPHEADER points to
  std::uint64_t id = 0;
  std::string body;  // CURLOPT_POSTFIELDS points here, so it lives as long as the transfer
  std::string response;
  header_list headers;
  std::size_t max_size = 0;
  std::size_t header_bytes = 0;  // response header bytes received (max_header_bytes)
  bool configured = false;  // the options shared by every request are set (lp_core::configure)
  bool too_large = false;
  bool headers_too_large = false;
  bool out_of_memory = false;
  char errbuf[CURL_ERROR_SIZE] = {};

  ~request_ctx() {
    if (easy) curl_easy_cleanup(easy);
  }
};

// A uv_poll_t for one socket curl told us about; freed in its close callback.
struct poll_ctx {
  uv_poll_t poll{};
  curl_socket_t fd = CURL_SOCKET_BAD;
  int events = 0;  // what curl asked for last (UV_READABLE / UV_WRITABLE)
  lp_multi* owner = nullptr;
};

// A failure found in send() (e.g. curl_multi_add_handle refused), reported from a timer later.
struct deferred_failure {
  std::uint64_t id;
  error err;
};

// The CURLM shared by every long-polling transport of one uv loop, with the curl timer and one
// uv_poll_t per socket curl watches. Created by the first core of a loop (acquire), torn down when
// the last one releases it and nothing is being dispatched; frees itself once its uv handles are
// closed, then tells that last core. Never shared across loops.
class lp_multi {
 public:
  // The multi of `loop` with `user` counted as one more user, created if the loop has none (or
  // only one already being torn down). Null when libcurl fails; throws std::bad_alloc.
  static lp_multi* acquire(uv_loop_t* loop, lp_core* user);

  // `user` (which removed its easy handles already) stops using the multi. True when it was the
  // last user: user->multi_closed() then runs once the multi's uv handles are closed.
  bool release(lp_core* user);

  CURLM* handle() const noexcept { return multi_; }

  lp_multi(const lp_multi&) = delete;
  lp_multi& operator=(const lp_multi&) = delete;

 private:
  struct registry {
    std::mutex mutex;  // two loops may run on two threads; each multi is used by its loop's only
    std::unordered_map<uv_loop_t*, lp_multi*> by_loop;
  };
  static registry& loops() {
    static registry r;
    return r;
  }

  explicit lp_multi(uv_loop_t* loop) : loop_(loop) {}
  ~lp_multi() {
    if (multi_) curl_multi_cleanup(multi_);  // only when acquire() failed half-way
  }

  void socket_action(curl_socket_t fd, int flags);
  void drain();
  void fail_all(const std::string& msg);
  void shut_down();
  void close_poll(poll_ctx* p);
  void handle_closed();
  bool is_user(const lp_core* c) const {
    return std::find(users_.begin(), users_.end(), c) != users_.end();
  }

  static int on_socket(CURL* easy, curl_socket_t fd, int what, void* userp, void* socketp);
  static int on_curl_timer_set(CURLM* multi, long timeout_ms, void* userp);
  static void on_poll(uv_poll_t* handle, int status, int events);
  static void on_curl_timeout(uv_timer_t* handle);

  uv_loop_t* loop_;
  CURLM* multi_ = nullptr;
  uv_timer_t curl_timer_{};  // CURLMOPT_TIMERFUNCTION
  std::vector<poll_ctx*> polls_;
  std::vector<lp_core*> users_;  // the cores holding a reference
  lp_core* last_user_ = nullptr;  // told once the torn-down multi's handles are closed
  int dispatching_ = 0;  // socket_action frames on the stack: no tear-down under them
  int open_handles_ = 0;
  bool shutting_down_ = false;
};

class lp_core {
 public:
  lp_core(uv_loop_t* loop, transport_config config, transport_events& events)
      : loop_(loop), config_(std::move(config)), events_(&events) {
    ensure_curl_global_init();
    init_curl();  // may throw std::bad_alloc, so before the timer (which would need a close)
    uv_timer_init(loop_, &defer_timer_);
    defer_timer_.data = this;
    open_handles_ = 1;
  }

  lp_core(const lp_core&) = delete;
  lp_core& operator=(const lp_core&) = delete;

  void send(std::uint64_t id, std::string body, std::chrono::milliseconds timeout) {
    if (closed_) return;  // nothing is reported after close()
    try {
      start(id, std::move(body), timeout);
    } catch (const std::bad_alloc&) {
      // Still exactly one outcome; if even that cannot be queued, the caller gets the exception.
      defer_failure(id, error(make_error_code(errc::transport_error), std::string()));
    }
  }

  // Drops every request in flight and every pending deferred failure, silently.
  void abort() {
    ++abort_generation_;  // stops reports being delivered in a loop further up the stack
    std::vector<std::unique_ptr<request_ctx>> reqs;
    reqs.swap(active_);
    for (auto& r : reqs) {
      // Only this core's handles: the other transports of the loop keep their transfers.
      if (multi_) curl_multi_remove_handle(multi_->handle(), r->easy);
      recycle(std::move(r));
    }
    deferred_.clear();
  }

  std::string cookie_header() const;

  void close(std::function<void()> done) {
    if (done) done_.push_back(std::move(done));
    if (closed_) {
      if (finished_) schedule_late_done();
      return;
    }
    closed_ = true;
    events_ = nullptr;
    abort();  // takes this core's easy handles out of the multi, with any message about them
    free_.clear();  // curl_easy_cleanup of the idle handles, before the share goes
    if (share_) {
      curl_share_cleanup(share_);
      share_ = nullptr;
    }
    header_list_.reset();
    if (multi_) {
      // The last user's close also waits for the multi's uv handles (whatever order libuv runs
      // close callbacks in), so that uv_loop_close() succeeds once the last `done` ran.
      if (multi_->release(this)) ++open_handles_;
      multi_ = nullptr;
    }
    uv_timer_stop(&defer_timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(&defer_timer_), on_handle_closed);
  }

  // The transport object is gone: close if needed, and free this once the handles are closed.
  void detach() {
    detached_ = true;
    if (!closed_) close(nullptr);
    if (finished_) delete this;
  }

 private:
  ~lp_core() = default;

  friend class lp_multi;

  void start(std::uint64_t id, std::string body, std::chrono::milliseconds timeout) {
    if (!multi_ || !share_) {
      defer_failure(id, error(make_error_code(errc::transport_error), init_error_));
      return;
    }
    std::unique_ptr<request_ctx> req = take_request();
    if (!req) {
      defer_failure(id, error(make_error_code(errc::transport_error),
                              "libcurl: could not create an easy handle"));
      return;
    }
    req->id = id;
    req->body = std::move(body);
    configure(*req, timeout);
    active_.reserve(active_.size() + 1);  // the push_back below must not throw once curl owns it
    CURLMcode rc = curl_multi_add_handle(multi_->handle(), req->easy);
    if (rc != CURLM_OK) {
      std::string msg = std::string("libcurl: ") + curl_multi_strerror(rc);
      recycle(std::move(req));
      defer_failure(id, error(make_error_code(errc::transport_error), std::move(msg)));
      return;
    }
    active_.push_back(std::move(req));
  }

  void log(std::string_view msg) const { log(log_level::debug, msg); }
  void log(log_level level, std::string_view msg) const {
    if (!config_.log) return;
    try {
      config_.log(level, msg);
    } catch (...) {
      // A throwing log sink must not break the transport.
    }
  }

  // Throws std::bad_alloc with nothing to undo; otherwise a failure leaves init_error_ set (and
  // multi_ or share_ null), which every send() then reports.
  void init_curl() {
    std::vector<std::string> lines;
    for (const auto& h : config_.headers) {
      // A header line with CR/LF would inject headers of its own: never sent.
      if (has_ctl(h)) log(log_level::warning, "long-polling: ignoring a header with control characters");
      else lines.push_back(h);
    }
    header_list_ = build_headers(lines);
    if (!header_list_) {
      init_error_ = "libcurl: out of memory building the request headers";
      return;
    }
    // The client's cookie jar, never shared with another client: every request handle is
    // attached to it (configure()), and cookie_header() reads it through one of them (no handle of
    // its own: ~6 kB per client).
    share_ = curl_share_init();
    if (!share_) {
      init_error_ = "libcurl initialisation failed";
      log(init_error_);
      return;
    }
    curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_COOKIE);
    try {
      multi_ = lp_multi::acquire(loop_, this);
    } catch (...) {
      curl_share_cleanup(share_);
      share_ = nullptr;
      throw;
    }
    if (!multi_) {
      init_error_ = "libcurl initialisation failed";
      log(init_error_);
    }
  }

  // The request header list: ours, then `lines` ("Name: value"). Null when out of memory.
  static std::shared_ptr<curl_slist> build_headers(const std::vector<std::string>& lines) {
    curl_slist* list = curl_slist_append(nullptr, "Content-Type: application/json;charset=UTF-8");
    // No "Expect: 100-continue" round trip on large bodies.
    if (list) list = append_or_fail(list, "Expect:");
    for (const auto& h : lines) {
      if (list) list = append_or_fail(list, h.c_str());
    }
    if (!list) return nullptr;
    return std::shared_ptr<curl_slist>(list, &curl_slist_free_all);
  }

 public:
  void set_headers(const header_list& headers) {
    std::vector<std::string> lines;
    for (const auto& [name, value] : headers) {
      const bool bad_name = name.empty() || name.find_first_of(" \t:") != std::string::npos;
      if (bad_name || has_ctl(name) || has_ctl(value)) {
        log(log_level::warning, "long-polling: ignoring malformed header '" + name + "'");
        continue;
      }
      lines.push_back(name + ": " + value);
    }
    if (auto list = build_headers(lines)) header_list_ = std::move(list);
    else log(log_level::error, "long-polling: out of memory building the request headers");
  }

 private:

  static curl_slist* append_or_fail(curl_slist* list, const char* h) {
    curl_slist* next = curl_slist_append(list, h);
    if (!next) curl_slist_free_all(list);
    return next;
  }

  std::unique_ptr<request_ctx> take_request() {
    if (!free_.empty()) {
      auto r = std::move(free_.back());
      free_.pop_back();
      return r;
    }
    auto r = std::make_unique<request_ctx>();
    r->owner = this;
    r->easy = curl_easy_init();
    if (!r->easy) return nullptr;
    return r;
  }

  void recycle(std::unique_ptr<request_ctx> r) {
    if (closed_ || free_.size() >= max_free_requests) return;  // the unique_ptr cleans it up
    std::string().swap(r->body);  // a big publish should not pin its memory
    std::string().swap(r->response);
    r->headers.clear();
    // request_headers is kept: the handle still points at that list (configure() sets another
    // only when set_headers() replaced it).
    free_.push_back(std::move(r));
  }

  // Options that are the same for every request of this transport are set once per easy handle
  // (a recycled handle keeps them: nothing else ever changes them); only what differs per request
  // is set on each use. Setting them again was not free: each string option is copied anew, and
  // libcurl appends every CURLOPT_COOKIEFILE call to a list it keeps and re-reads before every
  // transfer, so a reused handle grew and slowed down with each request (issue 11, finding 3).
  void configure(request_ctx& r, std::chrono::milliseconds timeout) {
    CURL* e = r.easy;
    r.response.clear();
    r.headers.clear();
    r.too_large = false;
    r.headers_too_large = false;
    r.header_bytes = 0;
    r.out_of_memory = false;
    r.errbuf[0] = '\0';
    r.max_size = config_.max_message_size;

    if (!r.configured) {
      configure_once(r);
      r.configured = true;
    }
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r.body.c_str());
    if (r.request_headers != header_list_) {
      r.request_headers = header_list_;  // stays valid for this transfer if the headers change
      curl_easy_setopt(e, CURLOPT_HTTPHEADER, r.request_headers.get());
    }
    // 0 or less means no deadline (curl's own meaning of 0).
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(std::max<std::int64_t>(0, timeout.count())));
  }

  // The options every request of this core shares; `r` lives at a fixed address (a unique_ptr)
  // for as long as its easy handle, so the pointers to it stay valid across reuses.
  void configure_once(request_ctx& r) {
    CURL* e = r.easy;
    curl_easy_setopt(e, CURLOPT_URL, config_.url.c_str());
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    curl_easy_setopt(e, CURLOPT_PRIVATE, static_cast<void*>(&r));
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "uvcometd");
    // Compressed bodies are accepted and inflated by libcurl; on_write counts the inflated bytes
    // against max_message_size, so a "gzip bomb" ends at the limit.
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    if (config_.connect_timeout.count() > 0)
      curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(config_.connect_timeout.count()));
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &lp_core::on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, static_cast<void*>(&r));
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &lp_core::on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, static_cast<void*>(&r));
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r.errbuf);
    // The cookie engine: the share's jar, enabled once per handle (see above).
    curl_easy_setopt(e, CURLOPT_SHARE, share_);
    curl_easy_setopt(e, CURLOPT_COOKIEFILE, "");
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, config_.tls_verify ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, config_.tls_verify ? 2L : 0L);
    if (!config_.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, config_.ca_file.c_str());
  }

  void defer_failure(std::uint64_t id, error err) {
    deferred_.push_back(deferred_failure{id, std::move(err)});
    uv_timer_start(&defer_timer_, &lp_core::on_defer_timer, 0, 0);
  }

  // --- libcurl callbacks: no libcurl calls, no user code, no exceptions out ---

  static size_t on_write(char* data, size_t size, size_t n, void* userp) {
    auto* r = static_cast<request_ctx*>(userp);
    const size_t len = size * n;
    if (r->max_size != 0 && r->response.size() + len > r->max_size) {
      r->too_large = true;
      return 0;  // CURLE_WRITE_ERROR ends the transfer
    }
    try {
      r->response.append(data, len);
    } catch (...) {
      r->out_of_memory = true;
      return 0;
    }
    return len;
  }

  static size_t on_header(char* data, size_t size, size_t n, void* userp) {
    auto* r = static_cast<request_ctx*>(userp);
    const size_t len = size * n;
    r->header_bytes += len;
    if (r->header_bytes > max_header_bytes) {
      r->headers_too_large = true;
      return 0;  // CURLE_WRITE_ERROR ends the transfer
    }
    try {
      std::string_view line(data, len);
      if (line.rfind("HTTP/", 0) == 0) {
        r->headers.clear();  // a new response (after 100 Continue, say) starts a new block
      } else if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
        if (!r->headers.empty()) {  // obsolete line folding
          auto& v = r->headers.back().second;
          v.append(" ").append(trim(line));
        }
      } else if (auto colon = line.find(':'); colon != std::string_view::npos) {
        r->headers.emplace_back(std::string(trim(line.substr(0, colon))),
                                std::string(trim(line.substr(colon + 1))));
        reserve_body(*r, r->headers.back());
      }
    } catch (...) {
      r->out_of_memory = true;
      return 0;
    }
    return len;
  }

  // A body of known length is received into one allocation instead of a string that keeps
  // regrowing (a hint only: a compressed body decodes to more).
  static void reserve_body(request_ctx& r, const std::pair<std::string, std::string>& h) {
    constexpr std::string_view name = "content-length";
    if (h.first.size() != name.size() ||
        !std::equal(name.begin(), name.end(), h.first.begin(),
                    [](char a, char b) { return a == (b >= 'A' && b <= 'Z' ? b + 32 : b); })) {
      return;
    }
    std::uint64_t n = 0;
    const auto [end, ec] = std::from_chars(h.second.data(), h.second.data() + h.second.size(), n);
    if (ec != std::errc() || end != h.second.data() + h.second.size()) return;
    const std::uint64_t cap = std::min<std::uint64_t>(r.max_size == 0 ? n : r.max_size, 64u << 20);
    r.response.reserve(static_cast<std::size_t>(std::min(n, cap)));
  }

  // --- uv callbacks ---

  static void on_defer_timer(uv_timer_t* handle) {
    auto* self = static_cast<lp_core*>(handle->data);
    try {
      std::vector<deferred_failure> items;
      items.swap(self->deferred_);
      const auto generation = self->abort_generation_;
      for (auto& f : items) {
        if (self->closed_ || self->abort_generation_ != generation) return;
        self->report_failure(f.id, f.err);
      }
    } catch (...) {
      self->log("long-polling: unexpected exception in a deferred report");
    }
  }

  // The multi saw `r` (one of active_) finish and took its easy handle out.
  void transfer_done(request_ctx* r, CURLcode result) {
    auto it = std::find_if(active_.begin(), active_.end(), [r](const auto& a) { return a.get() == r; });
    if (it == active_.end()) return;
    std::unique_ptr<request_ctx> req = std::move(*it);
    active_.erase(it);
    complete(std::move(req), result);
  }

  // Reports one finished transfer. The request goes back to the free list *before* the receiver
  // runs, so the receiver's next send() can reuse it.
  void complete(std::unique_ptr<request_ctx> req, CURLcode result) {
    const std::uint64_t id = req->id;
    bool is_frame = false;
    std::string body;
    header_list headers;
    error err;
    try {
      long status = 0;
      curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
      if (result != CURLE_OK) {
        err = curl_failure(*req, result);
      } else if (status < 200 || status > 299) {
        std::string msg = "HTTP " + std::to_string(status) + " from server";
        std::string_view excerpt = trim(req->response);
        if (!excerpt.empty()) msg.append(": ").append(excerpt.substr(0, body_excerpt));
        err = error(make_error_code(errc::http_error), std::move(msg));
        err.http_status = static_cast<int>(status);
      } else if (req->response.empty()) {
        err = error(make_error_code(errc::bad_response),
                    "empty response body (HTTP " + std::to_string(status) + ")");
      } else {
        is_frame = true;
        body = std::move(req->response);
        headers = std::move(req->headers);
      }
    } catch (...) {
      is_frame = false;
      err = error(make_error_code(errc::transport_error), std::string());
    }
    recycle(std::move(req));
    if (is_frame) {
      if (!events_) return;
      try {
        events_->on_frame(id, std::move(body), headers);
      } catch (...) {
        log("long-polling: on_frame threw an exception");
      }
    } else {
      report_failure(id, err);
    }
  }

  error curl_failure(const request_ctx& r, CURLcode result) const {
    if (result == CURLE_WRITE_ERROR && r.too_large) {
      return error(make_error_code(errc::message_too_large),
                   "response larger than " + std::to_string(r.max_size) + " bytes");
    }
    if (result == CURLE_WRITE_ERROR && r.headers_too_large) {
      return error(make_error_code(errc::message_too_large),
                   "response headers larger than " + std::to_string(max_header_bytes) + " bytes");
    }
    if (r.out_of_memory) return error(make_error_code(errc::transport_error), "out of memory");
    if (result == CURLE_PEER_FAILED_VERIFICATION || result == CURLE_SSL_CACERT_BADFILE) {
      return certificate_failure(r, result);
    }
    std::string what;
    switch (result) {
      case CURLE_COULDNT_RESOLVE_HOST:
      case CURLE_COULDNT_RESOLVE_PROXY:
        what = "could not resolve host";
        break;
      case CURLE_COULDNT_CONNECT: {
        long os_errno = 0;
        curl_easy_getinfo(r.easy, CURLINFO_OS_ERRNO, &os_errno);
        what = os_errno == ECONNREFUSED ? "connection refused" : "could not connect";
        break;
      }
      case CURLE_OPERATION_TIMEDOUT:
        what = "timed out";
        break;
      case CURLE_GOT_NOTHING:
      case CURLE_SEND_ERROR:
      case CURLE_RECV_ERROR:
      case CURLE_PARTIAL_FILE:
        what = "connection lost";
        break;
      case CURLE_SSL_CONNECT_ERROR:
      case CURLE_SSL_CERTPROBLEM:
        what = "TLS error";
        break;
      default:
        what = "transport error";
        break;
    }
    what.append(": ").append(r.errbuf[0] ? r.errbuf : curl_easy_strerror(result));
    while (!what.empty() && what.back() == '\n') what.pop_back();  // curl ends some with '\n'
    const errc code = result == CURLE_OPERATION_TIMEDOUT ? errc::timeout : errc::transport_error;
    return error(make_error_code(code), std::move(what));
  }

  // The server's certificate was refused (or could not be checked: the CA file is unusable):
  // errc::certificate_error, the cause in words, as the websocket transport says it.
  error certificate_failure(const request_ctx& r, CURLcode result) const {
    std::string detail = r.errbuf[0] ? r.errbuf : curl_easy_strerror(result);
    while (!detail.empty() && detail.back() == '\n') detail.pop_back();
    std::string why;
    if (result == CURLE_SSL_CACERT_BADFILE) {
      why = "the CA file '" + config_.ca_file + "' could not be loaded (" + detail + ")";
    } else {
      long verified = 0;  // an X509_V_ERR_* code
      curl_easy_getinfo(r.easy, CURLINFO_SSL_VERIFYRESULT, &verified);
      why = tls::curl_verify_problem(verified, detail);
    }
    return error(make_error_code(errc::certificate_error),
                 "TLS certificate of " + peer_of(r) + " refused: " + why);
  }

  // host:port of the request's URL, for messages.
  static std::string peer_of(const request_ctx& r) {
    std::string peer = "the server";
    char* url = nullptr;
    curl_easy_getinfo(r.easy, CURLINFO_EFFECTIVE_URL, &url);
    CURLU* u = url ? curl_url() : nullptr;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK) {
      char* host = nullptr;
      char* port = nullptr;
      if (curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
          curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
        peer = std::string(host) + ":" + port;
      }
      curl_free(host);
      curl_free(port);
    }
    curl_url_cleanup(u);
    return peer;
  }

  void report_failure(std::uint64_t id, const error& err) {
    if (!events_) return;
    if (config_.log) {
      try {
        log("long-polling: request " + std::to_string(id) + " failed: " + err.message);
      } catch (...) {
        // Out of memory for the log line: still report the failure.
      }
      if (!events_) return;  // the log sink closed us
    }
    try {
      events_->on_request_failed(id, err);
    } catch (...) {
      log("long-polling: on_request_failed threw an exception");
    }
  }

  void fail_all(const std::string& msg) {
    std::vector<std::unique_ptr<request_ctx>> reqs;
    reqs.swap(active_);
    std::vector<std::uint64_t> ids;
    for (auto& r : reqs) {
      if (multi_) curl_multi_remove_handle(multi_->handle(), r->easy);
      ids.push_back(r->id);
      recycle(std::move(r));
    }
    const auto generation = abort_generation_;
    for (auto id : ids) {
      if (closed_ || abort_generation_ != generation) return;
      report_failure(id, error(make_error_code(errc::transport_error), msg));
    }
  }

  // --- handle life cycle ---

  static void on_handle_closed(uv_handle_t* h) { static_cast<lp_core*>(h->data)->handle_closed(); }

  // The multi this core was the last user of has closed its handles.
  void multi_closed() { handle_closed(); }

  void handle_closed() {
    if (--open_handles_ > 0 || !closed_) return;
    finished_ = true;
    run_done();
  }

  // Runs the close() completions; may free this (so nothing touches members afterwards).
  void run_done() {
    std::vector<std::function<void()>> dones;
    dones.swap(done_);
    const bool free_self = detached_;  // read before done() may destroy the transport object
    for (auto& d : dones) {
      try {
        d();
      } catch (...) {
        // Nothing sensible to do with it from a uv callback.
      }
    }
    if (free_self) delete this;
  }

  // close() called again after everything closed: run `done` from a one-off timer.
  void schedule_late_done() {
    struct late {
      uv_timer_t timer{};
      std::vector<std::function<void()>> dones;
    };
    auto* l = new late;
    l->dones.swap(done_);
    l->timer.data = l;
    uv_timer_init(loop_, &l->timer);
    uv_timer_start(&l->timer, [](uv_timer_t* t) {
      uv_close(reinterpret_cast<uv_handle_t*>(t), [](uv_handle_t* h) {
        auto* lp = static_cast<late*>(h->data);
        for (auto& d : lp->dones) {
          try {
            d();
          } catch (...) {
          }
        }
        delete lp;
      });
    }, 0, 0);
  }

  uv_loop_t* loop_;
  transport_config config_;
  transport_events* events_;  // null once closed: nothing is reported after close()
  lp_multi* multi_ = nullptr;  // a reference on the loop's multi, released by close()
  CURLSH* share_ = nullptr;
  std::shared_ptr<curl_slist> header_list_;
  std::string init_error_;
  uv_timer_t defer_timer_{};  // reports failures found inside send()
  std::vector<std::unique_ptr<request_ctx>> active_;  // each one's easy handle is in the multi
  std::vector<std::unique_ptr<request_ctx>> free_;
  std::vector<deferred_failure> deferred_;
  std::vector<std::function<void()>> done_;
  std::uint64_t abort_generation_ = 0;
  int open_handles_ = 0;  // defer_timer_, plus the multi when this core was its last user
  bool closed_ = false;
  bool finished_ = false;  // every uv handle closed
  bool detached_ = false;  // the transport object is gone
};

// --- lp_multi ---

lp_multi* lp_multi::acquire(uv_loop_t* loop, lp_core* user) {
  registry& reg = loops();
  std::lock_guard<std::mutex> lock(reg.mutex);
  if (auto it = reg.by_loop.find(loop); it != reg.by_loop.end()) {
    it->second->users_.push_back(user);
    return it->second;
  }
  auto* m = new lp_multi(loop);
  m->multi_ = curl_multi_init();
  if (!m->multi_) {
    delete m;
    return nullptr;
  }
  try {
    m->users_.push_back(user);
    reg.by_loop.emplace(loop, m);
  } catch (...) {
    delete m;  // not registered: emplace is all or nothing
    throw;
  }
  curl_multi_setopt(m->multi_, CURLMOPT_SOCKETFUNCTION, &lp_multi::on_socket);
  curl_multi_setopt(m->multi_, CURLMOPT_SOCKETDATA, m);
  curl_multi_setopt(m->multi_, CURLMOPT_TIMERFUNCTION, &lp_multi::on_curl_timer_set);
  curl_multi_setopt(m->multi_, CURLMOPT_TIMERDATA, m);
  // A held /meta/connect occupies one connection; others must not queue behind it.
  curl_multi_setopt(m->multi_, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
  uv_timer_init(loop, &m->curl_timer_);
  m->curl_timer_.data = m;
  m->open_handles_ = 1;
  return m;
}

bool lp_multi::release(lp_core* user) {
  users_.erase(std::remove(users_.begin(), users_.end(), user), users_.end());
  if (!users_.empty()) return false;
  {
    // From now on the loop's next transport gets a new multi.
    registry& reg = loops();
    std::lock_guard<std::mutex> lock(reg.mutex);
    if (auto it = reg.by_loop.find(loop_); it != reg.by_loop.end() && it->second == this) {
      reg.by_loop.erase(it);
    }
  }
  last_user_ = user;
  if (dispatching_ == 0) shut_down();  // else socket_action() does, once the dispatch returned
  return true;
}

void lp_multi::shut_down() {
  shutting_down_ = true;
  // Every user took its easy handles out already; this closes the pooled connections, telling
  // on_socket CURL_POLL_REMOVE for each of their sockets.
  curl_multi_cleanup(multi_);
  multi_ = nullptr;
  for (poll_ctx* p : polls_) close_poll(p);  // whatever curl did not remove (defensive)
  polls_.clear();
  uv_timer_stop(&curl_timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&curl_timer_),
           [](uv_handle_t* h) { static_cast<lp_multi*>(h->data)->handle_closed(); });
}

void lp_multi::close_poll(poll_ctx* p) {
  if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&p->poll))) return;
  uv_poll_stop(&p->poll);  // before curl closes the fd
  uv_close(reinterpret_cast<uv_handle_t*>(&p->poll), [](uv_handle_t* h) {
    auto* pc = static_cast<poll_ctx*>(h->data);
    lp_multi* owner = pc->owner;
    delete pc;
    owner->handle_closed();
  });
}

// Frees this once torn down and every handle closed, then lets the last user finish its close.
void lp_multi::handle_closed() {
  if (--open_handles_ > 0 || !shutting_down_) return;
  lp_core* last = last_user_;
  delete this;
  if (last) last->multi_closed();
}

// --- libcurl callbacks: no libcurl calls (but curl_multi_assign), no user code, no exceptions ---

int lp_multi::on_socket(CURL* /*easy*/, curl_socket_t fd, int what, void* userp, void* socketp) {
  auto* self = static_cast<lp_multi*>(userp);
  auto* p = static_cast<poll_ctx*>(socketp);
  if (what == CURL_POLL_REMOVE) {
    if (p) {
      // Not while curl_multi_cleanup runs: the multi is half torn down then.
      if (!self->shutting_down_) curl_multi_assign(self->multi_, fd, nullptr);
      self->polls_.erase(std::remove(self->polls_.begin(), self->polls_.end(), p), self->polls_.end());
      self->close_poll(p);
    }
    return 0;
  }
  if (self->shutting_down_) return 0;  // start nothing new
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
    self->open_handles_++;
    try {
      self->polls_.push_back(p);
    } catch (...) {
      self->close_poll(p);
      return -1;
    }
    curl_multi_assign(self->multi_, fd, p);
  }
  p->events = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) p->events |= UV_READABLE;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) p->events |= UV_WRITABLE;
  return uv_poll_start(&p->poll, p->events, &lp_multi::on_poll) == 0 ? 0 : -1;
}

int lp_multi::on_curl_timer_set(CURLM* /*multi*/, long timeout_ms, void* userp) {
  auto* self = static_cast<lp_multi*>(userp);
  if (self->shutting_down_) return 0;
  if (timeout_ms < 0) {
    uv_timer_stop(&self->curl_timer_);
  } else {
    uv_timer_start(&self->curl_timer_, &lp_multi::on_curl_timeout, static_cast<uint64_t>(timeout_ms), 0);
  }
  return 0;
}

// --- uv callbacks: drive libcurl, then dispatch to the cores ---

void lp_multi::on_poll(uv_poll_t* handle, int status, int events) {
  auto* p = static_cast<poll_ctx*>(handle->data);
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
    uv_poll_start(&p->poll, p->events, &lp_multi::on_poll);
  }
}

void lp_multi::on_curl_timeout(uv_timer_t* handle) {
  static_cast<lp_multi*>(handle->data)->socket_action(CURL_SOCKET_TIMEOUT, 0);
}

void lp_multi::socket_action(curl_socket_t fd, int flags) {
  if (shutting_down_) return;
  ++dispatching_;  // a handler's release() leaves the tear-down to the end of this frame
  try {
    int running = 0;
    CURLMcode rc = curl_multi_socket_action(multi_, fd, flags, &running);
    if (rc != CURLM_OK) {
      // The multi handle is unusable: fail everything in flight, of every user.
      fail_all(std::string("libcurl: ") + curl_multi_strerror(rc));
    } else {
      drain();
    }
  } catch (...) {
    if (!users_.empty()) users_.front()->log("long-polling: unexpected exception while driving libcurl");
  }
  if (--dispatching_ == 0 && users_.empty() && !shutting_down_) shut_down();
}

void lp_multi::drain() {
  CURLMsg* msg = nullptr;
  int left = 0;
  while (!shutting_down_ && (msg = curl_multi_info_read(multi_, &left)) != nullptr) {
    if (msg->msg != CURLMSG_DONE) continue;
    // The message dies with curl_multi_remove_handle: copy it first.
    CURL* easy = msg->easy_handle;
    const CURLcode result = msg->data.result;
    char* priv = nullptr;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
    curl_multi_remove_handle(multi_, easy);
    // Every easy handle in the multi is in its core's active_, and a core takes them out (and
    // curl their messages with them) before it closes: the owner is a live, open core. Its
    // receiver may close or destroy any transport; the next message is looked up afresh.
    if (auto* r = reinterpret_cast<request_ctx*>(priv)) r->owner->transfer_done(r, result);
  }
}

void lp_multi::fail_all(const std::string& msg) {
  const std::vector<lp_core*> users = users_;  // a receiver may close (release) any of them
  for (lp_core* u : users) {
    if (is_user(u)) u->fail_all(msg);
  }
}

std::string lp_core::cookie_header() const {
  // Any request handle reads the shared jar (each keeps CURLOPT_SHARE = share_ from configure(),
  // in flight or idle in free_). Cookies only arrive in responses to those handles, and once a
  // request finished (before close) one handle is always kept: recycle() drops a handle only
  // when free_ already holds some. So no handle means an empty jar, or closed (share_ gone).
  if (!share_) return {};
  CURL* jar = !active_.empty() ? active_.front()->easy : !free_.empty() ? free_.front()->easy : nullptr;
  if (!jar) return {};
  curl_slist* cookies = nullptr;
  if (curl_easy_getinfo(jar, CURLINFO_COOKIELIST, &cookies) != CURLE_OK || !cookies) return {};

  std::string host, path = "/";
  bool https = false;
  if (CURLU* u = curl_url()) {
    if (curl_url_set(u, CURLUPART_URL, config_.url.c_str(), 0) == CURLUE_OK) {
      char* part = nullptr;
      if (curl_url_get(u, CURLUPART_HOST, &part, 0) == CURLUE_OK) host = lower(part);
      curl_free(part);
      part = nullptr;
      if (curl_url_get(u, CURLUPART_PATH, &part, 0) == CURLUE_OK && part && *part) path = part;
      curl_free(part);
      part = nullptr;
      if (curl_url_get(u, CURLUPART_SCHEME, &part, 0) == CURLUE_OK) https = lower(part) == "https";
      curl_free(part);
    }
    curl_url_cleanup(u);
  }

  // Netscape format: domain, tailmatch, path, secure, expires, name, value (tab separated).
  std::string out;
  const auto now = static_cast<long long>(std::time(nullptr));
  try {
    for (curl_slist* c = cookies; c; c = c->next) {
      std::vector<std::string_view> f;
      std::string_view line(c->data);
      for (std::size_t start = 0;;) {
        std::size_t tab = line.find('\t', start);
        f.push_back(line.substr(start, tab == std::string_view::npos ? std::string_view::npos : tab - start));
        if (tab == std::string_view::npos) break;
        start = tab + 1;
      }
      if (f.size() < 7) continue;
      std::string_view domain = f[0];
      if (domain.rfind("#HttpOnly_", 0) == 0) domain.remove_prefix(10);
      while (!domain.empty() && domain.front() == '.') domain.remove_prefix(1);
      const std::string d = lower(domain);
      const bool tail = f[1] == "TRUE";
      const bool domain_ok =
          host == d || (tail && host.size() > d.size() &&
                        host.compare(host.size() - d.size(), d.size(), d) == 0 &&
                        host[host.size() - d.size() - 1] == '.');
      if (!domain_ok) continue;
      if (path.rfind(f[2], 0) != 0) continue;  // cookie path must prefix the URL path
      if (f[3] == "TRUE" && !https) continue;
      long long expires = 0;
      for (char ch : f[4]) {
        if (ch < '0' || ch > '9') break;
        expires = expires * 10 + (ch - '0');
      }
      if (expires != 0 && expires <= now) continue;
      if (!out.empty()) out += "; ";
      out.append(f[5]).append("=").append(f[6]);
    }
  } catch (...) {
    curl_slist_free_all(cookies);
    throw;
  }
  curl_slist_free_all(cookies);
  return out;
}

// The object the session holds. It may be destroyed at any time on the loop thread; the documented
// rule (see transport::close) is to destroy it only after close()'s `done` ran, but an earlier
// destruction just closes silently and lets the core finish closing on its own.
class long_polling_transport final : public transport {
 public:
  long_polling_transport(uv_loop_t* loop, transport_config config, transport_events& events)
      : core_(new lp_core(loop, std::move(config), events)) {}
  ~long_polling_transport() override { core_->detach(); }

  long_polling_transport(const long_polling_transport&) = delete;
  long_polling_transport& operator=(const long_polling_transport&) = delete;

  connection_type type() const noexcept override { return connection_type::long_polling; }
  void send(std::uint64_t request, std::string body, std::chrono::milliseconds timeout,
            bool /*alone: every POST is its own exchange*/ = false) override {
    core_->send(request, std::move(body), timeout);
  }
  void abort() override { core_->abort(); }
  std::string cookie_header() const override { return core_->cookie_header(); }
  void set_headers(const header_list& headers) override { core_->set_headers(headers); }
  void close(std::function<void()> done) override { core_->close(std::move(done)); }

 private:
  lp_core* core_;  // frees itself (see lp_core::detach)
};

}  // namespace

// `loop` must outlive the transport's close; the transport object may be destroyed once close()'s
// `done` ran (destroying it earlier is tolerated: it closes silently).
std::unique_ptr<transport> make_long_polling_transport(uv_loop_t* loop, transport_config config,
                                                       transport_events& events) {
  return std::make_unique<long_polling_transport>(loop, std::move(config), events);
}

}  // namespace uvcometd::detail
