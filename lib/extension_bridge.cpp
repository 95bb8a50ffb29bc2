#include "extension_bridge.hpp"

#include <algorithm>

namespace uvcometd::detail {

struct extension_bridge::event_scope {
  explicit event_scope(extension_bridge& b) : b_(b), prev_(b.in_event_) { b.in_event_ = true; }
  ~event_scope() { b_.in_event_ = prev_; }
  extension_bridge& b_;
  bool prev_;
};

extension_bridge::extension_bridge(session& s, reactor& r,
                                   std::vector<std::shared_ptr<extension>> extensions,
                                   std::shared_ptr<auth_extension> auth, header_list base_headers,
                                   log_fn log)
    : session_(s),
      reactor_(r),
      extensions_(extensions),
      auth_(auth),
      pipeline_(std::move(extensions), std::move(auth), log),
      base_headers_(std::move(base_headers)),
      log_(std::move(log)) {}

void extension_bridge::outgoing(connection_type t, std::uint64_t request,
                                const outgoing_batch& batch, send_fn send) {
  // Extensions see structured messages; each is tagged with its id, which survives whatever
  // they edit, so drops are told to the session by id. The text is encoded once, after them.
  message_batch b;
  b.transport = t;
  b.headers = base_headers_;
  b.messages.reserve(batch.messages.size());
  std::vector<std::uint64_t> ids;
  ids.reserve(batch.messages.size());
  std::string text;
  for (const auto& m : batch.messages) {
    text.clear();
    encode_message(text, m, batch.context);
    bayeux_message bm = bayeux_message::parse(text);  // our own encoding: valid
    message_access::set_tag(bm, m.id);
    b.messages.push_back(std::move(bm));
    ids.push_back(m.id);
  }
  pipeline_.push(direction::outgoing, std::move(b), static_cast<std::uint64_t>(t),
                 [this, t, request, ids = std::move(ids), send = std::move(send)](
                     message_batch&& done, const error& err) {
                   finish_outgoing(request, t, ids, std::move(done), err, send);
                 });
}

void extension_bridge::finish_outgoing(std::uint64_t request, connection_type t,
                                       const std::vector<std::uint64_t>& ids, message_batch&& b,
                                       const error& err, const send_fn& send) {
  // The session may have given the request up while an extension held it (connection lost,
  // aborted): sending it now would duplicate what the session sends again, or reopen a
  // transport it left.
  if (!session_.in_flight(request)) return;
  if (err) {
    reactor_.post([this, t, request, err] { session_.on_request_failed(t, request, err); });
    return;
  }
  const error dropped(make_error_code(errc::dropped_by_extension),
                      "an outgoing extension dropped the message");
  if (b.messages.empty()) {
    reactor_.post([this, t, request, dropped] { session_.on_request_failed(t, request, dropped); });
    return;
  }
  std::vector<std::uint64_t> kept;
  kept.reserve(b.messages.size());
  for (const auto& m : b.messages) kept.push_back(message_access::tag(m));
  for (const auto id : ids) {
    if (std::find(kept.begin(), kept.end(), id) != kept.end()) continue;
    reactor_.post([this, request, id, dropped] { session_.on_dropped(request, id, dropped); });
  }
  send(join_frame(b.messages), b.headers);
}

void extension_bridge::incoming(connection_type t, std::uint64_t request, std::string&& body,
                                const header_list& headers) {
  // The extensions see the frame's messages in consecutive batches of bounded size, each made
  // when its turn comes (by the same reader, with the same rules, as the session's) and handed
  // on to the session as its own frame: a huge frame of tiny messages never exists as one
  // vector of bayeux_message objects (their fields cost several times the text). The frame's
  // text is let go once its last batch is made.
  struct walk {
    std::shared_ptr<const std::string> text;
    frame_reader::cursor at;
    error malformed;
    bool ended = false;
  };
  auto w = std::make_shared<walk>();
  w->text = std::make_shared<const std::string>(std::move(body));
  auto make = [this, w, t, headers](message_batch& b) {
    b.transport = t;
    b.headers = headers;
    frame_reader reader(*w->text, w->at);
    std::size_t bytes = 0;
    while (b.messages.size() < max_batch_messages && bytes < max_batch_bytes) {
      wire_message m;
      error why;
      const auto st = reader.next(m, scratch_, why);
      if (st == frame_reader::status::end || st == frame_reader::status::malformed) {
        w->malformed = std::move(why);
        w->ended = true;
        break;
      }
      if (st == frame_reader::status::skipped) {
        log_(log_level::warning, "skipped a message: " + why.message);
        continue;
      }
      b.messages.push_back(bayeux_message::parse(m.json));  // the reader's rules are parse()'s
      bytes += m.json.size();
    }
    scratch_.reset();
    w->at = reader.save();
    if (w->ended) w->text.reset();
    return !w->ended;
  };
  const event_scope scope(*this);
  pipeline_.push_lazy(direction::incoming, std::move(make), static_cast<std::uint64_t>(t),
                      [this, w, t, request](message_batch&& b, const error& err) {
                        // Replies are matched by id whatever frame carries them; only the last
                        // batch ends the request (what it carried and got no reply never will),
                        // unless the frame turned out broken.
                        const bool last = w->ended || err;
                        if (last && w->malformed) {
                          finish_incoming(t, 0, std::move(b), err);
                          log_(log_level::warning, "malformed frame: " + w->malformed.message);
                          deliver([this, t, request, bad = w->malformed] {
                            session_.on_bad_frame(t, request, bad);
                          });
                          return;
                        }
                        finish_incoming(t, last ? request : 0, std::move(b), err);
                      });
}

void extension_bridge::finish_incoming(connection_type t, std::uint64_t request, message_batch&& b,
                                       const error& err) {
  if (err) {
    log_(log_level::error, "an incoming extension failed: " + err.to_string());
    deliver([this, t, request, err] { session_.on_bad_frame(t, request, err); });
    return;
  }
  auto batch = std::make_shared<message_batch>(std::move(b));
  deliver([this, t, request, batch] {
    // Replies whose message goes out again are not reported. Each resend goes to the front of
    // the queue: the last first keeps their order.
    auto& messages = batch->messages;
    const auto& resends = message_access::resends(*batch);
    for (auto it = resends.rbegin(); it != resends.rend(); ++it) {
      const std::uint64_t id = *it;
      if (!session_.resend(id)) continue;
      messages.erase(std::remove_if(messages.begin(), messages.end(),
                                    [&](const bayeux_message& m) {
                                      std::uint64_t reply_id = 0;
                                      const auto text = m.string_field("id");
                                      return is_reply(m.channel(), m.successful().has_value()) &&
                                             text && parse_message_id(*text, reply_id) &&
                                             reply_id == id;
                                    }),
                     messages.end());
    }
    session_.on_frame(t, request, join_frame(messages));
  });
}

void extension_bridge::event(connection_type t, std::function<void()> f) {
  const event_scope scope(*this);
  pipeline_.push(direction::incoming, std::nullopt, static_cast<std::uint64_t>(t),
                 [this, f = std::move(f)](message_batch&&, const error&) { deliver(f); });
}

// From a transport event with nothing posted before: now. From a late extension continuation
// (the session is not re-entrant for frames), or behind earlier posted work: on the next loop
// iteration, in order.
void extension_bridge::deliver(std::function<void()> f) {
  if (in_event_ && !reactor_.busy())
    f();
  else
    reactor_.post(std::move(f));
}

void extension_bridge::abort(connection_type t) {
  pipeline_.cancel(direction::outgoing, static_cast<std::uint64_t>(t));
  // Failures and up/down events of the exchanges given up are stale: they must not reach the
  // session after it started anew on this transport. Frames still go through (their data
  // messages arrived; replies to forgotten requests are ignored).
  pipeline_.cancel(direction::incoming, static_cast<std::uint64_t>(t), true);
}

void extension_bridge::cancel_all() { pipeline_.cancel_all(); }

void extension_bridge::delivered(const message& msg) {
  const auto tell = [&](extension& e) {
    try {
      e.delivered(msg);
    } catch (const std::exception& ex) {
      log_(log_level::error, std::string("an extension's delivered() threw: ") + ex.what());
    } catch (...) {
      log_(log_level::error, "an extension's delivered() threw");
    }
  };
  for (const auto& e : extensions_) {
    if (e) tell(*e);
  }
  if (auth_) tell(*auth_);
}

}  // namespace uvcometd::detail
