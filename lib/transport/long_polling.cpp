// Long-polling transport: libcurl's multi-socket API driven by the application's libuv loop.
//
// Layout: `long_polling_transport` is a thin handle the session owns; the work happens in
// `lp_core`, which owns the easy handles (each with its request_ctx, recycled through a free
// list). Every transport of one uv loop drives its transfers through the loop's curl_multi
// (curl_multi.hpp). The core is loop_owned: destroying the transport early (even from inside one
// of its own callbacks) closes it silently, and the core lives on until its close completed.
//
// Reentrancy rules:
// - events are reported from the multi's uv callbacks (after libcurl returned), so the receiver
//   may call send(), abort() or close() on this transport or any other of the loop, or destroy
//   them, from inside them; what a transport finds inside one of its own API calls (a send() that
//   cannot start) is posted to the client's reactor, never reported from inside the call;
// - libcurl is never re-entered from one of its own callbacks: the only user code that runs inside
//   a curl callback would be config.log, and nothing is logged there.
//
// Cookies are the client's jar (cookie_jar.hpp), not libcurl's cookie engine: every response's
// Set-Cookie goes into the jar, and the requests carry what the jar holds for the server.

#include <curl/curl.h>
#include <uv.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "reactor.hpp"
#include "transport/cookie_jar.hpp"
#include "transport/curl_multi.hpp"
#include "transport/http_text.hpp"
#include "transport/loop_owned.hpp"
#include "transport/tls_client.hpp"
#include "transport/transport.hpp"

namespace uvcometd::detail {
namespace {

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

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// The Accept-Encoding line libcurl would send for CURLOPT_ACCEPT_ENCODING "" (every encoding it
// can decode, in its order), made once.
const std::string& accept_encoding_line() {
  static const std::string line = [] {
    const curl_version_info_data* v = curl_version_info(CURLVERSION_NOW);
    std::string encodings;
    const auto add = [&encodings](const char* name) {
      if (!encodings.empty()) encodings += ", ";
      encodings += name;
    };
    if (v && (v->features & CURL_VERSION_LIBZ)) {
      add("deflate");
      add("gzip");
    }
    if (v && (v->features & CURL_VERSION_BROTLI)) add("br");
#ifdef CURL_VERSION_ZSTD
    if (v && (v->features & CURL_VERSION_ZSTD)) add("zstd");
#endif
    return encodings.empty() ? std::string("Accept-Encoding: identity")
                             : "Accept-Encoding: " + encodings;
  }();
  return line;
}

class lp_core;

// One HTTP exchange; recycled (with its easy handle) through lp_core's free list.
struct request_ctx : curl_transfer {
  std::shared_ptr<curl_slist> request_headers;  // the list CURLOPT_HTTPHEADER points to
  std::uint64_t id = 0;
  std::string body;  // CURLOPT_POSTFIELDS points here, so it lives as long as the transfer
  std::string response;
  header_list headers;
  std::size_t max_size = 0;
  std::size_t header_bytes = 0;  // response header bytes received (max_header_bytes)
  bool configured = false;       // the options shared by every request are set (lp_core::configure)
  bool too_large = false;
  bool headers_too_large = false;
  bool out_of_memory = false;
  char errbuf[CURL_ERROR_SIZE] = {};

  request_ctx() = default;
  request_ctx(const request_ctx&) = delete;
  request_ctx& operator=(const request_ctx&) = delete;
  ~request_ctx() {
    if (easy) curl_easy_cleanup(easy);
  }
};

class lp_core final : public loop_owned<lp_core>, public curl_multi_user {
 public:
  lp_core(const transport_env& env, long_polling_config config, transport_events& events)
      : env_(env), config_(std::move(config)), events_(&events) {}

  // After make_shared: joins the loop's multi. Throws std::bad_alloc with nothing to undo;
  // otherwise a failure leaves init_error_ set, which every send() then reports.
  void init() {
    multi_ = curl_multi::shared::acquire(env_.loop, {});
    if (!multi_) {
      init_error_ = "libcurl initialisation failed";
      log(init_error_);
      return;
    }
    multi_->join(this);
  }

  void send(std::uint64_t id, std::string body, std::chrono::milliseconds timeout) {
    if (closed_) return;  // nothing is reported after close()
    try {
      start(id, std::move(body), timeout);
    } catch (const std::bad_alloc&) {
      // Still exactly one outcome; if even that cannot be posted, the caller gets the exception.
      defer_failure(id, error(make_error_code(errc::transport_error), std::string()));
    }
  }

  // Drops every request in flight and every posted failure, silently.
  void abort() {
    ++abort_generation_;  // posted failures, and reports in a loop further up the stack, stop
    std::vector<std::unique_ptr<request_ctx>> reqs;
    reqs.swap(active_);
    for (auto& r : reqs) {
      // Only this core's handles: the other transports of the loop keep their transfers.
      if (multi_) curl_multi_remove_handle(multi_->handle(), r->easy);
      recycle(std::move(r));
    }
  }

  void set_headers(const header_list& headers) {
    config_.headers = headers;
    header_list_.reset();  // rebuilt by the next request
  }

  void close(std::function<void()> done) {
    if (closed_) {
      if (!done) return;
      // Closing: with the others. Closed: later, from the reactor (never from inside this call).
      if (!finished_)
        done_.push_back(std::move(done));
      else
        env_.tasks->post(std::move(done));
      return;
    }
    if (done) done_.push_back(std::move(done));
    closed_ = true;
    events_ = nullptr;
    abort();  // takes this core's easy handles out of the multi, with any message about them
    free_.clear();
    header_list_.reset();
    opened();  // the close itself: done runs from a later callback, never from this call
    if (multi_) {
      multi_->leave(this);
      // The last user's close also waits for the multi's uv handles (whatever order libuv runs
      // close callbacks in), so that uv_loop_close() succeeds once the last `done` ran.
      const bool last = curl_multi::shared::release(multi_, [this] { closed_one(); });
      multi_.reset();
      if (last) return;
    }
    env_.tasks->post([self = shared_from_this()] { self->closed_one(); });
  }

  // loop_owned: the close completed.
  void all_closed() {
    finished_ = true;
    auto dones = std::move(done_);
    for (auto& d : dones) {
      try {
        d();
      } catch (...) {
        // Nothing sensible to do with it from a uv callback.
      }
    }
  }

  // --- curl_multi_user ---

  // The multi saw `t` (one of active_) finish and took its easy handle out.
  void transfer_done(curl_transfer& t, CURLcode result) override {
    auto it =
        std::find_if(active_.begin(), active_.end(), [&](const auto& a) { return a.get() == &t; });
    if (it == active_.end()) return;
    std::unique_ptr<request_ctx> req = std::move(*it);
    active_.erase(it);
    complete(std::move(req), result);
  }

  void multi_failed(const std::string& msg) override {
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

  void log(std::string_view msg) const override { log(log_level::debug, msg); }
  void log(log_level level, std::string_view msg) const {
    if (!config_.log) return;
    try {
      config_.log(level, msg);
    } catch (...) {
      // A throwing log sink must not break the transport.
    }
  }

 private:
  void start(std::uint64_t id, std::string body, std::chrono::milliseconds timeout) {
    if (!multi_) {
      defer_failure(id, error(make_error_code(errc::transport_error), init_error_));
      return;
    }
    if (!current_headers()) {
      defer_failure(id, error(make_error_code(errc::transport_error),
                              "libcurl: out of memory building the request headers"));
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
    const CURLMcode rc = curl_multi_add_handle(multi_->handle(), req->easy);
    if (rc != CURLM_OK) {
      std::string msg = std::string("libcurl: ") + curl_multi_strerror(rc);
      recycle(std::move(req));
      defer_failure(id, error(make_error_code(errc::transport_error), std::move(msg)));
      return;
    }
    active_.push_back(std::move(req));
  }

  // The request header list (ours, the configured headers, the jar's cookies for the server),
  // rebuilt only when the headers were replaced or the jar changed. Null when out of memory.
  const std::shared_ptr<curl_slist>& current_headers() {
    const std::uint64_t v = env_.cookies ? env_.cookies->version(std::time(nullptr)) : 0;
    if (header_list_ && v == jar_version_) return header_list_;
    jar_version_ = v;
    curl_slist* list = curl_slist_append(nullptr, "Content-Type: application/json;charset=UTF-8");
    // No "Expect: 100-continue" round trip on large bodies.
    if (list) list = append_or_fail(list, "Expect:");
    // Named here rather than by CURLOPT_USERAGENT and CURLOPT_ACCEPT_ENCODING's own header, which
    // libcurl formats again for every request; the configured headers may replace either.
    const auto configured = [this](std::string_view name) {
      return std::any_of(config_.headers.begin(), config_.headers.end(),
                         [name](const auto& h) { return iequals(h.first, name); });
    };
    if (list && !configured("user-agent")) list = append_or_fail(list, "User-Agent: uvcometd");
    if (list && !configured("accept-encoding"))
      list = append_or_fail(list, accept_encoding_line().c_str());
    std::string line;
    for (const auto& [name, value] : config_.headers) {
      line.assign(name).append(": ").append(value);
      if (list) list = append_or_fail(list, line.c_str());
    }
    if (env_.cookies) {
      const std::string cookies = env_.cookies->header_for(config_.url, std::time(nullptr));
      if (!cookies.empty() && list) list = append_or_fail(list, ("Cookie: " + cookies).c_str());
    }
    if (list)
      header_list_ = std::shared_ptr<curl_slist>(list, &curl_slist_free_all);
    else
      header_list_.reset();
    return header_list_;
  }

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
    // only when the list was rebuilt).
    free_.push_back(std::move(r));
  }

  // Options that are the same for every request of this transport are set once per easy handle
  // (a recycled handle keeps them: nothing else ever changes them); only what differs per request
  // is set on each use. Setting them again was not free: each string option is copied anew.
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
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
                     static_cast<long>(std::max<std::int64_t>(0, timeout.count())));
  }

  // The options every request of this core shares; `r` lives at a fixed address (a unique_ptr)
  // for as long as its easy handle, so the pointers to it stay valid across reuses.
  void configure_once(request_ctx& r) {
    CURL* e = r.easy;
    // The URL parsed once per transport (CURLOPT_CURLU), not again by every transfer.
    if (!url_) {
      url_.reset(curl_url());
      if (url_ && curl_url_set(url_.get(), CURLUPART_URL, config_.url.c_str(), 0) != CURLUE_OK)
        url_.reset();
    }
    if (url_)
      curl_easy_setopt(e, CURLOPT_CURLU, url_.get());
    else
      curl_easy_setopt(e, CURLOPT_URL, config_.url.c_str());
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    curl_easy_setopt(e, CURLOPT_PRIVATE, static_cast<void*>(static_cast<curl_transfer*>(&r)));
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    // Compressed bodies are accepted and inflated by libcurl (the header that says so is in
    // current_headers()); on_write counts the inflated bytes against max_message_size, so a
    // "gzip bomb" ends at the limit.
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &lp_core::on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, static_cast<void*>(&r));
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &lp_core::on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, static_cast<void*>(&r));
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r.errbuf);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, config_.tls_verify ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, config_.tls_verify ? 2L : 0L);
    if (!config_.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, config_.ca_file.c_str());
    multi_->attach(e);
  }

  // A failure found inside send(): reported from the reactor, unless abort() or close() came first.
  void defer_failure(std::uint64_t id, error err) {
    env_.tasks->post(
        [weak = weak_from_this(), generation = abort_generation_, id, err = std::move(err)] {
          const auto self = weak.lock();
          if (!self || self->closed_ || self->abort_generation_ != generation) return;
          self->report_failure(id, err);
        });
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
        r->headers.reserve(16);
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
    if (!iequals(h.first, "content-length")) return;
    std::uint64_t n = 0;
    const auto [end, ec] = std::from_chars(h.second.data(), h.second.data() + h.second.size(), n);
    if (ec != std::errc() || end != h.second.data() + h.second.size()) return;
    const std::uint64_t cap = std::min<std::uint64_t>(r.max_size == 0 ? n : r.max_size, 64u << 20);
    r.response.reserve(static_cast<std::size_t>(std::min(n, cap)));
  }

  // The response's cookies go into the client's jar (whatever its status).
  void keep_cookies(const request_ctx& r) {
    if (!env_.cookies) return;
    for (const auto& [name, value] : r.headers) {
      if (iequals(name, "set-cookie")) env_.cookies->store(config_.url, value, std::time(nullptr));
    }
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
      keep_cookies(*req);
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
      case CURLE_COULDNT_RESOLVE_PROXY: what = "could not resolve host"; break;
      case CURLE_COULDNT_CONNECT: {
        long os_errno = 0;
        curl_easy_getinfo(r.easy, CURLINFO_OS_ERRNO, &os_errno);
        what = os_errno == ECONNREFUSED ? "connection refused" : "could not connect";
        break;
      }
      case CURLE_OPERATION_TIMEDOUT: what = "timed out"; break;
      case CURLE_GOT_NOTHING:
      case CURLE_SEND_ERROR:
      case CURLE_RECV_ERROR:
      case CURLE_PARTIAL_FILE: what = "connection lost"; break;
      case CURLE_SSL_CONNECT_ERROR:
      case CURLE_SSL_CERTPROBLEM: what = "TLS error"; break;
      default: what = "transport error"; break;
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

  transport_env env_;
  long_polling_config config_;
  transport_events* events_;           // null once closed: nothing is reported after close()
  std::shared_ptr<curl_multi> multi_;  // the loop's multi, released by close()
  struct url_free {
    void operator()(CURLU* u) const noexcept { curl_url_cleanup(u); }
  };
  // Declared before active_ and free_: it outlives the easy handles that point to it.
  std::unique_ptr<CURLU, url_free> url_;
  std::shared_ptr<curl_slist> header_list_;  // null: rebuilt by the next request
  std::uint64_t jar_version_ = 0;            // the jar's version header_list_ was built with
  std::string init_error_;
  std::vector<std::unique_ptr<request_ctx>> active_;  // each one's easy handle is in the multi
  std::vector<std::unique_ptr<request_ctx>> free_;
  std::vector<std::function<void()>> done_;
  std::uint64_t abort_generation_ = 0;  // moves on abort(): what was posted before is dropped
  bool closed_ = false;
  bool finished_ = false;  // the close completed
};

// The object the session holds. It may be destroyed at any time on the loop thread; the documented
// rule (see transport::close) is to destroy it only after close()'s `done` ran, but an earlier
// destruction just closes silently and lets the core finish closing on its own.
class long_polling_transport final : public transport {
 public:
  long_polling_transport(const transport_env& env, long_polling_config config,
                         transport_events& events)
      : core_(std::make_shared<lp_core>(env, std::move(config), events)) {
    core_->init();
  }
  ~long_polling_transport() override { core_->close(nullptr); }

  long_polling_transport(const long_polling_transport&) = delete;
  long_polling_transport& operator=(const long_polling_transport&) = delete;

  transport_traits traits() const noexcept override {
    return {/*request_response=*/true, /*pausable=*/false, /*merges_frames=*/false};
  }
  void send(std::uint64_t request, std::string body, std::chrono::milliseconds timeout,
            bool /*alone: every POST is its own exchange*/ = false) override {
    core_->send(request, std::move(body), timeout);
  }
  void abort() override { core_->abort(); }
  void set_headers(const header_list& headers) override { core_->set_headers(headers); }
  void close(std::function<void()> done) override { core_->close(std::move(done)); }

 private:
  std::shared_ptr<lp_core> core_;  // lives on until its close completed (loop_owned)
};

}  // namespace

// `env` must outlive the transport's close; the transport object may be destroyed once close()'s
// `done` ran (destroying it earlier is tolerated: it closes silently).
std::unique_ptr<transport> make_long_polling_transport(const transport_env& env,
                                                       long_polling_config config,
                                                       transport_events& events) {
  return std::make_unique<long_polling_transport>(env, std::move(config), events);
}

}  // namespace uvcometd::detail
