#include "uvcometd/extension.hpp"

#include <algorithm>
#include <system_error>

#include "codec.hpp"
#include "json.hpp"
#include "json_object.hpp"

namespace uvcometd {
namespace {

[[noreturn]] void invalid(const std::string& what) {
  throw std::system_error(make_error_code(errc::invalid_argument), what);
}

// Splits one JSON object's text into {decoded name, raw value} pairs; false when not an object.
bool split_object(std::string_view s, std::vector<std::pair<std::string, std::string>>& out) {
  namespace json = detail::json;
  std::size_t pos = 0;
  json::skip_space(s, pos);
  if (pos >= s.size() || s[pos] != '{') return false;
  ++pos;
  json::skip_space(s, pos);
  if (pos < s.size() && s[pos] == '}') {
    ++pos;
  } else {
    for (;;) {
      json::skip_space(s, pos);
      std::string_view raw;
      bool escaped = false;
      if (pos >= s.size() || s[pos] != '"' || !json::scan_string(s, pos, raw, escaped))
        return false;
      std::string name;
      if (escaped) {
        if (!json::unescape(raw, name)) return false;
      } else {
        name.assign(raw);
      }
      json::skip_space(s, pos);
      if (pos >= s.size() || s[pos] != ':') return false;
      ++pos;
      json::skip_space(s, pos);
      const std::size_t start = pos;
      if (!json::skip_value(s, pos, 1)) return false;
      std::string value(s.substr(start, pos - start));
      // A repeated name makes the object unusable, as in the codec: two readers could pick
      // different copies.
      const auto it =
          std::find_if(out.begin(), out.end(), [&](const auto& f) { return f.first == name; });
      if (it != out.end()) return false;
      out.emplace_back(std::move(name), std::move(value));
      json::skip_space(s, pos);
      if (pos < s.size() && s[pos] == ',') {
        ++pos;
        continue;
      }
      if (pos < s.size() && s[pos] == '}') {
        ++pos;
        break;
      }
      return false;
    }
  }
  json::skip_space(s, pos);
  return pos == s.size();
}

void append_object(std::string& out,
                   const std::vector<std::pair<std::string, std::string>>& fields) {
  out += '{';
  bool first = true;
  for (const auto& [name, value] : fields) {
    if (!first) out += ',';
    first = false;
    detail::json::append_string(out, name);
    out += ':';
    out += value;
  }
  out += '}';
}

std::optional<std::string> decode_string(std::string_view raw) {
  std::size_t pos = 0;
  std::string_view content;
  bool escaped = false;
  if (raw.empty() || raw[0] != '"' || !detail::json::scan_string(raw, pos, content, escaped) ||
      pos != raw.size()) {
    return std::nullopt;
  }
  std::string out;
  if (!escaped) return std::string(content);
  if (!detail::json::unescape(content, out)) return std::nullopt;
  return out;
}

}  // namespace

namespace detail::json {

std::string_view member(std::string_view obj, std::string_view key) {
  std::size_t pos = 0;
  skip_space(obj, pos);
  if (pos >= obj.size() || obj[pos] != '{') return {};
  ++pos;
  for (;;) {
    skip_space(obj, pos);
    std::string_view raw;
    bool escaped = false;
    if (pos >= obj.size() || obj[pos] != '"' || !scan_string(obj, pos, raw, escaped)) return {};
    bool match = raw == key;
    if (escaped) {
      std::string name;
      match = unescape(raw, name) && name == key;
    }
    skip_space(obj, pos);
    if (pos >= obj.size() || obj[pos] != ':') return {};
    ++pos;
    skip_space(obj, pos);
    const std::size_t start = pos;
    if (!skip_value(obj, pos, 1)) return {};
    if (match) return obj.substr(start, pos - start);
    skip_space(obj, pos);
    if (pos >= obj.size() || obj[pos] != ',') return {};
    ++pos;
  }
}

}  // namespace detail::json

bayeux_message bayeux_message::parse(std::string_view json) {
  bayeux_message m;
  if (!split_object(json, m.fields_)) invalid("uvcometd: a Bayeux message must be a JSON object");
  return m;
}

std::string bayeux_message::channel() const {
  return string_field("channel").value_or(std::string());
}

bool bayeux_message::is_meta() const {
  const auto c = channel();
  return c.rfind("/meta/", 0) == 0;
}

std::optional<bool> bayeux_message::successful() const noexcept {
  const auto v = field("successful");
  if (v == "true") return true;
  if (v == "false") return false;
  return std::nullopt;
}

std::string_view bayeux_message::field(std::string_view name) const noexcept {
  for (const auto& [n, v] : fields_) {
    if (n == name) return v;
  }
  return {};
}

std::optional<std::string> bayeux_message::string_field(std::string_view name) const {
  const auto v = field(name);
  if (v.empty()) return std::nullopt;
  return decode_string(v);
}

void bayeux_message::set_field(std::string_view name, std::string_view raw_json) {
  if (!detail::json::is_valid(raw_json)) invalid("uvcometd: field value is not one JSON value");
  std::size_t b = 0;
  std::size_t e = raw_json.size();
  while (b < e && detail::json::is_space(raw_json[b])) ++b;
  while (e > b && detail::json::is_space(raw_json[e - 1])) --e;
  const std::string_view trimmed = raw_json.substr(b, e - b);
  for (auto& [n, v] : fields_) {
    if (n == name) {
      v.assign(trimmed);
      return;
    }
  }
  fields_.emplace_back(std::string(name), std::string(trimmed));
}

void bayeux_message::set_string_field(std::string_view name, std::string_view value) {
  std::string raw;
  detail::json::append_string(raw, value);
  set_field(name, raw);
}

bool bayeux_message::erase_field(std::string_view name) {
  const auto it =
      std::find_if(fields_.begin(), fields_.end(), [&](const auto& f) { return f.first == name; });
  if (it == fields_.end()) return false;
  fields_.erase(it);
  return true;
}

std::string_view bayeux_message::ext(std::string_view key) const noexcept {
  try {
    return detail::json::member(field("ext"), key);
  } catch (...) {
    return {};  // only an escaped key can allocate
  }
}

void bayeux_message::set_ext(std::string_view key, std::string_view raw_json) {
  if (!detail::json::is_valid(raw_json)) invalid("uvcometd: ext value is not one JSON value");
  std::vector<std::pair<std::string, std::string>> ext;
  const auto current = field("ext");
  if (!current.empty() && !split_object(current, ext)) ext.clear();
  std::string value(raw_json);
  const auto it =
      std::find_if(ext.begin(), ext.end(), [&](const auto& f) { return f.first == key; });
  if (it != ext.end())
    it->second = std::move(value);
  else
    ext.emplace_back(std::string(key), std::move(value));
  std::string text;
  append_object(text, ext);
  set_field("ext", text);
}

bool bayeux_message::erase_ext(std::string_view key) {
  std::vector<std::pair<std::string, std::string>> ext;
  const auto current = field("ext");
  if (current.empty() || !split_object(current, ext)) return false;
  const auto it =
      std::find_if(ext.begin(), ext.end(), [&](const auto& f) { return f.first == key; });
  if (it == ext.end()) return false;
  ext.erase(it);
  std::string text;
  append_object(text, ext);
  set_field("ext", text);
  return true;
}

std::string bayeux_message::to_json() const {
  std::string out;
  append_json(out);
  return out;
}

void bayeux_message::append_json(std::string& out) const { append_object(out, fields_); }

bool message_batch::resend(const bayeux_message& reply) {
  if (!detail::is_reply(reply.channel(), reply.successful().has_value())) return false;
  std::string text;
  if (auto s = reply.string_field("id"))
    text = std::move(*s);
  else
    text = std::string(reply.field("id"));
  std::uint64_t id = 0;
  if (!detail::parse_message_id(text, id)) return false;
  if (std::find(resend_ids_.begin(), resend_ids_.end(), id) == resend_ids_.end()) {
    resend_ids_.push_back(id);
  }
  return true;
}

}  // namespace uvcometd
