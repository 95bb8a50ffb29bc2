#include "uvcometd/error.hpp"

#include <charconv>

namespace uvcometd {
namespace {

class category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "uvcometd"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::invalid_state: return "operation not allowed in the current state";
      case errc::invalid_channel: return "invalid channel name";
      case errc::invalid_argument: return "invalid argument";
      case errc::server_error: return "refused by the server";
      case errc::transport_error: return "transport error";
      case errc::http_error: return "HTTP error status";
      case errc::bad_response: return "malformed response from the server";
      case errc::no_reply: return "no reply from the server";
      case errc::timeout: return "request timed out";
      case errc::cancelled: return "cancelled by close";
      case errc::connection_timeout: return "connection timeout";
      case errc::no_common_transport: return "no common connection type";
      case errc::message_too_large: return "message too large";
      case errc::session_ended: return "session ended by the server";
      case errc::not_connected: return "not connected";
      case errc::queue_full: return "outgoing queue full";
      case errc::dropped_by_extension: return "dropped by an extension";
      case errc::extension_error: return "extension error";
      case errc::authentication_failed: return "authentication failed";
      case errc::certificate_error: return "TLS certificate refused";
    }
    return "unknown uvcometd error";
  }
};

}  // namespace

const std::error_category& category() noexcept {
  static const category_impl instance;
  return instance;
}

std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), category()}; }

std::string error::to_string() const {
  if (!code) return "ok";
  std::string out = code.message();
  // Some descriptions already start with the code's own words ("transport error: ..."): say them
  // once.
  if (server_code == 0 && args.empty() && message.compare(0, out.size(), out) == 0 &&
      (message.size() == out.size() || message[out.size()] == ':')) {
    return message;
  }
  if (server_code != 0) out += " " + std::to_string(server_code);
  if (!args.empty()) {
    out += " [";
    for (std::size_t i = 0; i < args.size(); ++i) {
      if (i) out += ',';
      out += args[i];
    }
    out += ']';
  }
  if (!message.empty()) out += ": " + message;
  return out;
}

error parse_server_error(std::string_view text) {
  error e{make_error_code(errc::server_error), std::string(text)};
  // Grammar (Bayeux 1.0): code ":" [args] ":" message, code = 3 digits, args comma-separated.
  const auto first = text.find(':');
  if (first != 3) return e;
  const auto second = text.find(':', first + 1);
  if (second == std::string_view::npos) return e;
  int code = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + 3, code);
  if (ec != std::errc() || end != text.data() + 3 || code < 100) return e;
  e.server_code = code;
  const auto args = text.substr(first + 1, second - first - 1);
  std::size_t pos = 0;
  while (!args.empty() && pos <= args.size()) {
    const auto comma = args.find(',', pos);
    const auto stop = comma == std::string_view::npos ? args.size() : comma;
    e.args.emplace_back(args.substr(pos, stop - pos));
    pos = stop + 1;
  }
  e.message = std::string(text.substr(second + 1));
  return e;
}

}  // namespace uvcometd
