// OpenSSL over memory BIOs (see tls_client.hpp). Every call clears this thread's OpenSSL error
// queue first and leaves it empty: libcurl shares the queue on the loop thread, and a stale entry
// would be read as the cause of someone else's failure.
#include "transport/tls_client.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <climits>
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
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  if (!ssl_ || !in || !out) {
    BIO_free(in);
    BIO_free(out);
    SSL_free(ssl_);
    ERR_clear_error();
    throw std::bad_alloc();
  }
  // Empty means "more later" (a retry), never end of file: the end of the connection is the
  // transport's to see.
  BIO_set_mem_eof_return(in, -1);
  BIO_set_mem_eof_return(out, -1);
  SSL_set_bio(ssl_, in, out);  // ssl_ owns both from here
  in_ = in;
  out_ = out;
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

bool stream::feed(const char* data, std::size_t len) {
  ERR_clear_error();
  while (len > 0) {
    const int chunk = static_cast<int>(std::min<std::size_t>(len, INT_MAX));
    const int n = BIO_write(in_, data, chunk);
    if (n <= 0) {
      ERR_clear_error();
      what_ = "out of memory for received TLS records";
      return false;
    }
    data += n;
    len -= static_cast<std::size_t>(n);
  }
  return true;
}

stream::status stream::handshake() {
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
  // A memory BIO takes everything: the whole buffer becomes records at once.
  if (SSL_write_ex(ssl_, data, len, &written) == 1 && written == len) return true;
  if (fail_from(0) != status::failed) what_ = "the TLS session cannot send now";
  return false;
}

void stream::take_output(std::string& out) {
  const std::size_t pending = BIO_ctrl_pending(out_);
  if (pending == 0) return;
  const std::size_t at = out.size();
  out.resize(at + pending);
  const int n = BIO_read(out_, &out[at], static_cast<int>(std::min<std::size_t>(pending, INT_MAX)));
  out.resize(at + static_cast<std::size_t>(std::max(n, 0)));
  ERR_clear_error();
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
