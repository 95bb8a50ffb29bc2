// Options and URLs are checked when the client is made (issue 11 finding 17, issue 16's CLI
// findings): what would otherwise be found on the network, or overflow the clock, is refused
// with invalid_argument at once.
#include <catch2/catch.hpp>

#include <uv.h>

#include <chrono>
#include <limits>
#include <string>
#include <system_error>
#include <tuple>

#include "config.hpp"
#include "url.hpp"
#include "uvcometd/client.hpp"

using uvcometd::errc;
using uvcometd::detail::parse_server_url;

namespace {

std::string refusal(const std::string& url) {
  std::string why;
  INFO(url);
  CHECK_FALSE(parse_server_url(url, why).has_value());
  CHECK_FALSE(why.empty());
  return why;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Makes a client with `o` on a fresh loop; returns the error code of what it threw (empty when
// it was made), and checks that the loop closes clean either way.
std::error_code make_client(const uvcometd::options& o, std::string* what = nullptr) {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  std::error_code ec;
  try {
    uvcometd::client c(&loop, o);
  } catch (const std::system_error& e) {
    ec = e.code();
    if (what) *what = e.what();
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  return ec;
}

}  // namespace

TEST_CASE("server URLs: scheme, host, port, path and query", "[options]") {
  std::string why;
  auto u = parse_server_url("http://example.com/cometd", why);
  REQUIRE(u);
  CHECK_FALSE(u->secure);
  CHECK(u->host == "example.com");
  CHECK(u->port == 80);
  CHECK(u->path == "/cometd");
  CHECK(u->websocket() == "ws://example.com/cometd");
  u = parse_server_url("https://127.0.0.1:8443", why);
  REQUIRE(u);
  CHECK(u->secure);
  CHECK(u->port == 8443);
  CHECK(u->path == "/");
  CHECK(u->authority() == "127.0.0.1:8443");
  CHECK(u->websocket() == "wss://127.0.0.1:8443/");
  u = parse_server_url("http://[::1]:9000/b?x=1#frag", why);
  REQUIRE(u);
  CHECK(u->host == "::1");
  CHECK(u->path == "/b?x=1");
  CHECK(u->websocket() == "ws://[::1]:9000/b?x=1");
  u = parse_server_url("http://h?x=1", why);
  REQUIRE(u);
  CHECK(u->path == "/?x=1");
  u = parse_server_url("http://h:/x", why);  // an empty port is the default one
  REQUIRE(u);
  CHECK(u->port == 80);
  CHECK(parse_server_url("http://[fe80::1%25eth0]:1/x", why).has_value());
  CHECK(parse_server_url("http://b\xc3\xbc"
                         "cher.example/",
                         why)
            .has_value());
  CHECK(parse_server_url("http://h%41/", why).has_value());
}

TEST_CASE("malformed server URLs are refused with the reason", "[options]") {
  CHECK(contains(refusal(""), "http://"));
  CHECK(contains(refusal("ws://h/x"), "http://"));
  CHECK(contains(refusal("http://"), "no host"));
  CHECK(contains(refusal("http:///path"), "no host"));
  CHECK(contains(refusal("http://:80/x"), "no host"));
  CHECK(contains(refusal("http://h:http/x"), "port"));
  CHECK(contains(refusal("http://h:0/x"), "port"));
  CHECK(contains(refusal("http://h:65536/x"), "port"));
  CHECK(contains(refusal("http://h:-1/x"), "port"));
  CHECK(contains(refusal("http://user:secret@h/x"), "credentials"));
  CHECK_FALSE(contains(refusal("http://user:secret@h/x"), "secret"));
  CHECK(contains(refusal("http://h o/x"), "host"));
  CHECK(contains(refusal("http://h/a b"), "path"));
  CHECK(contains(refusal("http://h/a\r\nX: y"), "path"));
  CHECK(contains(refusal("http://[::1/x"), "IPv6"));
  CHECK(contains(refusal("http://[zz]/x"), "IPv6"));
  CHECK(contains(refusal("http://h%4/x"), "escape"));
  CHECK(contains(refusal("http://h<x>/"), "host"));
}

TEST_CASE("the client refuses unusable options when it is made", "[options]") {
  uvcometd::options good;
  good.url = "http://127.0.0.1:1/cometd";
  CHECK_FALSE(make_client(good));

  const auto refused = [&](auto edit, const char* part) {
    uvcometd::options o = good;
    edit(o);
    std::string what;
    CHECK(make_client(o, &what) == errc::invalid_argument);
    INFO(what);
    CHECK(contains(what, part));
  };
  using ms = std::chrono::milliseconds;
  refused([](auto& o) { o.url = "http://:80/x"; }, "no host");
  refused([](auto& o) { o.url = "http://h:x/"; }, "port");
  refused([](auto& o) { o.backoff_jitter = std::numeric_limits<double>::quiet_NaN(); },
          "backoff_jitter");
  refused([](auto& o) { o.backoff_jitter = 1.5; }, "backoff_jitter");
  refused([](auto& o) { o.connection_timeout = ms(-1); }, "connection_timeout");
  refused([](auto& o) { o.backoff_max = ms(-5); }, "backoff_max");
  refused([](auto& o) { o.disconnect_timeout = ms::min(); }, "disconnect_timeout");
  refused([](auto& o) { o.headers = {"X-Ok: 1", "no colon"}; }, "header 2");
  refused([](auto& o) { o.headers = {"Bad Name: 1"}; }, "header 1");
  refused([](auto& o) { o.headers = {"X-A: 1\r\nX-Injected: 2"}; }, "header 1");
  refused([](auto& o) { o.ca_file = "/nonexistent/ca.pem"; }, "ca_file");
  refused([](auto& o) { o.connection_types.clear(); }, "connection type");

  // The extremes that are valid saturate instead of overflowing (see test_session_hostile).
  uvcometd::options far = good;
  far.connection_timeout = ms::max();
  far.backoff_max = ms::max();
  far.max_network_delay = ms::max();
  CHECK_FALSE(make_client(far));
}

// Each transport gets its own settings, filled in one place from the options: the websocket's
// connect timeout and ping period are the websocket's only (an HTTP connect is bounded by the
// request's own deadline), the message size limit and TLS settings are both transports', and
// the header lines arrive parsed.
TEST_CASE("the transports' settings come from the options, each its own", "[options]") {
  using namespace std::chrono_literals;
  uvcometd::options o;
  o.websocket_connect_timeout = 1234ms;
  o.websocket_ping_interval = 4321ms;
  o.max_message_size = 777;
  o.tls_verify = false;
  o.ca_file = "/ca.pem";
  o.headers = {"X-One: 1", "X-Two:two words "};
  const std::string url = "https://127.0.0.1:8443/cometd";
  const auto lp = uvcometd::detail::make_long_polling_config(o, url);
  const auto ws = uvcometd::detail::make_websocket_config(o, url);
  const uvcometd::detail::header_list headers{{"X-One", "1"}, {"X-Two", "two words "}};
  for (const auto& [name, got_url, got_headers, tls_verify, ca_file, max_size] :
       {std::tuple{"long-polling", lp.url, lp.headers, lp.tls_verify, lp.ca_file,
                   lp.max_message_size},
        std::tuple{"websocket", ws.url, ws.headers, ws.tls_verify, ws.ca_file,
                   ws.max_message_size}}) {
    INFO(name);
    CHECK(got_url == url);
    CHECK(got_headers == headers);
    CHECK_FALSE(tls_verify);
    CHECK(ca_file == "/ca.pem");
    CHECK(max_size == 777);
  }
  CHECK(ws.connect_timeout == 1234ms);
  CHECK(ws.ping_interval == 4321ms);
}
