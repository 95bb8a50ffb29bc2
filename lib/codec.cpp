#include "codec.hpp"

#include <algorithm>
#include <charconv>

#include "channel.hpp"
#include "json.hpp"

namespace uvcometd::detail {
namespace {

error bad(std::string what) { return error{make_error_code(errc::bad_response), std::move(what)}; }

// Arena slots larger than this are released on reset(): one outsized string must not stay
// allocated for the life of the client.
constexpr std::size_t arena_keep = 4096;

// A string value: a view into the text, or into the arena when it had escapes.
bool read_string(std::string_view s, std::size_t& pos, string_arena& arena, std::string_view& v) {
  bool escaped;
  std::string_view raw;
  if (!json::scan_string(s, pos, raw, escaped)) return false;
  if (!escaped) {
    v = raw;
    return true;
  }
  std::string& slot = arena.take();
  if (!json::unescape(raw, slot)) return false;
  v = slot;
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
  std::string name;
  for (;;) {
    json::skip_space(obj, i);
    std::string_view key;
    bool esc;
    if (!json::scan_string(obj, i, key, esc)) return false;
    if (esc) {
      // Names are compared unescaped, as everywhere else ("\u0074imeout" is "timeout").
      if (!json::unescape(key, name)) return false;
      key = name;
    }
    json::skip_space(obj, i);
    ++i;  // ':' (validated by skip_value above)
    json::skip_space(obj, i);
    const std::size_t vstart = i;
    if (!json::skip_value(obj, i, 3)) return false;
    const std::string_view val = obj.substr(vstart, i - vstart);
    if (key == "hosts") {
      if (!val.empty() && val[0] == '[') adv.hosts = val;
    } else if (key == "reconnect") {
      if (val == "\"retry\"")
        adv.reconnect = reconnect_advice::retry;
      else if (val == "\"handshake\"")
        adv.reconnect = reconnect_advice::handshake;
      else if (val == "\"none\"")
        adv.reconnect = reconnect_advice::none;
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

// Finds the end of the object or array at `pos` by its brackets alone, whatever is inside
// (strings are skipped by their quotes). Used to step over a message that cannot be read
// strictly (too deep, a malformed value) so that the messages after it still count. False when
// the text ends first: then the frame itself is broken.
bool skip_balanced(std::string_view s, std::size_t& pos) noexcept {
  std::size_t depth = 0;
  for (std::size_t i = pos; i < s.size(); ++i) {
    switch (s[i]) {
      case '"':
        for (++i; i < s.size() && s[i] != '"'; ++i) {
          if (s[i] == '\\') ++i;
        }
        if (i >= s.size()) return false;
        break;
      case '{':
      case '[': ++depth; break;
      case '}':
      case ']':
        if (depth == 0 || --depth == 0) {
          pos = i + 1;
          return depth == 0;
        }
        break;
      default: break;
    }
  }
  return false;
}

// Skips one element of the frame's array that is not a message object (strictly, or by its
// brackets when it is a broken container). False when that is impossible.
bool skip_element(std::string_view s, std::size_t& pos) noexcept {
  std::size_t p = pos;
  if (json::skip_value(s, p, 1)) {
    pos = p;
    return true;
  }
  if (pos < s.size() && (s[pos] == '{' || s[pos] == '[')) return skip_balanced(s, pos);
  return false;
}

// The members the session reads; each may appear once in a message.
constexpr unsigned m_channel = 1u << 0;
constexpr unsigned m_data = 1u << 1;
constexpr unsigned m_id = 1u << 2;
constexpr unsigned m_client_id = 1u << 3;
constexpr unsigned m_ext = 1u << 4;
constexpr unsigned m_successful = 1u << 5;
constexpr unsigned m_error = 1u << 6;
constexpr unsigned m_subscription = 1u << 7;
constexpr unsigned m_advice = 1u << 8;
constexpr unsigned m_connection_types = 1u << 9;

unsigned member_of(std::string_view name) noexcept {
  switch (name.size()) {
    case 2: return name == "id" ? m_id : 0u;
    case 3: return name == "ext" ? m_ext : 0u;
    case 4: return name == "data" ? m_data : 0u;
    case 5: return name == "error" ? m_error : 0u;
    case 6: return name == "advice" ? m_advice : 0u;
    case 7: return name == "channel" ? m_channel : 0u;
    case 8: return name == "clientId" ? m_client_id : 0u;
    case 10: return name == "successful" ? m_successful : 0u;
    case 12: return name == "subscription" ? m_subscription : 0u;
    case 24: return name == "supportedConnectionTypes" ? m_connection_types : 0u;
    default: return 0;
  }
}

// Whether every byte of `text` above 0x7f belongs to a well-formed UTF-8 sequence.
bool valid_utf8(std::string_view text) noexcept {
  for (std::size_t i = 0; i < text.size();) {
    if (static_cast<unsigned char>(text[i]) < 0x80) {
      ++i;
      continue;
    }
    i = json::skip_utf8(text.data(), i, text.size());
    if (i == json::npos) return false;
  }
  return true;
}

std::string quoted(std::string_view text) {
  constexpr std::size_t max = 64;
  std::string out = "\"";
  out.append(text.substr(0, max));
  if (text.size() > max) out += "...";
  return out + "\"";
}

}  // namespace

bool is_reply(std::string_view channel, bool has_successful) noexcept {
  return has_successful || is_meta(channel);
}

bool wire_message::is_reply() const noexcept {
  return detail::is_reply(channel, successful.has_value());
}

bool parse_message_id(std::string_view text, std::uint64_t& out) noexcept {
  if (text.empty()) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

std::string& string_arena::take() {
  if (used_ == slots_.size()) slots_.emplace_back();
  std::string& s = slots_[used_++];
  s.clear();
  return s;
}

void string_arena::reset() noexcept {
  for (std::size_t i = 0; i < used_; ++i) {
    if (slots_[i].capacity() > arena_keep) std::string().swap(slots_[i]);
  }
  used_ = 0;
}

namespace {

// What is wrong with a member's value; the message names the member.
enum class value_problem { none, not_string, malformed_string, not_boolean, malformed, repeated };

std::string member_problem(value_problem p, std::string_view key, std::size_t index) {
  const std::string k = quoted(key);
  const std::string where = " in message " + std::to_string(index);
  switch (p) {
    case value_problem::not_string: return k + " is not a string" + where;
    case value_problem::malformed_string: return "malformed " + k + where;
    case value_problem::not_boolean: return k + " is not a boolean" + where;
    case value_problem::repeated: return k + " appears twice" + where;
    default: return "malformed or too deeply nested value of " + k + where;
  }
}

enum class read_result { ok, bad_message, broken };

// Reads one message object at `pos` into `m`. A problem inside the object sets `problem` and
// returns bad_message with `pos` past the object when its end can still be found; broken when
// it cannot (the frame ends inside it). The problem text is only built on failure.
read_result read_message(std::string_view s, std::size_t& pos, wire_message& m, string_arena& arena,
                         std::vector<std::string_view>& names, std::size_t index,
                         std::string& problem) {
  const std::size_t start = pos;
  const auto give_up = [&](std::string why) {
    problem = std::move(why);
    pos = start;
    if (!skip_balanced(s, pos)) return read_result::broken;
    // Say so when it is a string that is not UTF-8 (the likelier cause than a broken value).
    if (!valid_utf8(s.substr(start, pos - start))) problem += " (invalid UTF-8)";
    return read_result::bad_message;
  };
  m = wire_message{};
  ++pos;  // '{'
  json::skip_space(s, pos);
  unsigned seen = 0;
  names.clear();
  if (pos < s.size() && s[pos] == '}') {
    ++pos;
  } else {
    for (;;) {
      json::skip_space(s, pos);
      std::string_view key;
      bool esc;
      if (!json::scan_string(s, pos, key, esc)) {
        return give_up("malformed member name in message " + std::to_string(index));
      }
      if (esc) {
        // Names are compared unescaped ("chann\u0065l" is "channel"); an escape that is not
        // valid Unicode (a lone surrogate) makes the message unusable.
        std::string& slot = arena.take();
        if (!json::unescape(key, slot)) {
          return give_up("malformed member name in message " + std::to_string(index));
        }
        key = slot;
      }
      json::skip_space(s, pos);
      if (pos >= s.size() || s[pos] != ':') {
        return give_up("expected ':' in message " + std::to_string(index));
      }
      ++pos;
      json::skip_space(s, pos);
      if (pos >= s.size()) return give_up("truncated message " + std::to_string(index));
      const std::size_t vstart = pos;
      const char c = s[pos];
      value_problem bad_value = value_problem::none;
      // A string member: a view into the text (or the arena when it has escapes).
      auto want_string = [&](std::string_view& field) {
        if (c != '"')
          bad_value = value_problem::not_string;
        else if (!read_string(s, pos, arena, field))
          bad_value = value_problem::malformed_string;
      };
      // Any value, kept as its raw text.
      auto raw_value = [&](std::string_view& field) {
        if (!json::skip_value(s, pos, 2))
          bad_value = value_problem::malformed;
        else
          field = s.substr(vstart, pos - vstart);
      };
      const unsigned bit = member_of(key);
      if (bit != 0) {
        // One rule for repeated members everywhere (codec, extensions): a message that names a
        // member twice is not trusted, whichever copy a reader would pick.
        if (seen & bit) bad_value = value_problem::repeated;
        seen |= bit;
      } else {
        if (std::find(names.begin(), names.end(), key) != names.end()) {
          bad_value = value_problem::repeated;
        }
        names.push_back(key);
      }
      if (bad_value != value_problem::none) {
        // reported below
      } else if (bit == m_channel) {
        want_string(m.channel);
      } else if (bit == m_data) {
        raw_value(m.data);
      } else if (bit == m_id) {
        if (c == '"')
          want_string(m.id);
        else
          raw_value(m.id);  // a number: keep its text
      } else if (bit == m_client_id) {
        if (c != 'n')
          want_string(m.client_id);
        else if (!json::skip_value(s, pos, 2))
          bad_value = value_problem::malformed;
      } else if (bit == m_ext) {
        raw_value(m.ext);
      } else if (bit == m_successful) {
        if (s.substr(pos, 4) == "true") {
          m.successful = true;
          pos += 4;
        } else if (s.substr(pos, 5) == "false") {
          m.successful = false;
          pos += 5;
        } else {
          bad_value = value_problem::not_boolean;
        }
      } else if (bit == m_error) {
        if (c == '"')
          want_string(m.error);
        else
          raw_value(m.error);  // not a string: keep its text for the user
      } else if (bit == m_subscription) {
        if (c == '"')
          want_string(m.subscription);
        else
          raw_value(m.subscription);
      } else if (bit == m_advice) {
        m.has_advice = true;
        if (!read_advice(s, pos, m.adv))
          bad_value = value_problem::malformed;
        else
          m.advice_json = s.substr(vstart, pos - vstart);
      } else if (bit == m_connection_types) {
        raw_value(m.connection_types);
      } else if (!json::skip_value(s, pos, 2)) {
        bad_value = value_problem::malformed;
      }
      if (bad_value != value_problem::none) return give_up(member_problem(bad_value, key, index));
      json::skip_space(s, pos);
      if (pos >= s.size()) return give_up("truncated message " + std::to_string(index));
      if (s[pos] == ',') {
        ++pos;
        continue;
      }
      if (s[pos] == '}') {
        ++pos;
        break;
      }
      return give_up("expected ',' or '}' in message " + std::to_string(index));
    }
  }
  m.json = s.substr(start, pos - start);
  // A reply without a channel (Faye's 405, CometD's 400::channel_missing) is still a reply.
  if (m.channel.empty() && !m.successful.has_value()) {
    problem = "message " + std::to_string(index) + " has no channel";
    return read_result::bad_message;
  }
  // A data message names the one channel it was published to: never a pattern or an invalid
  // name, which no subscription could match consistently.
  if (!m.is_reply() && (!is_valid_channel(m.channel) || is_wildcard(m.channel))) {
    problem = "message " + std::to_string(index) + " has an invalid channel " + quoted(m.channel);
    return read_result::bad_message;
  }
  return read_result::ok;
}

}  // namespace

frame_reader::status frame_reader::next(wire_message& m, string_arena& arena, error& why) {
  const std::string_view s = text_;
  arena.reset();
  const auto malformed = [&](std::string what) {
    why = bad(std::move(what));
    phase_ = phase::done;
    return status::malformed;
  };
  const auto trailing_ok = [&] {
    json::skip_space(s, pos_);
    phase_ = phase::done;
    if (pos_ != s.size()) {
      why = bad("trailing data after the frame");
      return status::malformed;
    }
    return status::end;
  };
  switch (phase_) {
    case phase::done: return status::end;
    case phase::start:
      json::skip_space(s, pos_);
      if (pos_ >= s.size()) return malformed("empty frame");
      if (s[pos_] == '{') {
        // Some servers answer a single object instead of an array: a one-message frame.
        phase_ = phase::single;
        break;
      }
      if (s[pos_] != '[')
        return malformed("frame is not a JSON array: " + quoted(s.substr(pos_, 40)));
      ++pos_;
      json::skip_space(s, pos_);
      if (pos_ < s.size() && s[pos_] == ']') {
        ++pos_;
        return trailing_ok();
      }
      phase_ = phase::first;
      break;
    case phase::rest:
      json::skip_space(s, pos_);
      if (pos_ >= s.size()) return malformed("truncated frame");
      if (s[pos_] == ']') {
        ++pos_;
        return trailing_ok();
      }
      if (s[pos_] != ',') {
        return malformed("expected ',' or ']' after message " + std::to_string(index_ - 1));
      }
      ++pos_;
      break;
    case phase::first:
    case phase::single: break;
  }
  json::skip_space(s, pos_);
  const std::size_t index = index_++;
  const bool single = phase_ == phase::single;
  phase_ = phase::rest;
  if (pos_ >= s.size()) return malformed("truncated frame");
  std::string problem;
  read_result r;
  if (s[pos_] != '{') {
    problem = "message " + std::to_string(index) + " is not an object";
    r = skip_element(s, pos_) ? read_result::bad_message : read_result::broken;
  } else {
    r = read_message(s, pos_, m, arena, names_, index, problem);
  }
  if (r == read_result::broken) {
    // The frame ends inside this message: nothing after it can be found.
    return malformed(problem.empty() ? "truncated frame" : "truncated frame (" + problem + ")");
  }
  if (single) {
    const status end = trailing_ok();
    if (end == status::malformed) return end;
  }
  if (r == read_result::bad_message) {
    why = bad(std::move(problem));
    return status::skipped;
  }
  return status::message;
}

error decode_frame(std::string_view text, decoded_frame& out) {
  out.clear();
  frame_reader reader(text);
  for (;;) {
    wire_message m;
    error why;
    string_arena& arena = out.arenas.emplace_back();
    switch (reader.next(m, arena, why)) {
      case frame_reader::status::message: out.messages.push_back(m); continue;
      case frame_reader::status::skipped: out.skipped.push_back(std::move(why)); break;
      case frame_reader::status::end: return {};
      case frame_reader::status::malformed: return why;
    }
    out.arenas.pop_back();
  }
}

void encode_message(std::string& f, const batch_message& m, const encode_context& c) {
  const message_kind kind = m.kind;
  const std::string_view payload = m.payload;
  f += "{\"channel\":";
  json::append_string(f, m.channel);
  f += ",\"id\":\"";
  f += std::to_string(m.id);
  f += '"';
  if (kind != message_kind::handshake) {
    f += ",\"clientId\":";
    json::append_string(f, c.client_id);
  }
  switch (kind) {
    case message_kind::handshake:
      f += ",\"version\":\"1.0\",\"minimumVersion\":\"1.0\",\"supportedConnectionTypes\":[";
      if (c.supported) {
        for (std::size_t i = 0; i < c.supported->size(); ++i) {
          if (i) f += ',';
          json::append_string(f, to_string((*c.supported)[i]));
        }
      }
      f += "],\"advice\":{\"timeout\":60000,\"interval\":0}";
      if (!c.handshake_ext.empty()) {
        f += ",\"ext\":";
        f += c.handshake_ext;
      }
      break;
    case message_kind::connect:
      f += ",\"connectionType\":";
      json::append_string(f, to_string(c.type));
      if (m.first_connect) {
        f += ",\"advice\":{\"timeout\":";
        f += std::to_string(m.hold_ms);
        f += '}';
      }
      break;
    case message_kind::subscribe:
    case message_kind::unsubscribe:
      f += ",\"subscription\":";
      json::append_string(f, payload);
      break;
    case message_kind::publish:
      f += ",\"data\":";
      f += payload;
      break;
    case message_kind::disconnect: break;
  }
  if (!m.ext.empty() && kind != message_kind::handshake) {
    f += ",\"ext\":";
    f += m.ext;
  }
  f += '}';
}

std::string outgoing_batch::encode() const {
  std::string frame;
  std::size_t size = 2;
  for (const auto& m : messages) size += 96 + m.channel.size() + m.payload.size();
  frame.reserve(size);
  frame += '[';
  for (std::size_t i = 0; i < messages.size(); ++i) {
    if (i) frame += ',';
    const batch_message& m = messages[i];
    encode_message(frame, m, context);
  }
  frame += ']';
  return frame;
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
      if (!esc)
        s = std::string(content);
      else if (!json::unescape(content, s))
        return out;
      out.push_back(std::move(s));
    } else if (!json::skip_value(raw, pos, 1)) {
      return out;
    }
    json::skip_space(raw, pos);
    if (pos < raw.size() && raw[pos] == ',') ++pos;
  }
}

}  // namespace uvcometd::detail
