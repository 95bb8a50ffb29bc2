// Smallest program using uvcometd as a dependency: creates a client on a loop, closes it without
// ever opening it, and checks that every handle is gone afterwards. Nothing touches the network.
#include <uv.h>
#include <cstdio>
#include <string>
#include <uvcometd/client.hpp>

int main() {
  uv_loop_t loop;
  if (uv_loop_init(&loop) != 0) {
    std::fprintf(stderr, "uv_loop_init failed\n");
    return 1;
  }
  int closed = 0;
  {
    uvcometd::options opts;
    opts.url = "http://127.0.0.1:9/bayeux";
    uvcometd::client client(&loop, opts);
    if (client.current_state() != uvcometd::state::disconnected) {
      std::fprintf(stderr, "unexpected initial state\n");
      return 1;
    }
    client.close([&closed](const uvcometd::error& err) {
      if (err) std::fprintf(stderr, "close reported: %s\n", err.to_string().c_str());
      ++closed;
    });
    uv_run(&loop, UV_RUN_DEFAULT);
    if (client.current_state() != uvcometd::state::closed) {
      std::fprintf(stderr, "state after close: %s\n",
                   std::string(uvcometd::to_string(client.current_state())).c_str());
      return 1;
    }
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  if (closed != 1) {
    std::fprintf(stderr, "close completion ran %d times\n", closed);
    return 1;
  }
  int rc = uv_loop_close(&loop);
  if (rc != 0) {
    std::fprintf(stderr, "uv_loop_close: %s\n", uv_strerror(rc));
    return 1;
  }
  std::printf("ok\n");
  return 0;
}
