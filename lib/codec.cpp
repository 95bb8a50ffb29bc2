#include "codec.hpp"

#include <algorithm>

#include "json.hpp"

namespace uvcometd::detail {
namespace {

error bad(std::string what) { return error{make_error_code(errc::bad_response), std::move(what)}; }

// A string value: a view into the text, or into the arena when it had escapes.
bool read_string(std::string_view s, std::size_t& pos, decoded_frame& out, std::string_view& v) {
  bool escaped;
  std::string_view raw;
  if (!json::scan_string(s, pos, raw, escaped)) return false;
  if (!escaped) {
    v = raw;
    return true;
  }
  out.arena.emplace_back();
  if (!json::unescape(raw, out.arena.back())) return false;
  v = out.arena.back();
  return true;
}

bool read_advice(std::string_view s, std::size_t& pos, advice& adv) {
  // Only the three fields the session uses; unknown fields (hosts, multiple-clients) are skipped.
  std::size_t p = pos;
  if (!json::skip_value(s, p, 2)) return false;
  const std::string_view obj = s.substr(pos, p - pos);
  pos = p;
  if (obj.empty() || obj[0] != '{') return true;  // not an object: ignore it
  std::size_t i = 1;
  json::skip_space(obj, i);
  if (i < obj.size() && obj[i] == '}') return true;
  for (;;) {
    json::skip_space(obj, i);
    std::string_view key;
    bool esc;
    if (!json::scan_string(obj, i, key, esc)) return false;
    json::skip_space(obj, i);
    ++i;  // ':' (validated by skip_value above)
    json::skip_space(obj, i);
    const std::size_t vstart = i;
    if (!json::skip_value(obj, i, 3)) return false;
    const std::string_view val = obj.substr(vstart, i - vstart);
    if (key == "reconnect") {
      if (val == "\"retry\"") adv.reconnect = reconnect_advice::retry;
      else if (val == "\"handshake\"") adv.reconnect = reconnect_advice::handshake;
      else if (val == "\"none\"") adv.reconnect = reconnect_advice::none;
    } else if (key == "interval" || key == "timeout") {
      std::int64_t n;
      // A day at most: larger values are nonsense and would overflow clock arithmetic.
      constexpr std::int64_t max_ms = 24LL * 3600 * 1000;
      if (json::to_int64(val, n)) {
        (key == "interval" ? adv.interval : adv.timeout) = std::clamp<std::int64_t>(n, 0, max_ms);
      }
    }
    json::skip_space(obj, i);
    if (i < obj.size() && obj[i] == ',') {
      ++i;
      continue;
    }
    return true;
  }
}

// What is wrong with a member's value; the message names the member.
enum class value_problem { none, not_string, malformed_string, not_boolean, malformed };

error member_error(value_problem p, std::string_view key, std::size_t index) {
  const std::string k(key);
  const std::string where = " in message " + std::to_string(index);
  switch (p) {
    case value_problem::not_string: return bad("\"" + k + "\" is not a string" + where);
    case value_problem::malformed_string: return bad("malformed \"" + k + "\"" + where);
    case value_problem::not_boolean: return bad("\"" + k + "\" is not a boolean" + where);
    default: return bad("malformed value of \"" + k + "\"" + where);
  }
}

// Reads one message object at `pos` into a new element of out.messages. On failure sets `err`
// (failures are rare: the error text is only built then, and a success costs no error object).
bool read_message(std::string_view s, std::size_t& pos, decoded_frame& out, std::size_t index,
                  error& err) {
  const std::size_t start = pos;
  if (pos >= s.size() || s[pos] != '{') {
    err = bad("message " + std::to_string(index) + " is not an object");
    return false;
  }
  wire_message& m = out.messages.emplace_back();  // filled in place: no copy of the message
  ++pos;
  json::skip_space(s, pos);
  if (pos < s.size() && s[pos] == '}') {
    ++pos;
  } else {
    for (;;) {
      json::skip_space(s, pos);
      std::string_view key;
      bool esc;
      if (!json::scan_string(s, pos, key, esc)) {
        err = bad("malformed member name in message " + std::to_string(index));
        return false;
      }
      json::skip_space(s, pos);
      if (pos >= s.size() || s[pos] != ':') {
        err = bad("expected ':' in message " + std::to_string(index));
        return false;
      }
      ++pos;
      json::skip_space(s, pos);
      if (pos >= s.size()) {
        err = bad("truncated message " + std::to_string(index));
        return false;
      }
      const std::size_t vstart = pos;
      const char c = s[pos];
      value_problem problem = value_problem::none;
      // A string member: a view into the text (or the arena when it has escapes).
      auto want_string = [&](std::string_view& field) {
        if (c != '"') problem = value_problem::not_string;
        else if (!read_string(s, pos, out, field)) problem = value_problem::malformed_string;
      };
      // Any value, kept as its raw text.
      auto raw_value = [&](std::string_view& field) {
        if (!json::skip_value(s, pos, 2)) problem = value_problem::malformed;
        else field = s.substr(vstart, pos - vstart);
      };
      // The members of a delivered message first: "channel" and "data" are in every one.
      if (key == "channel") {
        want_string(m.channel);
      } else if (key == "data") {
        raw_value(m.data);
      } else if (key == "id") {
        if (c == '"') want_string(m.id);
        else raw_value(m.id);  // a number: keep its text
      } else if (key == "clientId") {
        if (c != 'n') want_string(m.client_id);
        else if (!json::skip_value(s, pos, 2)) problem = value_problem::malformed;
      } else if (key == "ext") {
        raw_value(m.ext);
      } else if (key == "successful") {
        if (s.substr(pos, 4) == "true") {
          m.successful = true;
          pos += 4;
        } else if (s.substr(pos, 5) == "false") {
          m.successful = false;
          pos += 5;
        } else {
          problem = value_problem::not_boolean;
        }
      } else if (key == "error") {
        if (c == '"') want_string(m.error);
        else raw_value(m.error);  // not a string: keep its text for the user
      } else if (key == "subscription") {
        if (c == '"') want_string(m.subscription);
        else raw_value(m.subscription);
      } else if (key == "advice") {
        m.has_advice = true;
        if (!read_advice(s, pos, m.adv)) problem = value_problem::malformed;
      } else if (key == "supportedConnectionTypes") {
        raw_value(m.connection_types);
      } else if (!json::skip_value(s, pos, 2)) {
        problem = value_problem::malformed;
      }
      if (problem != value_problem::none) {
        err = member_error(problem, key, index);
        return false;
      }
      json::skip_space(s, pos);
      if (pos >= s.size()) {
        err = bad("truncated message " + std::to_string(index));
        return false;
      }
      if (s[pos] == ',') {
        ++pos;
        continue;
      }
      if (s[pos] == '}') {
        ++pos;
        break;
      }
      err = bad("expected ',' or '}' in message " + std::to_string(index));
      return false;
    }
  }
  // A reply without a channel (Faye's 405, CometD's 400::channel_missing) is still a reply.
  if (m.channel.empty() && !m.successful.has_value()) {
    err = bad("message " + std::to_string(index) + " has no channel");
    return false;
  }
  m.json = s.substr(start, pos - start);
  return true;
}

}  // namespace

error decode_frame(std::string_view s, decoded_frame& out) {
  out.clear();
  error err;
  std::size_t pos = 0;
  json::skip_space(s, pos);
  if (pos >= s.size()) return bad("empty frame");
  if (s[pos] == '{') {
    // Some servers answer a single object instead of an array: accept it as a one-message frame.
    if (!read_message(s, pos, out, 0, err)) return err;
  } else if (s[pos] == '[') {
    ++pos;
    json::skip_space(s, pos);
    if (pos < s.size() && s[pos] == ']') {
      ++pos;
    } else {
      for (std::size_t index = 0;; ++index) {
        json::skip_space(s, pos);
        if (!read_message(s, pos, out, index, err)) return err;
        json::skip_space(s, pos);
        if (pos >= s.size()) return bad("truncated frame");
        if (s[pos] == ',') {
          ++pos;
          continue;
        }
        if (s[pos] == ']') {
          ++pos;
          break;
        }
        return bad("expected ',' or ']' after message " + std::to_string(index));
      }
    }
  } else {
    return bad("frame is not a JSON array: " + std::string(s.substr(pos, 40)));
  }
  json::skip_space(s, pos);
  if (pos != s.size()) return bad("trailing data after the frame");
  return err;
}

std::vector<std::string> decode_string_array(std::string_view raw) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  json::skip_space(raw, pos);
  if (pos >= raw.size() || raw[pos] != '[') return out;
  ++pos;
  for (;;) {
    json::skip_space(raw, pos);
    if (pos >= raw.size() || raw[pos] == ']') return out;
    if (raw[pos] == '"') {
      std::string_view content;
      bool esc;
      if (!json::scan_string(raw, pos, content, esc)) return out;
      std::string s;
      if (!esc) s = std::string(content);
      else if (!json::unescape(content, s)) return out;
      out.push_back(std::move(s));
    } else if (!json::skip_value(raw, pos, 1)) {
      return out;
    }
    json::skip_space(raw, pos);
    if (pos < raw.size() && raw[pos] == ',') ++pos;
  }
}

}  // namespace uvcometd::detail
