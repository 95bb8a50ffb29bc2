// For tests that make transports without a client: what a client gives its transports (its task
// queue, a detail::reactor, and its cookie jar), and their settings as a client fills them.
#pragma once

#include <uv.h>

#include <string>

#include "config.hpp"
#include "reactor.hpp"
#include "transport/cookie_jar.hpp"
#include "transport/transport.hpp"
#include "uvcometd/options.hpp"

namespace uvcometd::test {

// One client's share of the transports made with env(). Destroy it after those transports are
// closed and before the loop closes: its reactor's handle closes then, and the loop must run
// once more for it (test_loop::close() does).
struct transport_kit {
  explicit transport_kit(uv_loop_t* l) : loop(l), tasks(new detail::reactor(l, nullptr)) {}
  transport_kit(const transport_kit&) = delete;
  transport_kit& operator=(const transport_kit&) = delete;
  ~transport_kit() {
    detail::reactor* r = tasks;
    r->close([r] { delete r; });  // the handle's memory goes in its close callback
  }

  detail::transport_env env() { return detail::transport_env{loop, tasks, &cookies}; }

  uv_loop_t* loop;
  detail::reactor* tasks;
  detail::cookie_jar cookies;
};

// Settings as a client with default options fills them (tests change what they test).
inline detail::long_polling_config lp_config(const std::string& url) {
  return detail::make_long_polling_config(options{}, url);
}
inline detail::websocket_config ws_config(const std::string& url) {
  return detail::make_websocket_config(options{}, url);
}

}  // namespace uvcometd::test
