// uvcometd-cli — command-line parsing and output formatting.
#include "cli_args.hpp"

#include <getopt.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <limits>

namespace uvcometd_cli {
namespace {

enum long_only : int {
  opt_connection_timeout = 256,
  opt_max_pending,
  opt_ext,
  opt_insecure,
  opt_cacert,
  opt_version,
  opt_debug,
};

const option long_options[] = {
    {"subscribe", required_argument, nullptr, 's'},
    {"publish", required_argument, nullptr, 'p'},
    {"transport", required_argument, nullptr, 't'},
    {"count", required_argument, nullptr, 'n'},
    {"connection-timeout", required_argument, nullptr, opt_connection_timeout},
    {"max-pending", required_argument, nullptr, opt_max_pending},
    {"header", required_argument, nullptr, 'H'},
    {"ext", required_argument, nullptr, opt_ext},
    {"verbose", no_argument, nullptr, 'v'},
    {"debug", no_argument, nullptr, opt_debug},
    {"insecure", no_argument, nullptr, opt_insecure},
    {"cacert", required_argument, nullptr, opt_cacert},
    {"help", no_argument, nullptr, 'h'},
    {"version", no_argument, nullptr, opt_version},
    {nullptr, 0, nullptr, 0},
};

// '-': non-options come back in order as option 1 (also under POSIXLY_CORRECT);
// ':': getopt prints nothing and reports a missing argument as ':'.
const char short_options[] = "-:s:p:t:n:H:vh";

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

bool is_json_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Decimal digits only (no sign, no space), within `max`.
std::optional<std::uint64_t> parse_unsigned(std::string_view s, std::uint64_t max) noexcept {
  if (s.empty()) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) {
    if (!is_digit(c)) return std::nullopt;
    const auto d = static_cast<std::uint64_t>(c - '0');
    if (v > (max - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

// "SECONDS[.FRACTION]"; a positive value below 1 ms becomes 1 ms so that it never means "forever".
std::optional<std::chrono::milliseconds> parse_seconds(std::string_view s) noexcept {
  const auto dot = s.find('.');
  const std::string_view whole = s.substr(0, dot);
  const std::string_view frac = dot == std::string_view::npos ? std::string_view{} : s.substr(dot + 1);
  if (whole.empty() && frac.empty()) return std::nullopt;
  if (dot != std::string_view::npos && frac.empty()) return std::nullopt;  // "5."
  std::uint64_t secs = 0;
  if (!whole.empty()) {
    auto w = parse_unsigned(whole, 1000000000);  // ~31 years is plenty
    if (!w) return std::nullopt;
    secs = *w;
  }
  std::uint64_t ms = 0;
  bool nonzero_rest = false;
  for (std::size_t i = 0; i < frac.size(); ++i) {
    if (!is_digit(frac[i])) return std::nullopt;
    if (i < 3) {
      ms = ms * 10 + static_cast<std::uint64_t>(frac[i] - '0');
    } else if (frac[i] != '0') {
      nonzero_rest = true;
    }
  }
  for (std::size_t i = frac.size(); i < 3; ++i) ms *= 10;
  std::uint64_t total = secs * 1000 + ms;
  if (total == 0 && nonzero_rest) total = 1;
  return std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(total));
}

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::optional<uvcometd::connection_type> transport_by_name(std::string_view name) noexcept {
  if (name == "websocket") return uvcometd::connection_type::websocket;
  if (name == "long-polling") return uvcometd::connection_type::long_polling;
  return std::nullopt;
}

// RFC 9110 token character.
bool is_tchar(char c) noexcept {
  if (is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Why `h` is not a "Name: value" header, or empty if it is one.
std::string header_problem(std::string_view h) {
  if (h.find_first_of("\r\n") != std::string_view::npos) return "must be one line";
  const auto colon = h.find(':');
  if (colon == std::string_view::npos) return "expected 'Name: value'";
  const std::string_view name = h.substr(0, colon);
  if (name.empty()) return "empty header name";
  if (!std::all_of(name.begin(), name.end(), is_tchar)) return "invalid header name";
  return {};
}

struct parser {
  parse_result result;
  bool count_given = false;

  void fail(std::string message) {
    if (result.action != parse_action::usage_error) {
      result.action = parse_action::usage_error;
      result.error = std::move(message);
    }
  }

  void option_with(int opt, const std::string& arg) {
    cli_config& c = result.config;
    switch (opt) {
      case 's':
        if (arg.empty() || arg.front() != '/') {
          return fail("--subscribe: channel must start with '/': '" + arg + "'");
        }
        c.subscribe.push_back(arg);
        return;
      case 'p': {
        const auto eq = arg.find('=');
        if (eq == std::string::npos) return fail("--publish: expected CHANNEL=JSON: '" + arg + "'");
        publish_spec p{arg.substr(0, eq), arg.substr(eq + 1)};
        if (p.channel.empty() || p.channel.front() != '/') {
          return fail("--publish: channel must start with '/': '" + p.channel + "'");
        }
        if (!is_json(p.data)) return fail("--publish: invalid JSON for " + p.channel + ": " + p.data);
        c.publish.push_back(std::move(p));
        return;
      }
      case 't': {
        std::vector<uvcometd::connection_type> types;
        std::string_view rest = arg;
        for (;;) {
          const auto comma = rest.find(',');
          const std::string_view name = trim(rest.substr(0, comma));
          const auto t = transport_by_name(name);
          if (!t) {
            return fail("--transport: unknown transport '" + std::string(name) +
                        "' (expected websocket, long-polling)");
          }
          if (std::find(types.begin(), types.end(), *t) != types.end()) {
            return fail("--transport: '" + std::string(name) + "' given twice");
          }
          types.push_back(*t);
          if (comma == std::string_view::npos) break;
          rest.remove_prefix(comma + 1);
        }
        c.connection_types = std::move(types);
        return;
      }
      case 'n': {
        const auto n = parse_unsigned(arg, std::numeric_limits<std::size_t>::max());
        if (!n || *n == 0) return fail("--count: expected a positive integer: '" + arg + "'");
        c.count = static_cast<std::size_t>(*n);
        return;
      }
      case opt_connection_timeout: {
        const auto t = parse_seconds(arg);
        if (!t) return fail("--connection-timeout: expected seconds (0 = forever): '" + arg + "'");
        c.connection_timeout = *t;
        return;
      }
      case opt_max_pending: {
        const auto n = parse_unsigned(arg, std::numeric_limits<std::size_t>::max());
        if (!n) return fail("--max-pending: expected a non-negative integer: '" + arg + "'");
        c.max_pending_count = static_cast<std::size_t>(*n);
        return;
      }
      case 'H': {
        const std::string why = header_problem(arg);
        if (!why.empty()) return fail("--header: " + why + ": '" + arg + "'");
        c.headers.push_back(arg);
        return;
      }
      case opt_ext: {
        const std::string_view text = arg;
        const auto first = text.find_first_not_of(" \t\r\n");
        if (first == std::string_view::npos || text[first] != '{' || !is_json(text)) {
          return fail("--ext: expected a JSON object: '" + arg + "'");
        }
        c.handshake_ext = arg;
        return;
      }
      case opt_cacert:
        if (arg.empty()) return fail("--cacert: empty file name");
        c.ca_file = arg;
        return;
      case 1:  // positional
        if (!c.url.empty()) return fail("unexpected argument '" + arg + "' (one URL only)");
        if (arg.empty()) return fail("empty URL");
        c.url = arg;
        return;
      default:
        return fail("internal error: unhandled option");
    }
  }
};

}  // namespace

parse_result parse_args(int argc, char* argv[]) {
  parser p;
  bool help = false;
  bool version = false;

  optind = 0;  // glibc: full re-initialisation, so that parse_args can be called again
  opterr = 0;
  for (;;) {
    const int opt = getopt_long(argc, argv, short_options, long_options, nullptr);
    if (opt == -1) break;
    // The element getopt just looked at (for messages about long options).
    const std::string element = optind - 1 >= 1 && optind - 1 < argc ? argv[optind - 1] : "";
    switch (opt) {
      case 'v': p.result.config.verbose = true; break;
      case opt_debug: p.result.config.debug = true; break;
      case opt_insecure: p.result.config.tls_verify = false; break;
      case 'h': help = true; break;
      case opt_version: version = true; break;
      case ':':
        if (element.rfind("--", 0) == 0) {
          p.fail("option '" + element + "' requires an argument");
        } else {
          p.fail(std::string("option '-") + static_cast<char>(optopt) + "' requires an argument");
        }
        break;
      case '?':
        if (element.rfind("--", 0) == 0) {
          p.fail("unrecognized or ambiguous option '" + element + "'");
        } else {
          p.fail(std::string("invalid option '-") + static_cast<char>(optopt) + "'");
        }
        break;
      default:
        p.option_with(opt, optarg != nullptr ? std::string(optarg) : std::string());
        break;
    }
  }
  // Arguments after "--" are not returned as option 1.
  for (int i = optind; i < argc; ++i) p.option_with(1, argv[i]);

  if (!p.result.ok()) return std::move(p.result);
  if (help) {
    p.result.action = parse_action::help;
    return std::move(p.result);
  }
  if (version) {
    p.result.action = parse_action::version;
    return std::move(p.result);
  }
  if (p.result.config.url.empty()) {
    p.fail("missing URL");
  } else if (p.result.config.count && p.result.config.subscribe.empty()) {
    p.fail("--count needs at least one --subscribe");
  }
  return std::move(p.result);
}

std::string usage() {
  return "Usage: uvcometd-cli [options] URL\n"
         "\n"
         "Connects to the Bayeux (CometD) server at URL (http:// or https://), subscribes and\n"
         "publishes. Each message received is printed on stdout as one JSON line:\n"
         "  {\"channel\":\"/x\",\"data\":...}\n"
         "\n"
         "Options:\n"
         "  -s, --subscribe CHANNEL       subscribe to CHANNEL (repeatable; /a/* and /a/** allowed)\n"
         "  -p, --publish CHANNEL=JSON    publish JSON to CHANNEL once connected and subscribed\n"
         "                                (repeatable); without -s, exit once every publish is\n"
         "                                acknowledged\n"
         "  -t, --transport LIST          comma-separated preference: websocket,long-polling;\n"
         "                                a single name forces that transport\n"
         "  -n, --count N                 exit 0 after N messages received (needs -s)\n"
         "      --connection-timeout SECONDS\n"
         "                                give up when no session for SECONDS (default 10;\n"
         "                                0 = retry forever)\n"
         "      --max-pending N           received messages buffered before fetching pauses\n"
         "  -H, --header 'Name: value'    extra HTTP header (repeatable)\n"
         "      --ext JSON                handshake ext object\n"
         "      --insecure                do not verify the server's TLS certificate\n"
         "      --cacert FILE             CA certificates (PEM) to verify the server with\n"
         "  -v, --verbose                 state changes on stderr, one line each\n"
         "      --debug                   the library's log on stderr\n"
         "  -h, --help                    this help\n"
         "      --version                 print the version\n"
         "\n"
         "Without -s and -p, exits 0 once connected. With -s and without -n, runs until SIGINT or\n"
         "SIGTERM (then exits 0).\n"
         "\n"
         "Exit status: 0 done, 1 refused by the server or failed, 2 usage, 3 connection timeout.\n";
}

bool is_json(std::string_view text) noexcept {
  const std::size_t n = text.size();
  std::size_t i = 0;
  std::vector<char> stack;  // '{' or '['; iterative so that deep nesting cannot overflow
  enum class expect { value, value_or_close, key, key_or_close, after_value } e = expect::value;

  auto skip_space = [&] {
    while (i < n && is_json_space(text[i])) ++i;
  };
  auto string = [&]() -> bool {  // at '"'
    ++i;
    while (i < n) {
      const auto c = static_cast<unsigned char>(text[i]);
      if (c == '"') {
        ++i;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        if (++i >= n) return false;
        const char x = text[i];
        if (x == 'u') {
          for (int k = 0; k < 4; ++k) {
            if (++i >= n || !std::isxdigit(static_cast<unsigned char>(text[i]))) return false;
          }
        } else if (std::string_view("\"\\/bfnrt").find(x) == std::string_view::npos) {
          return false;
        }
      }
      ++i;
    }
    return false;
  };
  auto digits = [&]() -> bool {
    const std::size_t start = i;
    while (i < n && is_digit(text[i])) ++i;
    return i > start;
  };
  auto number = [&]() -> bool {
    if (text[i] == '-') ++i;
    if (i < n && text[i] == '0') {
      ++i;
    } else if (!digits()) {
      return false;
    }
    if (i < n && text[i] == '.') {
      ++i;
      if (!digits()) return false;
    }
    if (i < n && (text[i] == 'e' || text[i] == 'E')) {
      ++i;
      if (i < n && (text[i] == '+' || text[i] == '-')) ++i;
      if (!digits()) return false;
    }
    return true;
  };
  auto literal = [&](std::string_view word) -> bool {
    if (text.substr(i, word.size()) != word) return false;
    i += word.size();
    return true;
  };

  for (;;) {
    skip_space();
    if (e == expect::after_value && stack.empty()) return i == n;
    if (i >= n) return false;
    const char c = text[i];
    switch (e) {
      case expect::key_or_close:
        if (c == '}') {
          stack.pop_back();
          ++i;
          e = expect::after_value;
          break;
        }
        [[fallthrough]];
      case expect::key:
        if (c != '"' || !string()) return false;
        skip_space();
        if (i >= n || text[i] != ':') return false;
        ++i;
        e = expect::value;
        break;
      case expect::value_or_close:
        if (c == ']') {
          stack.pop_back();
          ++i;
          e = expect::after_value;
          break;
        }
        [[fallthrough]];
      case expect::value:
        if (c == '{' || c == '[') {
          stack.push_back(c);
          ++i;
          e = c == '{' ? expect::key_or_close : expect::value_or_close;
          break;
        }
        if (c == '"') {
          if (!string()) return false;
        } else if (c == '-' || is_digit(c)) {
          if (!number()) return false;
        } else if (!literal("true") && !literal("false") && !literal("null")) {
          return false;
        }
        e = expect::after_value;
        break;
      case expect::after_value:
        if (c == ',') {
          e = stack.back() == '{' ? expect::key : expect::value;
        } else if ((c == '}' && stack.back() == '{') || (c == ']' && stack.back() == '[')) {
          stack.pop_back();
        } else {
          return false;
        }
        ++i;
        break;
    }
  }
}

std::string json_quote(std::string_view text) {
  static const char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size() + 2);
  out.push_back('"');
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out.push_back(hex[c >> 4]);
          out.push_back(hex[c & 0xf]);
        } else {
          out.push_back(ch);
        }
    }
  }
  out.push_back('"');
  return out;
}

bool channel_matches(std::string_view pattern, std::string_view channel) noexcept {
  const auto slash = pattern.rfind('/');
  if (slash == std::string_view::npos) return false;
  const std::string_view last = pattern.substr(slash + 1);
  if (last != "*" && last != "**") return pattern == channel;
  const std::string_view prefix = pattern.substr(0, slash + 1);  // "/a/"
  if (channel.size() <= prefix.size() || channel.substr(0, prefix.size()) != prefix) return false;
  const std::string_view rest = channel.substr(prefix.size());
  return last == "**" || rest.find('/') == std::string_view::npos;
}

std::string format_message_line(std::string_view channel, std::string_view data) {
  std::string line;
  line.reserve(channel.size() + data.size() + 28);
  line += "{\"channel\":";
  line += json_quote(channel);
  line += ",\"data\":";
  if (data.empty()) {
    line += "null";
  } else {
    line += data;
  }
  line += "}\n";
  return line;
}

}  // namespace uvcometd_cli
