// The client's cookie jar: kept per server (scheme://host:port), Path, Expires and Max-Age as
// RFC 6265 says, bounded in memory.
#include <catch2/catch.hpp>

#include <ctime>
#include <string>

#include "transport/cookie_jar.hpp"

using uvcometd::detail::cookie_jar;
using uvcometd::detail::url_origin;

namespace {
constexpr std::time_t now = 1'800'000'000;  // 2027-01-15
}

TEST_CASE("a server's cookies go back to it, to no other server, not even another port",
          "[cookie_jar]") {
  cookie_jar jar;
  jar.store("http://127.0.0.1:8080/cometd", "BAYEUX_BROWSER=abc; Path=/; HttpOnly", now);
  CHECK(jar.header_for("http://127.0.0.1:8080/cometd", now) == "BAYEUX_BROWSER=abc");
  CHECK(jar.header_for("ws://127.0.0.1:8080/cometd", now) == "BAYEUX_BROWSER=abc");  // same server
  CHECK(jar.header_for("http://127.0.0.1:8081/cometd", now).empty());
  CHECK(jar.header_for("https://127.0.0.1:8080/cometd", now).empty());
  CHECK(jar.header_for("http://localhost:8080/cometd", now).empty());
  // A Domain attribute does not widen the scope (and one the host is not in refuses the cookie).
  jar.store("http://a.example.com/x", "wide=1; Domain=example.com", now);
  jar.store("http://a.example.com/x", "foreign=1; Domain=other.com", now);
  CHECK(jar.header_for("http://a.example.com/x", now) == "wide=1");
  CHECK(jar.header_for("http://b.example.com/x", now).empty());
}

TEST_CASE("origins spell out the default port; ws counts as http, wss as https", "[cookie_jar]") {
  std::string origin, path;
  REQUIRE(url_origin("HTTP://Example.COM/a/b?q=1", origin, path));
  CHECK(origin == "http://example.com:80");
  CHECK(path == "/a/b");
  REQUIRE(url_origin("wss://example.com", origin, path));
  CHECK(origin == "https://example.com:443");
  CHECK(path == "/");
  REQUIRE(url_origin("http://[::1]:9000/x", origin, path));
  CHECK(origin == "http://[::1]:9000");
  CHECK_FALSE(url_origin("no scheme", origin, path));
  CHECK_FALSE(url_origin("http:///path", origin, path));
}

TEST_CASE("a cookie replaces the one of the same name and path; Max-Age 0 removes it",
          "[cookie_jar]") {
  cookie_jar jar;
  const std::string url = "http://h:1/cometd/connect";
  const auto v0 = jar.version(now);
  jar.store(url, "a=1; Path=/", now);
  jar.store(url, "b=2; Path=/", now);
  CHECK(jar.version(now) != v0);
  jar.store(url, "a=3; Path=/", now);
  CHECK(jar.header_for(url, now) == "a=3; b=2");  // a keeps its place (creation time)
  const auto v1 = jar.version(now);
  jar.store(url, "a=; Max-Age=0; Path=/", now);
  CHECK(jar.header_for(url, now) == "b=2");
  CHECK(jar.version(now) != v1);
  jar.store(url, "b=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/", now);
  CHECK(jar.header_for(url, now).empty());
  CHECK(jar.size() == 0);
}

TEST_CASE("Path: the default is the request's directory; longer paths go first", "[cookie_jar]") {
  cookie_jar jar;
  jar.store("http://h:1/cometd/handshake", "d=1", now);  // default path /cometd
  jar.store("http://h:1/cometd/handshake", "root=1; Path=/", now);
  jar.store("http://h:1/cometd/handshake", "deep=1; Path=/cometd/handshake", now);
  CHECK(jar.header_for("http://h:1/cometd/handshake", now) == "deep=1; d=1; root=1");
  CHECK(jar.header_for("http://h:1/cometd", now) == "d=1; root=1");
  CHECK(jar.header_for("http://h:1/cometdx", now) == "root=1");  // not a path prefix match
  CHECK(jar.header_for("http://h:1/", now) == "root=1");
}

TEST_CASE("expiry: Max-Age wins over Expires; an expired cookie is neither sent nor kept",
          "[cookie_jar]") {
  cookie_jar jar;
  const std::string url = "http://h:1/";
  jar.store(url, "short=1; Max-Age=10", now);
  jar.store(url, "dated=1; Expires=Wed, 01 Jan 2200 00:00:00 GMT; Max-Age=20", now);
  jar.store(url, "session=1", now);
  CHECK(jar.header_for(url, now) == "short=1; dated=1; session=1");
  const auto v = jar.version(now + 5);
  CHECK(jar.header_for(url, now + 15) == "dated=1; session=1");
  CHECK(jar.version(now + 15) != v);  // an expiry moves the version: request headers rebuild
  CHECK(jar.size() == 2);
  CHECK(jar.header_for(url, now + 25) == "session=1");
}

TEST_CASE("bad input: no name, control characters, oversized, Secure over http", "[cookie_jar]") {
  cookie_jar jar;
  const std::string url = "http://h:1/";
  jar.store(url, "novalue", now);
  jar.store(url, "=v", now);
  jar.store(url, std::string("a=b\r\nX-Injected: 1"), now);
  jar.store(url, "big=" + std::string(cookie_jar::max_cookie_bytes, 'x'), now);
  jar.store(url, "s=1; Secure", now);
  jar.store("not a url", "a=1", now);
  CHECK(jar.size() == 0);
  jar.store("https://h:1/", "s=1; Secure", now);
  CHECK(jar.header_for("https://h:1/", now) == "s=1");
}

TEST_CASE("at most max_per_origin cookies per server: the oldest goes", "[cookie_jar]") {
  cookie_jar jar;
  for (std::size_t i = 0; i <= cookie_jar::max_per_origin; ++i) {
    jar.store("http://h:1/", "c" + std::to_string(i) + "=1", now);
  }
  jar.store("http://other:1/", "kept=1", now);
  CHECK(jar.size() == cookie_jar::max_per_origin + 1);
  const std::string sent = jar.header_for("http://h:1/", now);
  CHECK(sent.find("c0=") == std::string::npos);
  CHECK(sent.find("c1=1") != std::string::npos);
  CHECK(jar.header_for("http://other:1/", now) == "kept=1");
}
