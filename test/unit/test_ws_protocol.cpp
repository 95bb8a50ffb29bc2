// The websocket protocol without I/O (lib/transport/ws_protocol.*): the upgrade handshake and
// RFC 6455 framing, including every malformed input a server could send.
#include <catch2/catch.hpp>

#include <string>

#include "transport/ws_protocol.hpp"

namespace ws = uvcometd::detail::ws;

TEST_CASE("Sec-WebSocket-Accept of RFC 6455's example key", "[ws_protocol]") {
  CHECK(ws::accept_for("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}
