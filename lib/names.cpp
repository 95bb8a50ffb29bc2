// The names of the public enums (connection types, states): here, so that the sans-I/O session
// links without the client.
#include "uvcometd/options.hpp"

namespace uvcometd {

std::string_view to_string(connection_type t) noexcept {
  return t == connection_type::websocket ? "websocket" : "long-polling";
}

std::optional<connection_type> parse_connection_type(std::string_view name) noexcept {
  if (name == "websocket") return connection_type::websocket;
  if (name == "long-polling") return connection_type::long_polling;
  return std::nullopt;
}

std::string_view to_string(state s) noexcept {
  switch (s) {
    case state::disconnected: return "disconnected";
    case state::connecting: return "connecting";
    case state::connected: return "connected";
    case state::reconnecting: return "reconnecting";
    case state::disconnecting: return "disconnecting";
    case state::closed: return "closed";
    case state::failed: return "failed";
  }
  return "unknown";
}

}  // namespace uvcometd
