// Between the session and the transports when extensions are configured: outgoing batches are
// turned into tagged bayeux_messages, run through the extensions and encoded once; incoming
// frames are walked in bounded batches made when their turn comes; transport events keep their
// place behind the frames an extension still holds. Without extensions nothing passes here.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "codec.hpp"
#include "extension_pipeline.hpp"
#include "reactor.hpp"
#include "session/session.hpp"

namespace uvcometd::detail {

class extension_bridge {
 public:
  // Sends an encoded frame with the headers the extensions left (the client's transport glue).
  using send_fn = std::function<void(std::string&& frame, const header_list& headers)>;
  using log_fn = std::function<void(log_level, std::string_view)>;

  extension_bridge(session& s, reactor& r, std::vector<std::shared_ptr<extension>> extensions,
                   std::shared_ptr<auth_extension> auth, header_list base_headers, log_fn log);

  // An outgoing batch of `request`; `send` runs once the extensions are done, unless the
  // session gave the request up meanwhile (then nothing is sent).
  void outgoing(connection_type t, std::uint64_t request, const outgoing_batch& batch,
                send_fn send);
  // A received frame.
  void incoming(connection_type t, std::uint64_t request, std::string&& body,
                const header_list& headers);
  // A transport event (up, down, request failed, bad frame): runs once the frames received
  // before it are through the extensions, never before them.
  void event(connection_type t, std::function<void()> f);
  // The session left transport `t`: its queued batches and events are forgotten.
  void abort(connection_type t);
  void cancel_all();
  // Tells every extension that a data message was delivered.
  void delivered(const message& msg);

 private:
  struct event_scope;
  void deliver(std::function<void()> f);
  void finish_incoming(connection_type t, std::uint64_t request, message_batch&& b,
                       const error& err);
  void finish_outgoing(std::uint64_t request, connection_type t,
                       const std::vector<std::uint64_t>& ids, message_batch&& b, const error& err,
                       const send_fn& send);

  static constexpr std::size_t max_batch_messages = 1024;
  static constexpr std::size_t max_batch_bytes = 256 * 1024;

  session& session_;
  reactor& reactor_;
  std::vector<std::shared_ptr<extension>> extensions_;
  std::shared_ptr<auth_extension> auth_;
  extension_pipeline pipeline_;
  header_list base_headers_;
  log_fn log_;
  string_arena scratch_;
  bool in_event_ = false;  // inside a transport's event: the session may be entered directly
};

}  // namespace uvcometd::detail
