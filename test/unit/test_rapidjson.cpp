// The optional RapidJSON glue (include/uvcometd/rapidjson.hpp): parse_data, to_json, publish.
#include <catch2/catch.hpp>

#include <uv.h>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include <rapidjson/error/en.h>

#include "json.hpp"
#include "uvcometd/rapidjson.hpp"

using uvcometd::errc;

namespace {

uvcometd::message message_with_data(std::string_view data) {
  uvcometd::message m;
  m.channel = "/chat/room1";
  m.data = data;
  return m;
}

rapidjson::Document parsed(std::string_view text) {
  rapidjson::Document d;
  const rapidjson::ParseResult r = uvcometd::parse_data(message_with_data(text), d);
  INFO("text: " << text << " error: " << rapidjson::GetParseError_En(r.Code()));
  REQUIRE(r);
  return d;
}

// The same JSON text after to_json(parse(text)).
std::string round_trip(std::string_view text) { return uvcometd::to_json(parsed(text)); }

}  // namespace

TEST_CASE("parse_data parses an object with nested members", "[rapidjson]") {
  const auto d = parsed(R"({"user":"ann","n":42,"tags":["a","b"],"meta":{"ok":true,"x":null}})");
  REQUIRE(d.IsObject());
  CHECK(d["user"].GetString() == std::string("ann"));
  CHECK(d["n"].GetInt() == 42);
  REQUIRE(d["tags"].IsArray());
  CHECK(d["tags"].Size() == 2);
  CHECK(d["tags"][1].GetString() == std::string("b"));
  CHECK(d["meta"]["ok"].GetBool());
  CHECK(d["meta"]["x"].IsNull());
}

TEST_CASE("parse_data parses an array of mixed values", "[rapidjson]") {
  const auto d = parsed(R"( [1, -2.5, "three", false, [], {}] )");
  REQUIRE(d.IsArray());
  REQUIRE(d.Size() == 6);
  CHECK(d[0].GetInt() == 1);
  CHECK(d[1].GetDouble() == -2.5);
  CHECK(d[2].GetString() == std::string("three"));
  CHECK(d[3].IsFalse());
  CHECK(d[4].IsArray());
  CHECK(d[5].IsObject());
}

TEST_CASE("parse_data decodes escapes and unicode in strings", "[rapidjson]") {
  const auto d = parsed(R"("q\"b\\s\/ t\tn\n \u00e9\u20AC\ud83d\ude00 caf)"
                        "\xc3\xa9"
                        R"( nul\u0000end")");
  REQUIRE(d.IsString());
  const std::string expected =
      std::string("q\"b\\s/ t\tn\n \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 caf\xc3\xa9 nul") + '\0' +
      "end";
  CHECK(std::string(d.GetString(), d.GetStringLength()) == expected);
}

TEST_CASE("parse_data gives null for an absent data", "[rapidjson]") {
  rapidjson::Document d;
  d.Parse("{");  // a previous failure must not linger
  REQUIRE(d.HasParseError());
  const rapidjson::ParseResult r = uvcometd::parse_data(message_with_data({}), d);
  CHECK(r);
  CHECK_FALSE(d.HasParseError());
  CHECK(d.IsNull());
}

TEST_CASE("parse_data reports invalid text with RapidJSON's error code", "[rapidjson]") {
  struct bad {
    std::string text;
    rapidjson::ParseErrorCode code;
  };
  const bad b = GENERATE(values<bad>({
      {R"({"a":)", rapidjson::kParseErrorValueInvalid},
      {R"({"a" 1})", rapidjson::kParseErrorObjectMissColon},
      {"[1,2", rapidjson::kParseErrorArrayMissCommaOrSquareBracket},
      {"1 2", rapidjson::kParseErrorDocumentRootNotSingular},
      {"NaN", rapidjson::kParseErrorValueInvalid},
      {R"("\x")", rapidjson::kParseErrorStringEscapeInvalid},
      {R"("\ud83d")", rapidjson::kParseErrorStringUnicodeSurrogateInvalid},
      {"   ", rapidjson::kParseErrorDocumentEmpty},
  }));
  INFO("text: " << b.text);
  rapidjson::Document d;
  const rapidjson::ParseResult r = uvcometd::parse_data(message_with_data(b.text), d);
  CHECK_FALSE(r);
  CHECK(r.Code() == b.code);
  CHECK(d.HasParseError());
}

TEST_CASE("parse_data reads the view only, not the frame around it", "[rapidjson]") {
  // msg.data is a view into a larger frame: what follows it must not be read.
  const std::string frame = R"([{"data":{"k":1},"channel":"/x"}])";
  const std::string_view data = std::string_view(frame).substr(9, 7);
  REQUIRE(data == R"({"k":1})");
  const auto d = parsed(data);
  REQUIRE(d.IsObject());
  CHECK(d["k"].GetInt() == 1);
}

TEST_CASE("a parsed document outlives the message it came from", "[rapidjson]") {
  rapidjson::Document d;
  {
    std::string frame = R"({"text":"hello"})";
    REQUIRE(uvcometd::parse_data(message_with_data(frame), d));
    frame.assign(frame.size(), 'x');
  }
  CHECK(d["text"].GetString() == std::string("hello"));
}

TEST_CASE("to_json writes compact JSON that parses back to an equal value", "[rapidjson]") {
  const std::string text =
      GENERATE(as<std::string>{}, "null", "true", "0", "-7", "9007199254740993",
               "18446744073709551615", "0.1", "-0.0025", R"("")",
               R"("caf)"
               "\xc3\xa9"
               R"( \"q\" \\ \n \u0001")",
               "[]", "{}", R"([1,[2,[3,{"a":[]}]]])",
               R"({"user":"ann","tags":["a","b"],"meta":{"ok":true,"x":null}})");
  INFO("text: " << text);
  CHECK(round_trip(text) == text);
  const auto first = parsed(text);
  const auto second = parsed(uvcometd::to_json(first));
  CHECK(first == second);
}

TEST_CASE("parse_data takes RapidJSON's parse flags, e.g. full precision", "[rapidjson]") {
  // RapidJSON's default number parsing may be off by a unit in the last place.
  const std::string text = "[-1.5e-300,1.7976931348623157e308,5e-324]";
  rapidjson::Document d;
  REQUIRE(uvcometd::parse_data<rapidjson::kParseFullPrecisionFlag>(message_with_data(text), d));
  CHECK(uvcometd::to_json(d) == text);
  CHECK(d[0].GetDouble() == -1.5e-300);
}

TEST_CASE("to_json drops insignificant whitespace and keeps unicode as UTF-8", "[rapidjson]") {
  CHECK(round_trip(" { \"a\" : [ 1 , 2 ] ,\n\"b\":\"\\u00e9\\ud83d\\ude00\" } ") ==
        "{\"a\":[1,2],\"b\":\"\xc3\xa9\xf0\x9f\x98\x80\"}");
}

TEST_CASE("to_json output is JSON the client accepts", "[rapidjson]") {
  rapidjson::Document d;
  d.SetObject();
  auto& a = d.GetAllocator();
  d.AddMember("nul", rapidjson::Value(std::string("a\0b", 3).c_str(), 3, a), a);
  d.AddMember("ctl", rapidjson::Value("\x01\x1f\x7f", a), a);
  d.AddMember("big", rapidjson::Value(std::numeric_limits<double>::max()), a);
  d.AddMember("tiny", rapidjson::Value(std::numeric_limits<double>::denorm_min()), a);
  d.AddMember("min", rapidjson::Value(std::numeric_limits<std::int64_t>::min()), a);
  const std::string text = uvcometd::to_json(d);
  INFO("text: " << text);
  CHECK(uvcometd::detail::json::is_valid(text));
  rapidjson::Document back;
  REQUIRE(uvcometd::parse_data<rapidjson::kParseFullPrecisionFlag>(message_with_data(text), back));
  CHECK(back == d);
}

TEST_CASE("to_json gives an empty string for a value JSON cannot represent", "[rapidjson]") {
  const double bad_number =
      GENERATE(std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
               -std::numeric_limits<double>::infinity());
  INFO("number: " << bad_number);
  rapidjson::Document d;
  auto& a = d.GetAllocator();
  SECTION("alone") { d.SetDouble(bad_number); }
  SECTION("deep inside an array") {
    d.SetArray();
    rapidjson::Value inner(rapidjson::kArrayType);
    inner.PushBack(1, a).PushBack(bad_number, a);
    d.PushBack(inner, a);
  }
  SECTION("as an object member") {
    d.SetObject();
    d.AddMember("ok", 1, a).AddMember("bad", bad_number, a);
  }
  CHECK(uvcometd::to_json(d).empty());
}

TEST_CASE("to_json gives an empty string for a string that is not UTF-8", "[rapidjson]") {
  rapidjson::Document d;
  auto& a = d.GetAllocator();
  d.SetObject();
  d.AddMember("s", rapidjson::Value("caf\xe9", a), a);  // Latin-1
  CHECK(uvcometd::to_json(d).empty());
}

TEST_CASE("publish of an unserializable value fails with invalid_argument before the client",
          "[rapidjson]") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  int completions = 0;
  {
    uvcometd::options opts;
    opts.url = "http://127.0.0.1:9/bayeux";
    uvcometd::client client(&loop, opts);  // never opened: its own publish says invalid_state
    const auto count = [&completions](const uvcometd::error&) { ++completions; };

    rapidjson::Document bad;
    bad.SetObject();
    bad.AddMember("x", std::numeric_limits<double>::quiet_NaN(), bad.GetAllocator());
    CHECK(uvcometd::publish(client, "/chat/room1", bad, count) == errc::invalid_argument);

    // A serializable value reaches the client, which refuses it for its own reason.
    rapidjson::Document good;
    good.Parse(R"({"text":"hello"})");
    CHECK(uvcometd::publish(client, "/chat/room1", good, count) == errc::invalid_state);
  }
  CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  CHECK(completions == 0);
  CHECK(uv_loop_close(&loop) == 0);
}
