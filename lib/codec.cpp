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

error read_message(std::string_view s, std::size_t& pos, decoded_frame& out, std::size_t index) {
  const std::size_t start = pos;
  if (pos >= s.size() || s[pos] != '{') return bad("message " + std::to_string(index) + " is not an object");
  wire_message m;
  ++pos;
  json::skip_space(s, pos);
  if (pos < s.size() && s[pos] == '}') {
    ++pos;
  } else {
    for (;;) {
      json::skip_space(s, pos);
      std::string_view key;
      bool esc;
      if (!json::scan_string(s, pos, key, esc)) return bad("malformed member name in message " + std::to_string(index));
      json::skip_space(s, pos);
      if (pos >= s.size() || s[pos] != ':') return bad("expected ':' in message " + std::to_string(index));
      ++pos;
      json::skip_space(s, pos);
      if (pos >= s.size()) return bad("truncated message " + std::to_string(index));
      const std::size_t vstart = pos;
      const char c = s[pos];
      bool ok = true;
      auto want_string = [&](std::string_view& field, const char* name) {
        if (c != '"') {
          ok = false;
          return std::string("\"") + name + "\" is not a string";
        }
        if (!read_string(s, pos, out, field)) {
          ok = false;
          return std::string("malformed \"") + name + "\"";
        }
        return std::string();
      };
      std::string problem;
      if (key == "channel") {
        problem = want_string(m.channel, "channel");
      } else if (key == "id") {
        if (c == '"') {
          problem = want_string(m.id, "id");
        } else if (json::skip_value(s, pos, 2)) {
          m.id = s.substr(vstart, pos - vstart);  // a number: keep its text
        } else {
          ok = false;
        }
      } else if (key == "clientId") {
        if (c == 'n') ok = json::skip_value(s, pos, 2);
        else problem = want_string(m.client_id, "clientId");
      } else if (key == "error") {
        if (c == '"') {
          problem = want_string(m.error, "error");
        } else if ((ok = json::skip_value(s, pos, 2))) {
          m.error = s.substr(vstart, pos - vstart);  // not a string: keep its text for the user
        }
      } else if (key == "subscription") {
        if (c == '"') {
          problem = want_string(m.subscription, "subscription");
        } else {
          ok = json::skip_value(s, pos, 2);
          m.subscription = s.substr(vstart, pos - vstart);
        }
      } else if (key == "successful") {
        if (s.substr(pos, 4) == "true") {
          m.successful = true;
          pos += 4;
        } else if (s.substr(pos, 5) == "false") {
          m.successful = false;
          pos += 5;
        } else {
          ok = false;
          problem = "\"successful\" is not a boolean";
        }
      } else if (key == "advice") {
        m.has_advice = true;
        ok = read_advice(s, pos, m.adv);
      } else {
        ok = json::skip_value(s, pos, 2);
        const auto raw = s.substr(vstart, pos - vstart);
        if (key == "data") m.data = raw;
        else if (key == "ext") m.ext = raw;
        else if (key == "supportedConnectionTypes") m.connection_types = raw;
      }
      if (!ok) {
        return bad(problem.empty() ? "malformed value of \"" + std::string(key) + "\" in message " + std::to_string(index)
                                   : problem + " in message " + std::to_string(index));
      }
      json::skip_space(s, pos);
      if (pos >= s.size()) return bad("truncated message " + std::to_string(index));
      if (s[pos] == ',') {
        ++pos;
        continue;
      }
      if (s[pos] == '}') {
        ++pos;
        break;
      }
      return bad("expected ',' or '}' in message " + std::to_string(index));
    }
  }
  if (m.channel.empty()) {
    // A reply without a channel (Faye's 405, CometD's 400::channel_missing) is still a reply.
    if (!m.successful.has_value()) return bad("message " + std::to_string(index) + " has no channel");
  }
  m.json = s.substr(start, pos - start);
  out.messages.push_back(m);
  return {};
}

}  // namespace

error decode_frame(std::string_view s, decoded_frame& out) {
  out.clear();
  std::size_t pos = 0;
  json::skip_space(s, pos);
  if (pos >= s.size()) return bad("empty frame");
  if (s[pos] == '{') {
    // Some servers answer a single object instead of an array: accept it as a one-message frame.
    auto e = read_message(s, pos, out, 0);
    if (e) return e;
  } else if (s[pos] == '[') {
    ++pos;
    json::skip_space(s, pos);
    if (pos < s.size() && s[pos] == ']') {
      ++pos;
    } else {
      for (std::size_t index = 0;; ++index) {
        json::skip_space(s, pos);
        auto e = read_message(s, pos, out, index);
        if (e) return e;
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
  return {};
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
