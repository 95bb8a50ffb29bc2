// Checks the fault-injecting TCP proxy (fault_proxy.hpp) with raw libuv TCP clients, against a
// real Faye server (HTTP long-polling handshakes) and an in-test echo server (bulk data, ordering,
// half-close).
#include <catch2/catch.hpp>

#include <array>
#include <cstring>
#include <list>
#include <memory>
#include <string>

#include <uv.h>

#include "fault_proxy.hpp"
#include "loop_helpers.hpp"
#include "server_process.hpp"

using namespace std::chrono_literals;
using uvcometd::test::fault_proxy;
using uvcometd::test::server_process;
using uvcometd::test::test_loop;

namespace {

server_process& faye() {
  static server_process srv("faye-server.js");
  return srv;
}

const std::string handshake_body = R"([{"channel":"/meta/handshake","version":"1.0",)"
                                   R"("supportedConnectionTypes":["long-polling"]}])";

std::string handshake_request(int port) {
  return "POST /bayeux HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
         "\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(handshake_body.size()) + "\r\n\r\n" + handshake_body;
}

bool has_handshake_reply(const std::string& in) {
  return in.find("HTTP/1.1 200") == 0 && in.find("\"successful\":true") != std::string::npos &&
         in.find("}]") != std::string::npos;
}

// A raw TCP client on the test loop, recording everything it sees.
struct raw_client {
  uv_tcp_t tcp{};
  uv_connect_t conn{};
  uv_shutdown_t shut{};
  std::array<char, 64 * 1024> buf{};
  int connect_status = 1;  // 1: pending
  int read_error = 0;      // the first read error other than EOF
  bool eof = false;
  int write_error = 0;
  int shutdown_status = 1;
  bool closing = false;
  bool closed = false;
  std::string in;

  struct wreq {
    uv_write_t req{};
    std::string data;
  };

  raw_client(uv_loop_t* loop, int port) {
    uv_tcp_init(loop, &tcp);
    tcp.data = this;
    sockaddr_in addr{};
    uv_ip4_addr("127.0.0.1", port, &addr);
    conn.data = this;
    int r = uv_tcp_connect(&conn, &tcp, reinterpret_cast<const sockaddr*>(&addr),
                           [](uv_connect_t* req, int status) {
                             auto* self = static_cast<raw_client*>(req->data);
                             self->connect_status = status;
                             if (status == 0 && !self->closing) self->start_reading();
                           });
    if (r != 0) connect_status = r;
  }

  void start_reading() {
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&tcp),
        [](uv_handle_t* h, std::size_t, uv_buf_t* b) {
          auto* self = static_cast<raw_client*>(h->data);
          *b = uv_buf_init(self->buf.data(), static_cast<unsigned>(self->buf.size()));
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
          auto* self = static_cast<raw_client*>(s->data);
          if (n > 0) {
            self->in.append(b->base, static_cast<std::size_t>(n));
          } else if (n == UV_EOF) {
            self->eof = true;
          } else if (n < 0 && self->read_error == 0) {
            self->read_error = static_cast<int>(n);
            uv_read_stop(s);
          }
        });
  }

  // Queues `data` (allowed while still connecting).
  void send(std::string data) {
    auto* w = new wreq;
    w->data = std::move(data);
    w->req.data = w;
    uv_buf_t b = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
    int r = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp), &b, 1,
                     [](uv_write_t* req, int status) {
                       auto* w = static_cast<wreq*>(req->data);
                       auto* self = static_cast<raw_client*>(req->handle->data);
                       if (status < 0 && self->write_error == 0) self->write_error = status;
                       delete w;
                     });
    if (r != 0) {
      write_error = r;
      delete w;
    }
  }

  void shutdown() {
    shut.data = this;
    int r = uv_shutdown(&shut, reinterpret_cast<uv_stream_t*>(&tcp), [](uv_shutdown_t* req, int s) {
      static_cast<raw_client*>(req->data)->shutdown_status = s;
    });
    if (r != 0) shutdown_status = r;
  }

  bool ended() const { return eof || read_error != 0; }

  void close() {
    if (closing) return;
    closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp),
             [](uv_handle_t* h) { static_cast<raw_client*>(h->data)->closed = true; });
  }
};

// An echo server on the test loop: writes back what it reads; on EOF shuts its write side down
// (after the echoes) and closes.
struct echo_server {
  struct conn {
    uv_tcp_t tcp{};
    uv_shutdown_t shut{};
    bool closing = false;
    void close_it() {
      if (closing) return;
      closing = true;
      uv_close(reinterpret_cast<uv_handle_t*>(&tcp), nullptr);
    }
  };
  uv_tcp_t listener{};
  int port = 0;
  bool listener_closing = false;
  bool listener_closed = false;
  std::list<conn> conns;  // freed with the server, after the loop closed them

  explicit echo_server(uv_loop_t* loop) {
    uv_tcp_init(loop, &listener);
    listener.data = this;
    sockaddr_in addr{};
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_tcp_bind(&listener, reinterpret_cast<const sockaddr*>(&addr), 0);
    uv_listen(reinterpret_cast<uv_stream_t*>(&listener), 16, [](uv_stream_t* l, int status) {
      if (status < 0) return;
      auto* self = static_cast<echo_server*>(l->data);
      self->conns.emplace_back();
      conn& c = self->conns.back();
      uv_tcp_init(l->loop, &c.tcp);
      c.tcp.data = self;
      uv_accept(l, reinterpret_cast<uv_stream_t*>(&c.tcp));
      uv_read_start(
          reinterpret_cast<uv_stream_t*>(&c.tcp),
          [](uv_handle_t*, std::size_t, uv_buf_t* b) { *b = uv_buf_init(new char[65536], 65536); },
          [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
            auto* c = reinterpret_cast<conn*>(s);  // tcp is the first member
            if (n > 0) {
              auto* w = new uv_write_t;
              w->data = b->base;
              uv_buf_t out = uv_buf_init(b->base, static_cast<unsigned>(n));
              uv_write(w, s, &out, 1, [](uv_write_t* req, int) {
                delete[] static_cast<char*>(req->data);
                delete req;
              });
              return;
            }
            delete[] b->base;
            if (n == 0 || c->closing) return;
            if (n == UV_EOF) {
              c->shut.data = c;
              uv_shutdown(&c->shut, s, [](uv_shutdown_t* req, int) {
                static_cast<conn*>(req->data)->close_it();
              });
            } else {
              c->close_it();
            }
          });
    });
    sockaddr_storage name{};
    int len = sizeof(name);
    uv_tcp_getsockname(&listener, reinterpret_cast<sockaddr*>(&name), &len);
    port = ntohs(reinterpret_cast<sockaddr_in*>(&name)->sin_port);
  }

  void close_all() {
    if (!listener_closing) {
      listener_closing = true;
      uv_close(reinterpret_cast<uv_handle_t*>(&listener),
               [](uv_handle_t* h) { static_cast<echo_server*>(h->data)->listener_closed = true; });
    }
    for (auto& c : conns) c.close_it();
  }
};

}  // namespace

// Fixture: the test loop, a proxy to the shared Faye server, the raw clients; cleans up (clients,
// proxy, loop) even when a REQUIRE fails.
namespace {

struct fixture {
  test_loop loop;
  std::list<raw_client> clients;
  std::unique_ptr<echo_server> echo;
  std::unique_ptr<fault_proxy> proxy;
  bool proxy_done = false;
  int loop_close_result = 1;
  bool finished = false;

  explicit fixture(int target = faye().port())
      : proxy(std::make_unique<fault_proxy>(loop.get(), target)) {}

  ~fixture() { finish(); }

  raw_client& connect(int port = 0) {
    clients.emplace_back(loop.get(), port ? port : proxy->port());
    return clients.back();
  }

  // A client that sends a handshake through the proxy; returns once it has the reply (or gave up).
  raw_client& handshake() {
    raw_client& c = connect();
    c.send(handshake_request(proxy->port()));
    loop.run_until([&] { return has_handshake_reply(c.in) || c.ended(); }, 10s);
    return c;
  }

  // Closes everything; returns uv_loop_close's result.
  int finish() {
    if (finished) return loop_close_result;
    finished = true;
    for (auto& c : clients) c.close();
    if (echo) echo->close_all();
    proxy->close([this] { proxy_done = true; });
    loop.run_until([&] { return proxy_done; }, 5s);
    loop_close_result = loop.close();
    return loop_close_result;
  }
};

}  // namespace

TEST_CASE("fault_proxy forwards an HTTP handshake to the server", "[fault_proxy]") {
  fixture f;
  REQUIRE(f.proxy->port() > 0);
  REQUIRE(f.proxy->url("/bayeux") ==
          "http://127.0.0.1:" + std::to_string(f.proxy->port()) + "/bayeux");

  raw_client& c = f.handshake();
  REQUIRE(c.connect_status == 0);
  REQUIRE(has_handshake_reply(c.in));
  CHECK(f.proxy->accepted() == 1);
  CHECK(f.proxy->live_connections() == 1);
  CHECK(f.proxy->bytes_up() == handshake_request(f.proxy->port()).size());
  CHECK(f.loop.run_until([&] { return f.proxy->bytes_down() == c.in.size(); }, 2s));

  // Keep-alive: a second request on the same connection.
  c.in.clear();
  c.send(handshake_request(f.proxy->port()));
  REQUIRE(f.loop.run_until([&] { return has_handshake_reply(c.in) || c.ended(); }, 10s));
  REQUIRE(has_handshake_reply(c.in));
  CHECK(f.proxy->accepted() == 1);

  // The client closing ends the pair.
  c.close();
  CHECK(f.loop.run_until([&] { return f.proxy->live_connections() == 0; }, 5s));
  REQUIRE(f.finish() == 0);
  CHECK(f.proxy->closed());
}

TEST_CASE("fault_proxy cut_all resets live connections", "[fault_proxy]") {
  fixture f;
  raw_client& a = f.handshake();
  REQUIRE(has_handshake_reply(a.in));
  raw_client& b = f.connect();  // connected, idle
  REQUIRE(f.loop.run_until([&] { return f.proxy->live_connections() == 2; }, 5s));

  f.proxy->cut_all();
  CHECK(f.proxy->live_connections() == 0);
  REQUIRE(f.loop.run_until([&] { return a.ended() && b.ended(); }, 2s));
  CHECK((a.read_error == UV_ECONNRESET || a.eof));
  CHECK(a.read_error == UV_ECONNRESET);  // an RST, not a FIN
  CHECK(b.read_error == UV_ECONNRESET);

  // New connections still work.
  raw_client& c = f.handshake();
  CHECK(has_handshake_reply(c.in));
  REQUIRE(f.finish() == 0);
}

TEST_CASE("fault_proxy refuse resets new connections at once", "[fault_proxy]") {
  fixture f;
  raw_client& a = f.handshake();  // existing connections are left alone
  REQUIRE(has_handshake_reply(a.in));

  f.proxy->refuse(true);
  raw_client& c = f.connect();
  c.send(handshake_request(f.proxy->port()));
  REQUIRE(f.loop.run_until([&] { return c.ended() || c.write_error != 0; }, 1s));
  CHECK(c.in.empty());
  CHECK(f.proxy->accepted() == 2);
  CHECK(f.proxy->live_connections() == 1);
  CHECK(f.proxy->bytes_up() == handshake_request(f.proxy->port()).size());  // a's only

  a.in.clear();
  a.send(handshake_request(f.proxy->port()));
  REQUIRE(f.loop.run_until([&] { return has_handshake_reply(a.in) || a.ended(); }, 10s));
  CHECK(has_handshake_reply(a.in));

  f.proxy->refuse(false);
  raw_client& d = f.handshake();
  CHECK(has_handshake_reply(d.in));
  REQUIRE(f.finish() == 0);
}

TEST_CASE("fault_proxy stop_listening refuses connections in the kernel", "[fault_proxy]") {
  fixture f;
  int port = f.proxy->port();
  f.proxy->stop_listening();
  CHECK_FALSE(f.proxy->listening());
  raw_client& c = f.connect(port);
  REQUIRE(f.loop.run_until([&] { return c.connect_status != 1; }, 2s));
  CHECK(c.connect_status == UV_ECONNREFUSED);

  REQUIRE(f.proxy->start_listening() == 0);
  CHECK(f.proxy->port() == port);
  raw_client& d = f.handshake();
  CHECK(has_handshake_reply(d.in));
  REQUIRE(f.finish() == 0);
}

TEST_CASE("fault_proxy blackhole swallows bytes but keeps connections open", "[fault_proxy]") {
  fixture f;
  raw_client& a = f.connect();
  REQUIRE(f.loop.run_until([&] { return f.proxy->live_connections() == 1; }, 5s));
  f.proxy->blackhole(true);
  const std::string request = handshake_request(f.proxy->port());
  a.send(request);
  REQUIRE(f.loop.run_until([&] { return f.proxy->swallowed() == request.size(); }, 5s));
  f.loop.run_for(uvcometd::test::quiet_period);  // nothing comes back
  CHECK(a.in.empty());
  CHECK_FALSE(a.ended());
  CHECK(a.write_error == 0);
  CHECK(f.proxy->live_connections() == 1);
  CHECK(f.proxy->bytes_up() == 0);

  f.proxy->blackhole(false);
  raw_client& b = f.handshake();
  CHECK(has_handshake_reply(b.in));
  // The swallowed request is gone for good; the old connection still works for new bytes.
  CHECK(a.in.empty());
  a.send(handshake_request(f.proxy->port()));
  REQUIRE(f.loop.run_until([&] { return has_handshake_reply(a.in) || a.ended(); }, 10s));
  CHECK(has_handshake_reply(a.in));
  REQUIRE(f.finish() == 0);
}

TEST_CASE("fault_proxy set_target: a dead target resets the client", "[fault_proxy]") {
  fixture f;
  // A port nobody listens on: bind, read it, close.
  int dead_port = 0;
  {
    echo_server tmp(f.loop.get());
    dead_port = tmp.port;
    tmp.close_all();
    REQUIRE(f.loop.run_until([&] { return tmp.listener_closed; }));
  }
  f.proxy->set_target(dead_port);
  raw_client& c = f.connect();
  c.send(handshake_request(f.proxy->port()));
  REQUIRE(f.loop.run_until([&] { return c.ended(); }, 2s));
  CHECK(c.read_error == UV_ECONNRESET);
  CHECK(c.in.empty());
  CHECK(f.proxy->live_connections() == 0);

  f.proxy->set_target(faye().port());
  raw_client& d = f.handshake();
  CHECK(has_handshake_reply(d.in));
  REQUIRE(f.finish() == 0);
}

TEST_CASE("fault_proxy forwards bulk data in order and propagates half-close", "[fault_proxy]") {
  fixture f;
  f.echo = std::make_unique<echo_server>(f.loop.get());
  f.proxy->set_target(f.echo->port);

  std::string data(3 * 1024 * 1024 + 17, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) {
    data[i] = static_cast<char>((i * 131 + i / 7) & 0xff);
  }
  raw_client& c = f.connect();
  // Written in pieces right away: the first ones reach the proxy before its upstream connects.
  for (std::size_t off = 0; off < data.size(); off += 100000) c.send(data.substr(off, 100000));
  c.shutdown();
  REQUIRE(f.loop.run_until([&] { return c.ended(); }, 20s));
  CHECK(c.read_error == 0);
  CHECK(c.eof);
  CHECK(c.shutdown_status == 0);
  REQUIRE(c.in.size() == data.size());
  CHECK(c.in == data);
  CHECK(f.proxy->bytes_up() == data.size());
  CHECK(f.proxy->bytes_down() == data.size());
  CHECK(f.loop.run_until([&] { return f.proxy->live_connections() == 0; }, 2s));
  REQUIRE(f.finish() == 0);
}

TEST_CASE("fault_proxy close() releases everything, with connections in every state",
          "[fault_proxy]") {
  fixture f;
  raw_client& a = f.handshake();  // established
  REQUIRE(has_handshake_reply(a.in));
  f.proxy->blackhole(true);
  raw_client& b = f.connect();  // blackholed request in flight
  b.send(handshake_request(f.proxy->port()));
  f.loop.run_until([&] { return f.proxy->accepted() == 2; }, 2s);
  raw_client& c = f.connect();  // accepted, upstream maybe still connecting
  f.loop.run_until([&] { return f.proxy->accepted() == 3; }, 2s);
  CHECK(f.proxy->accepted() == 3);

  bool done = false;
  f.proxy->close([&] { done = true; });
  CHECK(f.proxy->live_connections() == 0);
  CHECK_FALSE(f.proxy->listening());
  REQUIRE(f.loop.run_until([&] { return done; }, 2s));
  CHECK(f.proxy->closed());
  // The proxy is gone; the clients see their connections end.
  CHECK(f.loop.run_until([&] { return a.ended() && b.ended() && c.ended(); }, 2s));
  f.proxy_done = true;  // already closed: the fixture's close() call is ignored
  REQUIRE(f.finish() == 0);
}
