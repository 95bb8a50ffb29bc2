// The websocket protocol (RFC 6455), client side, without I/O: the upgrade request and its
// response, and the frames. The websocket transport runs it over a raw libwebsockets connection
// (lws does the TCP socket and the event loop; see websocket.cpp for why not its ws role), through
// TLS on wss (tls_client.hpp).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "uvcometd/error.hpp"

namespace uvcometd::detail::ws {

// SHA-1 of `data` (for Sec-WebSocket-Accept only; not for anything that needs a secure hash).
std::array<unsigned char, 20> sha1(std::string_view data);
// Standard base64 with padding.
std::string base64(const unsigned char* data, std::size_t len);
// The Sec-WebSocket-Accept a server must answer to Sec-WebSocket-Key `key`.
std::string accept_for(std::string_view key);

// The HTTP/1.1 upgrade request. `key` is the base64 of 16 random bytes; `headers` are
// {"Name", "value"} pairs already checked for CR/LF; an empty `cookie` sends no Cookie header.
std::string upgrade_request(std::string_view host, std::string_view path, std::string_view key,
                            const std::vector<std::pair<std::string, std::string>>& headers,
                            std::string_view cookie);

// The request that asks an HTTP proxy for a tunnel to `authority` ("host:port"), with a
// Proxy-Authorization header when `proxy_auth` is not empty. Both are free of CR/LF.
std::string connect_request(std::string_view authority, std::string_view proxy_auth);

// The server's answer to the upgrade, read as it arrives. It also reads a proxy's answer to
// CONNECT: any status but 101 ends in `refused` with status() once the whole head is read.
class upgrade_reader {
 public:
  enum class state {
    incomplete,  // more bytes are needed
    accepted,    // 101 with the right Upgrade, Connection and Sec-WebSocket-Accept
    refused,     // another HTTP status: status() and reason() say which
    invalid      // not a valid answer: what() says why
  };
  // At most this many bytes of status line, headers and the empty line that ends them.
  static constexpr std::size_t max_head = 16 * 1024;

  explicit upgrade_reader(std::string key) : accept_(accept_for(key)) {}

  // Reads from `data`; returns how many bytes belong to the HTTP answer. Once accepted, the rest
  // are websocket frames. After a final state, reads nothing more.
  std::size_t feed(const char* data, std::size_t len);

  state status_state() const noexcept { return state_; }
  int status() const noexcept { return status_; }
  const std::string& reason() const noexcept { return reason_; }
  const std::string& what() const noexcept { return what_; }
  // Once accepted: the values of the answer's Set-Cookie headers, in order.
  const std::vector<std::string>& set_cookies() const noexcept { return set_cookies_; }

 private:
  void parse_head();
  state fail(std::string why);

  std::string accept_;
  std::string head_;
  state state_ = state::incomplete;
  int status_ = 0;
  std::string reason_;
  std::string what_;
  std::vector<std::string> set_cookies_;
};

enum class opcode : std::uint8_t {
  continuation = 0x0,
  text = 0x1,
  binary = 0x2,
  close = 0x8,
  ping = 0x9,
  pong = 0xA
};

// Incoming frames (server to client: never masked), reassembled into messages.
// Not checked here: UTF-8 in text messages and close reasons (the JSON decoder takes bytes as
// they are, as over long-polling), close codes, and whether a length used its shortest form.
class frame_reader {
 public:
  enum class event {
    none,     // every byte given was consumed; more are needed
    message,  // take_message() is a complete text or binary message
    ping,     // control_payload() must be sent back in a pong
    pong,
    close,  // the server closes: close_code() (0 if none), control_payload() past the code
    error   // a protocol violation: what(), error_code(), close_status(); the reader is dead
  };

  // `max_message`: the largest message accepted, in bytes (0: no limit). Checked against the
  // length a frame announces, before anything is buffered for it.
  explicit frame_reader(std::size_t max_message) : max_(max_message) {}

  // Reads from `data` up to the next event; `consumed` says how many bytes were used. Call again
  // with the rest until it returns `none`. After `close` or `error`, reads nothing and returns
  // that event again.
  event next(const char* data, std::size_t len, std::size_t& consumed);

  // The message; buffered() is 0 afterwards.
  std::string take_message() {
    std::string m;
    m.swap(msg_);
    return m;
  }
  const std::string& control_payload() const noexcept { return ctl_; }
  unsigned close_code() const noexcept { return close_code_; }
  const std::string& what() const noexcept { return what_; }
  errc error_code() const noexcept { return err_; }
  // The close status the client should send for the error (1002 protocol error, 1009 too big).
  unsigned close_status() const noexcept { return close_status_; }
  // Bytes buffered for an unfinished message.
  std::size_t buffered() const noexcept { return msg_.size(); }

 private:
  event fail(errc code, unsigned status, std::string why);
  event header_done();
  event frame_done();

  std::size_t max_;
  unsigned char hdr_[14] = {};
  std::size_t hdr_len_ = 0;
  std::size_t hdr_need_ = 2;
  bool in_payload_ = false;
  std::uint64_t remaining_ = 0;
  opcode op_ = opcode::continuation;  // of the frame being read
  bool fin_ = false;
  bool in_message_ = false;  // a fragmented message has started
  bool dead_ = false;
  bool closed_ = false;  // dead_ because of a close frame, not an error
  std::string msg_;
  std::string ctl_;
  unsigned close_code_ = 0;
  std::string what_;
  errc err_ = errc::transport_error;
  unsigned close_status_ = 0;
};

// Outgoing frames (client to server: always masked, RFC 6455 5.3).
// The header of a frame with `payload_len` bytes of payload, mask key included: 6 to 14 bytes.
std::size_t header_size(std::size_t payload_len) noexcept;
// Writes a final frame's header into the header_size(len) bytes just before `payload` and masks
// the payload in place with `key`. Returns the start of the frame (payload - header_size(len)).
char* frame_in_place(char* payload, std::size_t len, opcode op,
                     const std::array<unsigned char, 4>& key) noexcept;
// XORs `data` with the 4-byte `key`, the first byte with key[0].
void mask(char* data, std::size_t len, const std::array<unsigned char, 4>& key) noexcept;

}  // namespace uvcometd::detail::ws
