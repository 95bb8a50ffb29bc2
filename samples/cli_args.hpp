// uvcometd-cli — command-line parsing and output formatting, kept free of libuv and I/O so that
// they can be unit-tested on their own.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "uvcometd/options.hpp"

namespace uvcometd_cli {

// One -p CHANNEL=JSON.
struct publish_spec {
  std::string channel;
  std::string data;  // JSON text, as given
};

// Everything the command line asks for. Defaults are those of the documented interface.
struct cli_config {
  std::string url;
  std::vector<std::string> subscribe;  // -s, in order
  std::vector<publish_spec> publish;   // -p, in order
  // -t; the library's default preference unless given.
  std::vector<uvcometd::connection_type> connection_types = uvcometd::options{}.connection_types;
  std::chrono::milliseconds connection_timeout{10000};  // 0 = retry forever
  std::size_t max_pending_count = uvcometd::options{}.max_pending_count;
  std::optional<std::size_t> count;  // -n: exit 0 after this many messages
  std::vector<std::string> headers;  // -H, each "Name: value"
  std::string handshake_ext;         // --ext, a JSON object or empty
  bool verbose = false;              // -v: state changes on stderr
  bool debug = false;                // --debug: the library's log on stderr
  bool tls_verify = true;            // --insecure turns it off
  std::string ca_file;               // --cacert
};

enum class parse_action {
  run,          // config is complete
  help,         // -h: print usage() on stdout, exit 0
  version,      // --version
  usage_error,  // error says why; print it and usage() on stderr, exit 2
};

struct parse_result {
  parse_action action = parse_action::run;
  cli_config config;
  std::string error;  // set when action == usage_error

  bool ok() const noexcept { return action != parse_action::usage_error; }
};

// Parses argv with getopt_long (resets getopt's global state first; not thread-safe). GNU
// permutation: options and the URL may come in any order; "--" ends the options.
parse_result parse_args(int argc, char* argv[]);

// The help text, ending with a newline.
std::string usage();

// True when `text` is one complete JSON value (RFC 8259; strings are not checked for valid UTF-8).
bool is_json(std::string_view text) noexcept;

// `text` as a JSON string literal, quotes included. Bytes >= 0x80 are copied as they are.
std::string json_quote(std::string_view text);

// True when `channel` matches the Bayeux pattern: exact, "/a/*" (one segment) or "/a/**" (any
// depth, at least one segment).
bool channel_matches(std::string_view pattern, std::string_view channel) noexcept;

// One output line: {"channel":<channel quoted>,"data":<data raw, or null when empty>} + '\n'.
std::string format_message_line(std::string_view channel, std::string_view data);

}  // namespace uvcometd_cli
