// uvcometd-cli's argument parser and output formatting (samples/cli_args.*).
#include <catch2/catch.hpp>

#include <initializer_list>
#include <string>
#include <vector>

#include "cli_args.hpp"

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
    const parse_result r = parse({"-s", "/a", "-p", "/b={}", "-t", "long-polling", "-n", "5", "-H",
                                  "X-A: 1", "-v", url});
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
    const parse_result r = parse({"--subscribe", "/a", "--publish=/b=[1]", "--transport", "websocket",
                                  "--count=7", "--connection-timeout", "2.5", "--max-pending=0",
                                  "--header", "X-A: 1", "--ext", "{\"auth\":\"t\"}", "--verbose",
                                  "--debug", "--insecure", "--cacert", "/etc/ca.pem", url});
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
  const parse_result r = parse({"-s", "/a", "--subscribe", "/b/*", "-s", "/c/**", "-p", "/x=1", "-p",
                                "/y=\"two\"", "-H", "A: 1", "--header", "B: 2", url});
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
  for (const char* bad : {"0", "-1", "+1", "1.5", "abc", "", " 1", "1 ", "1e3", "0x10",
                          "18446744073709551616"}) {
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
  require_usage_error({url, "http://other/"}, "one URL only");
  SECTION("the first error is the one reported") {
    require_usage_error({"-n", "x", "-t", "y", url}, "--count");
  }
}

TEST_CASE("is_json accepts RFC 8259 values and nothing else", "[cli]") {
  using uvcometd_cli::is_json;
  for (const char* good : {"0", "-0", "1.5e-3", "-12E+2", "true", "false", "null", "\"\"",
                           "\"a\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\"", "[]", "{}", " [ 1 , {} ] ",
                           "{\"a\":{\"b\":[null,true]}}", "\"\xc3\xa9\""}) {
    INFO(good);
    CHECK(is_json(good));
  }
  for (const char* bad : {"", " ", "01", "1.", ".5", "+1", "1e", "tru", "nul", "'a'", "\"a",
                          "\"\\x\"", "\"\\u12\"", "\"a\tb\"", "[1,]", "[,1]", "{\"a\"}",
                          "{\"a\":}", "{a:1}", "{\"a\":1,}", "[1 2]", "[}", "{]", "[[]", "1 2",
                          "NaN", "Infinity"}) {
    INFO(bad);
    CHECK_FALSE(is_json(bad));
  }
  CHECK(is_json(std::string(100000, '[') + std::string(100000, ']')));
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

TEST_CASE("format_message_line prints data raw, or null when absent", "[cli]") {
  using uvcometd_cli::format_message_line;
  CHECK(format_message_line("/x", "{\"a\" : 1.50}") ==
        "{\"channel\":\"/x\",\"data\":{\"a\" : 1.50}}\n");
  CHECK(format_message_line("/x", "") == "{\"channel\":\"/x\",\"data\":null}\n");
  CHECK(format_message_line("/\"q", "1") == "{\"channel\":\"/\\\"q\",\"data\":1}\n");
}

TEST_CASE("channel_matches follows Bayeux wildcards", "[cli]") {
  using uvcometd_cli::channel_matches;
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
