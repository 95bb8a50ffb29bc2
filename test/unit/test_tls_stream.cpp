// TLS without I/O (lib/transport/tls_client.*): the client stream against an OpenSSL server in
// the same process, over memory BIOs, with a certificate made at start. What the transports
// cannot reach in a working connection is driven here: ciphertext left unread when a loan is
// taken back (it must be copied, the lender reuses its buffer), records that cross a loan's end,
// bytes after the server's close_notify, and a copy that fails.
#include <catch2/catch.hpp>

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "transport/tls_client.hpp"

namespace tls = uvcometd::detail::tls;
using status = tls::stream::status;

namespace {

// ---- the server: OpenSSL over memory BIOs, a throw-away key and self-signed certificate -----

struct ssl_ctx_free {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct ssl_free {
  void operator()(SSL* s) const { SSL_free(s); }
};

std::unique_ptr<SSL_CTX, ssl_ctx_free> server_context() {
  std::unique_ptr<SSL_CTX, ssl_ctx_free> ctx(SSL_CTX_new(TLS_server_method()));
  REQUIRE(ctx);
  // A P-256 key, by the calls OpenSSL 1.1.1 and 3 share (EVP_EC_gen is 3's only).
  EVP_PKEY* key = nullptr;
  EVP_PKEY_CTX* keygen = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nullptr);
  REQUIRE(keygen);
  const bool made = EVP_PKEY_keygen_init(keygen) == 1 &&
                    EVP_PKEY_CTX_set_ec_paramgen_curve_nid(keygen, NID_X9_62_prime256v1) == 1 &&
                    EVP_PKEY_keygen(keygen, &key) == 1;
  EVP_PKEY_CTX_free(keygen);
  REQUIRE(made);
  X509* cert = X509_new();
  REQUIRE((key && cert));
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  REQUIRE(X509_sign(cert, key, EVP_sha256()) > 0);
  REQUIRE(SSL_CTX_use_certificate(ctx.get(), cert) == 1);
  REQUIRE(SSL_CTX_use_PrivateKey(ctx.get(), key) == 1);
  X509_free(cert);
  EVP_PKEY_free(key);
  return ctx;
}

// One server connection; its records come out of take() as the bytes a socket would carry.
struct server {
  std::unique_ptr<SSL_CTX, ssl_ctx_free> ctx = server_context();
  std::unique_ptr<SSL, ssl_free> ssl{SSL_new(ctx.get())};
  BIO* in = BIO_new(BIO_s_mem());   // from the client
  BIO* out = BIO_new(BIO_s_mem());  // to the client

  server() {
    REQUIRE((ssl && in && out));
    SSL_set_bio(ssl.get(), in, out);  // the SSL owns both
    SSL_set_accept_state(ssl.get());
  }

  void give(std::string_view from_client) {
    if (!from_client.empty()) {
      REQUIRE(BIO_write(in, from_client.data(), static_cast<int>(from_client.size())) ==
              static_cast<int>(from_client.size()));
    }
  }
  std::string take() {
    std::string bytes(static_cast<std::size_t>(BIO_pending(out)), '\0');
    if (!bytes.empty()) REQUIRE(BIO_read(out, bytes.data(), static_cast<int>(bytes.size())) > 0);
    return bytes;
  }
  // One record of application data per call.
  std::string record(std::string_view plain) {
    REQUIRE(SSL_write(ssl.get(), plain.data(), static_cast<int>(plain.size())) ==
            static_cast<int>(plain.size()));
    return take();
  }
};

// The client stream over a lender that reuses its buffer: every loan is taken back (keep_unread)
// and its bytes overwritten before the next call, as the transport's receive buffer would be.
struct client {
  tls::context ctx{""};
  tls::stream stream{ctx, "localhost", false, /*verify*/ false};
  std::string loan;

  void lend(std::string bytes) {
    loan = std::move(bytes);
    stream.lend(loan.data(), loan.size());
  }
  void take_back() {
    stream.keep_unread();
    std::fill(loan.begin(), loan.end(), 'x');
  }
  // Reads until the stream has nothing more; what it returned, then how it stopped.
  std::pair<std::vector<std::string>, status> read_all() {
    std::vector<std::string> got;
    for (;;) {
      char buf[256];
      std::size_t n = 0;
      const status s = stream.read(buf, sizeof buf, n);
      if (s != status::ready) return {got, s};
      got.emplace_back(buf, n);
    }
  }
  std::string read_one() {
    char buf[256];
    std::size_t n = 0;
    REQUIRE(stream.read(buf, sizeof buf, n) == status::ready);
    return {buf, n};
  }
};

// Client and server through the handshake, each server flight lent for the client's next step and
// taken back after it. (The server's session tickets come after the client is done: they stay
// unread, kept, and are read before the first record.)
void handshake(client& c, server& s) {
  std::string to_client;
  for (int flight = 0; flight < 10; ++flight) {
    c.lend(to_client);
    const status cs = c.stream.handshake();
    c.take_back();
    REQUIRE(cs != status::failed);
    s.give(c.stream.output());
    c.stream.output_sent();
    const int r = SSL_do_handshake(s.ssl.get());
    if (r != 1) REQUIRE(SSL_get_error(s.ssl.get(), r) == SSL_ERROR_WANT_READ);
    to_client = s.take();
    if (cs == status::ready && r == 1 && to_client.empty()) return;
  }
  FAIL("the handshake did not complete in 10 flights");
}

}  // namespace

TEST_CASE("ciphertext a loan leaves unread is kept, and records read across loans", "[tls]") {
  client c;
  server s;
  handshake(c, s);
  const std::string r1 = s.record("first"), r2 = s.record("second"), r3 = s.record("third"),
                    r4 = s.record("fourth"), r5 = s.record("fifth");
  REQUIRE(r3.size() > 2);

  // One loan with the first two records and two bytes of the third (inside its 5-byte header):
  // one read takes the first record only, the rest stays unread when the loan is taken back.
  c.lend(r1 + r2 + r3.substr(0, 2));
  CHECK(c.read_one() == "first");
  c.take_back();  // the loan's bytes are now 'x': what was unread must have been copied

  // The rest of the third record and two more in the next loan. "second" comes from the copy;
  // then this loan is taken back unread while the copy is partly read: the copy keeps only its
  // unread part, this loan after it.
  c.lend(r3.substr(2) + r4 + r5);
  CHECK(c.read_one() == "second");
  c.take_back();

  // "third" is read from the copy, across the two loans' bytes; the rest follows.
  c.lend(s.record("sixth"));
  const auto [got, end] = c.read_all();
  CHECK(got == std::vector<std::string>{"third", "fourth", "fifth", "sixth"});
  CHECK(end == status::again);
  c.take_back();

  // And the stream goes on once the copy is used up.
  c.lend(s.record("seventh"));
  CHECK(c.read_one() == "seventh");
  c.take_back();
}

TEST_CASE("a record lent one byte at a time is read once it is whole", "[tls]") {
  client c;
  server s;
  handshake(c, s);
  std::string r = s.record(std::string(200, 'm'));
  r += s.record("next");  // (not in one expression: the records must be made in this order)
  std::vector<std::string> got;
  for (const char byte : r) {
    c.lend(std::string(1, byte));
    auto [some, end] = c.read_all();
    REQUIRE(end == status::again);
    got.insert(got.end(), some.begin(), some.end());
    c.take_back();
  }
  CHECK(got == std::vector<std::string>{std::string(200, 'm'), "next"});
}

TEST_CASE("bytes after the server's close_notify leave the stream closed", "[tls]") {
  client c;
  server s;
  handshake(c, s);
  std::string bytes = s.record("last");
  REQUIRE(SSL_shutdown(s.ssl.get()) == 0);  // close_notify sent, the client's not yet received
  bytes += s.take();
  bytes += "not a TLS record, after the end";

  c.lend(bytes);
  const auto [got, end] = c.read_all();
  CHECK(got == std::vector<std::string>{"last"});
  CHECK(end == status::closed);
  c.take_back();  // the bytes after close_notify are kept (nothing reads them)

  // Whatever comes next, the session stays ended, and no error is left for the next user of
  // this thread's OpenSSL error queue.
  c.lend("more bytes");
  std::size_t n = 0;
  char buf[16];
  CHECK(c.stream.read(buf, sizeof buf, n) == status::closed);
  CHECK(n == 0);
  c.take_back();
  CHECK(ERR_peek_error() == 0);
}

TEST_CASE("a record altered on the way fails the stream with OpenSSL's reason", "[tls]") {
  client c;
  server s;
  handshake(c, s);
  std::string r = s.record("payload");
  r.back() = static_cast<char>(r.back() ^ 1);  // the tag no longer matches
  c.lend(r);
  char buf[64];
  std::size_t n = 0;
  CHECK(c.stream.read(buf, sizeof buf, n) == status::failed);
  CHECK_FALSE(c.stream.certificate_refused());
  CHECK_FALSE(c.stream.what().empty());
  CHECK(ERR_peek_error() == 0);
  c.take_back();
}

TEST_CASE("ciphertext that cannot be kept fails the stream's next read, naming why", "[tls]") {
  client c;
  server s;
  handshake(c, s);
  // A loan no string can copy: keep_unread() meets the same exception path as an allocation
  // failure (std::string throws before reading any of it, so the bytes are never touched).
  const std::string r = s.record("lost");
  c.stream.lend(r.data(), std::string().max_size());
  c.stream.keep_unread();
  char buf[64];
  std::size_t n = 0;
  CHECK(c.stream.read(buf, sizeof buf, n) == status::failed);
  CHECK(n == 0);
  CHECK(c.stream.what() == "out of memory for received TLS records");
  CHECK_FALSE(c.stream.certificate_refused());
  CHECK(c.stream.handshake() == status::failed);  // and stays failed
}
