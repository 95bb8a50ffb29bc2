// Channel rules (lib/channel.*) against a reference model written here from the Bayeux rules,
// segment by segment: validation, the subscribe/publish checks, meta/service/wildcard, and
// wildcard matching. The CLI's own matcher (samples/cli_args.*) is not linked here; it is checked
// by fuzz_cli_args.
//
// Input: a pattern and a channel, separated by the first NUL byte (no NUL: the same text twice).
#include <string>
#include <string_view>
#include <vector>

#include "channel.hpp"
#include "fuzz_target.hpp"
#include "uvcometd/error.hpp"

namespace {

namespace ch = uvcometd::detail;

struct model {
  bool valid = false;
  std::vector<std::string_view> segments;  // valid names only
};

// "/" then one or more non-empty segments of bytes above 0x20 other than DEL; "*" and "**"
// only as the whole last segment.
model parse(std::string_view name) {
  model m;
  if (name.empty() || name[0] != '/') return m;
  std::string_view rest = name.substr(1);
  for (;;) {
    const auto slash = rest.find('/');
    m.segments.push_back(rest.substr(0, slash));
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  for (std::size_t i = 0; i < m.segments.size(); ++i) {
    const auto seg = m.segments[i];
    if (seg.empty()) return model{};
    const bool last = i + 1 == m.segments.size();
    const bool star = seg == "*" || seg == "**";
    for (const char c : seg) {
      const auto u = static_cast<unsigned char>(c);
      if (u <= 0x20 || u == 0x7f) return model{};
      if (c == '*' && !(last && star)) return model{};
    }
  }
  m.valid = true;
  return m;
}

bool wildcard(const model& m) { return m.segments.back() == "*" || m.segments.back() == "**"; }
bool meta(const model& m) { return m.segments.size() > 1 && m.segments[0] == "meta"; }

// Does the valid `pattern` match the valid, concrete `channel`?
bool matches(const model& pattern, const model& channel) {
  const auto& p = pattern.segments;
  const auto& c = channel.segments;
  if (!wildcard(pattern)) return p == c;
  const std::size_t fixed = p.size() - 1;  // segments before the wildcard
  if (c.size() <= fixed) return false;
  for (std::size_t i = 0; i < fixed; ++i) {
    if (p[i] != c[i]) return false;
  }
  return p.back() == "**" || c.size() == p.size();
}

std::string show(std::string_view pattern, std::string_view channel) {
  std::string s = "pattern '";
  s.append(pattern).append("' channel '").append(channel).append("'");
  return s;
}

void check_name(std::string_view name) {
  const model m = parse(name);
  const std::string at = show(name, "");
  FUZZ_CHECK(ch::is_valid_channel(name) == m.valid, at);
  const bool sub_ok = !ch::check_subscribe_channel(name);
  const bool pub_ok = !ch::check_publish_channel(name);
  if (!m.valid) {
    FUZZ_CHECK(!sub_ok && !pub_ok, at);
    return;
  }
  FUZZ_CHECK(ch::is_wildcard(name) == wildcard(m), at);
  FUZZ_CHECK(ch::is_meta(name) == meta(m), at);
  FUZZ_CHECK(ch::is_service(name) == (m.segments.size() > 1 && m.segments[0] == "service"), at);
  // "/meta" alone is no meta channel name, but it is reserved all the same.
  const bool reserved = meta(m) || (m.segments.size() == 1 && m.segments[0] == "meta");
  FUZZ_CHECK(sub_ok == !reserved, at);
  FUZZ_CHECK(pub_ok == (!reserved && !wildcard(m)), at);
  if (!sub_ok) FUZZ_CHECK(ch::check_subscribe_channel(name) == uvcometd::errc::invalid_channel, at);
  if (!pub_ok) FUZZ_CHECK(ch::check_publish_channel(name) == uvcometd::errc::invalid_channel, at);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const auto nul = in.find('\0');
  const std::string_view pattern = in.substr(0, nul);
  const std::string_view channel = nul == std::string_view::npos ? in : in.substr(nul + 1);
  check_name(pattern);
  check_name(channel);
  const model p = parse(pattern);
  const model c = parse(channel);
  // Matching is defined for a valid pattern against a valid concrete channel (what the server
  // delivers); anything else must merely not crash.
  const bool got = ch::channel_matches(pattern, channel);
  if (p.valid && c.valid && !wildcard(c)) {
    FUZZ_CHECK(got == matches(p, c),
               show(pattern, channel) + (got ? " matched" : " did not match"));
  }
  // A concrete name matches itself and nothing else as an exact pattern.
  if (c.valid && !wildcard(c))
    FUZZ_CHECK(ch::channel_matches(channel, channel), show(channel, channel));
  return 0;
}
