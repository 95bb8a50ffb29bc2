// The bytes on a websocket connection: the proxy's CONNECT tunnel, TLS (wss), the upgrade and
// its answer, then frames in both directions (ws_protocol.hpp does the parsing and framing).
#include <cstring>
#include <ctime>
#include <exception>
#include <stdexcept>

#include "transport/cookie_jar.hpp"
#include "transport/http_text.hpp"
#include "transport/websocket_core.hpp"

namespace uvcometd::detail {

// ---- lws callbacks ------------------------------------------------------------------------------

int websocket_core::on_lws_callback(lws* wsi, std::uint64_t id, lws_callback_reasons reason,
                                    void* in, std::size_t len) {
  lws* outer = cb_wsi_;
  cb_wsi_ = wsi;
  int rc;
  try {
    rc = on_lws(wsi, id, reason, in, len);
  } catch (const std::exception& e) {
    fail_quietly("websocket: internal error: ", e.what());
    rc = -1;
  } catch (...) {
    fail_quietly("websocket: internal error");
    rc = -1;
  }
  cb_wsi_ = outer;
  return rc;
}

// Last resort inside a C callback: end the connection, and let nothing escape (not even
// bad_alloc while building the report).
void websocket_core::fail_quietly(const char* what, const char* detail) noexcept {
  try {
    connection_lost(make_error(errc::transport_error, std::string(what) + (detail ? detail : "")));
  } catch (...) {
    try {
      drop_connection();
    } catch (...) {
    }
  }
}

int websocket_core::on_lws(lws* wsi, std::uint64_t id, lws_callback_reasons reason, void* in,
                           std::size_t len) {
  const bool current = id != 0 && id == conn_.id && phase_ == phase::open;
  if (!current) return stray_answer(reason);
  if (conn_.ended) return 0;        // lws is done with the wsi; held bytes are still being parsed
  if (!conn_.wsi) conn_.wsi = wsi;  // callbacks from inside lws_client_connect_via_info

  switch (reason) {
    case LWS_CALLBACK_RAW_CONNECTED: return on_connected(wsi);

    case LWS_CALLBACK_RAW_WRITEABLE: return on_writeable(wsi);

    case LWS_CALLBACK_RAW_RX: return on_receive(wsi, id, static_cast<const char*>(in), len);

    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
      conn_.wsi = nullptr;  // lws frees it after this callback
      std::string msg = "websocket: connection to " + describe();
      if (proxy_) msg += " through the proxy " + proxy_->host_port();
      msg += " failed";
      if (in) {
        const auto* text = static_cast<const char*>(in);
        msg += ": " + std::string(text, ::strnlen(text, len > 0 ? len : 256));
      }
      connection_lost(make_error(errc::transport_error, std::move(msg)));
      return 0;
    }

    case LWS_CALLBACK_RAW_CLOSE: {
      conn_.wsi = nullptr;
      if (end_after_held()) return 0;
      std::string msg;
      if (conn_.up) {
        msg = closed_by_server();
      } else {
        msg = "websocket: connection to " + describe() + " closed ";
        switch (conn_.at) {
          case connection::stage::tunnel: msg += "by the proxy before it answered CONNECT"; break;
          case connection::stage::tls: msg += "during the TLS handshake"; break;
          default: msg += "before the upgrade completed"; break;
        }
      }
      connection_lost(make_error(errc::transport_error, std::move(msg)));
      return 0;
    }

    case LWS_CALLBACK_WSI_DESTROY:
      // Destroyed without RAW_CLOSE / CONNECTION_ERROR (lws's own timeouts, ...).
      conn_.wsi = nullptr;
      connection_lost(
          make_error(errc::transport_error, "websocket: connection to " + describe() + " lost"));
      return 0;

    default: return 0;
  }
}

// TCP is up (to the proxy, or to the server).
int websocket_core::on_connected(lws* wsi) {
  // Without a connect timeout of ours, lws's own bounds the wait for the answers (lws clears it
  // for RAW connections).
  if (config_.connect_timeout.count() <= 0) {
    lws_set_timeout(wsi, PENDING_TIMEOUT_AWAITING_SERVER_RESPONSE, lws_timeout_s_);
  }
  if (!proxy_) return start_stream(wsi);
  conn_.at = connection::stage::tunnel;
  conn_.request = ws::connect_request(endpoint_->host_port(), proxy_auth_);
  conn_.request_sent = false;
  conn_.tunnel.emplace(std::string());
  lws_callback_on_writable(wsi);
  return 0;
}

// The byte stream to the server is there (directly or through the proxy's tunnel): start TLS on
// it for wss, else ask for the upgrade.
int websocket_core::start_stream(lws* wsi) {
  if (!endpoint_->tls) {
    prepare_upgrade(wsi);
    return 0;
  }
  conn_.at = connection::stage::tls;
  conn_.tls = std::make_unique<tls::stream>(*shared_->tls(), endpoint_->address, endpoint_->numeric,
                                            config_.tls_verify);
  // The ClientHello, or an unusable trust store.
  if (conn_.tls->handshake() == tls::stream::status::failed) return tls_failed(wsi);
  if (flush_tls(wsi) < 0) {
    connection_lost(make_error(errc::transport_error,
                               "websocket: starting TLS with " + describe() + " failed"));
    return -1;
  }
  return 0;
}

// Builds the upgrade request; on_writeable sends it.
void websocket_core::prepare_upgrade(lws* wsi) {
  conn_.at = connection::stage::upgrade;
  unsigned char nonce[16];
  for (std::size_t i = 0; i < sizeof nonce; i += 4) {
    const auto m = next_mask();
    std::memcpy(nonce + i, m.data(), 4);
  }
  const std::string key = ws::base64(nonce, sizeof nonce);
  const std::string cookie =
      env_.cookies ? env_.cookies->header_for(config_.url, std::time(nullptr)) : std::string();
  conn_.request =
      ws::upgrade_request(endpoint_->host, endpoint_->path, key, config_.headers, cookie);
  conn_.request_sent = false;
  conn_.upgrade.emplace(key);
  lws_callback_on_writable(wsi);
}

// 4 bytes of the loop-independent system CSPRNG per frame (RFC 6455 wants unpredictable mask
// keys), fetched 256 bytes at a time.
std::array<unsigned char, 4> websocket_core::next_mask() {
  if (random_used_ + 4 > random_.size()) {
    if (uv_random(nullptr, nullptr, random_.data(), random_.size(), 0, nullptr) != 0 &&
        (!shared_ ||
         lws_get_random(shared_->handle(), random_.data(), random_.size()) != random_.size())) {
      throw std::runtime_error("no random bytes for the websocket mask");
    }
    random_used_ = 0;
  }
  std::array<unsigned char, 4> m;
  std::memcpy(m.data(), random_.data() + random_used_, 4);
  random_used_ += 4;
  return m;
}

// A control frame's bytes: headroom, then the payload (at most 125 bytes).
std::string websocket_core::control_frame(std::string_view payload) const {
  std::string f(frame_headroom, '\0');
  f.append(payload.substr(0, 125));
  return f;
}

// Bytes for the server: through TLS on wss, else as they are. lws keeps what the socket does not
// take and sends it, in order, before anything written later and before the next writeable
// callback. -1 when the connection cannot take them.
int websocket_core::write_bytes(lws* wsi, const char* data, std::size_t len) {
  if (conn_.tls) {
    if (!conn_.tls->write(data, len)) {
      log(log_level::error, "websocket: TLS write failed: " + conn_.tls->what());
      return -1;
    }
    return flush_tls(wsi);
  }
  auto* p = reinterpret_cast<unsigned char*>(const_cast<char*>(data));
  return lws_write(wsi, p, len, LWS_WRITE_RAW) < static_cast<int>(len) ? -1 : 0;
}

// Hands what TLS has for the server (records, handshake messages, alerts) to lws.
int websocket_core::flush_tls(lws* wsi) {
  const std::string_view out = conn_.tls->output();
  if (out.empty()) return 0;
  // lws copies what the socket does not take at once (and sends it before anything else).
  auto* p = reinterpret_cast<unsigned char*>(const_cast<char*>(out.data()));
  const bool sent = lws_write(wsi, p, out.size(), LWS_WRITE_RAW) >= static_cast<int>(out.size());
  conn_.tls->output_sent();
  return sent ? 0 : -1;
}

// TLS failed (conn_.tls->what() says why): report the connection lost and close it. A refused
// certificate is errc::certificate_error: retrying cannot help.
int websocket_core::tls_failed(lws* wsi) {
  flush_tls(wsi);  // the alert that tells the server why, if any; best effort
  const std::string peer = endpoint_->host_port();
  error err = conn_.tls->certificate_refused()
                  ? make_error(errc::certificate_error, "websocket: TLS certificate of " + peer +
                                                            " refused: " + conn_.tls->what())
                  : make_error(errc::transport_error,
                               "websocket: TLS with " + peer + " failed: " + conn_.tls->what());
  connection_lost(std::move(err));
  return -1;
}

// Writes `bytes` (frame_headroom, then the payload) as one frame, masked in place.
int websocket_core::write_frame(lws* wsi, std::string& bytes, ws::opcode op) {
  const std::size_t n = bytes.size() - frame_headroom;
  const char* start = ws::frame_in_place(&bytes[frame_headroom], n, op, next_mask());
  return write_bytes(wsi, start, n + ws::header_size(n));
}

int websocket_core::on_writeable(lws* wsi) {
  if (!conn_.up) {
    // Until the upgrade: the CONNECT request (in the clear, to the proxy), then the upgrade.
    if (conn_.request_sent || conn_.request.empty()) return 0;  // nothing to send yet
    conn_.request_sent = true;
    const bool connect = conn_.at == connection::stage::tunnel;
    const int rc = connect ? lws_write(wsi, reinterpret_cast<unsigned char*>(&conn_.request[0]),
                                       conn_.request.size(),
                                       LWS_WRITE_RAW) < static_cast<int>(conn_.request.size())
                                 ? -1
                                 : 0
                           : write_bytes(wsi, conn_.request.data(), conn_.request.size());
    if (rc < 0) {
      connection_lost(make_error(
          errc::transport_error,
          connect ? "websocket: sending CONNECT to the proxy " + proxy_->host_port() + " failed"
                  : "websocket: sending the upgrade request to " + describe() + " failed"));
      return -1;
    }
    std::string().swap(conn_.request);
    return 0;
  }
  if (conn_.write_stalled) {
    // lws calls this only once what it held has left: read again.
    conn_.write_stalled = false;
    update_reading();
  }
  int rc = 0;
  if (conn_.close) {
    // The server closed: echo its close frame, then end the connection.
    std::string f = control_frame(*conn_.close);
    write_frame(wsi, f, ws::opcode::close);
    connection_lost(make_error(errc::transport_error, closed_by_server()));
    return -1;
  }
  if (conn_.pong) {
    std::string f = control_frame(*conn_.pong);
    conn_.pong.reset();
    rc = write_frame(wsi, f, ws::opcode::pong);
  } else if (conn_.ping_due) {
    conn_.ping_due = false;
    std::string f = control_frame({});
    rc = write_frame(wsi, f, ws::opcode::ping);
  } else if (!out_.empty()) {
    std::string frame = std::move(out_.front().bytes);
    out_.pop_front();
    if (out_.empty()) last_mergeable_ = false;
    rc = write_frame(wsi, frame, ws::opcode::text);
  }
  if (rc < 0) {
    connection_lost(make_error(errc::transport_error, "websocket: sending a frame failed"));
    return -1;
  }
  if (lws_partial_buffered(wsi)) {
    // The socket did not take the whole frame; lws sends the rest as it drains, and calls this
    // again once it is gone. lws 4.1's RAW role does not read meanwhile, so stop asking it to.
    conn_.write_stalled = true;
    update_reading();
    lws_callback_on_writable(wsi);
    return 0;
  }
  if (conn_.pong || conn_.ping_due || !out_.empty()) lws_callback_on_writable(wsi);
  return 0;
}

int websocket_core::on_receive(lws* wsi, std::uint64_t id, const char* in, std::size_t len) {
  conn_.last_rx_ms = uv_now(env_.loop);
  if (conn_.at == connection::stage::tunnel) {
    if (on_tunnel_answer(wsi, in, len) < 0) return -1;
    if (conn_.at == connection::stage::tunnel || len == 0) return 0;
  }
  if (conn_.tls) return on_tls_receive(wsi, id, in, len);
  return on_stream(wsi, id, in, len);
}

// The proxy's answer to CONNECT; on success the tunnel carries the rest (`in`/`len` are left at
// the first byte past the answer).
int websocket_core::on_tunnel_answer(lws* wsi, const char*& in, std::size_t& len) {
  const std::size_t used = conn_.tunnel->feed(in, len);
  in += used;
  len -= used;
  const std::string proxy = "the proxy " + proxy_->host_port();
  switch (conn_.tunnel->status_state()) {
    case ws::upgrade_reader::state::incomplete: return 0;
    case ws::upgrade_reader::state::invalid:
      connection_lost(make_error(
          errc::transport_error,
          "websocket: invalid answer from " + proxy + " to CONNECT: " + conn_.tunnel->what()));
      return -1;
    case ws::upgrade_reader::state::accepted:  // a 101, no answer to CONNECT
    case ws::upgrade_reader::state::refused: break;
  }
  if (conn_.tunnel->status() / 100 != 2) {
    std::string msg = "websocket: " + proxy + " refused the tunnel to " + endpoint_->host_port() +
                      ": HTTP " + std::to_string(conn_.tunnel->status());
    if (!conn_.tunnel->reason().empty()) msg += " " + conn_.tunnel->reason();
    connection_lost(make_error(errc::transport_error, std::move(msg)));
    return -1;
  }
  conn_.tunnel.reset();
  return start_stream(wsi);
}

// wss: ciphertext from the server. Decrypts everything it completes (while paused too: the
// plaintext is then held like ws:// bytes), sending what TLS answers.
int websocket_core::on_tls_receive(lws* wsi, std::uint64_t id, const char* in, std::size_t len) {
  // TLS reads the ciphertext where lws put it; lws reuses that buffer, so what TLS has not read
  // when this returns is copied. A connection that went (closed or replaced from a callback
  // below) took its stream with it.
  conn_.tls->lend(in, len);
  struct keep_unread {
    websocket_core& self;
    std::uint64_t id;
    ~keep_unread() {
      if (self.conn_.id == id && self.conn_.tls) self.conn_.tls->keep_unread();
    }
  } keep{*this, id};
  if (conn_.at == connection::stage::tls) {
    const auto st = conn_.tls->handshake();
    if (st == tls::stream::status::failed) return tls_failed(wsi);
    if (st == tls::stream::status::closed) {
      connection_lost(make_error(errc::transport_error, "websocket: " + describe() +
                                                            " ended the TLS session during the "
                                                            "handshake"));
      return -1;
    }
    if (flush_tls(wsi) < 0) {
      connection_lost(make_error(errc::transport_error,
                                 "websocket: TLS handshake with " + describe() + " failed"));
      return -1;
    }
    if (st == tls::stream::status::again) return 0;
    log(log_level::debug, "websocket: TLS established with " + describe());
    prepare_upgrade(wsi);
  }
  // The context's buffer; returned below whatever happens (the context outlives this callback
  // even when the transport closes from inside it: its teardown starts from a timer).
  ws_context* ctx = shared_.get();
  std::vector<char> buf = ctx->borrow_plaintext_buffer();
  struct give_back {
    ws_context* ctx;
    std::vector<char>& buf;
    ~give_back() { ctx->return_plaintext_buffer(std::move(buf)); }
  } guard{ctx, buf};
  if (buf.size() < plaintext_chunk) buf.resize(plaintext_chunk);
  for (;;) {
    std::size_t n = 0;
    const auto st = conn_.tls->read(buf.data(), buf.size(), n);
    if (st == tls::stream::status::again) break;
    if (st == tls::stream::status::closed) {
      // close_notify: the server ended the session; what it sent before was delivered, or is
      // held and delivered first.
      if (end_after_held()) {
        conn_.wsi = nullptr;  // lws closes it on the -1
        return -1;
      }
      connection_lost(make_error(
          errc::transport_error,
          conn_.up ? closed_by_server()
                   : "websocket: " + describe() + " ended the TLS session before the upgrade"));
      return -1;
    }
    if (st == tls::stream::status::failed) return tls_failed(wsi);
    if (on_stream(wsi, id, buf.data(), n) < 0 || conn_.id != id) return -1;
  }
  // TLS may answer what it read (a key update).
  return flush_tls(wsi) < 0 ? -1 : 0;
}

// The byte stream from the server (decrypted on wss): the upgrade answer, then frames.
int websocket_core::on_stream(lws* wsi, std::uint64_t id, const char* in, std::size_t len) {
  if (conn_.close) return 0;  // nothing after the server's close frame counts
  if (!conn_.up) {
    if (on_upgrade_answer(wsi, id, in, len) < 0) return -1;
    if (!conn_.up || len == 0) return 0;
  }
  if (paused_ || !conn_.held_rx.empty()) {
    conn_.held_rx.append(in, len);  // parsed once the receive resumes, in order
    return 0;
  }
  return read_frames(wsi, id, in, len);
}

// The server's answer to the upgrade; on success `in`/`len` are left at the first frame byte.
int websocket_core::on_upgrade_answer(lws* wsi, std::uint64_t id, const char*& in,
                                      std::size_t& len) {
  if (!conn_.upgrade) return -1;  // bytes before the request was written: not a server we speak to
  const std::size_t used = conn_.upgrade->feed(in, len);
  in += used;
  len -= used;
  switch (conn_.upgrade->status_state()) {
    case ws::upgrade_reader::state::incomplete: return 0;
    case ws::upgrade_reader::state::refused:
      connection_lost(upgrade_refused(conn_.upgrade->status(), conn_.upgrade->reason()));
      return -1;
    case ws::upgrade_reader::state::invalid:
      connection_lost(make_error(
          errc::transport_error,
          "websocket: invalid upgrade response from " + describe() + ": " + conn_.upgrade->what()));
      return -1;
    case ws::upgrade_reader::state::accepted: break;
  }
  keep_cookies(*conn_.upgrade);
  conn_.upgrade.reset();
  conn_.reader.emplace(config_.max_message_size);
  return on_established(wsi, id);
}

// The 101's cookies go into the client's jar, for the next upgrade and for long-polling to the
// same server.
void websocket_core::keep_cookies(const ws::upgrade_reader& answer) {
  if (!env_.cookies) return;
  for (const auto& c : answer.set_cookies())
    env_.cookies->store(config_.url, c, std::time(nullptr));
}

// The server answered the upgrade with another status than 101.
error websocket_core::upgrade_refused(int status, std::string_view reason) const {
  std::string msg = "websocket upgrade refused: HTTP " + std::to_string(status);
  if (!reason.empty()) msg.append(" ").append(reason);
  msg += " from " + describe();
  // The status says what it was: the session tells authentication failures (401/403, the auth
  // extension's business) and client errors that retrying will not change from the rest.
  error e = make_error(errc::http_error, std::move(msg));
  e.http_status = status;
  return e;
}

// The websocket is open.
int websocket_core::on_established(lws* wsi, std::uint64_t id) {
  conn_.up = true;
  uv_timer_stop(&connect_timer_);
  conn_.last_rx_ms = uv_now(env_.loop);
  if (config_.ping_interval.count() > 0) {
    const auto iv = static_cast<std::uint64_t>(config_.ping_interval.count());
    uv_timer_start(&ping_timer_, &websocket_core::on_ping_timer, iv, iv);
  }
  if (config_.connect_timeout.count() <= 0) lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
  update_reading();
  log(log_level::debug, "websocket: connected to " + describe());
  emit({event::kind::up, {}, {}, false, {}});
  if (conn_.id != id) return -1;  // aborted or closed from on_up
  if (!out_.empty()) lws_callback_on_writable(wsi);
  return 0;
}

int websocket_core::read_frames(lws* wsi, std::uint64_t id, const char* in, std::size_t len) {
  for (;;) {
    std::size_t used = 0;
    const auto ev = conn_.reader->next(in, len, used);
    in += used;
    len -= used;
    switch (ev) {
      case ws::frame_reader::event::none: return 0;
      case ws::frame_reader::event::message: {
        const bool now = emit({event::kind::frame, conn_.reader->take_message(), {}, false, {}});
        if (conn_.id != id) return -1;  // aborted, closed or failed from on_frame
        if (len > 0 && (paused_ || !now)) {
          // Paused by on_frame, or the frame waits behind deferred events (whose receiver may
          // yet pause): the rest waits, unparsed, in order.
          conn_.held_rx.insert(0, in, len);
          if (!paused_) post_held();
          update_reading();
          return 0;
        }
        break;
      }
      case ws::frame_reader::event::ping:
        conn_.pong = conn_.reader->control_payload();
        if (wsi) lws_callback_on_writable(wsi);  // none once the connection ended
        break;
      case ws::frame_reader::event::pong: break;
      case ws::frame_reader::event::close: {
        std::string echo;
        if (const unsigned code = conn_.reader->close_code(); code != 0) {
          conn_.peer_close = " (close code " + std::to_string(code);
          if (!conn_.reader->control_payload().empty())
            conn_.peer_close += ": " + conn_.reader->control_payload();
          conn_.peer_close += ")";
          echo.push_back(static_cast<char>(code >> 8));
          echo.push_back(static_cast<char>(code & 0xFF));
        }
        conn_.close = std::move(echo);
        if (wsi) lws_callback_on_writable(wsi);
        return 0;
      }
      case ws::frame_reader::event::error: {
        // Tell the server why (1002 protocol error, 1009 too big), unless lws still holds part
        // of a frame: a close frame must not land inside it.
        if (wsi && !lws_partial_buffered(wsi)) {
          const unsigned status = conn_.reader->close_status();
          const char code[2] = {static_cast<char>(status >> 8), static_cast<char>(status & 0xFF)};
          std::string f = control_frame(std::string_view(code, 2));
          write_frame(wsi, f, ws::opcode::close);
        }
        // Inside its callback the wsi closes by returning -1; from parse_held it is killed.
        connection_lost(make_error(conn_.reader->error_code(),
                                   conn_.reader->what() + " (from " + describe() + ")"));
        return -1;
      }
    }
  }
}

// The server ended the connection (lws is done with its wsi) while read bytes are held: they are
// delivered first, and the end is reported once they are parsed (after a resume, when paused).
// False when nothing is held: the end is reported at once.
bool websocket_core::end_after_held() {
  if (!conn_.up || conn_.held_rx.empty() || conn_.close) return false;
  conn_.ended = true;
  if (!paused_) post_held();
  return true;
}

// What an established connection's end says when the server ended it (with its close frame's
// code and reason, when it sent one).
std::string websocket_core::closed_by_server() const {
  return "websocket: connection closed by " + describe() + conn_.peer_close;
}

// The receive resumed: parse what was read while it was paused (posted by post_held).
void websocket_core::parse_held() {
  conn_.held_queued = false;
  if (!conn_.up || (!conn_.wsi && !conn_.ended) || !conn_.reader || conn_.held_rx.empty()) return;
  if (paused_) return;  // paused again before this ran: stays held until the next resume
  std::string held;
  held.swap(conn_.held_rx);
  const std::uint64_t id = conn_.id;
  // May hold the rest again; a failure there kills the connection.
  read_frames(conn_.wsi, id, held.data(), held.size());
  if (conn_.id != id) return;
  if (conn_.ended && (conn_.held_rx.empty() || conn_.close)) {
    // Everything read before the server ended the connection is delivered: now the end.
    connection_lost(make_error(errc::transport_error, closed_by_server()));
    return;
  }
  update_reading();
}

}  // namespace uvcometd::detail
