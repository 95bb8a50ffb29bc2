// uvcometd-cli's argument parser (samples/cli_args.*), with argv built from the input: the input
// is split at NUL bytes into arguments (at most 64), after the program name.
//
// Checks: the parser returns one of its actions and says why on a usage error; a configuration
// it accepts is one the library accepts too (a channel it would publish to or subscribe to, the
// JSON it would publish, the handshake ext, headers on one line); parsing is repeatable (getopt's
// global state is reset); and the output lines the CLI would print for the accepted channels and
// data are one JSON value each on one line (issue 11, findings 12 and 22).
#include <string>
#include <string_view>
#include <vector>

#include "channel.hpp"
#include "cli_args.hpp"
#include "fuzz_target.hpp"
#include "json.hpp"
#include "uvcometd/checks.hpp"

namespace {

namespace cli = uvcometd_cli;
namespace d = uvcometd::detail;

cli::parse_result parse(const std::vector<std::string>& args) {
  std::vector<std::string> storage{"uvcometd-cli"};
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : storage) argv.push_back(s.data());
  argv.push_back(nullptr);
  return cli::parse_args(static_cast<int>(storage.size()), argv.data());
}

std::string show(const std::vector<std::string>& args) {
  std::string s = "argv:";
  for (const auto& a : args) {
    s += " '";
    for (const char c : a) {
      const auto u = static_cast<unsigned char>(c);
      if (u < 0x20 || u >= 0x7f) {
        static const char hex[] = "0123456789abcdef";
        s += "\\x";
        s += hex[u >> 4];
        s += hex[u & 15];
      } else {
        s += c;
      }
    }
    s += "'";
  }
  return s;
}

void check_line(std::string_view channel, std::string_view data, const std::string& at) {
  const std::string line = cli::format_message_line(channel, data);
  FUZZ_CHECK(!line.empty() && line.back() == '\n', at);
  const std::string_view body(line.data(), line.size() - 1);
  FUZZ_CHECK(body.find('\n') == std::string_view::npos,
             "an output line holds a line break: " + line + at);
  FUZZ_CHECK(d::json::is_object(body), "an output line is not one JSON object: " + line + at);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::string> args;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  std::size_t from = 0;
  while (from <= in.size() && args.size() < 64) {
    const auto nul = in.find('\0', from);
    args.emplace_back(
        in.substr(from, nul == std::string_view::npos ? std::string_view::npos : nul - from));
    if (nul == std::string_view::npos) break;
    from = nul + 1;
  }
  if (in.empty()) args.clear();
  const std::string at = "\n" + show(args);

  const cli::parse_result r = parse(args);
  const cli::parse_result again = parse(args);
  FUZZ_CHECK(r.action == again.action && r.error == again.error && r.config.url == again.config.url,
             "two parses of the same argv differ" + at);

  switch (r.action) {
    case cli::parse_action::usage_error:
      FUZZ_CHECK(!r.ok() && !r.error.empty(), "a usage error must say why" + at);
      return 0;
    case cli::parse_action::help:
    case cli::parse_action::version: FUZZ_CHECK(r.ok() && r.error.empty(), at); return 0;
    case cli::parse_action::run: break;
  }
  FUZZ_CHECK(r.ok() && r.error.empty(), at);
  const cli::cli_config& c = r.config;
  FUZZ_CHECK(!c.url.empty(), "running without a URL" + at);
  FUZZ_CHECK(!c.connection_types.empty(), at);
  for (std::size_t i = 0; i < c.connection_types.size(); ++i) {
    for (std::size_t j = i + 1; j < c.connection_types.size(); ++j) {
      FUZZ_CHECK(c.connection_types[i] != c.connection_types[j], "a transport twice" + at);
    }
  }
  if (c.count) FUZZ_CHECK(*c.count > 0 && !c.subscribe.empty(), at);
  for (const auto& s : c.subscribe) {
    FUZZ_CHECK(!s.empty() && s.front() == '/', at);
  }
  std::size_t from_stdin = 0;
  for (const auto& p : c.publish) {
    FUZZ_CHECK(!p.channel.empty() && p.channel.front() == '/', at);
    if (p.from_stdin) {  // -p CHANNEL=-: its lines are checked as they are read, at run time
      FUZZ_CHECK(p.data.empty() && ++from_stdin == 1, "-p CHANNEL=- given twice" + at);
      continue;
    }
    // The library's publish() takes the same JSON (no deeper than its nesting limit).
    FUZZ_CHECK(
        d::json::is_valid(p.data),
        "the CLI accepts publish data that the library refuses: " + p.data.substr(0, 200) + at);
    check_line(p.channel, p.data, at);
  }
  if (!c.handshake_ext.empty()) {
    FUZZ_CHECK(d::json::is_object(c.handshake_ext),
               "the CLI accepts an --ext that the library refuses: " +
                   c.handshake_ext.substr(0, 200) + at);
  }
  for (const auto& h : c.headers) {
    FUZZ_CHECK(h.find_first_of("\r\n") == std::string::npos, "a header of several lines" + at);
    const auto colon = h.find(':');
    FUZZ_CHECK(colon != std::string::npos && colon > 0, "a header without a name" + at);
  }
  // Accepted headers are accepted by the client too (one rule: options_problem).
  uvcometd::options o;
  o.url = c.url;
  o.headers = c.headers;
  const std::string why = uvcometd::options_problem(o);
  FUZZ_CHECK(why.empty() || why.rfind("ca_file", 0) == 0,
             "the CLI accepts options the client refuses: " + why + at);
  return 0;
}
