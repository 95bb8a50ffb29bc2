// TLS certificate checks of both transports against a real TLS peer: ws-fragment-server.js
// serving throw-away certificates that this file makes at start with the openssl command (a CA, a
// server certificate it signed for 127.0.0.1 and localhost, an expired one, one for another host
// name, a self-signed one). The websocket transport runs TLS itself (OpenSSL over lws's RAW
// connection), long-polling through libcurl: a refused certificate must be errc::certificate_error
// naming the cause on both, any other TLS failure a transport_error with OpenSSL's reason.
#include <unistd.h>
#include <uv.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "loop_helpers.hpp"
#include "server_process.hpp"
#include "transport/transport.hpp"
#include "transport_kit.hpp"
#include "uvcometd/error.hpp"

using namespace std::chrono_literals;
using nlohmann::json;
using uvcometd::errc;
using uvcometd::error;
using uvcometd::detail::header_list;
using uvcometd::detail::transport;
using uvcometd::detail::transport_events;
using uvcometd::detail::websocket_config;
using uvcometd::test::child_process;
using uvcometd::test::server_process;
using uvcometd::test::test_loop;

namespace {

// `name` found on PATH ("" if nowhere).
std::string on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  std::size_t at = 0;
  while (at <= dirs.size()) {
    const std::size_t colon = dirs.find(':', at);
    const std::string dir =
        dirs.substr(at, colon == std::string::npos ? std::string::npos : colon - at);
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string::npos) break;
    at = colon + 1;
  }
  return {};
}

// The throw-away certificates, made once per test process in a temporary directory that is
// removed at exit. Each server certificate has its key beside it (NAME.pem, NAME.key).
class certificates {
 public:
  static const certificates& get() {
    static const certificates made;
    return made;
  }

  std::string ca() const { return dir_ + "/ca.pem"; }
  std::string pem(const std::string& name) const { return dir_ + "/" + name + ".pem"; }
  std::string key(const std::string& name) const { return dir_ + "/" + name + ".key"; }

  certificates(const certificates&) = delete;
  certificates& operator=(const certificates&) = delete;

 private:
  certificates() {
    openssl_ = on_path("openssl");
    if (openssl_.empty()) throw std::runtime_error("the openssl command is not on PATH");
    char tmpl[] = "/tmp/uvcometd-tls-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    try {
      make();
    } catch (...) {
      std::filesystem::remove_all(dir_);
      throw;
    }
  }
  ~certificates() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  void run(std::vector<std::string> args) const {
    args.insert(args.begin(), openssl_);
    child_process p(args);
    if (!p.wait(30s) || p.exit_code() != 0) {
      throw std::runtime_error("openssl " + args[1] + " failed: " + p.describe());
    }
  }

  // A key and a request for CN=`cn` with the subjectAltName `san`.
  void request(const std::string& name, const std::string& cn, const std::string& san) const {
    run({"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key(name), "-out", dir_ + "/" + name + ".csr", "-subj", "/CN=" + cn, "-addext",
         "subjectAltName=" + san});
  }

  // Signs NAME.csr with the CA, valid from `start` to `end` (YYYYMMDDHHMMSSZ).
  void sign(const std::string& name, const std::string& start, const std::string& end) const {
    run({"ca", "-batch", "-notext", "-config", dir_ + "/ca.cnf", "-cert", ca(), "-keyfile",
         dir_ + "/ca.key", "-in", dir_ + "/" + name + ".csr", "-out", pem(name), "-startdate",
         start, "-enddate", end});
  }

  void make() const {
    {
      std::ofstream cnf(dir_ + "/ca.cnf");
      cnf << "[ca]\ndefault_ca = test_ca\n[test_ca]\ndatabase = " << dir_
          << "/index.txt\nnew_certs_dir = " << dir_ << "\nserial = " << dir_
          << "/serial\ndefault_md = sha256\npolicy = any\ncopy_extensions = copy\n"
             "unique_subject = no\n[any]\ncommonName = supplied\n";
      std::ofstream(dir_ + "/index.txt").flush();
      std::ofstream(dir_ + "/serial") << "1000\n";
      if (!cnf) throw std::runtime_error("cannot write " + dir_ + "/ca.cnf");
    }
    const std::vector<std::string> ec = {"-newkey", "ec", "-pkeyopt",
                                         "ec_paramgen_curve:prime256v1", "-nodes"};
    std::vector<std::string> ca_args = {"req", "-x509"};
    ca_args.insert(ca_args.end(), ec.begin(), ec.end());
    ca_args.insert(ca_args.end(),
                   {"-keyout", dir_ + "/ca.key", "-out", ca(), "-days", "3650", "-subj",
                    "/CN=uvcometd test CA", "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign"});
    run(ca_args);
    // Valid for 127.0.0.1 and localhost, from a year ago until ten years from now.
    request("good", "127.0.0.1", "IP:127.0.0.1,DNS:localhost");
    sign("good", stamp(-365), stamp(3650));
    request("expired", "127.0.0.1", "IP:127.0.0.1,DNS:localhost");
    sign("expired", stamp(-30), stamp(-1));
    request("wrong-host", "wrong.example", "DNS:wrong.example");
    sign("wrong-host", stamp(-365), stamp(3650));
    std::vector<std::string> self_args = {"req", "-x509"};
    self_args.insert(self_args.end(), ec.begin(), ec.end());
    self_args.insert(self_args.end(), {"-keyout", key("self-signed"), "-out", pem("self-signed"),
                                       "-days", "3650", "-subj", "/CN=127.0.0.1", "-addext",
                                       "subjectAltName=IP:127.0.0.1,DNS:localhost"});
    run(self_args);
  }

  // UTC now plus `days`, as openssl ca wants it.
  static std::string stamp(int days) {
    const std::time_t t = std::time(nullptr) + static_cast<std::time_t>(days) * 86400;
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y%m%d%H%M%SZ", &tm);
    return buf;
  }

  std::string openssl_;
  std::string dir_;
};

// ws-fragment-server.js serving certificate `name` over TLS.
server_process tls_server(const std::string& name) {
  const auto& c = certificates::get();
  return server_process("ws-fragment-server.js",
                        {"--tls", "1", "--cert", c.pem(name), "--key", c.key(name)});
}

// What a transport reported for one exchange: a frame, or a failure (on_down / on_request_failed).
struct outcome_recorder : transport_events {
  std::vector<std::string> frames;
  std::vector<error> failures;
  bool ups = false;
  bool was_up = false;

  void on_frame(std::uint64_t, std::string&& body, const header_list&) override {
    frames.push_back(std::move(body));
  }
  void on_request_failed(std::uint64_t, const error& err) override { failures.push_back(err); }
  void on_up() override { ups = true; }
  void on_down(const error& err, bool up, const std::vector<std::uint64_t>&) override {
    failures.push_back(err);
    was_up = was_up || up;
  }
  bool done() const { return !frames.empty() || !failures.empty(); }
};

enum class kind { websocket, long_polling };

const char* name_of(kind k) {
  return k == kind::websocket ? "wss (websocket)" : "https (long-polling)";
}

// Both transports from the websocket settings (long-polling takes the TLS ones).
std::unique_ptr<transport> make(kind k, const uvcometd::detail::transport_env& env,
                                const websocket_config& config, transport_events& events) {
  if (k == kind::websocket) return uvcometd::detail::make_websocket_transport(env, config, events);
  auto lp = uvcometd::test::lp_config(config.url);
  lp.tls_verify = config.tls_verify;
  lp.ca_file = config.ca_file;
  return uvcometd::detail::make_long_polling_transport(env, lp, events);
}

// One exchange over `k` with `config`: sends a frame (to /headers) and waits for its outcome.
struct exchange {
  outcome_recorder rec;

  exchange(kind k, const websocket_config& config) {
    test_loop loop;
    auto kit = std::make_unique<uvcometd::test::transport_kit>(loop.get());
    auto t = make(k, kit->env(), config, rec);
    t->send(1, "[]", 20s);
    const auto started = std::chrono::steady_clock::now();
    // OpenSSL's start-up is slow under valgrind; a refusal is final, so it comes well before.
    loop.run_until([&] { return rec.done(); }, 30s);
    elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - started);
    bool closed = false;
    t->close([&] { closed = true; });
    loop.run_until([&] { return closed; }, 10s);
    t.reset();
    CHECK(closed);
    kit.reset();
    CHECK(loop.close() == 0);
  }
  std::chrono::milliseconds elapsed{0};
};

websocket_config config_for(const std::string& url) {
  websocket_config c = uvcometd::test::ws_config(url);
  c.connect_timeout = 20s;  // refusals must come long before: they are not retried
  return c;
}

}  // namespace

TEST_CASE("tls: a certificate the client refuses is a certificate_error that names the cause",
          "[tls]") {
  const kind k = GENERATE(kind::websocket, kind::long_polling);
  INFO(name_of(k));
  const auto& certs = certificates::get();
  std::string served, host = "127.0.0.1", cause;
  bool trust_ca = true;
  SECTION("signed by a CA the client does not trust (the system store)") {
    served = "good";
    trust_ca = false;
    cause = "unable to get local issuer certificate";
  }
  SECTION("expired") {
    served = "expired";
    cause = "certificate has expired";
  }
  SECTION("for another host name") {
    served = "wrong-host";
    host = "localhost";
    cause = "host name mismatch";
  }
  SECTION("self-signed") {
    served = "self-signed";
    cause = "self-signed certificate";
  }
  auto server = tls_server(served);
  const std::string peer = host + ":" + std::to_string(server.port());
  auto config = config_for("https://" + peer + "/headers");
  if (trust_ca) config.ca_file = certs.ca();
  exchange x(k, config);
  CHECK(x.rec.frames.empty());
  REQUIRE(x.rec.failures.size() == 1);
  const error& err = x.rec.failures[0];
  CHECK(err.code == errc::certificate_error);
  CHECK_THAT(err.message, Catch::Contains("TLS certificate of " + peer + " refused: " + cause));
  CHECK_FALSE(x.rec.was_up);
  CHECK(x.elapsed < 10s);  // at once: never retried until a timeout
}

TEST_CASE("tls: ca_file makes the test CA trusted; tls_verify = false accepts any certificate",
          "[tls]") {
  const kind k = GENERATE(kind::websocket, kind::long_polling);
  INFO(name_of(k));
  const auto& certs = certificates::get();
  SECTION("ca_file, verification on: by address and by name") {
    const std::string host = GENERATE(as<std::string>{}, "127.0.0.1", "localhost");
    INFO(host);
    auto server = tls_server("good");
    auto config = config_for("https://" + host + ":" + std::to_string(server.port()) + "/headers");
    config.ca_file = certs.ca();
    exchange x(k, config);
    CHECK(x.rec.failures.empty());
    REQUIRE(x.rec.frames.size() == 1);
    CHECK(json::parse(x.rec.frames[0])["host"] == host + ":" + std::to_string(server.port()));
  }
  SECTION("tls_verify = false") {
    const std::string served =
        GENERATE(as<std::string>{}, "good", "expired", "wrong-host", "self-signed");
    INFO(served);
    auto server = tls_server(served);
    auto config = config_for("https://localhost:" + std::to_string(server.port()) + "/headers");
    config.tls_verify = false;
    exchange x(k, config);
    CHECK(x.rec.failures.empty());
    CHECK(x.rec.frames.size() == 1);
  }
}

TEST_CASE("tls: a CA file that cannot be read is a certificate_error naming the file", "[tls]") {
  const kind k = GENERATE(kind::websocket, kind::long_polling);
  INFO(name_of(k));
  auto server = tls_server("good");
  auto config = config_for("https://127.0.0.1:" + std::to_string(server.port()) + "/headers");
  config.ca_file = "/nonexistent/uvcometd-ca.pem";
  exchange x(k, config);
  REQUIRE(x.rec.failures.size() == 1);
  CHECK(x.rec.failures[0].code == errc::certificate_error);
  CHECK_THAT(x.rec.failures[0].message, Catch::Contains("/nonexistent/uvcometd-ca.pem"));
}

TEST_CASE(
    "tls: a TLS failure other than the certificate is a transport_error with OpenSSL's "
    "reason",
    "[tls]") {
  // https:// to a server that speaks plain HTTP: its answer to the ClientHello is no TLS record.
  const kind k = GENERATE(kind::websocket, kind::long_polling);
  INFO(name_of(k));
  server_process plain("ws-fragment-server.js");
  auto config = config_for("https://127.0.0.1:" + std::to_string(plain.port()) + "/headers");
  exchange x(k, config);
  REQUIRE(x.rec.failures.size() == 1);
  const error& err = x.rec.failures[0];
  CHECK(err.code == errc::transport_error);
  CHECK_THAT(err.message, Catch::Contains("TLS"));
  CHECK_THAT(err.message, Catch::Contains("wrong version number"));
  CHECK_THAT(err.message, !Catch::Contains("lib(0)"));
  CHECK(x.elapsed < 10s);
}
