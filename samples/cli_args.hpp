// uvcometd-cli — command-line parsing and output formatting, kept free of libuv and I/O so that
// they can be unit-tested on their own.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "uvcometd/options.hpp"

namespace uvcometd_cli {

// One -p CHANNEL=JSON, or -p CHANNEL=- (one publish per line of stdin).
struct publish_spec {
  std::string channel;
  std::string data;         // JSON text, as given; empty when from_stdin
  bool from_stdin = false;  // -p CHANNEL=-
};

// One --call TARGET=JSON: a remote call to /service/TARGET.
struct call_spec {
  std::string target;
  std::string data;  // JSON text
};

// --format: what a received message prints on stdout.
enum class output_format {
  json,  // {"channel":"/x","data":...}
  data,  // the data alone
};

// Everything the command line asks for. Defaults are those of the documented interface.
struct cli_config {
  std::string url;                     // the first URL
  std::vector<std::string> fallbacks;  // the other URLs: the failover list is url + fallbacks
  std::vector<std::string> subscribe;  // -s, in order
  std::vector<publish_spec> publish;   // -p, in order (at most one from stdin)
  // -t; the library's default preference unless given.
  std::vector<uvcometd::connection_type> connection_types = uvcometd::options{}.connection_types;
  std::chrono::milliseconds connection_timeout{10000};  // 0 = retry forever (also --forever)
  std::size_t max_pending_count = uvcometd::options{}.max_pending_count;
  std::optional<std::size_t> count;       // -n: exit 0 after this many messages
  std::vector<std::string> headers;       // -H, each "Name: value"
  std::vector<std::string> header_files;  // --header-file, read by the program (not the parser)
  std::string handshake_ext;              // --ext, a JSON object or empty
  int verbose = 0;         // -v: 1 state changes and the library's log >= info; 2 debug
  bool debug = false;      // --debug: the library's whole log on stderr
  bool tls_verify = true;  // --insecure turns it off
  std::string ca_file;     // --cacert
  output_format format = output_format::json;    // --format
  bool timestamps = false;                       // --timestamps
  bool ack = false;                              // --ack: the acknowledged-messages extension
  std::optional<std::int64_t> replay_from;       // --replay-from ID (-2, -1 or an event's id)
  std::vector<call_spec> calls;                  // --call, in order
  std::chrono::milliseconds call_timeout{5000};  // --call-timeout (the library's default)
  bool meta = false;                             // --meta: meta replies on stderr (with -v)
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

// The long option names the parser knows ("subscribe", ...), for documentation checks.
std::vector<std::string> long_option_names();

// The help text, ending with a newline.
std::string usage();

// Why the client would refuse `url` (uvcometd::options_problem), or empty when it would not.
std::string url_problem(std::string_view url);

// Appends to `out` the headers of `text`, one "Name: value" per line ("\n" or "\r\n"); blank
// lines and lines starting with '#' are skipped. On a malformed line returns
// "<source>:<line>: <why>" (the line itself is not repeated: it may hold a secret) and appends
// nothing; otherwise returns empty.
std::string parse_header_text(std::string_view text, std::string_view source,
                              std::vector<std::string>& out);

// The deepest nesting the library accepts (lib/json.hpp max_depth): a value nested deeper, like
// the 258th '[' of "[[[...]]]", makes publish() and the handshake ext invalid.
inline constexpr int max_json_depth = 256;

// Why `text` is not JSON the library would take ("invalid JSON", "nested deeper than 256
// levels"), or empty when it is.
std::string json_problem(std::string_view text);

// Appends `text`, one JSON value, to `out` in compact form: whitespace outside strings removed,
// invalid UTF-8 inside strings replaced by U+FFFD (as UTF-8), and a \u escape of a lone surrogate
// replaced by \ufffd; everything else, escapes and numbers included, is copied unchanged. Returns
// false, with `out` unchanged, when `text` is not JSON by uvcometd::is_valid_json's rules.
bool append_compact_json(std::string_view text, std::string& out);

// Appends `text` to `out` as a JSON string literal, quotes included. Invalid UTF-8 becomes U+FFFD.
void append_json_string(std::string& out, std::string_view text);

// append_json_string into a new string.
std::string json_quote(std::string_view text);

// `text` made safe for a terminal, for messages on stderr: control characters, DEL and the C1
// controls become visible escapes (\n, \t, \r, \e, \xHH, \u0080..\u009f), as do the bidirectional
// formatting characters and the line/paragraph separators (\u202e, ...); a backslash is doubled;
// invalid UTF-8 becomes U+FFFD. The whole text is kept, NULs included (as \x00).
std::string terminal_safe(std::string_view text);

// `t` as ISO 8601 UTC with milliseconds: "2024-05-06T07:08:09.123Z".
std::string iso8601_utc(std::chrono::system_clock::time_point t);

// One output line with a newline: in json format {"channel":<channel>,"data":<data>} (plus
// ,"ts":"<timestamp>" before the closing brace when `timestamp` is not empty), in data format
// the data alone (after "<timestamp> " when given). The data is compacted (append_compact_json),
// null when empty. Returns false, with `out` unchanged, when `data` is not JSON.
bool append_message_line(std::string& out, output_format format, std::string_view channel,
                         std::string_view data, std::string_view timestamp = {});

// append_message_line in json format without a timestamp, as a string ("" when not JSON).
std::string format_message_line(std::string_view channel, std::string_view data);

}  // namespace uvcometd_cli
