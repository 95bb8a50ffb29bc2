#include "uvcometd/extensions.hpp"

#include <algorithm>
#include <cctype>

#include "json.hpp"
#include "json_object.hpp"

namespace uvcometd {
namespace {

std::optional<std::int64_t> as_int(std::string_view raw) {
  std::int64_t v = 0;
  if (raw.empty() || !detail::json::to_int64(raw, v)) return std::nullopt;
  return v;
}

bool contains_nocase(std::string_view text, std::string_view word) {
  return std::search(text.begin(), text.end(), word.begin(), word.end(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) ==
                  std::tolower(static_cast<unsigned char>(b));
         }) != text.end();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ack

void ack_extension::outgoing(message_batch& batch, extension_done done) {
  for (auto& m : batch.messages) {
    const auto channel = m.channel();
    if (channel == "/meta/handshake") {
      // A new session: nothing acknowledged yet, and the server has to agree again.
      enabled_ = false;
      batch_ = 0;
      m.set_ext("ack", "true");
    } else if (channel == "/meta/connect" && enabled_) {
      m.set_ext("ack", std::to_string(batch_));
    }
  }
  done({});
}

void ack_extension::incoming(message_batch& batch, extension_done done) {
  for (const auto& m : batch.messages) {
    const auto channel = m.channel();
    if (channel == "/meta/handshake" && m.successful() == true) {
      const auto ack = m.ext("ack");
      // Newer servers answer {"enabled":true,"batch":N}.
      enabled_ = ack == "true" || detail::json::member(ack, "enabled") == "true";
      if (auto b = as_int(detail::json::member(ack, "batch"))) batch_ = *b;
    } else if (channel == "/meta/connect" && enabled_ && m.successful() == true) {
      if (auto b = as_int(m.ext("ack"))) batch_ = *b;
    }
  }
  done({});
}

// ---------------------------------------------------------------------------------------------
// replay

std::optional<std::int64_t> memory_replay_store::load(std::string_view channel) {
  const auto it = ids_.find(channel);
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

void memory_replay_store::save(std::string_view channel, std::int64_t replay_id) {
  const auto it = ids_.find(channel);
  if (it != ids_.end())
    it->second = replay_id;
  else
    ids_.emplace(std::string(channel), replay_id);
}

std::optional<std::int64_t> replay_extension::replay_id(std::string_view channel) const {
  const auto it = received_.find(channel);
  if (it == received_.end()) return std::nullopt;
  return it->second;
}

void replay_extension::set_replay_id(std::string_view channel, std::int64_t id) {
  const auto it = received_.find(channel);
  if (it != received_.end())
    it->second = id;
  else
    received_.emplace(std::string(channel), id);
}

void replay_extension::outgoing(message_batch& batch, extension_done done) {
  for (auto& m : batch.messages) {
    const auto channel = m.channel();
    if (channel == "/meta/handshake") {
      m.set_ext("replay", "true");
    } else if (channel == "/meta/subscribe") {
      const auto sub = m.string_field("subscription");
      if (!sub) continue;
      std::optional<std::int64_t> id = replay_id(*sub);
      if (!id && settings_.store) id = settings_.store->load(*sub);
      const std::int64_t from = id.value_or(settings_.initial_id);
      std::string ext = "{";
      detail::json::append_string(ext, *sub);
      ext += ':' + std::to_string(from) + '}';
      m.set_ext("replay", ext);
      sent_[*sub] = from;
    }
  }
  done({});
}

void replay_extension::incoming(message_batch& batch, extension_done done) {
  for (const auto& m : batch.messages) {
    if (m.is_meta()) {
      if (m.channel() != "/meta/subscribe" || m.successful() != false) continue;
      const auto sub = m.string_field("subscription");
      const auto err = m.string_field("error");
      if (!sub || !err || !settings_.fallback_id) continue;
      const auto sent = sent_.find(*sub);
      // Only an id of ours that the server found invalid falls back.
      if (sent == sent_.end() || sent->second == *settings_.fallback_id ||
          !contains_nocase(*err, "replayid")) {
        continue;
      }
      set_replay_id(*sub, *settings_.fallback_id);
      batch.resend(m);
      continue;
    }
    const auto id =
        as_int(detail::json::member(detail::json::member(m.field("data"), "event"), "replayId"));
    if (id) set_replay_id(m.channel(), *id);
  }
  done({});
}

void replay_extension::delivered(const message& msg) {
  if (!settings_.store) return;
  namespace json = detail::json;
  const auto id = as_int(json::member(json::member(msg.data, "event"), "replayId"));
  if (id) settings_.store->save(msg.channel, *id);
}

// ---------------------------------------------------------------------------------------------
// token auth

token_auth::token_auth(token_provider provider, settings s)
    : provider_(std::move(provider)), settings_(std::move(s)) {}

void token_auth::apply(message_batch& batch) const {
  if (!settings_.header.empty()) {
    const std::string value = settings_.scheme.empty() ? token_ : settings_.scheme + " " + token_;
    auto& h = batch.headers;
    const auto same = [&](const auto& p) {
      return p.first.size() == settings_.header.size() &&
             std::equal(p.first.begin(), p.first.end(), settings_.header.begin(),
                        [](char a, char b) {
                          return std::tolower(static_cast<unsigned char>(a)) ==
                                 std::tolower(static_cast<unsigned char>(b));
                        });
    };
    h.erase(std::remove_if(h.begin(), h.end(), same), h.end());
    h.emplace_back(settings_.header, value);
  }
  if (!settings_.ext_key.empty()) {
    for (auto& m : batch.messages) {
      if (m.channel() != "/meta/handshake") continue;
      std::string ext = "{\"token\":";
      detail::json::append_string(ext, token_);
      ext += '}';
      m.set_ext(settings_.ext_key, ext);
    }
  }
}

void token_auth::fetch(std::function<void(const error&)> then) {
  // One provider call at a time: whoever asks meanwhile waits for its answer.
  waiting_.push_back(std::move(then));
  if (waiting_.size() > 1) return;
  std::weak_ptr<bool> alive = alive_;
  auto called = std::make_shared<bool>(false);
  provider_([this, alive, called](const error& err, std::string token) {
    if (alive.expired() || *called) return;
    *called = true;
    if (!err) token_ = std::move(token);
    auto waiting = std::move(waiting_);
    waiting_.clear();
    for (auto& w : waiting) w(err);
  });
}

void token_auth::outgoing(message_batch& batch, extension_done done) {
  if (!token_.empty()) {
    apply(batch);
    done({});
    return;
  }
  // The first request: ask for a token before it leaves.
  fetch([this, &batch, done = std::move(done)](const error& err) {
    if (err) {
      done(err);
      return;
    }
    apply(batch);
    done({});
  });
}

void token_auth::authenticate(extension_done done) { fetch(std::move(done)); }

}  // namespace uvcometd
