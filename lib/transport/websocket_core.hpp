// The websocket transport's state (see websocket.cpp for the design): one object per transport,
// apart from the transport object so that it can finish closing its handles after the owner
// dropped it. Its member functions live in websocket.cpp (entry points, connection, events,
// teardown) and ws_wire.cpp (the bytes on the connection: proxy tunnel, TLS, upgrade, frames).
#pragma once

#include <libwebsockets.h>
#include <uv.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "transport/loop_owned.hpp"
#include "transport/lws_context.hpp"
#include "transport/tls_client.hpp"
#include "transport/transport.hpp"
#include "transport/ws_endpoint.hpp"
#include "transport/ws_protocol.hpp"

namespace uvcometd::detail {

// lws reads at most this much per receive (websocket_config::rx_chunk_size, with this floor).
constexpr std::size_t min_read_size = 1024;
// Room before a queued frame's payload: the largest client frame header (lws_write of RAW bytes
// needs no LWS_PRE).
constexpr std::size_t frame_headroom = 14;
// Decrypted bytes are taken from OpenSSL this much at a time (a TLS record holds at most 16 KiB).
constexpr std::size_t plaintext_chunk = 16 * 1024;

inline error make_error(errc code, std::string message) {
  return error{make_error_code(code), std::move(message)};
}

// The state of one websocket transport. loop_owned: it lives until its timers and name lookups
// are closed (and, for the last user of an lws context, until that context let go of the loop),
// whatever happened to the transport object.
class websocket_core final : public loop_owned<websocket_core> {
 public:
  websocket_core(const transport_env& env, websocket_config config, transport_events& events);

  // After make_shared: the timers.
  void init();
  void send(std::uint64_t request, std::string body, bool alone);
  void abort();
  void pause_receive(bool paused);
  void set_headers(const header_list& headers) { config_.headers = headers; }
  void close(std::function<void()> done);

  // loop_owned: every handle and request is closed.
  void all_closed();
  // ws_context: a callback of the wsi of connection `id`, which it routed here.
  int on_lws_callback(lws* wsi, std::uint64_t id, lws_callback_reasons reason, void* in,
                      std::size_t len);
  // ws_context: the current connection's wsi (left alone when orphans are closed).
  const lws* current_wsi() const noexcept { return conn_.wsi; }

 private:
  enum class phase { open, closing, closed };

  struct event {
    enum class kind { up, frame, down } what;
    std::string body;
    error err;
    bool was_up = false;
    std::vector<std::uint64_t> unsent;  // down: requests whose frames never left
  };

  // What belongs to one connection attempt; `conn_ = {}` forgets it (nothing large stays).
  struct connection {
    // Where a connection that is not up yet is (see websocket.cpp); frames flow once `up`.
    enum class stage { connecting, tunnel, tls, upgrade };
    std::uint64_t id = 0;  // the attempt's route in the context; 0 when none
    lws* wsi = nullptr;    // once known
    stage at = stage::connecting;
    bool up = false;
    bool ping_due = false;
    bool request_sent = false;
    bool held_queued = false;    // a task to parse held_rx is posted
    bool reading = true;         // lws reads the connection (rx flow control)
    bool write_stalled = false;  // lws holds part of a frame the socket has not taken yet
    // The server ended the connection while read bytes were held: the end is reported once
    // they are parsed (wsi is gone meanwhile).
    bool ended = false;
    std::uint64_t last_rx_ms = 0;
    std::string peer_close;                    // the server's close frame, for the on_down message
    std::string request;                       // the CONNECT or upgrade request until written
    std::optional<ws::upgrade_reader> tunnel;  // the proxy's answer to CONNECT
    std::unique_ptr<tls::stream> tls;          // wss: the TLS session under the websocket
    std::optional<ws::upgrade_reader> upgrade;
    std::optional<ws::frame_reader> reader;
    std::string held_rx;               // read while paused, not parsed yet
    std::optional<std::string> pong;   // a pong to send (the ping's payload)
    std::optional<std::string> close;  // the close frame to echo; the connection ends after it
  };

  // A host name being resolved for connection `conn` (lws 4.1 as Debian builds it would call a
  // blocking getaddrinfo() on the loop thread, so names are resolved here, off the loop).
  struct dns_query {
    uv_getaddrinfo_t req;
    websocket_core* self;
    std::uint64_t conn;
  };

  // Marks our own entry points: events raised meanwhile are posted to the reactor.
  class api_scope {
   public:
    explicit api_scope(websocket_core& c) : c_(c) { ++c_.api_depth_; }
    ~api_scope() { --c_.api_depth_; }
    api_scope(const api_scope&) = delete;
    api_scope& operator=(const api_scope&) = delete;

   private:
    websocket_core& c_;
  };

  struct out_frame {
    std::string bytes;                    // frame_headroom bytes, then the payload
    std::vector<std::uint64_t> requests;  // the sends merged into it
  };

  void log(log_level level, std::string_view msg) const;
  bool acquire_context();
  // Asks for the reading the state wants (see websocket.cpp); apply_reading() tells lws.
  void update_reading();
  bool wants_reading() const noexcept;
  bool end_after_held();
  std::string closed_by_server() const;
  void apply_reading();
  void open_connection();
  void connect_to(const char* address);
  void cancel_dns();
  void connection_lost(error err);
  void fail_quietly(const char* what, const char* detail = nullptr) noexcept;
  void drop_connection();
  void kill(lws* wsi);
  bool emit(event ev);  // true when delivered now, false when posted (or no receiver)
  void post(event ev);
  void deliver(event& ev);
  void post_held();
  std::string describe() const { return config_.url; }

  int on_lws(lws* wsi, std::uint64_t id, lws_callback_reasons reason, void* in, std::size_t len);
  int on_established(lws* wsi, std::uint64_t id);
  error upgrade_refused(int status, std::string_view reason) const;
  int on_connected(lws* wsi);
  int start_stream(lws* wsi);
  void prepare_upgrade(lws* wsi);
  int on_writeable(lws* wsi);
  int write_bytes(lws* wsi, const char* data, std::size_t len);
  int flush_tls(lws* wsi);
  int tls_failed(lws* wsi);
  int write_frame(lws* wsi, std::string& bytes, ws::opcode op);
  int on_receive(lws* wsi, std::uint64_t id, const char* in, std::size_t len);
  int on_tunnel_answer(lws* wsi, const char*& in, std::size_t& len);
  int on_tls_receive(lws* wsi, std::uint64_t id, const char* in, std::size_t len);
  int on_stream(lws* wsi, std::uint64_t id, const char* in, std::size_t len);
  int on_upgrade_answer(lws* wsi, std::uint64_t id, const char*& in, std::size_t& len);
  void keep_cookies(const ws::upgrade_reader& answer);
  int read_frames(lws* wsi, std::uint64_t id, const char* in, std::size_t len);
  void parse_held();
  std::array<unsigned char, 4> next_mask();
  std::string control_frame(std::string_view payload) const;

  static void on_connect_timer(uv_timer_t* t);
  static void on_ping_timer(uv_timer_t* t);
  static void on_flow_prepare(uv_prepare_t* p);
  static void on_handle_closed(uv_handle_t* h);
  static void on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res);

  transport_env env_;
  websocket_config config_;
  transport_events* events_;  // null once closed
  std::optional<ws_endpoint> endpoint_;
  std::string endpoint_error_;

  std::shared_ptr<ws_context> shared_;  // the loop's context, taken on the first send()
  int lws_timeout_s_ = 20;
  // http_proxy (read with the context): connections go there first, then CONNECT to the server.
  std::optional<ws_endpoint> proxy_;
  std::string proxy_auth_;   // Proxy-Authorization value from the proxy URL's credentials
  std::string proxy_error_;  // http_proxy set but unusable: every connection fails with this

  connection conn_;
  lws* cb_wsi_ = nullptr;  // wsi whose lws callback is on the stack (it closes by returning -1)
  bool paused_ = false;
  std::array<unsigned char, 256> random_{};  // mask keys, refilled from uv_random
  std::size_t random_used_ = sizeof random_;
  std::deque<out_frame> out_;    // frames not written yet
  bool last_mergeable_ = false;  // the newest frame in out_ may take more messages

  int api_depth_ = 0;
  int posted_ = 0;                      // events posted and not run yet: later ones queue behind
  std::uint64_t event_generation_ = 0;  // moves on abort/close: posted events are dropped
  std::vector<dns_query*> dns_;         // in flight (cancelled ones too, until their callback)

  phase phase_ = phase::open;
  std::vector<std::function<void()>> done_;
  uv_timer_t connect_timer_{};
  uv_timer_t ping_timer_{};
  // Applies a change of reading to lws just before the loop waits for I/O: a pause that the
  // dispatch undoes within the iteration (the usual case) never reaches lws.
  uv_prepare_t flow_prepare_{};
};

}  // namespace uvcometd::detail
