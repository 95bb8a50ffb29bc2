/// @file
/// uvcometd — the built-in extensions: CometD's acknowledged messages, Salesforce-style replay,
/// and a token (bearer) auth helper.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "uvcometd/export.hpp"
#include "uvcometd/extension.hpp"

namespace uvcometd {

/// CometD's acknowledged-messages extension: the handshake asks for ext.ack; when the server
/// agrees, each /meta/connect carries the batch number of the last connect reply received, and the
/// server re-sends every message of a batch the client did not acknowledge (e.g. one written into
/// a connection that broke), so no message is lost across reconnects. One instance per client.
class UVCOMETD_API ack_extension final : public extension {
 public:
  void outgoing(message_batch& batch, extension_done done) override;
  void incoming(message_batch& batch, extension_done done) override;
  /// True once the server confirmed acknowledgements in the last handshake reply.
  bool enabled() const noexcept { return enabled_; }
  /// The batch number the next /meta/connect acknowledges.
  std::int64_t batch() const noexcept { return batch_; }

 private:
  bool enabled_ = false;
  std::int64_t batch_ = 0;
};

/// Where a replay extension keeps the replay id of the last message delivered per channel, so a
/// restarted application resumes where it stopped. Called on the loop thread, synchronously.
class UVCOMETD_API replay_store {
 public:
  virtual ~replay_store() = default;
  /// The stored id of `channel`; nullopt if none.
  virtual std::optional<std::int64_t> load(std::string_view channel) = 0;
  /// Called after each delivered message that carried a replay id.
  virtual void save(std::string_view channel, std::int64_t replay_id) = 0;
};

/// A replay_store in memory (shared by client instances of one process, e.g. across restarts).
class UVCOMETD_API memory_replay_store final : public replay_store {
 public:
  std::optional<std::int64_t> load(std::string_view channel) override;
  void save(std::string_view channel, std::int64_t replay_id) override;

 private:
  std::map<std::string, std::int64_t, std::less<>> ids_;
};

/// Salesforce-style replay: the handshake carries ext.replay = true; each /meta/subscribe carries
/// ext.replay = {"<channel>": id}, the id of the last message received on that channel (from
/// data.event.replayId), else the store's, else `initial_id`; the server then delivers what
/// followed that id. A re-subscribe after a re-handshake uses the latest ids. Ids are kept per
/// exact channel (as Salesforce replays them): a wildcard subscription starts from `initial_id`.
/// One instance per client.
class UVCOMETD_API replay_extension final : public extension {
 public:
  /// Where replay starts and what happens when the server refuses an id.
  struct settings {
    /// For a channel without a known id: -1 new messages only, -2 every message the server keeps.
    std::int64_t initial_id = -1;
    /// When the server refuses an id (too old: "400::The replayId ... was invalid"), the subscribe
    /// is sent once more from this id (-1 or -2). nullopt: the subscribe fails with the server's
    /// error.
    std::optional<std::int64_t> fallback_id = -1;
    /// Persists the id of the last delivered message per channel; null: memory only.
    std::shared_ptr<replay_store> store;
  };

  /// A replay extension with the default settings (new messages only, falling back to -1).
  replay_extension() : replay_extension(settings{}) {}
  /// A replay extension with its own settings.
  explicit replay_extension(settings s) : settings_(std::move(s)) {}

  /// The id of the last message received on `channel` (the one the next subscribe uses).
  std::optional<std::int64_t> replay_id(std::string_view channel) const;
  /// Sets the id the next subscribe to `channel` starts after.
  void set_replay_id(std::string_view channel, std::int64_t id);

  void outgoing(message_batch& batch, extension_done done) override;
  void incoming(message_batch& batch, extension_done done) override;
  void delivered(const message& msg) override;

 private:
  settings settings_;
  std::map<std::string, std::int64_t, std::less<>> received_;  // last id received per channel
  std::map<std::string, std::int64_t, std::less<>> sent_;      // id the last subscribe asked for
};

/// Token authentication: a token from `provider` travels as an HTTP header ("Authorization:
/// Bearer <token>" by default, on every long-polling request and the websocket upgrade) and/or in
/// the handshake's ext. The provider is called before the first handshake and again whenever the
/// client asks for fresh credentials after an authentication failure; never twice at once.
class UVCOMETD_API token_auth final : public auth_extension {
 public:
  /// Hands the provider's result back: a token, or an error (then the batch waiting for it fails).
  using token_callback = std::function<void(const error& err, std::string token)>;
  /// Obtains a token; may answer at once or later (on the loop thread), exactly once.
  using token_provider = std::function<void(token_callback)>;

  /// Where the token travels.
  struct settings {
    std::string header = "Authorization";  ///< empty: no header
    std::string scheme = "Bearer";  ///< the header value is "<scheme> <token>" (or the token)
    /// When set, the handshake carries `ext[<ext_key>] = {"token": "<token>"}`.
    std::string ext_key;
  };

  /// A token auth with the default settings: "Authorization: Bearer <token>", no ext.
  explicit token_auth(token_provider provider) : token_auth(std::move(provider), settings{}) {}
  /// A token auth with its own settings.
  token_auth(token_provider provider, settings s);

  /// The current token; empty before the provider answered.
  const std::string& token() const noexcept { return token_; }

  void outgoing(message_batch& batch, extension_done done) override;
  void authenticate(extension_done done) override;

 private:
  void apply(message_batch& batch) const;
  void fetch(std::function<void(const error&)> then);

  token_provider provider_;
  settings settings_;
  std::string token_;
  std::vector<std::function<void(const error&)>> waiting_;  // for the provider call in flight
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace uvcometd
