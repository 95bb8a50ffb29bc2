// The C API (include/uvcometd.h) over the public C++ API only. Every entry point catches what
// the C++ side may throw (no exception reaches C); every callback wrapper does its own
// bookkeeping first and calls the application last, and touches nothing afterwards, because
// the application may destroy the client inside its callback.
#include "uvcometd.h"

#include <chrono>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <vector>

#include "uvcometd/checks.hpp"
#include "uvcometd/client.hpp"
#include "uvcometd/error.hpp"
#include "uvcometd/options.hpp"
#include "uvcometd/version.hpp"

struct uvcometd_options_s {
  uvcometd::options opts;
  std::string problem;  // uvcometd_options_problem()'s last answer
};

struct uvcometd_client_s {
  uv_loop_t* loop = nullptr;
  void* data = nullptr;
  uvcometd_state_cb state_cb = nullptr;
  void* state_user = nullptr;
  uvcometd_subscription_lost_cb lost_cb = nullptr;
  void* lost_user = nullptr;
  // The live subscriptions by id: the C++ API unsubscribes a uvcometd::subscription value.
  std::unordered_map<uvcometd_subscription_t, uvcometd::subscription> subs;
  uvcometd_message_cb unmatched_cb = nullptr;
  void* unmatched_user = nullptr;
  std::string id;   // uvcometd_client_id()'s last answer
  std::string url;  // uvcometd_client_current_url()'s last answer
  // Last member: destroyed first, so the C++ client is gone before the state above.
  std::optional<uvcometd::client> cpp;
};

namespace {

// The C code of a C++ error code: the errc value negated.
int to_c(const std::error_code& ec) noexcept {
  if (!ec) return 0;
  if (ec.category() != uvcometd::category() || ec.value() <= 0) return UVCOMETD_EINTERNAL;
  return -ec.value();
}

// What an entry point returns for the exception it caught.
int caught() noexcept {
  try {
    throw;
  } catch (const std::bad_alloc&) {
    return UVCOMETD_ENOMEM;
  } catch (const std::system_error& e) {
    const int c = to_c(e.code());
    return c != 0 ? c : UVCOMETD_EINTERNAL;
  } catch (...) {
    return UVCOMETD_EINTERNAL;
  }
}

const char* const empty_text = "";

// A view as a pointer that is never NULL, for "%.*s".
const char* text_of(std::string_view v) noexcept { return v.empty() ? empty_text : v.data(); }

// `v` as a C field pair: a pointer (never null) and a length.
void put(std::string_view v, const char*& text, std::size_t& len) noexcept {
  text = text_of(v);
  len = v.size();
}

// Calls `f` with a uvcometd_error_t describing `err`; valid during the call only.
template <class F>
void with_c_error(const uvcometd::error& err, F&& f) noexcept {
  uvcometd_error_t e{};
  e.code = to_c(err.code);
  e.server_code = err.server_code;
  e.http_status = err.http_status;
  e.message = err.message.c_str();
  std::vector<const char*> args;
  try {
    args.reserve(err.args.size());
    for (const auto& a : err.args) args.push_back(a.c_str());
    e.arg_count = args.size();
    e.args = args.data();
  } catch (...) {
    e.arg_count = 0;  // out of memory: the code and the text still tell what happened
    e.args = nullptr;
  }
  f(e);
}

// A completion that hands the outcome to `done` (when not NULL).
uvcometd::completion c_completion(uvcometd_client_t* c, uvcometd_done_cb done, void* user) {
  if (done == nullptr) return {};
  return [c, done, user](const uvcometd::error& err) {
    with_c_error(err, [&](const uvcometd_error_t& e) { done(c, e.code, &e, user); });
  };
}

// A received message as C sees it; valid while `m` is.
uvcometd_message_t to_c(const uvcometd::message& m) noexcept {
  uvcometd_message_t msg{};
  put(m.channel, msg.channel, msg.channel_len);
  put(m.data, msg.data, msg.data_len);
  put(m.id, msg.id, msg.id_len);
  put(m.ext, msg.ext, msg.ext_len);
  put(m.json, msg.json, msg.json_len);
  return msg;
}

// A meta reply as C sees it; valid while `m` is.
uvcometd_meta_message_t to_c(const uvcometd::meta_message& m) noexcept {
  uvcometd_meta_message_t msg{};
  put(m.channel, msg.channel, msg.channel_len);
  msg.successful = m.successful ? 1 : 0;
  put(m.error, msg.error, msg.error_len);
  put(m.advice, msg.advice, msg.advice_len);
  put(m.ext, msg.ext, msg.ext_len);
  put(m.json, msg.json, msg.json_len);
  return msg;
}

// The fields of one message from C: `ext` may be NULL.
uvcometd::message_options fields_of(const char* ext) {
  uvcometd::message_options f;
  if (ext != nullptr) f.ext = ext;
  return f;
}

// The number a C caller passed as an enum. C allows any int there; C++ does not allow an enum
// value outside its enumerators' range, so it is read as bytes, never loaded as the enum.
template <class E>
int c_enum_value(const E& e) noexcept {
  static_assert(sizeof(E) == sizeof(int), "the C enums are int-sized");
  int v = 0;
  std::memcpy(&v, &e, sizeof v);
  return v;
}

bool to_cpp(const uvcometd_connection_type_t& t, uvcometd::connection_type& out) noexcept {
  switch (c_enum_value(t)) {
    case UVCOMETD_LONG_POLLING: out = uvcometd::connection_type::long_polling; return true;
    case UVCOMETD_WEBSOCKET: out = uvcometd::connection_type::websocket; return true;
  }
  return false;
}

uvcometd_connection_type_t to_c(uvcometd::connection_type t) noexcept {
  return t == uvcometd::connection_type::websocket ? UVCOMETD_WEBSOCKET : UVCOMETD_LONG_POLLING;
}

uvcometd_state_t to_c(uvcometd::state s) noexcept {
  switch (s) {
    case uvcometd::state::disconnected: return UVCOMETD_STATE_DISCONNECTED;
    case uvcometd::state::connecting: return UVCOMETD_STATE_CONNECTING;
    case uvcometd::state::connected: return UVCOMETD_STATE_CONNECTED;
    case uvcometd::state::reconnecting: return UVCOMETD_STATE_RECONNECTING;
    case uvcometd::state::disconnecting: return UVCOMETD_STATE_DISCONNECTING;
    case uvcometd::state::closed: return UVCOMETD_STATE_CLOSED;
    case uvcometd::state::failed: return UVCOMETD_STATE_FAILED;
  }
  return UVCOMETD_STATE_FAILED;
}

uvcometd_log_level_t to_c(uvcometd::log_level l) noexcept {
  switch (l) {
    case uvcometd::log_level::debug: return UVCOMETD_LOG_DEBUG;
    case uvcometd::log_level::info: return UVCOMETD_LOG_INFO;
    case uvcometd::log_level::warning: return UVCOMETD_LOG_WARNING;
    case uvcometd::log_level::error: return UVCOMETD_LOG_ERROR;
  }
  return UVCOMETD_LOG_ERROR;
}

// Milliseconds from C: refused when they do not fit std::chrono::milliseconds.
int set_ms(uvcometd_options_t* o, std::chrono::milliseconds uvcometd::options::*field,
           std::uint64_t ms) noexcept {
  if (o == nullptr) return UVCOMETD_EINVALID_ARGUMENT;
  if (ms > static_cast<std::uint64_t>(std::numeric_limits<std::chrono::milliseconds::rep>::max()))
    return UVCOMETD_EINVALID_ARGUMENT;
  o->opts.*field = std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(ms));
  return 0;
}

}  // namespace

extern "C" {

const char* uvcometd_strerror(int code) {
  if (code == 0) return "success";
  if (code == UVCOMETD_ENOMEM) return "out of memory";
  if (code == UVCOMETD_EINTERNAL) return "internal error";
  // The C++ category's texts, computed once (code -1 to -max_code).
  constexpr int max_code = 64;
  static const struct table {
    std::string text[max_code + 1];
    table() noexcept {
      try {
        for (int i = 1; i <= max_code; ++i) text[i] = uvcometd::category().message(i);
      } catch (...) {
      }
    }
  } texts;
  if (code < 0 && code >= -max_code) {
    const std::string& t = texts.text[-code];
    if (!t.empty() && t != "unknown uvcometd error") return t.c_str();
  }
  return "unknown error";
}

const char* uvcometd_version(void) { return uvcometd::version(); }

const char* uvcometd_state_name(uvcometd_state_t state) {
  switch (c_enum_value(state)) {
    case UVCOMETD_STATE_DISCONNECTED: return "disconnected";
    case UVCOMETD_STATE_CONNECTING: return "connecting";
    case UVCOMETD_STATE_CONNECTED: return "connected";
    case UVCOMETD_STATE_RECONNECTING: return "reconnecting";
    case UVCOMETD_STATE_DISCONNECTING: return "disconnecting";
    case UVCOMETD_STATE_CLOSED: return "closed";
    case UVCOMETD_STATE_FAILED: return "failed";
  }
  return "unknown";
}

const char* uvcometd_connection_type_name(uvcometd_connection_type_t type) {
  switch (c_enum_value(type)) {
    case UVCOMETD_LONG_POLLING: return "long-polling";
    case UVCOMETD_WEBSOCKET: return "websocket";
  }
  return "unknown";
}

uvcometd_options_t* uvcometd_options_new(void) { return new (std::nothrow) uvcometd_options_s(); }

void uvcometd_options_free(uvcometd_options_t* opts) { delete opts; }

int uvcometd_options_set_url(uvcometd_options_t* opts, const char* url) {
  if (opts == nullptr || url == nullptr) return UVCOMETD_EINVALID_ARGUMENT;
  try {
    opts->opts.url = url;
    return 0;
  } catch (...) {
    return caught();
  }
}

int uvcometd_options_add_url(uvcometd_options_t* opts, const char* url) {
  if (opts == nullptr || url == nullptr) return UVCOMETD_EINVALID_ARGUMENT;
  try {
    opts->opts.urls.emplace_back(url);
    return 0;
  } catch (...) {
    return caught();
  }
}

int uvcometd_options_set_failback_after(uvcometd_options_t* opts, uint64_t ms) {
  return set_ms(opts, &uvcometd::options::failback_after, ms);
}

int uvcometd_options_set_connection_types(uvcometd_options_t* opts,
                                          const uvcometd_connection_type_t* types, size_t count) {
  if (opts == nullptr || types == nullptr || count == 0) return UVCOMETD_EINVALID_ARGUMENT;
  try {
    std::vector<uvcometd::connection_type> list;
    for (size_t i = 0; i < count; ++i) {
      uvcometd::connection_type t{};
      if (!to_cpp(types[i], t)) return UVCOMETD_EINVALID_ARGUMENT;
      list.push_back(t);
    }
    opts->opts.connection_types = std::move(list);
    return 0;
  } catch (...) {
    return caught();
  }
}

int uvcometd_options_set_connection_timeout(uvcometd_options_t* opts, uint64_t ms) {
  return set_ms(opts, &uvcometd::options::connection_timeout, ms);
}

int uvcometd_options_set_max_network_delay(uvcometd_options_t* opts, uint64_t ms) {
  return set_ms(opts, &uvcometd::options::max_network_delay, ms);
}

int uvcometd_options_set_websocket_connect_timeout(uvcometd_options_t* opts, uint64_t ms) {
  return set_ms(opts, &uvcometd::options::websocket_connect_timeout, ms);
}

int uvcometd_options_set_websocket_ping_interval(uvcometd_options_t* opts, uint64_t ms) {
  return set_ms(opts, &uvcometd::options::websocket_ping_interval, ms);
}

int uvcometd_options_set_disconnect_timeout(uvcometd_options_t* opts, uint64_t ms) {
  return set_ms(opts, &uvcometd::options::disconnect_timeout, ms);
}

int uvcometd_options_set_backoff(uvcometd_options_t* opts, uint64_t initial_ms, uint64_t max_ms,
                                 double jitter) {
  if (opts == nullptr || !(jitter >= 0.0 && jitter <= 1.0)) return UVCOMETD_EINVALID_ARGUMENT;
  uvcometd_options_s copy_check;  // validate both before changing either
  if (int rc = set_ms(&copy_check, &uvcometd::options::backoff_initial, initial_ms)) return rc;
  if (int rc = set_ms(&copy_check, &uvcometd::options::backoff_max, max_ms)) return rc;
  opts->opts.backoff_initial = copy_check.opts.backoff_initial;
  opts->opts.backoff_max = copy_check.opts.backoff_max;
  opts->opts.backoff_jitter = jitter;
  return 0;
}

int uvcometd_options_add_header(uvcometd_options_t* opts, const char* header) {
  if (opts == nullptr || header == nullptr) return UVCOMETD_EINVALID_ARGUMENT;
  try {
    opts->opts.headers.emplace_back(header);
    return 0;
  } catch (...) {
    return caught();
  }
}

int uvcometd_options_set_handshake_ext(uvcometd_options_t* opts, const char* json) {
  if (opts == nullptr || json == nullptr) return UVCOMETD_EINVALID_ARGUMENT;
  try {
    opts->opts.handshake_ext = json;
    return 0;
  } catch (...) {
    return caught();
  }
}

int uvcometd_options_set_max_pending_count(uvcometd_options_t* opts, size_t count) {
  if (opts == nullptr) return UVCOMETD_EINVALID_ARGUMENT;
  opts->opts.max_pending_count = count;
  return 0;
}

int uvcometd_options_set_max_message_size(uvcometd_options_t* opts, size_t bytes) {
  if (opts == nullptr) return UVCOMETD_EINVALID_ARGUMENT;
  opts->opts.max_message_size = bytes;
  return 0;
}

int uvcometd_options_set_queue_while_reconnecting(uvcometd_options_t* opts, int enabled,
                                                  size_t max_queued) {
  if (opts == nullptr) return UVCOMETD_EINVALID_ARGUMENT;
  opts->opts.queue_while_reconnecting = enabled != 0;
  opts->opts.max_queued_messages = max_queued;
  return 0;
}

int uvcometd_options_set_tls_verify(uvcometd_options_t* opts, int verify) {
  if (opts == nullptr) return UVCOMETD_EINVALID_ARGUMENT;
  opts->opts.tls_verify = verify != 0;
  return 0;
}

int uvcometd_options_set_ca_file(uvcometd_options_t* opts, const char* path) {
  if (opts == nullptr || path == nullptr) return UVCOMETD_EINVALID_ARGUMENT;
  try {
    opts->opts.ca_file = path;
    return 0;
  } catch (...) {
    return caught();
  }
}

int uvcometd_options_set_log(uvcometd_options_t* opts, uvcometd_log_cb log, void* user) {
  if (opts == nullptr) return UVCOMETD_EINVALID_ARGUMENT;
  try {
    if (log == nullptr) {
      opts->opts.log = nullptr;
    } else {
      opts->opts.log = [log, user](uvcometd::log_level level, std::string_view text) {
        const std::string line(text);  // NUL-terminated for C
        log(to_c(level), line.c_str(), user);
      };
    }
    return 0;
  } catch (...) {
    return caught();
  }
}

const char* uvcometd_options_problem(uvcometd_options_t* opts) {
  if (opts == nullptr) return "no options (NULL)";
  try {
    opts->problem = uvcometd::options_problem(opts->opts);
    return opts->problem.empty() ? nullptr : opts->problem.c_str();
  } catch (...) {
    return "out of memory";
  }
}

int uvcometd_client_new(uv_loop_t* loop, const uvcometd_options_t* opts,
                        uvcometd_client_t** client) {
  if (loop == nullptr || opts == nullptr || client == nullptr) return UVCOMETD_EINVALID_ARGUMENT;
  uvcometd_client_t* c = new (std::nothrow) uvcometd_client_s();
  if (c == nullptr) return UVCOMETD_ENOMEM;
  try {
    c->loop = loop;
    c->cpp.emplace(loop, opts->opts);
    c->cpp->on_state(
        [c](uvcometd::state s, uvcometd::connection_type t, const uvcometd::error& why) {
          const uvcometd_state_cb cb = c->state_cb;
          void* const user = c->state_user;
          if (cb == nullptr) return;
          with_c_error(why, [&](const uvcometd_error_t& e) { cb(c, to_c(s), to_c(t), &e, user); });
        });
    c->cpp->on_subscription_lost(
        [c](const uvcometd::subscription& sub, const uvcometd::error& why) {
          c->subs.erase(sub.id());
          const uvcometd_subscription_lost_cb cb = c->lost_cb;
          void* const user = c->lost_user;
          if (cb == nullptr) return;
          with_c_error(why, [&](const uvcometd_error_t& e) {
            cb(c, sub.id(), sub.channel().c_str(), &e, user);
          });
        });
  } catch (...) {
    const int rc = caught();
    delete c;
    return rc;
  }
  *client = c;
  return 0;
}

void uvcometd_client_destroy(uvcometd_client_t* client) { delete client; }

void uvcometd_client_set_data(uvcometd_client_t* client, void* data) {
  if (client != nullptr) client->data = data;
}

void* uvcometd_client_get_data(const uvcometd_client_t* client) {
  return client != nullptr ? client->data : nullptr;
}

uv_loop_t* uvcometd_client_loop(const uvcometd_client_t* client) {
  return client != nullptr ? client->loop : nullptr;
}

int uvcometd_client_open(uvcometd_client_t* client, uvcometd_done_cb done, void* user) {
  if (client == nullptr) return UVCOMETD_EINVALID_ARGUMENT;
  try {
    return to_c(client->cpp->open(c_completion(client, done, user)));
  } catch (...) {
    return caught();
  }
}

int uvcometd_client_subscribe(uvcometd_client_t* client, const char* channel,
                              uvcometd_message_cb on_message, uvcometd_done_cb done, void* user,
                              uvcometd_subscription_t* subscription) {
  return uvcometd_client_subscribe_ext(client, channel, nullptr, on_message, done, user,
                                       subscription);
}

int uvcometd_client_subscribe_ext(uvcometd_client_t* client, const char* channel, const char* ext,
                                  uvcometd_message_cb on_message, uvcometd_done_cb done, void* user,
                                  uvcometd_subscription_t* subscription) {
  if (client == nullptr || channel == nullptr || on_message == nullptr)
    return UVCOMETD_EINVALID_ARGUMENT;
  try {
    uvcometd_client_t* c = client;
    // The id is known once subscribe() returned; the completion never runs inside the call.
    auto id = std::make_shared<uvcometd_subscription_t>(0);
    auto handler = [c, on_message, user](const uvcometd::message& m) {
      const uvcometd_message_t msg = to_c(m);
      on_message(c, &msg, user);
    };
    auto completed = [c, done, user, id](const uvcometd::error& err) {
      if (err) c->subs.erase(*id);  // refused or cancelled: the subscription has ended
      if (done == nullptr) return;
      with_c_error(err, [&](const uvcometd_error_t& e) { done(c, e.code, &e, user); });
    };
    uvcometd::subscription sub;
    if (auto ec = c->cpp->subscribe(channel, std::move(handler), std::move(completed), &sub,
                                    fields_of(ext)))
      return to_c(ec);
    *id = sub.id();
    c->subs.emplace(sub.id(), sub);
    if (subscription != nullptr) *subscription = sub.id();
    return 0;
  } catch (...) {
    return caught();
  }
}

int uvcometd_client_unsubscribe(uvcometd_client_t* client, uvcometd_subscription_t subscription,
                                uvcometd_done_cb done, void* user) {
  if (client == nullptr) return UVCOMETD_EINVALID_ARGUMENT;
  try {
    const auto it = client->subs.find(subscription);
    if (it == client->subs.end()) return UVCOMETD_EINVALID_ARGUMENT;
    if (auto ec = client->cpp->unsubscribe(it->second, c_completion(client, done, user)))
      return to_c(ec);
    client->subs.erase(it);
    return 0;
  } catch (...) {
    return caught();
  }
}

int uvcometd_client_publish(uvcometd_client_t* client, const char* channel, const char* json,
                            uvcometd_done_cb done, void* user) {
  return uvcometd_client_publish_ext(client, channel, json, nullptr, done, user);
}

int uvcometd_client_publish_ext(uvcometd_client_t* client, const char* channel, const char* json,
                                const char* ext, uvcometd_done_cb done, void* user) {
  if (client == nullptr || channel == nullptr || json == nullptr) return UVCOMETD_EINVALID_ARGUMENT;
  try {
    return to_c(
        client->cpp->publish(channel, json, c_completion(client, done, user), fields_of(ext)));
  } catch (...) {
    return caught();
  }
}

int uvcometd_client_remote_call(uvcometd_client_t* client, const char* target, const char* json,
                                uint64_t timeout_ms, const char* ext, uvcometd_call_cb done,
                                void* user) {
  if (client == nullptr || target == nullptr || json == nullptr || done == nullptr)
    return UVCOMETD_EINVALID_ARGUMENT;
  constexpr std::uint64_t default_ms = 5000;  // client::remote_call()'s default
  if (timeout_ms >
      static_cast<std::uint64_t>(std::numeric_limits<std::chrono::milliseconds::rep>::max()))
    return UVCOMETD_EINVALID_ARGUMENT;
  try {
    uvcometd_client_t* c = client;
    const std::chrono::milliseconds timeout(
        static_cast<std::chrono::milliseconds::rep>(timeout_ms != 0 ? timeout_ms : default_ms));
    auto completed = [c, done, user](const uvcometd::error& err, const uvcometd::message& reply) {
      const uvcometd_message_t msg = to_c(reply);
      with_c_error(err, [&](const uvcometd_error_t& e) { done(c, e.code, &e, &msg, user); });
    };
    return to_c(c->cpp->remote_call(target, json, timeout, std::move(completed), fields_of(ext)));
  } catch (...) {
    return caught();
  }
}

void uvcometd_client_start_batch(uvcometd_client_t* client) {
  if (client == nullptr) return;
  try {
    client->cpp->start_batch();
  } catch (...) {
  }
}

int uvcometd_client_end_batch(uvcometd_client_t* client) {
  if (client == nullptr) return UVCOMETD_EINVALID_ARGUMENT;
  try {
    return to_c(client->cpp->end_batch());
  } catch (...) {
    return caught();
  }
}

int uvcometd_client_close(uvcometd_client_t* client, uvcometd_done_cb done, void* user) {
  if (client == nullptr) return UVCOMETD_EINVALID_ARGUMENT;
  try {
    return to_c(client->cpp->close(c_completion(client, done, user)));
  } catch (...) {
    return caught();
  }
}

int uvcometd_client_reconnect_now(uvcometd_client_t* client) {
  if (client == nullptr) return UVCOMETD_EINVALID_ARGUMENT;
  try {
    return to_c(client->cpp->reconnect_now());
  } catch (...) {
    return caught();
  }
}

void uvcometd_client_on_state(uvcometd_client_t* client, uvcometd_state_cb cb, void* user) {
  if (client == nullptr) return;
  client->state_cb = cb;
  client->state_user = user;
}

void uvcometd_client_on_subscription_lost(uvcometd_client_t* client,
                                          uvcometd_subscription_lost_cb cb, void* user) {
  if (client == nullptr) return;
  client->lost_cb = cb;
  client->lost_user = user;
}

int uvcometd_client_on_meta(uvcometd_client_t* client, const char* channel, uvcometd_meta_cb cb,
                            void* user, uint64_t* id) {
  if (client == nullptr || channel == nullptr || cb == nullptr) return UVCOMETD_EINVALID_ARGUMENT;
  try {
    uvcometd_client_t* c = client;
    auto listener = [c, cb, user](const uvcometd::meta_message& m) {
      const uvcometd_meta_message_t msg = to_c(m);
      cb(c, &msg, user);
    };
    std::uint64_t got = 0;
    if (auto ec = c->cpp->on_meta(channel, std::move(listener), &got)) return to_c(ec);
    if (id != nullptr) *id = got;
    return 0;
  } catch (...) {
    return caught();
  }
}

int uvcometd_client_remove_meta_listener(uvcometd_client_t* client, uint64_t id) {
  if (client == nullptr) return UVCOMETD_EINVALID_ARGUMENT;
  try {
    return to_c(client->cpp->remove_meta_listener(id));
  } catch (...) {
    return caught();
  }
}

void uvcometd_client_on_unmatched(uvcometd_client_t* client, uvcometd_message_cb cb, void* user) {
  if (client == nullptr) return;
  try {
    if (cb == nullptr) {
      client->cpp->on_unmatched({});
      return;
    }
    uvcometd_client_t* c = client;
    client->cpp->on_unmatched([c, cb, user](const uvcometd::message& m) {
      const uvcometd_message_t msg = to_c(m);
      cb(c, &msg, user);
    });
  } catch (...) {
    // out of memory: the previous callback stays
  }
}

void uvcometd_client_pause(uvcometd_client_t* client) {
  if (client != nullptr) client->cpp->pause();
}

void uvcometd_client_resume(uvcometd_client_t* client) {
  if (client != nullptr) client->cpp->resume();
}

size_t uvcometd_client_pending_count(const uvcometd_client_t* client) {
  return client != nullptr ? client->cpp->pending_count() : 0;
}

uvcometd_state_t uvcometd_client_state(const uvcometd_client_t* client) {
  return client != nullptr ? to_c(client->cpp->current_state()) : UVCOMETD_STATE_CLOSED;
}

uvcometd_connection_type_t uvcometd_client_connection_type(const uvcometd_client_t* client) {
  return client != nullptr ? to_c(client->cpp->current_connection_type()) : UVCOMETD_LONG_POLLING;
}

const char* uvcometd_client_id(uvcometd_client_t* client) {
  if (client == nullptr) return empty_text;
  try {
    const std::string& id = client->cpp->client_id();
    client->id = id;
    return client->id.c_str();
  } catch (...) {
    return empty_text;
  }
}

const char* uvcometd_client_current_url(uvcometd_client_t* client) {
  if (client == nullptr) return empty_text;
  try {
    client->url = client->cpp->current_url();
    return client->url.c_str();
  } catch (...) {
    return empty_text;
  }
}

}  // extern "C"
