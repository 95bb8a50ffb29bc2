// TLS, client side, without I/O: OpenSSL over in-memory buffers. The transport keeps the socket and
// the event loop (the websocket transport's RAW libwebsockets connection): ciphertext from the peer
// is lent through lend() and read in place, ciphertext for the peer comes out of output(),
// plaintext goes through read() and write(). OpenSSL's headers stay out of this one (its types
// are declared).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

struct ssl_st;      // SSL
struct ssl_ctx_st;  // SSL_CTX

namespace uvcometd::detail::tls {

// What a certificate verification result (OpenSSL's X509_V_ERR_*, also libcurl's
// CURLINFO_SSL_VERIFYRESULT) means, in words: "certificate has expired", "host name mismatch", ...
std::string verify_problem(long result);

// The same for libcurl's CURLE_PEER_FAILED_VERIFICATION, given CURLINFO_SSL_VERIFYRESULT and
// libcurl's error text: when OpenSSL found nothing to say (0, or "unspecified"), the chain passed
// and libcurl's own host name check refused the certificate.
std::string curl_verify_problem(long result, const std::string& curl_text);

// What the connections of one set of trust settings share (one SSL_CTX): the trust store, peer
// verification by default, ALPN "http/1.1".
class context {
 public:
  // Trusts `ca_file` when not empty (it replaces the system store), else the system's default
  // store. Throws std::bad_alloc when OpenSSL cannot allocate the context.
  explicit context(const std::string& ca_file);
  ~context();
  context(const context&) = delete;
  context& operator=(const context&) = delete;

  // Empty when the trust store is usable; else why not (the CA file could not be read). A
  // connection made with an unusable store fails its handshake with certificate_refused().
  const std::string& load_error() const noexcept { return load_error_; }

 private:
  friend class stream;
  ssl_ctx_st* ctx_ = nullptr;
  std::string load_error_;
};

// What a stream's BIO reads from and writes to. The BIO is one of ours, not a memory BIO: that
// zeroes and copies every byte into a buffer of its own first.
struct bio_buffers {
  std::string in;         // ciphertext from the peer that an earlier lend() left unread
  std::size_t in_at = 0;  // where OpenSSL reads next in `in`
  std::string_view lent;  // ciphertext lent by the caller, read after `in`
  std::string out;        // ciphertext for the peer
};

// One client connection's TLS session; `ctx` must outlive it.
class stream {
 public:
  enum class status {
    again,   // more ciphertext from the peer is needed (output() may have some to send)
    ready,   // handshake(): done; read(): bytes were returned
    closed,  // the peer ended the TLS session (close_notify)
    failed   // certificate_refused() and what() say why; the stream is dead
  };

  // `host`: the server's name (sent as SNI and checked against the certificate) or IP literal
  // (`numeric`: checked against the certificate's IP addresses, no SNI). `verify` false accepts
  // any certificate. Throws std::bad_alloc.
  stream(const context& ctx, const std::string& host, bool numeric, bool verify);
  ~stream();
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;

  // Ciphertext received from the peer, read where it is by handshake() and read() (after what
  // earlier calls left unread): `data` must stay valid until keep_unread().
  void lend(const char* data, std::size_t len) noexcept;
  // The lent ciphertext is about to be taken back: what was not read yet is copied. (Reading
  // until `again` reads everything, so that is usually nothing.) Out of memory, the stream fails
  // its next handshake() or read().
  void keep_unread() noexcept;
  // Advances the handshake with what was lent; `ready` once it is complete.
  status handshake();
  // Up to `cap` decrypted bytes into `buf`; `n` says how many (only with `ready`).
  status read(char* buf, std::size_t cap, std::size_t& n);
  // Encrypts `len` bytes; the records wait in output(). False on failure (what()).
  bool write(const char* data, std::size_t len);
  // The ciphertext waiting for the peer (empty when none); valid until the next call.
  std::string_view output() const noexcept { return io_.out; }
  // The peer was given output().
  void output_sent() noexcept { io_.out.clear(); }

  // After `failed`: true when the peer's certificate was refused (untrusted, expired, not for
  // this host, or the trust store is unusable), false for any other TLS failure.
  bool certificate_refused() const noexcept { return certificate_refused_; }
  // After `failed`: the cause in words (OpenSSL's reason or the verification problem).
  const std::string& what() const noexcept { return what_; }

 private:
  status fail_from(int ret);
  status lost_input();

  const context& ctx_;
  ssl_st* ssl_ = nullptr;  // owns the BIO, whose data is io_
  bio_buffers io_;
  bool verify_;
  bool lost_input_ = false;  // keep_unread() ran out of memory
  bool certificate_refused_ = false;
  std::string what_;
};

}  // namespace uvcometd::detail::tls
