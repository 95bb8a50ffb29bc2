// Channel names (lib/channel.*): validation, the subscribe/publish rules, wildcard matching.
#include <catch2/catch.hpp>

#include <string>

#include "channel.hpp"
#include "uvcometd/error.hpp"

namespace ch = uvcometd::detail;
using uvcometd::errc;

TEST_CASE("well-formed channel names are valid", "[channel]") {
  const std::string name =
      GENERATE(as<std::string>{}, "/a", "/foo/bar", "/a/b/c/d", "/a/*", "/a/**", "/*", "/**",
               "/meta/connect", "/service/x", "/chat/room-1_2.3", "/caf\xc3\xa9");
  INFO("channel: " << name);
  CHECK(ch::is_valid_channel(name));
}

TEST_CASE("malformed channel names are invalid", "[channel]") {
  const std::string name = GENERATE(as<std::string>{},
                                    "",         // empty
                                    "/",        // no segment
                                    "a/b",      // no leading slash
                                    "foo",      // no slash at all
                                    "/a/",      // trailing slash
                                    "/a//b",    // empty segment
                                    "//a",      // empty first segment
                                    "/a/*/b",   // '*' in the middle
                                    "/*/b",     // '*' as the first of several segments
                                    "/a/**/b",  // '**' in the middle
                                    "/a/*x",    // '*' inside a segment
                                    "/a/x*",    // '*' inside a segment
                                    "/a/***",   // three stars
                                    "/a b",     // space
                                    "/a\tb",    // control character
                                    "/a\x7f");  // DEL
  INFO("channel: '" << name << "'");
  CHECK_FALSE(ch::is_valid_channel(name));
}

TEST_CASE("meta, service and wildcard channels are recognised by their names", "[channel]") {
  CHECK(ch::is_meta("/meta/connect"));
  CHECK_FALSE(ch::is_meta("/metadata"));
  CHECK_FALSE(ch::is_meta("/foo/meta/x"));
  CHECK(ch::is_service("/service/echo"));
  CHECK_FALSE(ch::is_service("/services"));
  CHECK(ch::is_wildcard("/a/*"));
  CHECK(ch::is_wildcard("/a/**"));
  CHECK_FALSE(ch::is_wildcard("/a/b"));
}

TEST_CASE("subscribing to a normal, service or wildcard channel is allowed", "[channel]") {
  const std::string name = GENERATE(as<std::string>{}, "/foo/bar", "/foo/*", "/foo/**", "/**",
                                    "/service/x", "/metadata");
  INFO("channel: " << name);
  CHECK_FALSE(ch::check_subscribe_channel(name));
}

TEST_CASE("subscribing to a meta channel or a malformed name is refused", "[channel]") {
  const std::string name = GENERATE(as<std::string>{}, "/meta", "/meta/connect", "/meta/*",
                                    "/meta/**", "", "foo", "/a/*x");
  INFO("channel: " << name);
  CHECK(ch::check_subscribe_channel(name) == errc::invalid_channel);
}

TEST_CASE("publishing to a normal or service channel is allowed", "[channel]") {
  const std::string name = GENERATE(as<std::string>{}, "/foo/bar", "/service/echo", "/a");
  INFO("channel: " << name);
  CHECK_FALSE(ch::check_publish_channel(name));
}

TEST_CASE("publishing to a wildcard, a meta channel or a malformed name is refused", "[channel]") {
  const std::string name = GENERATE(as<std::string>{}, "/foo/*", "/foo/**", "/*", "/**", "/meta",
                                    "/meta/xxx", "/meta/connect", "", "/a/", "no-slash");
  INFO("channel: " << name);
  CHECK(ch::check_publish_channel(name) == errc::invalid_channel);
}

TEST_CASE("an exact pattern matches only the same channel", "[channel]") {
  CHECK(ch::channel_matches("/a/b", "/a/b"));
  CHECK_FALSE(ch::channel_matches("/a/b", "/a/bc"));
  CHECK_FALSE(ch::channel_matches("/a/b", "/a"));
  CHECK_FALSE(ch::channel_matches("/a/b", "/a/b/c"));
}

TEST_CASE("/a/* matches one segment below /a and nothing else", "[channel]") {
  CHECK(ch::channel_matches("/a/*", "/a/b"));
  CHECK(ch::channel_matches("/a/*", "/a/xyz"));
  CHECK_FALSE(ch::channel_matches("/a/*", "/a/b/c"));
  CHECK_FALSE(ch::channel_matches("/a/*", "/a"));
  CHECK_FALSE(ch::channel_matches("/a/*", "/ab"));
  CHECK_FALSE(ch::channel_matches("/a/*", "/b/c"));
}

TEST_CASE("/a/** matches any depth below /a but not /a itself", "[channel]") {
  CHECK(ch::channel_matches("/a/**", "/a/b"));
  CHECK(ch::channel_matches("/a/**", "/a/b/c"));
  CHECK(ch::channel_matches("/a/**", "/a/b/c/d/e"));
  CHECK_FALSE(ch::channel_matches("/a/**", "/a"));
  CHECK_FALSE(ch::channel_matches("/a/**", "/ab/c"));
  CHECK_FALSE(ch::channel_matches("/a/**", "/b/a/c"));
}

TEST_CASE("/* and /** at the root match top-level and every channel", "[channel]") {
  CHECK(ch::channel_matches("/*", "/a"));
  CHECK_FALSE(ch::channel_matches("/*", "/a/b"));
  CHECK(ch::channel_matches("/**", "/a"));
  CHECK(ch::channel_matches("/**", "/a/b/c"));
}
