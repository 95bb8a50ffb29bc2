// The shared fixtures of the integration tests (rigs.hpp), and the Catch2 listener that prints the
// running test's log when an assertion fails.
#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include "rigs.hpp"

#include <cstdio>
#include <exception>
#include <utility>

using namespace std::chrono_literals;

namespace uvcometd::test {

namespace {

// The log of the test case running now (the innermost live log_recorder).
log_recorder* g_current_log = nullptr;

struct log_dump_listener : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  bool assertionEnded(const Catch::AssertionStats& stats) override {
    if (!stats.assertionResult.succeeded() && g_current_log != nullptr &&
        !g_current_log->lines.empty()) {
      std::fprintf(stderr, "---- uvcometd log tail%s%s (%s:%zu) ----\n%s---- end of log ----\n",
                   g_current_log->label.empty() ? "" : ", ", g_current_log->label.c_str(),
                   stats.assertionResult.getSourceInfo().file,
                   stats.assertionResult.getSourceInfo().line, g_current_log->tail(60).c_str());
    }
    return true;
  }
};

long stat_of(const nlohmann::json& stats, const char* name) {
  const auto it = stats.find(name);
  return it != stats.end() && it->is_number() ? it->get<long>() : -1;
}

}  // namespace

// Closes the loop; when a handle is left open, lists them on stderr (type, active, closing) and
// returns uv_loop_close's error.
int close_loop(test_loop& loop) {
  const int rc = loop.close();
  if (rc != 0) {
    std::fprintf(stderr, "---- handles left open on the loop (uv_loop_close: %s) ----\n",
                 uv_err_name(rc));
    uv_walk(
        loop.get(),
        [](uv_handle_t* h, void*) {
          std::fprintf(stderr, "  %s active=%d closing=%d has_ref=%d data=%p\n",
                       uv_handle_type_name(uv_handle_get_type(h)), uv_is_active(h),
                       uv_is_closing(h), uv_has_ref(h), h->data);
        },
        nullptr);
  }
  return rc;
}

std::string handshake_frame(const std::string& connection_type, const std::string& id) {
  return R"([{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":[")" +
         connection_type + R"("],"id":")" + id + R"("}])";
}

std::string connect_frame(const std::string& client_id, const std::string& connection_type,
                          int advice_timeout, const std::string& id) {
  return R"([{"channel":"/meta/connect","clientId":")" + client_id + R"(","connectionType":")" +
         connection_type + R"(","advice":{"timeout":)" + std::to_string(advice_timeout) +
         R"(},"id":")" + id + R"("}])";
}

nlohmann::json server_stats(server_process& srv) {
  return nlohmann::json::parse(srv.get("/control/stats"));
}

long server_subscribers(server_process& srv, const std::string& pattern) {
  try {
    const auto subs = server_stats(srv).at("subscriptions");
    const auto it = subs.find(pattern);
    return it == subs.end() ? 0 : it->get<long>();
  } catch (const std::exception&) {
    return -1;
  }
}

nlohmann::json server_seen(server_process& srv) {
  return nlohmann::json::parse(srv.get("/control/seen"));
}

peer default_preference(const char* script) {
  const bool faye = std::string(script) == "faye-server.js";
  return {script,
          {},
          faye ? "faye, default preference" : "cometd, default preference",
          faye ? "/bayeux" : "/cometd"};
}

peer unreachable() { return {"", {}, "nothing listening", "/bayeux"}; }

log_recorder::log_recorder(std::string l) : label(std::move(l)), previous_(g_current_log) {
  g_current_log = this;
}

log_recorder::~log_recorder() {
  if (g_current_log == this) g_current_log = previous_;
}

void proxy_holder::open(test_loop& loop, int target_port) {
  loop_ = &loop;
  proxy_ = std::make_unique<fault_proxy>(loop.get(), target_port);
}

void proxy_holder::shut() {
  if (!proxy_) return;
  bool done = false;
  proxy_->close([&done] { done = true; });
  loop_->run_until([&] { return done; }, 5s);
  if (done) {
    proxy_.reset();
  } else {
    (void)proxy_.release();  // never destroy it with live handles: leak (LSan will say so)
  }
}

client_rig::client_rig(peer which, const std::vector<std::string>& server_args, route via)
    : p(std::move(which)), log(p.name) {
  if (*p.script != '\0') srv = std::make_unique<server_process>(p.script, server_args);
  if (via == route::fault_proxy) proxy.open(loop, srv->port());
}

client_rig::~client_rig() {
  // Unwinding from a failed assertion: destroy the clients, which then run no callback (the
  // test's locals they may point to are gone). Otherwise close each one as an application does.
  const bool unwinding = std::uncaught_exceptions() > 0;
  for (auto& c : clients_) {
    if (c && !unwinding && c->current_state() != state::closed) {
      auto closes = std::make_shared<int>(0);
      c->close([closes](const error&) { ++*closes; });
      CHECK(loop.run_until([&] { return *closes > 0; }, 15s));
      CHECK(c->current_state() == state::closed);
    }
    c.reset();
  }
  proxy.shut();
  CHECK(close_loop(loop) == 0);
}

uvcometd::options client_rig::options() {
  uvcometd::options o;
  if (!srv) {
    o.url = "http://127.0.0.1:9" + std::string(p.path);  // the discard port
  } else if (proxy) {
    o.url = proxy->url(p.path);
  } else {
    o.url = srv->url();
  }
  if (!p.types.empty()) o.connection_types = p.types;
  o.connection_timeout = 10s;
  o.backoff_initial = 50ms;
  o.backoff_max = 500ms;
  o.log = log.sink();
  if (proxy) {
    o.connection_timeout = 20s;
    o.max_network_delay = 1s;
    o.websocket_ping_interval = 300ms;
    o.websocket_connect_timeout = 2s;
  }
  return o;
}

uvcometd::client& client_rig::start(const uvcometd::options& o) {
  clients_.push_back(std::make_unique<uvcometd::client>(loop.get(), o));
  if (clients_.size() == 1) states.attach(*clients_.front());
  return *clients_.back();
}

uvcometd::client& client_rig::client() {
  if (clients_.empty()) start();
  REQUIRE(clients_.front() != nullptr);
  return *clients_.front();
}

void client_rig::destroy_client() {
  REQUIRE_FALSE(clients_.empty());
  clients_.front().reset();
}

error client_rig::open_result(uvcometd::client& c) {
  auto result = std::make_shared<outcome>();
  REQUIRE_FALSE(c.open(result->cb()));
  REQUIRE(loop.run_until([&] { return result->done(); }, 20s));
  return result->err;
}

void client_rig::open(uvcometd::client& c) {
  const auto err = open_result(c);
  INFO(err.to_string());
  REQUIRE_FALSE(err);
}

error client_rig::subscribe_with(uvcometd::client& c, const std::string& channel,
                                 message_handler handler, subscription* handle) {
  auto result = std::make_shared<outcome>();
  REQUIRE_FALSE(c.subscribe(channel, std::move(handler), result->cb(), handle));
  REQUIRE(loop.run_until([&] { return result->done(); }));
  return result->err;
}

received& client_rig::subscribe(uvcometd::client& c, const std::string& channel,
                                subscription* handle) {
  received& into = received_.emplace_back();
  const auto err = subscribe_result(c, channel, into, handle);
  INFO(err.to_string());
  REQUIRE_FALSE(err);
  return into;
}

void client_rig::subscribe(const std::string& channel, message_handler handler) {
  const auto err = subscribe_with(client(), channel, std::move(handler), nullptr);
  INFO(err.to_string());
  REQUIRE_FALSE(err);
}

error client_rig::subscribe_result(uvcometd::client& c, const std::string& channel, received& into,
                                   subscription* handle) {
  return subscribe_with(
      c, channel,
      [&into](const message& m) {
        into.channels.emplace_back(m.channel);
        into.data.emplace_back(m.data);
      },
      handle);
}

void client_rig::unsubscribe(subscription& handle) {
  auto result = std::make_shared<outcome>();
  REQUIRE_FALSE(client().unsubscribe(handle, result->cb()));
  REQUIRE(loop.run_until([&] { return result->done(); }));
  INFO(result->err.to_string());
  CHECK_FALSE(result->err);
}

error client_rig::publish(const std::string& channel, const std::string& json) {
  auto result = std::make_shared<outcome>();
  REQUIRE_FALSE(client().publish(channel, json, result->cb()));
  REQUIRE(loop.run_until([&] { return result->done(); }));
  return result->err;
}

void client_rig::close(uvcometd::client& c) {
  auto result = std::make_shared<outcome>();
  c.close(result->cb());
  REQUIRE(loop.run_until([&] { return result->done(); }));
  CHECK(result->calls == 1);
  CHECK(c.current_state() == state::closed);
}

bool client_rig::wait_state(state s, std::size_t from, std::chrono::milliseconds limit) {
  return loop.run_until([&] { return states.find(s, from).has_value(); }, limit);
}

bool client_rig::wait_reconnected(std::size_t mark, std::chrono::milliseconds limit) {
  return loop.run_until([&] { return reconnected_since(mark); }, limit);
}

bool client_rig::wait_server(const std::function<bool(const nlohmann::json&)>& pred,
                             std::chrono::milliseconds limit) {
  REQUIRE(srv != nullptr);
  return loop.run_until(
      [&] {
        try {
          return pred(server_stats(*srv));
        } catch (const std::exception&) {
          return false;  // not reachable (yet)
        }
      },
      limit, 20ms);
}

bool client_rig::wait_subscribed(const std::string& pattern, std::chrono::milliseconds limit) {
  return wait_server(
      [&](const nlohmann::json& s) {
        const auto& subs = s.at("subscriptions");
        const auto it = subs.find(pattern);
        return it != subs.end() && it->get<long>() > 0;
      },
      limit);
}

bool client_rig::wait_connect_held(std::chrono::milliseconds limit) {
  return wait_server(
      [](const nlohmann::json& s) { return stat_of(s, "connects") > stat_of(s, "connectReplies"); },
      limit);
}

bool client_rig::wait_accepted_after(std::size_t before, std::chrono::milliseconds limit) {
  REQUIRE(proxy);
  return loop.run_until([&] { return proxy->accepted() > before; }, limit);
}

CATCH_REGISTER_LISTENER(log_dump_listener)

}  // namespace uvcometd::test

namespace uvcometd::test {

const transport_recorder::frame* transport_recorder::frame_for(std::uint64_t request) const {
  for (const auto& f : frames) {
    if (f.request == request) return &f;
  }
  return nullptr;
}

const transport_recorder::failure* transport_recorder::failure_for(std::uint64_t request) const {
  for (const auto& f : failures) {
    if (f.request == request) return &f;
  }
  return nullptr;
}

std::size_t transport_recorder::reports(std::uint64_t request) const {
  std::size_t n = 0;
  for (const auto& f : frames) n += f.request == request ? 1 : 0;
  for (const auto& f : failures) n += f.request == request ? 1 : 0;
  return n;
}

std::string transport_recorder::why(std::uint64_t request) const {
  const failure* f = failure_for(request);
  return f ? f->err.to_string() : std::string();
}

void transport_recorder::on_frame(std::uint64_t request, std::string&& body,
                                  const header_list& headers) {
  event_inside_api |= inside_api;
  frames.push_back({request, std::move(body), headers, std::chrono::steady_clock::now()});
  if (frame_hook) frame_hook(frames.back());
  if (report_hook) report_hook(request, true);
}

void transport_recorder::on_request_failed(std::uint64_t request, const error& err) {
  event_inside_api |= inside_api;
  failures.push_back({request, err, std::chrono::steady_clock::now()});
  if (failure_hook) failure_hook(failures.back());
  if (report_hook) report_hook(request, false);
}

void transport_recorder::on_up() {
  event_inside_api |= inside_api;
  ++ups;
  if (up_hook) up_hook();
}

void transport_recorder::on_down(const error& err, bool was_up,
                                 const std::vector<std::uint64_t>& unsent) {
  event_inside_api |= inside_api;
  downs.push_back({err, was_up, unsent});
  if (down_hook) down_hook();
}

}  // namespace uvcometd::test
