/// @file
/// uvcometd — optional RapidJSON glue: received data into a rapidjson::Document, a
/// rapidjson::Value published. Header-only and included by nothing else, so only an application
/// that includes it needs RapidJSON (meson: dependency('uvcometd-rapidjson'); pkg-config:
/// uvcometd-rapidjson).
#pragma once

#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <rapidjson/document.h>
#include <rapidjson/writer.h>

#include "uvcometd/client.hpp"
#include "uvcometd/error.hpp"
#include "uvcometd/message.hpp"

namespace uvcometd {

namespace detail {
// A RapidJSON output stream appending to a std::string (no intermediate StringBuffer copy).
struct rapidjson_string_sink {
  using Ch = char;
  std::string& out;
  void Put(char c) { out.push_back(c); }
  void Flush() {}
};
}  // namespace detail

/// Parses msg.data with Document::Parse<ParseFlags> into `out`, which owns a copy and may outlive
/// the callback. An absent data parses as null; invalid text gives a false result.
template <unsigned ParseFlags = rapidjson::kParseDefaultFlags>
rapidjson::ParseResult parse_data(const message& msg, rapidjson::Document& out) {
  static_assert(!(ParseFlags & rapidjson::kParseInsituFlag), "msg.data is read-only");
  if (msg.data.empty()) return out.Parse<ParseFlags>("null", 4);
  return out.Parse<ParseFlags>(msg.data.data(), msg.data.size());
}

/// Compact JSON text of `value`; empty (never valid JSON) when the value has no JSON text: a NaN
/// or infinite number, or a string that is not valid UTF-8.
inline std::string to_json(const rapidjson::Value& value) {
  std::string text;
  detail::rapidjson_string_sink sink{text};
  rapidjson::Writer<detail::rapidjson_string_sink, rapidjson::UTF8<>, rapidjson::UTF8<>,
                    rapidjson::CrtAllocator, rapidjson::kWriteValidateEncodingFlag>
      writer(sink);
  if (!value.Accept(writer)) text.clear();
  return text;
}

/// client::publish of `value` serialized by to_json(). Fails synchronously with invalid_argument,
/// before the client is consulted, when to_json() cannot serialize it; otherwise as
/// client::publish.
inline std::error_code publish(client& c, std::string_view channel, const rapidjson::Value& value,
                               completion done) {
  const std::string text = to_json(value);
  if (text.empty()) return make_error_code(errc::invalid_argument);
  return c.publish(channel, text, std::move(done));
}

}  // namespace uvcometd
