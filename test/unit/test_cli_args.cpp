// uvcometd-cli's argument parser and output formatting (samples/cli_args.*).
#include <catch2/catch.hpp>

#include <chrono>
#include <initializer_list>
#include <string>
#include <vector>

#include "channel.hpp"
#include "cli_args.hpp"
#include "json.hpp"
#include "uvcometd/checks.hpp"

using namespace std::chrono_literals;
using uvcometd::connection_type;
using uvcometd_cli::parse_action;
using uvcometd_cli::parse_result;

namespace {

// Runs the parser on "uvcometd-cli" followed by `args`.
parse_result parse(std::initializer_list<std::string> args) {
  std::vector<std::string> storage{"uvcometd-cli"};
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : storage) argv.push_back(&s[0]);
  argv.push_back(nullptr);
  return uvcometd_cli::parse_args(static_cast<int>(storage.size()), argv.data());
}

void require_usage_error(std::initializer_list<std::string> args, const std::string& fragment) {
  const parse_result r = parse(args);
  INFO("error: " << r.error);
  REQUIRE(r.action == parse_action::usage_error);
  REQUIRE_FALSE(r.ok());
  REQUIRE(r.error.find(fragment) != std::string::npos);
}

const std::string url = "http://127.0.0.1:8000/bayeux";

}  // namespace

TEST_CASE("a lone URL runs with the documented defaults", "[cli]") {
  const parse_result r = parse({url});
  REQUIRE(r.action == parse_action::run);
  REQUIRE(r.ok());
  const auto& c = r.config;
  CHECK(c.url == url);
  CHECK(c.subscribe.empty());
  CHECK(c.publish.empty());
  CHECK(c.connection_timeout == 10s);
  CHECK(c.connection_types == uvcometd::options{}.connection_types);
  CHECK(c.max_pending_count == uvcometd::options{}.max_pending_count);
  CHECK_FALSE(c.count.has_value());
  CHECK(c.headers.empty());
  CHECK(c.handshake_ext.empty());
  CHECK_FALSE(c.verbose);
  CHECK_FALSE(c.debug);
  CHECK(c.tls_verify);
  CHECK(c.ca_file.empty());
}

TEST_CASE("every option has its short and long spelling", "[cli]") {
  SECTION("short") {
    const parse_result r = parse(
        {"-s", "/a", "-p", "/b={}", "-t", "long-polling", "-n", "5", "-H", "X-A: 1", "-v", url});
    REQUIRE(r.action == parse_action::run);
    const auto& c = r.config;
    CHECK(c.subscribe == std::vector<std::string>{"/a"});
    REQUIRE(c.publish.size() == 1);
    CHECK(c.publish[0].channel == "/b");
    CHECK(c.publish[0].data == "{}");
    CHECK(c.connection_types == std::vector<connection_type>{connection_type::long_polling});
    CHECK(c.count == std::size_t{5});
    CHECK(c.headers == std::vector<std::string>{"X-A: 1"});
    CHECK(c.verbose);
  }
  SECTION("long, with separate and attached arguments") {
    const parse_result r = parse(
        {"--subscribe", "/a", "--publish=/b=[1]", "--transport", "websocket", "--count=7",
         "--connection-timeout", "2.5", "--max-pending=0", "--header", "X-A: 1", "--ext",
         "{\"auth\":\"t\"}", "--verbose", "--debug", "--insecure", "--cacert", "/etc/ca.pem", url});
    REQUIRE(r.action == parse_action::run);
    const auto& c = r.config;
    CHECK(c.subscribe == std::vector<std::string>{"/a"});
    REQUIRE(c.publish.size() == 1);
    CHECK(c.publish[0].channel == "/b");
    CHECK(c.publish[0].data == "[1]");
    CHECK(c.connection_types == std::vector<connection_type>{connection_type::websocket});
    CHECK(c.count == std::size_t{7});
    CHECK(c.connection_timeout == 2500ms);
    CHECK(c.max_pending_count == 0);
    CHECK(c.headers == std::vector<std::string>{"X-A: 1"});
    CHECK(c.handshake_ext == "{\"auth\":\"t\"}");
    CHECK(c.verbose);
    CHECK(c.debug);
    CHECK_FALSE(c.tls_verify);
    CHECK(c.ca_file == "/etc/ca.pem");
  }
  SECTION("short options grouped, argument attached") {
    const parse_result r = parse({"-vs/a", "-n3", url});
    REQUIRE(r.action == parse_action::run);
    CHECK(r.config.verbose);
    CHECK(r.config.subscribe == std::vector<std::string>{"/a"});
    CHECK(r.config.count == std::size_t{3});
  }
}

TEST_CASE("-h and --help ask for the usage, even with other options", "[cli]") {
  CHECK(parse({"-h"}).action == parse_action::help);
  CHECK(parse({"--help"}).action == parse_action::help);
  CHECK(parse({"-s", "/a", "--help", url}).action == parse_action::help);
  CHECK(uvcometd_cli::usage().find("Usage: uvcometd-cli [options] URL") == 0);
}

TEST_CASE("--version asks for the version without a URL", "[cli]") {
  CHECK(parse({"--version"}).action == parse_action::version);
}

TEST_CASE("the URL may come before, between or after the options", "[cli]") {
  CHECK(parse({url, "-s", "/a"}).config.url == url);
  CHECK(parse({"-s", "/a", url, "-v"}).config.url == url);
  const parse_result r = parse({"-s", "/a", "--", url});
  REQUIRE(r.action == parse_action::run);
  CHECK(r.config.url == url);
}

TEST_CASE("repeatable options keep every value in order", "[cli]") {
  const parse_result r = parse({"-s", "/a", "--subscribe", "/b/*", "-s", "/c/**", "-p", "/x=1",
                                "-p", "/y=\"two\"", "-H", "A: 1", "--header", "B: 2", url});
  REQUIRE(r.action == parse_action::run);
  CHECK(r.config.subscribe == std::vector<std::string>{"/a", "/b/*", "/c/**"});
  REQUIRE(r.config.publish.size() == 2);
  CHECK(r.config.publish[0].channel == "/x");
  CHECK(r.config.publish[0].data == "1");
  CHECK(r.config.publish[1].channel == "/y");
  CHECK(r.config.publish[1].data == "\"two\"");
  CHECK(r.config.headers == std::vector<std::string>{"A: 1", "B: 2"});
}

TEST_CASE("the parser can be called again (getopt state is reset)", "[cli]") {
  REQUIRE(parse({"-s", "/a", url}).config.subscribe.size() == 1);
  const parse_result r = parse({"-s", "/b", url});
  REQUIRE(r.action == parse_action::run);
  CHECK(r.config.subscribe == std::vector<std::string>{"/b"});
}

TEST_CASE("-t orders transports; one name forces it", "[cli]") {
  CHECK(parse({"-t", "websocket", url}).config.connection_types ==
        std::vector<connection_type>{connection_type::websocket});
  CHECK(parse({"-t", "long-polling", url}).config.connection_types ==
        std::vector<connection_type>{connection_type::long_polling});
  CHECK(parse({"-t", "long-polling,websocket", url}).config.connection_types ==
        std::vector<connection_type>{connection_type::long_polling, connection_type::websocket});
  CHECK(parse({"-t", "websocket, long-polling", url}).config.connection_types ==
        std::vector<connection_type>{connection_type::websocket, connection_type::long_polling});
  SECTION("the last -t wins") {
    CHECK(parse({"-t", "websocket", "-t", "long-polling", url}).config.connection_types ==
          std::vector<connection_type>{connection_type::long_polling});
  }
}

TEST_CASE("-t rejects unknown, empty and repeated names", "[cli]") {
  require_usage_error({"-t", "callback-polling", url}, "unknown transport 'callback-polling'");
  require_usage_error({"-t", "long_polling", url}, "unknown transport");
  require_usage_error({"-t", "WebSocket", url}, "unknown transport");
  require_usage_error({"-t", "", url}, "unknown transport ''");
  require_usage_error({"-t", "websocket,", url}, "unknown transport ''");
  require_usage_error({"-t", "websocket,websocket", url}, "given twice");
}

TEST_CASE("-p splits CHANNEL=JSON on the first '='", "[cli]") {
  const parse_result r = parse({"-p", "/a={\"k\":\"x=y\"}", url});
  REQUIRE(r.action == parse_action::run);
  REQUIRE(r.config.publish.size() == 1);
  CHECK(r.config.publish[0].channel == "/a");
  CHECK(r.config.publish[0].data == "{\"k\":\"x=y\"}");
}

TEST_CASE("-p needs '=', a channel and JSON", "[cli]") {
  require_usage_error({"-p", "/a", url}, "expected CHANNEL=JSON");
  require_usage_error({"-p", "={}", url}, "channel must start with '/'");
  require_usage_error({"-p", "a={}", url}, "channel must start with '/'");
  require_usage_error({"-p", "/a=", url}, "invalid JSON");
  require_usage_error({"-p", "/a={", url}, "invalid JSON");
  require_usage_error({"-p", "/a=hello", url}, "invalid JSON");
  require_usage_error({"-p", "/a={} {}", url}, "invalid JSON");
}

TEST_CASE("-s needs a channel starting with '/'", "[cli]") {
  require_usage_error({"-s", "a", url}, "channel must start with '/'");
  require_usage_error({"-s", "", url}, "channel must start with '/'");
}

TEST_CASE("-n takes a positive integer and needs -s", "[cli]") {
  CHECK(parse({"-s", "/a", "-n", "1", url}).config.count == std::size_t{1});
  CHECK(parse({"-s", "/a", "-n", "18446744073709551615", url}).config.count ==
        std::size_t{18446744073709551615u});
  for (const char* bad :
       {"0", "-1", "+1", "1.5", "abc", "", " 1", "1 ", "1e3", "0x10", "18446744073709551616"}) {
    INFO("-n '" << bad << "'");
    require_usage_error({"-s", "/a", "-n", bad, url}, "--count");
  }
  require_usage_error({"-n", "1", url}, "--count needs at least one --subscribe");
}

TEST_CASE("--connection-timeout takes seconds, 0 meaning forever", "[cli]") {
  CHECK(parse({"--connection-timeout", "0", url}).config.connection_timeout == 0ms);
  CHECK(parse({"--connection-timeout", "30", url}).config.connection_timeout == 30s);
  CHECK(parse({"--connection-timeout", "0.25", url}).config.connection_timeout == 250ms);
  CHECK(parse({"--connection-timeout", ".5", url}).config.connection_timeout == 500ms);
  CHECK(parse({"--connection-timeout", "0.0001", url}).config.connection_timeout == 1ms);
  CHECK(parse({"--connection-timeout", "0.000", url}).config.connection_timeout == 0ms);
  for (const char* bad : {"-1", "", ".", "5.", "abc", "1e3", "inf", "nan", "10s", "9999999999"}) {
    INFO("--connection-timeout '" << bad << "'");
    require_usage_error({"--connection-timeout", bad, url}, "--connection-timeout");
  }
}

TEST_CASE("--max-pending takes a non-negative integer", "[cli]") {
  CHECK(parse({"--max-pending", "0", url}).config.max_pending_count == 0);
  CHECK(parse({"--max-pending", "1000", url}).config.max_pending_count == 1000);
  require_usage_error({"--max-pending", "-5", url}, "--max-pending");
  require_usage_error({"--max-pending", "many", url}, "--max-pending");
}

TEST_CASE("-H needs 'Name: value'", "[cli]") {
  CHECK(parse({"-H", "Authorization: Bearer x:y", url}).config.headers ==
        std::vector<std::string>{"Authorization: Bearer x:y"});
  CHECK(parse({"-H", "X-Empty:", url}).config.headers == std::vector<std::string>{"X-Empty:"});
  require_usage_error({"-H", "NoColon", url}, "expected 'Name: value'");
  require_usage_error({"-H", ": value", url}, "empty header name");
  require_usage_error({"-H", "Bad Name: v", url}, "invalid header name");
  require_usage_error({"-H", "X: a\r\nY: b", url}, "one line");
}

TEST_CASE("--ext must be a JSON object", "[cli]") {
  CHECK(parse({"--ext", "  {\"a\":[1,2]}", url}).config.handshake_ext == "  {\"a\":[1,2]}");
  require_usage_error({"--ext", "[1]", url}, "--ext");
  require_usage_error({"--ext", "\"x\"", url}, "--ext");
  require_usage_error({"--ext", "{", url}, "--ext");
  require_usage_error({"--ext", "", url}, "--ext");
}

TEST_CASE("usage errors: unknown options, missing arguments, URL count", "[cli]") {
  require_usage_error({}, "missing URL");
  require_usage_error({"-s", "/a"}, "missing URL");
  require_usage_error({"-x", url}, "invalid option '-x'");
  require_usage_error({"--bogus", url}, "'--bogus'");
  require_usage_error({"--verbose=1", url}, "'--verbose=1'");
  require_usage_error({url, "-s"}, "option '-s' requires an argument");
  require_usage_error({url, "--subscribe"}, "option '--subscribe' requires an argument");
  require_usage_error({url, "http://other:x/"}, "invalid URL 'http://other:x/'");
  SECTION("the first error is the one reported") {
    require_usage_error({"-n", "x", "-t", "y", url}, "--count");
  }
}

TEST_CASE("JSON the CLI takes is what the library takes: RFC 8259 values and nothing else",
          "[cli]") {
  const auto is_json = [](std::string_view t) { return uvcometd_cli::json_problem(t).empty(); };
  for (const char* good : {"0", "-0", "1.5e-3", "-12E+2", "true", "false", "null", "\"\"",
                           "\"a\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\"", "[]", "{}", " [ 1 , {} ] ",
                           "{\"a\":{\"b\":[null,true]}}", "\"\xc3\xa9\""}) {
    INFO(good);
    CHECK(is_json(good));
  }
  for (const char* bad :
       {"",     " ",    "01",      "1.",       ".5",      "+1",         "1e",
        "tru",  "nul",  "'a'",     "\"a",      "\"\\x\"", "\"\\u12\"",  "\"a\tb\"",
        "[1,]", "[,1]", "{\"a\"}", "{\"a\":}", "{a:1}",   "{\"a\":1,}", "[1 2]",
        "[}",   "{]",   "[[]",     "1 2",      "NaN",     "Infinity"}) {
    INFO(bad);
    CHECK_FALSE(is_json(bad));
  }
  // Deep nesting is bounded (see the depth test below), never a stack overflow.
  CHECK_FALSE(is_json(std::string(100000, '[') + std::string(100000, ']')));
}

TEST_CASE("json_quote escapes what JSON requires and keeps UTF-8", "[cli]") {
  using uvcometd_cli::json_quote;
  CHECK(json_quote("/a/b") == "\"/a/b\"");
  CHECK(json_quote("q\"b\\") == "\"q\\\"b\\\\\"");
  CHECK(json_quote("\n\r\t\b\f") == "\"\\n\\r\\t\\b\\f\"");
  CHECK(json_quote(std::string("\x01\x1f", 2)) == "\"\\u0001\\u001f\"");
  CHECK(json_quote(std::string("\0", 1)) == "\"\\u0000\"");
  CHECK(json_quote("/caf\xc3\xa9") == "\"/caf\xc3\xa9\"");
}

TEST_CASE("format_message_line prints data compactly, or null when absent", "[cli]") {
  using uvcometd_cli::format_message_line;
  CHECK(format_message_line("/x", "{\"a\" : 1.50}") ==
        "{\"channel\":\"/x\",\"data\":{\"a\":1.50}}\n");
  CHECK(format_message_line("/x", "") == "{\"channel\":\"/x\",\"data\":null}\n");
  CHECK(format_message_line("/\"q", "1") == "{\"channel\":\"/\\\"q\",\"data\":1}\n");
}

TEST_CASE("channel_matches follows Bayeux wildcards", "[cli]") {
  using uvcometd::channel_matches;
  CHECK(channel_matches("/a/b", "/a/b"));
  CHECK_FALSE(channel_matches("/a/b", "/a/bc"));
  CHECK_FALSE(channel_matches("/a/b", "/a/b/c"));
  CHECK(channel_matches("/a/*", "/a/b"));
  CHECK_FALSE(channel_matches("/a/*", "/a/b/c"));
  CHECK_FALSE(channel_matches("/a/*", "/a"));
  CHECK_FALSE(channel_matches("/a/*", "/ab/c"));
  CHECK(channel_matches("/a/**", "/a/b"));
  CHECK(channel_matches("/a/**", "/a/b/c"));
  CHECK_FALSE(channel_matches("/a/**", "/a"));
  CHECK(channel_matches("/*", "/a"));
  CHECK_FALSE(channel_matches("/*", "/a/b"));
  CHECK(channel_matches("/**", "/a/b"));
}

// ---------------------------------------------------------------------------------------------
// What the CLI checks before connecting, and what it prints.

namespace {

// `depth` nested arrays around `inner`: nest(2, "1") == "[[1]]".
std::string nest(int depth, const std::string& inner) {
  return std::string(static_cast<std::size_t>(depth), '[') + inner +
         std::string(static_cast<std::size_t>(depth), ']');
}

// `depth` nested objects {"k":...} around `inner`.
std::string nest_objects(int depth, const std::string& inner) {
  std::string out;
  for (int i = 0; i < depth; ++i) out += "{\"k\":";
  out += inner;
  out += std::string(static_cast<std::size_t>(depth), '}');
  return out;
}

std::string compact(const std::string& text) {
  std::string out = "<";
  REQUIRE(uvcometd_cli::append_compact_json(text, out));
  return out.substr(1);
}

}  // namespace

TEST_CASE(
    "the new options: --format, --timestamps, --ack, --replay-from, --header-file, "
    "--forever, -vv",
    "[cli]") {
  const parse_result r =
      parse({"--format", "data", "--timestamps", "--ack", "--replay-from", "-2", "--header-file",
             "/run/secrets/h", "--header-file=/tmp/h2", "--forever", "-vv", "-s", "/a", url});
  REQUIRE(r.action == parse_action::run);
  const auto& c = r.config;
  CHECK(c.format == uvcometd_cli::output_format::data);
  CHECK(c.timestamps);
  CHECK(c.ack);
  CHECK(c.replay_from == std::int64_t{-2});
  CHECK(c.header_files == std::vector<std::string>{"/run/secrets/h", "/tmp/h2"});
  CHECK(c.connection_timeout == 0ms);
  CHECK(c.verbose == 2);
  SECTION("defaults") {
    const auto& d = parse({url}).config;
    CHECK(d.format == uvcometd_cli::output_format::json);
    CHECK_FALSE(d.timestamps);
    CHECK_FALSE(d.ack);
    CHECK_FALSE(d.replay_from.has_value());
    CHECK(d.header_files.empty());
    CHECK(d.verbose == 0);
  }
  SECTION("-v once, and --format json") {
    const auto& d = parse({"-v", "--format=json", url}).config;
    CHECK(d.verbose == 1);
    CHECK(d.format == uvcometd_cli::output_format::json);
  }
}

TEST_CASE("--format, --replay-from and --forever reject what they cannot mean", "[cli]") {
  require_usage_error({"--format", "xml", url}, "--format: expected json or data");
  require_usage_error({"--format", "", url}, "--format");
  CHECK(parse({"--replay-from", "-1", url}).config.replay_from == std::int64_t{-1});
  CHECK(parse({"--replay-from", "0", url}).config.replay_from == std::int64_t{0});
  CHECK(parse({"--replay-from", "9223372036854775807", url}).config.replay_from ==
        std::int64_t{9223372036854775807});
  for (const char* bad : {"-3", "x", "", "1.5", "+1", "9223372036854775808", "--1", " 1"}) {
    INFO("--replay-from '" << bad << "'");
    require_usage_error({"--replay-from", bad, url}, "--replay-from");
  }
  require_usage_error({"--forever", "--connection-timeout", "5", url}, "exclude each other");
  require_usage_error({"--connection-timeout", "0", "--forever", url}, "exclude each other");
  require_usage_error({"--header-file", "", url}, "--header-file: empty file name");
}

TEST_CASE("-p CHANNEL=- reads stdin, once", "[cli]") {
  const parse_result r = parse({"-p", "/a={}", "-p", "/b=-", url});
  REQUIRE(r.action == parse_action::run);
  REQUIRE(r.config.publish.size() == 2);
  CHECK_FALSE(r.config.publish[0].from_stdin);
  CHECK(r.config.publish[1].from_stdin);
  CHECK(r.config.publish[1].channel == "/b");
  CHECK(r.config.publish[1].data.empty());
  require_usage_error({"-p", "/a=-", "-p", "/b=-", url}, "only one CHANNEL=-");
  require_usage_error({"-p", "/a/*=-", url}, "wildcard");
}

TEST_CASE("a URL the client cannot use is a usage error, before connecting", "[cli]") {
  for (const char* good :
       {"http://h/", "https://h", "http://127.0.0.1:8080/bayeux", "http://[::1]:8080/cometd",
        "http://[fe80::1%25eth0]/x", "http://host:1/x?q=1#f", "http://h:/x",
        "https://example.com:65535", "http://my_host.example/", "http://h%41/",
        "http://b\xc3\xbc"
        "cher.example/"}) {
    INFO(good);
    CHECK(uvcometd_cli::url_problem(good).empty());
    CHECK(parse({good}).action == parse_action::run);
  }
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"http://", "no host"},
      {"https://", "no host"},
      {"http:///bayeux", "no host"},
      {"http://:8080/bayeux", "no host"},
      {"http://user@/x", "credentials"},
      {"http://user:pa%20ss@host:1/x?q=1#f", "credentials"},
      {"http://h:abc/", "port must be a number from 1 to 65535"},
      {"http://h:0/", "port"},
      {"http://h:65536/", "port"},
      {"http://h:-1/", "port"},
      {"http://h:80:90/", "host"},
      {"http://h<x>/", "host"},
      {"http://127.0.0.1%zz/", "%XX escape"},
      {"http://h%4/", "%XX escape"},
      {"http://a b/", "host"},
      {"http://h/\x1b[2J", "control character"},
      {"ftp://h/", "must start with http:// or https://"},
      {"HTTP://h/", "must start with http://"},
      {"h:80", "must start with http://"},
      {"http://[::1/", "closing ']'"},
      {"http://[]/", "IPv6 address is malformed"},
      {"http://[zz]/", "IPv6 address is malformed"},
      {"http://[::1]x/", "after the URL's IPv6 address"},
      {"http://[::1]:http/", "port"},
  };
  for (const auto& [u, why] : bad) {
    INFO(u);
    CHECK_THAT(uvcometd_cli::url_problem(u), Catch::Contains(why));
    require_usage_error({u}, "invalid URL '" + u + "': ");
  }
}

TEST_CASE("channels follow the library's rules, checked before connecting", "[cli]") {
  const std::vector<std::string> corpus = {"/a",
                                           "/a/b",
                                           "/a/*",
                                           "/a/**",
                                           "/*",
                                           "/**",
                                           "/a/b/c/d",
                                           "/service/x",
                                           "/caf\xc3\xa9",
                                           "/a/**/b",
                                           "/a/*/b",
                                           "/**/a",
                                           "/a/b*",
                                           "/a/*b",
                                           "/a/***",
                                           "/a*",
                                           "",
                                           "a",
                                           "/",
                                           "//",
                                           "/a/",
                                           "/a//b",
                                           "/meta",
                                           "/meta/connect",
                                           "/meta/*",
                                           "/metadata",
                                           "/a b",
                                           "/a\tb",
                                           std::string("/a\0b", 4),
                                           "/a\x7f",
                                           "/a\x1b[2J"};
  for (const auto& ch : corpus) {
    INFO("channel '" << ch << "'");
    const bool lib_subscribe = !uvcometd::detail::check_subscribe_channel(ch);
    const bool lib_publish = !uvcometd::detail::check_publish_channel(ch);
    using uvcometd::channel_use;
    CHECK(uvcometd::channel_problem(ch, channel_use::subscribe).empty() == lib_subscribe);
    CHECK(uvcometd::channel_problem(ch, channel_use::publish).empty() == lib_publish);
    if (ch.find('\0') != std::string::npos) continue;  // argv cannot hold it
    const parse_result s = parse({"-s", ch, url});
    CHECK(s.ok() == lib_subscribe);
    const parse_result p = parse({"-p", ch + "={}", url});
    CHECK(p.ok() == lib_publish);
  }
  require_usage_error({"-s", "/a/**/b", url},
                      "--subscribe: a wildcard must be the whole last segment ('/a/*' or "
                      "'/a/**'): '/a/**/b'");
  require_usage_error({"-s", "/a//b", url}, "empty segment");
  require_usage_error({"-s", "/a/", url}, "must not end with '/'");
  require_usage_error({"-s", "/meta/connect", url}, "/meta channels");
  require_usage_error({"-s", "/a b", url}, "spaces and control characters");
  require_usage_error({"-p", "/a/*={}", url}, "cannot publish to a wildcard channel");
}

TEST_CASE("JSON nested deeper than the library takes is refused, exactly where it refuses",
          "[cli]") {
  const auto is_json = [](std::string_view t) { return uvcometd::is_valid_json(t); };
  REQUIRE(uvcometd_cli::max_json_depth == uvcometd::detail::json::max_depth);
  for (int depth = uvcometd_cli::max_json_depth - 3; depth <= uvcometd_cli::max_json_depth + 3;
       ++depth) {
    for (const std::string& text :
         {nest(depth, ""), nest(depth, "1"), nest(depth, "\"s\""), nest(depth, "{}"),
          nest_objects(depth, "1"), nest_objects(depth, "[]"), nest_objects(depth, "{}")}) {
      INFO("depth " << depth << ": " << text.substr(0, 12) << "...");
      CHECK(is_json(text) == uvcometd::detail::json::is_valid(text));
      CHECK(uvcometd_cli::json_problem(text).empty() == is_json(text));
    }
  }
  CHECK(is_json(nest(257, "")));
  CHECK_FALSE(is_json(nest(258, "")));
  CHECK_FALSE(is_json(nest(257, "1")));
  CHECK(uvcometd_cli::json_problem(nest(258, "")) == "nested deeper than 256 levels");
  // -p and --ext are refused as the library would refuse them.
  CHECK(parse({"-p", "/a=" + nest(257, ""), url}).ok());
  require_usage_error({"-p", "/a=" + nest(258, ""), url},
                      "--publish: nested deeper than 256 levels for /a");
  CHECK(parse({"--ext", nest_objects(256, "{}"), url}).ok());
  require_usage_error({"--ext", nest_objects(257, "{}"), url}, "--ext");
  require_usage_error({"--ext", nest_objects(257, "{}"), url}, "nested deeper than 256 levels");
}

TEST_CASE("header files and UVCOMETD_HEADERS: one 'Name: value' per line", "[cli]") {
  using uvcometd_cli::parse_header_text;
  std::vector<std::string> out{"Before: 1"};
  CHECK(parse_header_text("Authorization: Bearer s3cr3t\r\n\n# a comment\n  \nX-A: b: c", "h.txt",
                          out)
            .empty());
  CHECK(out == std::vector<std::string>{"Before: 1", "Authorization: Bearer s3cr3t", "X-A: b: c"});
  CHECK(parse_header_text("", "empty", out).empty());
  CHECK(out.size() == 3);
  SECTION("a bad line names the source and the line, not the text, and adds nothing") {
    std::vector<std::string> none;
    const std::string err =
        parse_header_text("X-Ok: 1\nsecret-token-without-colon\n", "h.txt", none);
    CHECK(err == "h.txt:2: expected 'Name: value'");
    CHECK(none.empty());
    CHECK(parse_header_text("Bad Name: v", "UVCOMETD_HEADERS", none) ==
          "UVCOMETD_HEADERS:1: invalid header name");
    CHECK(parse_header_text(": v", "f", none) == "f:1: empty header name");
    CHECK(parse_header_text("X: a\rb", "f", none) == "f:1: must be one line");
  }
}

TEST_CASE("terminal_safe shows every control character and keeps the whole text", "[cli]") {
  using uvcometd_cli::terminal_safe;
  CHECK(terminal_safe("plain text: 403 [/a,b] caf\xc3\xa9 \xe2\x82\xac") ==
        "plain text: 403 [/a,b] caf\xc3\xa9 \xe2\x82\xac");
  CHECK(terminal_safe("\x1b]0;owned\x07 \x1b[31mred\x1b[0m") ==
        "\\e]0;owned\\x07 \\e[31mred\\e[0m");
  CHECK(terminal_safe(std::string("a\0b", 3)) == "a\\x00b");
  CHECK(terminal_safe("l1\nl2\r\tx\x7f\x01\x1f") == "l1\\nl2\\r\\tx\\x7f\\x01\\x1f");
  CHECK(terminal_safe("back\\slash") == "back\\\\slash");
  // C1 controls (as UTF-8), bidirectional overrides and line separators.
  CHECK(terminal_safe("\xc2\x9b"
                      "2J \xc2\x80\xc2\x9f") == "\\u009b2J \\u0080\\u009f");
  CHECK(terminal_safe("\xe2\x80\xae"
                      "evil \xe2\x81\xa6 \xe2\x80\xa8 \xd8\x9c \xe2\x80\x8f") ==
        "\\u202eevil \\u2066 \\u2028 \\u061c \\u200f");
  // Invalid UTF-8: one U+FFFD per maximal ill-formed subpart.
  CHECK(terminal_safe("a\x9b"
                      "b") ==
        "a\xef\xbf\xbd"
        "b");
  CHECK(terminal_safe("\xff\xfe") == "\xef\xbf\xbd\xef\xbf\xbd");
  CHECK(terminal_safe("\xe2\x82"
                      "x") == "\xef\xbf\xbdx");
  CHECK(terminal_safe("\xc0\xaf") == "\xef\xbf\xbd\xef\xbf\xbd");
  CHECK(terminal_safe("\xed\xa0\x80") == "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
  CHECK(terminal_safe("\xf4\x90\x80\x80") == "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
  CHECK(terminal_safe("end\xe2") == "end\xef\xbf\xbd");
}

TEST_CASE("output data is compacted: whitespace outside strings removed, strings untouched",
          "[cli]") {
  CHECK(compact("{\n  \"n\": 2,\n  \"list\": [\n    1,\n    2\n  ],\r\n\t\"s\": \"keep  these \\n "
                "\\u00e9\"\n}") == "{\"n\":2,\"list\":[1,2],\"s\":\"keep  these \\n \\u00e9\"}");
  CHECK(compact(" [ 1.50 , -0e+3 , true , false , null , { } , [ ] ] ") ==
        "[1.50,-0e+3,true,false,null,{},[]]");
  CHECK(compact("\"a \\\" } ] , : b\"") == "\"a \\\" } ] , : b\"");
  CHECK(compact("{\"k e y\" : \"v\"}") == "{\"k e y\":\"v\"}");
  SECTION("not JSON: refused, the output left alone") {
    std::string out = "kept";
    const std::vector<std::string> bad_texts = {"",         "{",     "[1,]",
                                                "\"a\tb\"", "{} {}", nest(258, "")};
    for (const std::string& bad : bad_texts) {
      INFO(bad.substr(0, 12));
      CHECK_FALSE(uvcometd_cli::append_compact_json(bad, out));
      CHECK(out == "kept");
    }
  }
}

TEST_CASE("output data: invalid UTF-8 and lone surrogate escapes become U+FFFD", "[cli]") {
  const std::string fffd = "\xef\xbf\xbd";
  CHECK(compact("\"caf\xe9\"") == "\"caf" + fffd + "\"");
  CHECK(compact("\"\xff\xfe ok\"") == "\"" + fffd + fffd + " ok\"");
  CHECK(compact("\"\xe2\x82 \xc0\xaf \xed\xa0\x80\"") ==
        "\"" + fffd + " " + fffd + fffd + " " + fffd + fffd + fffd + "\"");
  CHECK(compact("{\"\xff\":\"\xf0\x9f\x98\x80\"}") == "{\"" + fffd + "\":\"\xf0\x9f\x98\x80\"}");
  CHECK(compact("\"tail \xf0\x9f\x98\"") == "\"tail " + fffd + "\"");
  CHECK(compact("[\"\\ud800\", \"\\udc00x\", \"\\ud83d\\ude00\", \"\\ud800\\u0041\"]") ==
        "[\"\\ufffd\",\"\\ufffdx\",\"\\ud83d\\ude00\",\"\\ufffd\\u0041\"]");
  // Valid UTF-8 and every other escape pass unchanged.
  CHECK(compact("\"\xc3\xa9\xe2\x82\xac\xf4\x8f\xbf\xbf \\u0000 \\/\"") ==
        "\"\xc3\xa9\xe2\x82\xac\xf4\x8f\xbf\xbf \\u0000 \\/\"");
  // The channel is quoted with the same repair.
  CHECK(uvcometd_cli::json_quote("/a\xff") == "\"/a" + fffd + "\"");
}

TEST_CASE("output data: every position in a long string is checked (the 16- and 8-byte scans)",
          "[cli]") {
  const std::string fffd = "\xef\xbf\xbd";
  for (std::size_t k = 0; k <= 40; ++k) {
    INFO("offset " << k);
    const std::string before(k, 'a');
    const std::string after(40 - k, 'b');
    CHECK(compact("\"" + before + "\xff" + after + "\"") == "\"" + before + fffd + after + "\"");
    CHECK(compact("\"" + before + "\\\"" + after + "\"") == "\"" + before + "\\\"" + after + "\"");
    CHECK(compact("\"" + before + "\xc3\xa9" + after + "\"") ==
          "\"" + before + "\xc3\xa9" + after + "\"");
    CHECK(compact("[\"" + before + "\" , \"" + after + "\"]") ==
          "[\"" + before + "\",\"" + after + "\"]");
    std::string out;
    CHECK_FALSE(uvcometd_cli::append_compact_json("\"" + before + "\n" + after + "\"", out));
    CHECK_FALSE(uvcometd_cli::append_compact_json("\"" + before + after, out));  // unterminated
    CHECK(out.empty());
  }
}

TEST_CASE("message lines: json or data format, optional timestamp, one line each", "[cli]") {
  using uvcometd_cli::append_message_line;
  using uvcometd_cli::output_format;
  std::string out;
  CHECK(append_message_line(out, output_format::json, "/x", "{ \"a\" :\n 1 }"));
  CHECK(append_message_line(out, output_format::json, "/y", "", "2024-05-06T07:08:09.123Z"));
  CHECK(append_message_line(out, output_format::data, "/x", "[1, 2]"));
  CHECK(append_message_line(out, output_format::data, "/x", "\"s\"", "2024-05-06T07:08:09.123Z"));
  CHECK(append_message_line(out, output_format::data, "/x", ""));
  CHECK(out ==
        "{\"channel\":\"/x\",\"data\":{\"a\":1}}\n"
        "{\"channel\":\"/y\",\"data\":null,\"ts\":\"2024-05-06T07:08:09.123Z\"}\n"
        "[1,2]\n"
        "2024-05-06T07:08:09.123Z \"s\"\n"
        "null\n");
  const std::string before = out;
  CHECK_FALSE(append_message_line(out, output_format::json, "/x", "{"));
  CHECK(out == before);
}

TEST_CASE("iso8601_utc: UTC with milliseconds", "[cli]") {
  using std::chrono::system_clock;
  CHECK(uvcometd_cli::iso8601_utc(system_clock::time_point{}) == "1970-01-01T00:00:00.000Z");
  CHECK(uvcometd_cli::iso8601_utc(system_clock::time_point{} +
                                  std::chrono::milliseconds(1715065689123)) ==
        "2024-05-07T07:08:09.123Z");
  CHECK(uvcometd_cli::iso8601_utc(system_clock::time_point{} - std::chrono::milliseconds(1)) ==
        "1969-12-31T23:59:59.999Z");
}

TEST_CASE("every long option is listed in the help", "[cli]") {
  const std::string help = uvcometd_cli::usage();
  for (const auto& name : uvcometd_cli::long_option_names()) {
    INFO("--" << name);
    CHECK(help.find("--" + name) != std::string::npos);
  }
}

TEST_CASE("--call TARGET=JSON and --call-timeout", "[cli]") {
  auto r = parse({"--call", "echo={\"a\":1}", "--call", "sub/x=2", "--call-timeout", "1.5", url});
  REQUIRE(r.ok());
  REQUIRE(r.config.calls.size() == 2);
  CHECK(r.config.calls[0].target == "echo");
  CHECK(r.config.calls[0].data == "{\"a\":1}");
  CHECK(r.config.calls[1].target == "sub/x");
  CHECK(r.config.call_timeout == std::chrono::milliseconds(1500));
  CHECK(parse({url}).config.call_timeout == std::chrono::milliseconds(5000));
  CHECK(parse({"--meta", url}).config.meta);
  require_usage_error({"--call", "echo", url}, "TARGET=JSON");
  require_usage_error({"--call", "={}", url}, "TARGET=JSON");
  require_usage_error({"--call", "/echo={}", url}, "/service/TARGET");
  require_usage_error({"--call", "a/*={}", url}, "/service/TARGET");
  require_usage_error({"--call", "echo={", url}, "--call");
  require_usage_error({"--call-timeout", "0", url}, "--call-timeout");
  require_usage_error({"--call-timeout", "x", url}, "--call-timeout");
}

TEST_CASE("several URLs are a cluster's failover list, in order", "[cli]") {
  const auto r = parse({url, "http://b:2/cometd", "-s", "/x", "https://c/cometd"});
  REQUIRE(r.ok());
  CHECK(r.config.url == url);
  CHECK(r.config.fallbacks == std::vector<std::string>{"http://b:2/cometd", "https://c/cometd"});
}
