// Frame decoding (lib/codec.*): the frames Faye and CometD really send (see
// shared/reference/server-exchanges.md) become wire_message views with the right fields;
// malformed frames become errc::bad_response with a message saying what is wrong.
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "codec.hpp"

using uvcometd::errc;
using uvcometd::detail::decode_frame;
using uvcometd::detail::decode_string_array;
using uvcometd::detail::decoded_frame;
using uvcometd::detail::reconnect_advice;

namespace {

// A decoded frame together with the text its views point into.
struct held_frame : decoded_frame {
  std::string text;
};

// Decodes `text`, requiring success.
std::unique_ptr<held_frame> decoded(std::string text) {
  auto f = std::make_unique<held_frame>();
  f->text = std::move(text);
  const auto err = decode_frame(f->text, *f);
  INFO("frame: " << f->text << "\nerror: " << err.to_string());
  REQUIRE_FALSE(err);
  return f;
}

// Decodes `text`, requiring errc::bad_response; returns the error's message.
std::string rejection(const std::string& text) {
  decoded_frame f;
  const auto err = decode_frame(text, f);
  INFO("frame: " << text);
  REQUIRE(err.code == errc::bad_response);
  CHECK_FALSE(err.message.empty());
  return err.message;
}

// Decodes `text`, requiring a well-formed frame in which the first bad message was skipped;
// returns why it was skipped.
std::string skip_reason(const std::string& text) {
  decoded_frame f;
  const auto err = decode_frame(text, f);
  INFO("frame: " << text << "\nerror: " << err.to_string());
  REQUIRE_FALSE(err);
  REQUIRE_FALSE(f.skipped.empty());
  CHECK(f.skipped.front().code == errc::bad_response);
  return f.skipped.front().message;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string nested_arrays(int depth) {
  return std::string(static_cast<std::size_t>(depth), '[') +
         std::string(static_cast<std::size_t>(depth), ']');
}

const std::string faye_handshake_reply =
    R"([{"id":"1","channel":"/meta/handshake","successful":true,"version":"1.0",)"
    R"("supportedConnectionTypes":["long-polling","cross-origin-long-polling","callback-polling",)"
    R"("websocket","eventsource","in-process"],"clientId":"fo8b7vgpm78obnken0i3zjijvepuho0",)"
    R"("advice":{"reconnect":"retry","interval":0,"timeout":3000}}])";

}  // namespace

TEST_CASE("Faye's handshake reply decodes into its fields", "[codec]") {
  const auto f = decoded(faye_handshake_reply);
  REQUIRE(f->messages.size() == 1);
  const auto& m = f->messages[0];
  CHECK(m.channel == "/meta/handshake");
  CHECK(m.id == "1");
  CHECK(m.client_id == "fo8b7vgpm78obnken0i3zjijvepuho0");
  REQUIRE(m.successful.has_value());
  CHECK(*m.successful);
  CHECK(m.error.empty());
  CHECK(m.data.empty());
  CHECK(m.has_advice);
  CHECK(m.adv.reconnect == reconnect_advice::retry);
  CHECK(m.adv.interval == 0);
  CHECK(m.adv.timeout == 3000);
  CHECK(
      m.connection_types ==
      R"(["long-polling","cross-origin-long-polling","callback-polling","websocket","eventsource","in-process"])");
  CHECK(decode_string_array(m.connection_types) ==
        std::vector<std::string>{"long-polling", "cross-origin-long-polling", "callback-polling",
                                 "websocket", "eventsource", "in-process"});
  CHECK(m.json == faye_handshake_reply.substr(1, faye_handshake_reply.size() - 2));
}

TEST_CASE("CometD's handshake reply decodes with its single connection type", "[codec]") {
  const auto f = decoded(
      R"([{"id":"1","channel":"/meta/handshake","successful":true,"clientId":"8d558cfbb86b2fc5037c4a19650eafca65d343a2","version":"1.0","supportedConnectionTypes":["long-polling"],"advice":{"reconnect":"retry","timeout":3000,"interval":0}}])");
  REQUIRE(f->messages.size() == 1);
  const auto& m = f->messages[0];
  CHECK(m.client_id == "8d558cfbb86b2fc5037c4a19650eafca65d343a2");
  CHECK(decode_string_array(m.connection_types) == std::vector<std::string>{"long-polling"});
  CHECK(m.adv.timeout == 3000);
  CHECK(m.adv.interval == 0);
}

TEST_CASE("Faye's connect reply followed by a delivered message keeps both, data verbatim",
          "[codec]") {
  const auto f = decoded(
      R"([{"id":"5","clientId":"6uvykvq","channel":"/meta/connect","successful":true,"advice":{"reconnect":"retry","interval":0,"timeout":3000}},)"
      R"({"channel":"/foo/bar","data":{"hello":"world"},"id":"4"}])");
  REQUIRE(f->messages.size() == 2);
  const auto& reply = f->messages[0];
  CHECK(reply.channel == "/meta/connect");
  CHECK(reply.id == "5");
  CHECK(reply.client_id == "6uvykvq");
  CHECK(reply.successful == true);
  const auto& data = f->messages[1];
  CHECK(data.channel == "/foo/bar");
  CHECK(data.data == R"({"hello":"world"})");
  CHECK(data.id == "4");  // Faye keeps the publisher's id
  CHECK_FALSE(data.successful.has_value());
  CHECK_FALSE(data.has_advice);
  CHECK(data.json == R"({"channel":"/foo/bar","data":{"hello":"world"},"id":"4"})");
}

TEST_CASE("CometD's publish reply with a delivered message placed before the reply", "[codec]") {
  const auto f = decoded(
      R"([{"channel":"/foo/bar","data":{"hello":"world"}},{"id":"4","channel":"/foo/bar","successful":true}])");
  REQUIRE(f->messages.size() == 2);
  CHECK(f->messages[0].data == R"({"hello":"world"})");
  CHECK(f->messages[0].id.empty());
  CHECK(f->messages[0].client_id.empty());
  CHECK(f->messages[1].id == "4");
  CHECK(f->messages[1].successful == true);
  CHECK(f->messages[1].data.empty());
}

TEST_CASE("a subscribe reply carries its subscription", "[codec]") {
  const auto f = decoded(
      R"([{"id":"3","clientId":"6uvykvq","channel":"/meta/subscribe","successful":true,"subscription":"/foo/bar"}])");
  REQUIRE(f->messages.size() == 1);
  CHECK(f->messages[0].subscription == "/foo/bar");
}

TEST_CASE("refusals decode with their error text and advice", "[codec]") {
  SECTION("Faye, unknown client") {
    const auto f = decoded(
        R"([{"id":"12","channel":"/meta/connect","successful":false,"error":"401:nosuchclient:Unknown client","advice":{"reconnect":"handshake"}}])");
    const auto& m = f->messages.at(0);
    CHECK(m.successful == false);
    CHECK(m.error == "401:nosuchclient:Unknown client");
    CHECK(m.has_advice);
    CHECK(m.adv.reconnect == reconnect_advice::handshake);
    CHECK_FALSE(m.adv.interval.has_value());
    CHECK_FALSE(m.adv.timeout.has_value());
  }
  SECTION("CometD, session unknown") {
    const auto f = decoded(
        R"([{"id":"12","channel":"/meta/connect","successful":false,"error":"402::session_unknown","advice":{"reconnect":"handshake","interval":0}}])");
    const auto& m = f->messages.at(0);
    CHECK(m.error == "402::session_unknown");
    CHECK(m.adv.reconnect == reconnect_advice::handshake);
    CHECK(m.adv.interval == 0);
  }
  SECTION("advice none") {
    const auto f = decoded(
        R"([{"id":"9","channel":"/meta/connect","successful":false,"error":"403::ended","advice":{"reconnect":"none"}}])");
    CHECK(f->messages.at(0).adv.reconnect == reconnect_advice::none);
  }
  SECTION("CometD's multiple-clients advice keeps interval and ignores unknown fields") {
    const auto f = decoded(
        R"([{"id":"7","channel":"/meta/connect","successful":true,"advice":{"multiple-clients":true,"hosts":["a","b"],"reconnect":"retry","interval":2000}}])");
    const auto& m = f->messages.at(0);
    CHECK(m.adv.reconnect == reconnect_advice::retry);
    CHECK(m.adv.interval == 2000);
  }
}

TEST_CASE("replies without a channel are kept when they say successful", "[codec]") {
  SECTION("Faye 405") {
    const auto f = decoded(
        R"([{"id":"11","clientId":"abc","successful":false,"error":"405::Invalid channel"}])");
    REQUIRE(f->messages.size() == 1);
    CHECK(f->messages[0].channel.empty());
    CHECK(f->messages[0].id == "11");
    CHECK(f->messages[0].error == "405::Invalid channel");
  }
  SECTION("CometD 400") {
    const auto f = decoded(R"([{"id":"11","successful":false,"error":"400::channel_missing"}])");
    REQUIRE(f->messages.size() == 1);
    CHECK(f->messages[0].successful == false);
  }
}

TEST_CASE("escaped strings are decoded, raw values are kept as sent", "[codec]") {
  const std::string text =
      R"([{"channel":"\/foo\/bar","id":"\u0034\u0032","clientId":"a\"b","data":{"t":"caf\u00e9 \"q\""},"ext":{"x":1}}])";
  const auto f = decoded(text);
  REQUIRE(f->messages.size() == 1);
  const auto& m = f->messages[0];
  CHECK(m.channel == "/foo/bar");
  CHECK(m.id == "42");
  CHECK(m.client_id == "a\"b");
  CHECK(m.data == R"({"t":"caf\u00e9 \"q\""})");  // data stays raw JSON text
  CHECK(m.ext == R"({"x":1})");
}

TEST_CASE("escaped strings of many messages stay valid together", "[codec]") {
  // Decoded strings live in the frame's arena: adding more must not move earlier ones.
  std::string text = "[";
  for (int i = 0; i < 200; ++i) {
    if (i) text += ',';
    text += R"({"channel":"\/c\/)" + std::to_string(i) + R"(","data":)" + std::to_string(i) + "}";
  }
  text += "]";
  const auto f = decoded(text);
  REQUIRE(f->messages.size() == 200);
  for (int i = 0; i < 200; ++i) {
    CHECK(f->messages[static_cast<std::size_t>(i)].channel == "/c/" + std::to_string(i));
  }
}

TEST_CASE("channels and data of every length decode exactly, escapes anywhere in them", "[codec]") {
  // Lengths cross the 8- and 16-byte blocks in which the scanner skips plain text.
  for (std::size_t len = 0; len <= 40; ++len) {
    for (std::size_t at = 0; at <= len; ++at) {
      const std::string plain = "/p" + std::string(len, 'c');
      const std::string escaped_channel =
          "/" + std::string(at, 'c') + "\\u0041" + std::string(len - at, 'd');
      const std::string data =
          R"({"p":")" + std::string(at, 'x') + R"(\"\u00e9)" + std::string(len - at, 'y') + "\"}";
      const std::string first = R"({"channel":")" + plain + R"(","data":)" + data + "}";
      const std::string second = R"({"data":)" + data + R"(,"channel":")" + escaped_channel +
                                 R"(","id":")" + std::string(len, '7') + "\"}";
      const auto f = decoded("[" + first + "," + second + "]");
      REQUIRE(f->messages.size() == 2);
      CHECK(f->messages[0].channel == plain);
      CHECK(f->messages[0].data == data);
      CHECK(f->messages[0].json == first);
      CHECK(f->messages[1].channel ==
            "/" + std::string(at, 'c') + "A" + std::string(len - at, 'd'));
      CHECK(f->messages[1].data == data);
      CHECK(f->messages[1].id == std::string(len, '7'));
      CHECK(f->messages[1].json == second);
    }
  }
}

TEST_CASE("a raw control character in any string makes its message skipped", "[codec]") {
  CHECK(contains(skip_reason("[{\"channel\":\"/a\x01\"}]"), "channel"));
  CHECK(contains(skip_reason("[{\"channel\":\"/a\",\"data\":\"0123456789abcdef\x1f\"}]"), "data"));
  CHECK(contains(skip_reason("[{\"chan\nnel\":\"/a\"}]"), "member name"));
}

TEST_CASE("a numeric id is kept as its text", "[codec]") {
  const auto f = decoded(R"([{"id":17,"channel":"/meta/connect","successful":true}])");
  CHECK(f->messages.at(0).id == "17");
}

TEST_CASE("a single object is accepted as a one-message frame", "[codec]") {
  const auto f = decoded(R"( {"channel":"/foo","data":[1,2]} )");
  REQUIRE(f->messages.size() == 1);
  CHECK(f->messages[0].channel == "/foo");
  CHECK(f->messages[0].data == "[1,2]");
}

TEST_CASE("an empty array is a frame of zero messages", "[codec]") {
  CHECK(decoded("[]")->messages.empty());
  CHECK(decoded(" [ ] \n")->messages.empty());
}

TEST_CASE("decoding a frame forgets the previous one", "[codec]") {
  decoded_frame f;
  REQUIRE_FALSE(decode_frame(R"([{"channel":"/a"},{"channel":"/b"}])", f));
  REQUIRE_FALSE(decode_frame(R"([{"channel":"/c"}])", f));
  REQUIRE(f.messages.size() == 1);
  CHECK(f.messages[0].channel == "/c");
}

TEST_CASE("advice numbers are clamped to [0, one day] and fractions truncate", "[codec]") {
  constexpr std::int64_t one_day_ms = 24LL * 3600 * 1000;
  const auto f = decoded(
      R"([{"channel":"/meta/connect","successful":true,"advice":{"interval":1e999,"timeout":123456789012345678901234567890}},)"
      R"({"channel":"/meta/connect","successful":true,"advice":{"interval":-5,"timeout":2500.9}}])");
  REQUIRE(f->messages.size() == 2);
  CHECK(f->messages[0].adv.interval == one_day_ms);
  CHECK(f->messages[0].adv.timeout == one_day_ms);
  CHECK(f->messages[1].adv.interval == 0);
  CHECK(f->messages[1].adv.timeout == 2500);
}

TEST_CASE("advice values of the wrong type are ignored, not fatal", "[codec]") {
  const auto f = decoded(
      R"([{"channel":"/meta/connect","successful":true,"advice":{"reconnect":"sometimes","interval":"2000","timeout":null}}])");
  const auto& m = f->messages.at(0);
  CHECK(m.has_advice);
  CHECK(m.adv.reconnect == reconnect_advice::unspecified);
  CHECK_FALSE(m.adv.interval.has_value());
  CHECK_FALSE(m.adv.timeout.has_value());
}

TEST_CASE("a frame that is not a JSON array is a bad response", "[codec]") {
  CHECK(contains(rejection(""), "empty"));
  CHECK(contains(rejection("   "), "empty"));
  CHECK(contains(rejection("Bad request"), "not a JSON array"));
  CHECK(contains(rejection("\"hello\""), "not a JSON array"));
  CHECK(contains(rejection("42"), "not a JSON array"));
  CHECK(contains(rejection("/**/cb([]);"), "not a JSON array"));
}

TEST_CASE("an element of the frame that is not an object is skipped, the rest is read", "[codec]") {
  CHECK(contains(skip_reason("[1]"), "message 0 is not an object"));
  CHECK(contains(skip_reason(R"([{"channel":"/a"},"x"])"), "message 1 is not an object"));
  const auto f = decoded(R"([[1,{"channel":"/x"}],{"channel":"/a"},null,{"channel":"/b"}])");
  REQUIRE(f->messages.size() == 2);
  CHECK(f->messages[0].channel == "/a");
  CHECK(f->messages[1].channel == "/b");
  CHECK(f->skipped.size() == 2);
}

TEST_CASE("a truncated frame is a bad response", "[codec]") {
  const std::string full = faye_handshake_reply;
  // Every proper prefix of a valid frame is malformed.
  for (std::size_t n = 1; n < full.size(); ++n) {
    decoded_frame f;
    const auto err = decode_frame(full.substr(0, n), f);
    INFO("prefix of " << n << " bytes");
    CHECK(err.code == errc::bad_response);
  }
  CHECK(contains(rejection(R"([{"id":"4","channel":"/foo/bar","successful":tr)"), "successful"));
  CHECK(contains(rejection(R"([{"channel":"/a"})"), "truncated"));
  CHECK(contains(rejection(R"([{"channel":"/a"},{"channel":"/b","data":[[[)"), "truncated"));
}

TEST_CASE("fields of the wrong type make their message skipped, naming the field", "[codec]") {
  CHECK(contains(skip_reason(R"([{"id":"4","channel":"/foo/bar","successful":"yes"}])"),
                 "successful"));
  CHECK(contains(skip_reason(R"([{"id":"4","channel":42}])"), "channel"));
  CHECK(contains(skip_reason(R"([{"channel":"/a","clientId":7}])"), "clientId"));
  CHECK(contains(skip_reason(R"([{"channel":"/a","successful":1}])"), "successful"));
}

TEST_CASE("a message with neither channel nor successful is skipped", "[codec]") {
  CHECK(contains(skip_reason(R"([{"id":"4","data":{}}])"), "no channel"));
  CHECK(contains(skip_reason("[{}]"), "no channel"));
}

TEST_CASE("a data message whose channel is not one concrete channel is skipped", "[codec]") {
  for (const std::string ch : {"/", "/a/", "//a", "/a//b", "/a/*", "/a/**", "/**", "a", "/a b"}) {
    INFO(ch);
    CHECK(contains(skip_reason(R"([{"channel":")" + ch + R"(","data":1}])"), "invalid channel"));
  }
  // Replies are matched to requests, not routed: their channel is not checked here.
  CHECK(decoded(R"([{"channel":"/meta/x/","successful":true}])")->messages.size() == 1);
}

TEST_CASE("separators and trailing data are checked", "[codec]") {
  CHECK(contains(rejection(R"([{"channel":"/a"} {"channel":"/b"}])"), "after message 0"));
  CHECK(contains(rejection(R"([{"channel":"/a"},])"), "message 1"));
  CHECK(contains(rejection(R"([{"channel":"/a"}] x)"), "trailing"));
  CHECK(contains(rejection(R"({"channel":"/a"} x)"), "trailing"));
  CHECK(contains(skip_reason(R"([{"channel":"/a" "data":1}])"), "message 0"));
  CHECK(contains(skip_reason(R"([{"channel" "/a"}])"), "':'"));
  CHECK(contains(skip_reason(R"([{channel:"/a"}])"), "member name"));
}

TEST_CASE("malformed values inside data or ext make their message skipped", "[codec]") {
  skip_reason(R"([{"channel":"/a","data":{"x":01}}])");
  skip_reason(R"([{"channel":"/a","data":"bad \x escape"}])");
  skip_reason(R"([{"channel":"/a","ext":{"k"}}])");
  skip_reason(R"([{"channel":"/a","advice":{"timeout":}}])");
  // An unterminated string runs to the end of the frame: nothing after it can be found.
  rejection(R"([{"channel":"/a","error":"unterminated}])");
}

TEST_CASE("deep nesting in data makes its message skipped, moderate nesting is fine", "[codec]") {
  CHECK(contains(skip_reason(R"([{"channel":"/a","data":)" + nested_arrays(300) + "}]"), "data"));
  CHECK(
      contains(skip_reason(R"([{"channel":"/a","data":)" + nested_arrays(100000) + "}]"), "data"));
  const auto f = decoded(R"([{"channel":"/a","data":)" + nested_arrays(200) + "}]");
  CHECK(f->messages.at(0).data == nested_arrays(200));
}

TEST_CASE("one bad message never costs the valid messages beside it", "[codec]") {
  const auto f = decoded(R"([{"channel":"/a","data":1},{"data":2},{"channel":"/b","data":)" +
                         nested_arrays(1000) + R"(},{"channel":"/c","data":3},)" +
                         R"({"channel":"/d","data":{"x":01}},{"channel":"/e","data":4}])");
  REQUIRE(f->messages.size() == 3);
  CHECK(f->messages[0].channel == "/a");
  CHECK(f->messages[1].channel == "/c");
  CHECK(f->messages[2].channel == "/e");
  CHECK(f->skipped.size() == 3);
}

TEST_CASE("member names are compared unescaped", "[codec]") {
  const auto f = decoded(R"([{"chann\u0065l":"/a","\u0069d":"7","d\u0061ta":{"k":1}}])");
  REQUIRE(f->messages.size() == 1);
  CHECK(f->messages[0].channel == "/a");
  CHECK(f->messages[0].id == "7");
  CHECK(f->messages[0].data == R"({"k":1})");
  const auto r = decoded(
      R"([{"channel":"/meta/connect","successful":true,"\u0061dvice":{"\u0069nterval":5}}])");
  REQUIRE(r->messages.size() == 1);
  CHECK(r->messages[0].has_advice);
  CHECK(r->messages[0].adv.interval == 5);
}

TEST_CASE("a member named twice makes its message skipped, whatever its spelling", "[codec]") {
  CHECK(contains(skip_reason(R"([{"channel":"/a","channel":"/b"}])"), "twice"));
  CHECK(contains(skip_reason(R"([{"channel":"/a","chann\u0065l":"/b"}])"), "twice"));
  CHECK(contains(skip_reason(R"([{"channel":"/meta/connect","successful":true,)"
                             R"("advice":{},"advice":{"interval":9}}])"),
                 "twice"));
  CHECK(contains(skip_reason(R"([{"channel":"/a","x":1,"\u0078":2}])"), "twice"));
}

TEST_CASE("a string that is not valid Unicode makes its message skipped", "[codec]") {
  CHECK(contains(skip_reason(R"([{"channel":"/a","\ud800":1}])"), "member name"));
  CHECK(contains(skip_reason(R"([{"channel":"/a","\udc00x":1}])"), "member name"));
  CHECK(contains(skip_reason(R"([{"channel":"/\ud800"}])"), "channel"));
}

TEST_CASE("decode_string_array keeps strings, decodes escapes and skips other values", "[codec]") {
  CHECK(decode_string_array(R"(["long-polling", 5, {"a":1}, "web\u0073ocket", null])") ==
        std::vector<std::string>{"long-polling", "websocket"});
  CHECK(decode_string_array("[]").empty());
  CHECK(decode_string_array("").empty());
  CHECK(decode_string_array("\"websocket\"").empty());
}

TEST_CASE("a message with invalid UTF-8 is skipped, the rest of its frame is read", "[codec]") {
  const auto f = decoded(
      "[{\"channel\":\"/a\",\"data\":\"ok \xC3\xA9\"},"
      "{\"channel\":\"/b\",\"data\":\"\xC3\x28\xFF\"},"
      "{\"channel\":\"/c\xED\xA0\x80\"},{\"channel\":\"/d\",\"data\":1}]");
  REQUIRE(f->messages.size() == 2);
  CHECK(f->messages[0].channel == "/a");
  CHECK(f->messages[1].channel == "/d");
  REQUIRE(f->skipped.size() == 2);
  CHECK(contains(f->skipped[0].message, "invalid UTF-8"));
  CHECK(contains(f->skipped[1].message, "invalid UTF-8"));
}
