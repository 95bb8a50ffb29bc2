// uvcometd::error, its category, and parse_server_error ("code:args:message", Bayeux 1.0 §A).
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "uvcometd/error.hpp"

using uvcometd::errc;
using uvcometd::parse_server_error;

namespace {
bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}
}  // namespace

TEST_CASE("a Bayeux error with arguments yields its code, every argument and the text", "[error]") {
  const auto e = parse_server_error("403:/foo,bar:Forbidden channel");
  CHECK(e.code == errc::server_error);
  CHECK(e.server_code == 403);
  CHECK(e.args == std::vector<std::string>{"/foo", "bar"});
  CHECK(e.message == "Forbidden channel");
  CHECK(static_cast<bool>(e));
}

TEST_CASE("CometD's error without arguments yields its code and no argument", "[error]") {
  const auto e = parse_server_error("402::session_unknown");
  CHECK(e.code == errc::server_error);
  CHECK(e.server_code == 402);
  CHECK(e.args.empty());
  CHECK(e.message == "session_unknown");
}

TEST_CASE("Faye's unknown-client error keeps its single argument and its text", "[error]") {
  const auto e = parse_server_error("401:nosuchclient:Unknown client");
  CHECK(e.server_code == 401);
  CHECK(e.args == std::vector<std::string>{"nosuchclient"});
  CHECK(e.message == "Unknown client");
}

TEST_CASE("the message of a Bayeux error may itself contain colons", "[error]") {
  const auto e = parse_server_error("500::a:b:c");
  CHECK(e.server_code == 500);
  CHECK(e.args.empty());
  CHECK(e.message == "a:b:c");
}

TEST_CASE("an empty argument between commas is kept as an empty argument", "[error]") {
  const auto e = parse_server_error("400:a,,b:text");
  CHECK(e.server_code == 400);
  CHECK(e.args == std::vector<std::string>{"a", "", "b"});
}

TEST_CASE("a text outside the Bayeux error grammar is kept whole with server code 0", "[error]") {
  const std::string text =
      GENERATE(as<std::string>{}, "", "garbage", "Forbidden", "40:x:y", "4031::x", "abc::x",
               "403:only one colon", "-40:x:y", "099::low code", " 403::x");
  INFO("text: '" << text << "'");
  const auto e = parse_server_error(text);
  CHECK(e.code == errc::server_error);
  CHECK(e.server_code == 0);
  CHECK(e.args.empty());
  CHECK(e.message == text);
}

TEST_CASE("to_string of a server error names the code, the arguments and the text", "[error]") {
  const auto s = parse_server_error("403:/foo,bar:Forbidden channel").to_string();
  INFO(s);
  CHECK(contains(s, "403"));
  CHECK(contains(s, "[/foo,bar]"));
  CHECK(contains(s, "Forbidden channel"));
  CHECK(contains(s, uvcometd::make_error_code(errc::server_error).message()));
}

TEST_CASE("to_string of a success is \"ok\" and of a transport error its description", "[error]") {
  CHECK(uvcometd::error{}.to_string() == "ok");
  CHECK_FALSE(static_cast<bool>(uvcometd::error{}));
  const uvcometd::error e{uvcometd::make_error_code(errc::http_error), "HTTP 500, empty body"};
  const auto s = e.to_string();
  INFO(s);
  CHECK(contains(s, "HTTP 500, empty body"));
  CHECK(contains(s, e.code.message()));
  CHECK_FALSE(contains(s, "["));  // no arguments, no brackets
}

TEST_CASE("to_string does not repeat the code's words when the message starts with them",
          "[error]") {
  const auto ec = uvcometd::make_error_code(errc::transport_error);
  CHECK(uvcometd::error{ec, "transport error: URL using bad/illegal format"}.to_string() ==
        "transport error: URL using bad/illegal format");
  CHECK(uvcometd::error{ec, "transport error"}.to_string() == "transport error");
  // Only a whole prefix counts, and a message that merely mentions the words keeps the prefix.
  CHECK(uvcometd::error{ec, "transport errors: 3"}.to_string() ==
        "transport error: transport errors: 3");
  CHECK(uvcometd::error{ec, "websocket: transport error"}.to_string() ==
        "transport error: websocket: transport error");
  // A server error keeps its code and arguments in front.
  auto e = parse_server_error("403:a:refused by the server");
  CHECK(e.to_string() == "refused by the server 403 [a]: refused by the server");
}

TEST_CASE("every errc has its own message in the \"uvcometd\" category", "[error]") {
  CHECK(std::string(uvcometd::category().name()) == "uvcometd");
  std::vector<std::string> seen;
  for (int v = static_cast<int>(errc::invalid_state);
       v <= static_cast<int>(errc::certificate_error); ++v) {
    const std::error_code ec = static_cast<errc>(v);  // is_error_code_enum: implicit conversion
    CHECK(&ec.category() == &uvcometd::category());
    const auto msg = ec.message();
    INFO("errc " << v << ": " << msg);
    CHECK_FALSE(msg.empty());
    CHECK(msg != "unknown uvcometd error");
    CHECK(std::find(seen.begin(), seen.end(), msg) == seen.end());
    seen.push_back(msg);
  }
  CHECK(std::error_code(static_cast<errc>(999)).message() == "unknown uvcometd error");
}
