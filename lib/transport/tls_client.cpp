// OpenSSL over in-memory buffers (see tls_client.hpp). Every call clears this thread's OpenSSL
// error queue first and leaves it empty: libcurl shares the queue on the loop thread, and a stale
// entry would be read as the cause of someone else's failure.
#include "transport/tls_client.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <new>
#include <string>

namespace uvcometd::detail::tls {
namespace {

// The reasons OpenSSL queued, earliest first ("certificate verify failed", "unexpected eof while
// reading", ...); empties the queue. Empty when nothing was queued.
std::string queued_reasons() {
  std::string why;
  int taken = 0;
  while (const unsigned long e = ERR_get_error()) {
    if (++taken > 3) continue;  // the first few say it; drain the rest
    std::string r;
    if (const char* text = ERR_reason_error_string(e)) {
      r = text;
    } else {
      char buf[256];
      ERR_error_string_n(e, buf, sizeof buf);
      r = buf;
    }
    if (why.find(r) != std::string::npos) continue;
    if (!why.empty()) why += ": ";
    why += r;
  }
  return why;
}

// The BIO between OpenSSL and a stream's bio_buffers. Empty input is "retry later", never the
// end of the input: the end of the connection is the transport's to see.
int bio_read(BIO* b, char* buf, std::size_t len, std::size_t* done) {
  auto* io = static_cast<bio_buffers*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  *done = 0;
  std::size_t n = 0;
  if (io->in_at < io->in.size()) {
    n = std::min(len, io->in.size() - io->in_at);
    std::memcpy(buf, io->in.data() + io->in_at, n);
    io->in_at += n;
    if (io->in_at == io->in.size()) {
      io->in.clear();
      io->in_at = 0;
    }
  } else if (!io->lent.empty()) {
    n = std::min(len, io->lent.size());
    std::memcpy(buf, io->lent.data(), n);
    io->lent.remove_prefix(n);
  }
  if (n == 0) {
    BIO_set_retry_read(b);
    return 0;
  }
  *done = n;
  return 1;
}

int bio_write(BIO* b, const char* data, std::size_t len, std::size_t* done) {
  auto* io = static_cast<bio_buffers*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  *done = 0;
  try {
    io->out.append(data, len);
  } catch (...) {
    return 0;  // no retry flag: OpenSSL sees a failed write
  }
  *done = len;
  return 1;
}

long bio_ctrl(BIO* b, int cmd, long, void*) {
  const auto* io = static_cast<const bio_buffers*>(BIO_get_data(b));
  switch (cmd) {
    case BIO_CTRL_FLUSH: return 1;
    case BIO_CTRL_PENDING:
      return io ? static_cast<long>(io->in.size() - io->in_at + io->lent.size()) : 0;
    case BIO_CTRL_WPENDING: return io ? static_cast<long>(io->out.size()) : 0;
    default: return 0;
  }
}

int bio_create(BIO* b) {
  BIO_set_init(b, 1);
  return 1;
}

// Made once; lives as long as the process (OpenSSL keeps no reference of its own).
const BIO_METHOD* buffers_method() {
  static const BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "uvcometd buffers");
    if (m && (BIO_meth_set_read_ex(m, bio_read) != 1 || BIO_meth_set_write_ex(m, bio_write) != 1 ||
              BIO_meth_set_ctrl(m, bio_ctrl) != 1 || BIO_meth_set_create(m, bio_create) != 1)) {
      BIO_meth_free(m);
      m = nullptr;
    }
    return m;
  }();
  return method;
}

}  // namespace

std::string verify_problem(long result) {
  switch (result) {
    // OpenSSL says "hostname mismatch" and "IP address mismatch".
    case X509_V_ERR_HOSTNAME_MISMATCH:
      return "host name mismatch (the certificate is for another host)";
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      return "IP address mismatch (the certificate is for another address)";
    default:
      if (const char* text = X509_verify_cert_error_string(result)) return text;
      return "certificate verification error " + std::to_string(result);
  }
}

std::string curl_verify_problem(long result, const std::string& curl_text) {
  if (result != X509_V_OK && result != X509_V_ERR_UNSPECIFIED) return verify_problem(result);
  return "host name mismatch (" + curl_text + ")";
}

context::context(const std::string& ca_file) {
  ERR_clear_error();
  ctx_ = SSL_CTX_new(TLS_client_method());
  if (!ctx_) {
    ERR_clear_error();
    throw std::bad_alloc();
  }
  SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
  // A renegotiation could make a write wait for a read; servers have no reason to ask for one.
  SSL_CTX_set_options(ctx_, SSL_OP_NO_RENEGOTIATION);
  // The websocket upgrade is HTTP/1.1.
  static const unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  SSL_CTX_set_alpn_protos(ctx_, alpn, sizeof alpn);
  const int loaded = ca_file.empty()
                         ? SSL_CTX_set_default_verify_paths(ctx_)
                         : SSL_CTX_load_verify_locations(ctx_, ca_file.c_str(), nullptr);
  if (loaded != 1) {
    const std::string why = queued_reasons();
    load_error_ = ca_file.empty() ? "the system's certificate store could not be loaded"
                                  : "the CA file '" + ca_file + "' could not be loaded";
    if (!why.empty()) load_error_ += " (" + why + ")";
  }
  ERR_clear_error();
}

context::~context() { SSL_CTX_free(ctx_); }

stream::stream(const context& ctx, const std::string& host, bool numeric, bool verify)
    : ctx_(ctx), verify_(verify) {
  ERR_clear_error();
  ssl_ = SSL_new(ctx.ctx_);
  const BIO_METHOD* method = buffers_method();
  BIO* io = method ? BIO_new(method) : nullptr;
  if (!ssl_ || !io) {
    BIO_free(io);
    SSL_free(ssl_);
    ERR_clear_error();
    throw std::bad_alloc();
  }
  BIO_set_data(io, &io_);
  SSL_set_bio(ssl_, io, io);  // ssl_ owns it from here (one reference for both directions)
  SSL_set_connect_state(ssl_);
  bool ok = true;
  // SNI carries names only (RFC 6066), never an address.
  // (SSL_set_tlsext_host_name spelt out: the macro casts in C style, which -Wold-style-cast
  // refuses; OpenSSL copies the name.)
  if (!numeric) {
    ok = SSL_ctrl(ssl_, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                  const_cast<char*>(host.c_str())) == 1;
  }
  if (verify) {
    SSL_set_verify(ssl_, SSL_VERIFY_PEER, nullptr);
    if (numeric) {
      ok = ok && X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), host.c_str()) == 1;
    } else {
      SSL_set_hostflags(ssl_, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      ok = ok && SSL_set1_host(ssl_, host.c_str()) == 1;
    }
  } else {
    SSL_set_verify(ssl_, SSL_VERIFY_NONE, nullptr);
  }
  if (!ok) {
    // Only an allocation can fail for a host that parse_endpoint accepted.
    SSL_free(ssl_);
    ERR_clear_error();
    throw std::bad_alloc();
  }
}

stream::~stream() { SSL_free(ssl_); }

void stream::lend(const char* data, std::size_t len) noexcept {
  keep_unread();  // an earlier loan not taken back (never, from the transport): kept first
  io_.lent = {data, len};
}

void stream::keep_unread() noexcept {
  if (io_.lent.empty()) return;
  try {
    if (io_.in_at != 0) {
      io_.in.erase(0, io_.in_at);
      io_.in_at = 0;
    }
    io_.in.append(io_.lent);
  } catch (...) {
    lost_input_ = true;
  }
  io_.lent = {};
}

stream::status stream::handshake() {
  if (lost_input_) return lost_input();
  if (verify_ && !ctx_.load_error().empty()) {
    certificate_refused_ = true;
    what_ = ctx_.load_error();
    return status::failed;
  }
  ERR_clear_error();
  const int r = SSL_do_handshake(ssl_);
  if (r == 1) return status::ready;
  return fail_from(r);
}

stream::status stream::read(char* buf, std::size_t cap, std::size_t& n) {
  n = 0;
  if (lost_input_) return lost_input();
  ERR_clear_error();
  const int r = SSL_read(ssl_, buf, static_cast<int>(std::min<std::size_t>(cap, INT_MAX)));
  if (r > 0) {
    n = static_cast<std::size_t>(r);
    return status::ready;
  }
  return fail_from(r);
}

bool stream::write(const char* data, std::size_t len) {
  ERR_clear_error();
  std::size_t written = 0;
  // The BIO takes everything: the whole buffer becomes records at once.
  if (SSL_write_ex(ssl_, data, len, &written) == 1 && written == len) return true;
  if (fail_from(0) != status::failed) what_ = "the TLS session cannot send now";
  return false;
}

stream::status stream::lost_input() {
  what_ = "out of memory for received TLS records";
  return status::failed;
}

stream::status stream::fail_from(int ret) {
  const int e = SSL_get_error(ssl_, ret);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    ERR_clear_error();
    return status::again;
  }
  if (e == SSL_ERROR_ZERO_RETURN) {
    ERR_clear_error();
    return status::closed;
  }
  const long verified = SSL_get_verify_result(ssl_);
  if (verify_ && verified != X509_V_OK) {
    // The handshake stopped because the certificate was refused; OpenSSL's queue only says
    // "certificate verify failed".
    ERR_clear_error();
    certificate_refused_ = true;
    what_ = verify_problem(verified);
    return status::failed;
  }
  what_ = queued_reasons();
  if (what_.empty()) what_ = "TLS failure (OpenSSL error " + std::to_string(e) + ")";
  ERR_clear_error();
  return status::failed;
}

}  // namespace uvcometd::detail::tls
