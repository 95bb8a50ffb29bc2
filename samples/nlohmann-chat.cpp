// nlohmann-chat — uvcometd with nlohmann::json instead of RapidJSON: the library hands over the
// raw JSON text of each message's data and publishes JSON text, so any JSON library fits.
//
//   nlohmann-chat URL CHANNEL [COUNT]
//
// Subscribes to CHANNEL, publishes COUNT (default 3) messages to it, prints the data of each
// message received (re-serialized, one line each), and closes once it has received COUNT
// messages and every publish was acknowledged. Exit status: 0 done, 1 failed, 2 usage.
#include <uv.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "uvcometd/client.hpp"

namespace {

class chat {
 public:
  chat(uvcometd::client& c, std::string channel, int count)
      : client_(c), channel_(std::move(channel)), count_(count) {}

  void start() {
    if (auto ec = client_.open([this](const uvcometd::error& err) { on_open(err); })) {
      fail("open: " + ec.message());
    }
  }

  int exit_code() const { return exit_code_; }

 private:
  void on_open(const uvcometd::error& err) {
    if (err) return fail("open: " + err.to_string());
    const auto ec = client_.subscribe(
        channel_, [this](const uvcometd::message& m) { on_message(m); },
        [this](const uvcometd::error& e) { on_subscribed(e); });
    if (ec) fail("subscribe: " + ec.message());
  }

  // Publishing only once the server confirmed the subscription, so that our messages come back.
  void on_subscribed(const uvcometd::error& err) {
    if (err) return fail("subscribe: " + err.to_string());
    for (int i = 0; i < count_ && !done_; ++i) {
      const nlohmann::json j = {{"text", "hello"}, {"seq", i}};
      const auto ec = client_.publish(channel_, j.dump(), [this](const uvcometd::error& e) {
        if (done_) return;  // cancelled by our own close()
        if (e) return fail("publish: " + e.to_string());
        ++acknowledged_;
        finish_when_done();
      });
      if (ec) fail("publish: " + ec.message());
    }
  }

  void on_message(const uvcometd::message& m) {
    if (done_) return;
    // m.data is a view valid during this call; parse (which copies) without exceptions.
    const auto j = nlohmann::json::parse(m.data.begin(), m.data.end(), nullptr, false);
    if (j.is_discarded()) return fail("received data that is not JSON");
    std::printf("%s\n", j.dump().c_str());
    ++received_;
    finish_when_done();
  }

  void finish_when_done() {
    if (received_ >= count_ && acknowledged_ == count_) finish(0);
  }

  void fail(const std::string& why) {
    std::fprintf(stderr, "nlohmann-chat: %s\n", why.c_str());
    finish(1);
  }

  void finish(int code) {
    if (done_) return;
    done_ = true;
    exit_code_ = code;
    client_.close();  // the loop ends once every handle is closed
  }

  uvcometd::client& client_;
  std::string channel_;
  int count_;
  int received_ = 0;
  int acknowledged_ = 0;
  bool done_ = false;
  int exit_code_ = 0;
};

}  // namespace

int main(int argc, char* argv[]) {
  if (argc < 3 || argc > 4) {
    std::fprintf(stderr, "usage: nlohmann-chat URL CHANNEL [COUNT]\n");
    return 2;
  }
  int count = 3;
  if (argc == 4) {
    char* end = nullptr;
    const long n = std::strtol(argv[3], &end, 10);
    if (*argv[3] == '\0' || *end != '\0' || n < 1 || n > 1000000) {
      std::fprintf(stderr, "nlohmann-chat: COUNT must be a number from 1 to 1000000\n");
      return 2;
    }
    count = static_cast<int>(n);
  }

  uv_loop_t loop;
  if (uv_loop_init(&loop) != 0) return 1;
  int code = 1;
  {
    uvcometd::options opts;
    opts.url = argv[1];
    std::unique_ptr<uvcometd::client> client;
    try {
      client = std::make_unique<uvcometd::client>(&loop, opts);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "nlohmann-chat: %s\n", e.what());
      code = 2;
    }
    if (client) {
      chat c(*client, argv[2], count);
      c.start();
      uv_run(&loop, UV_RUN_DEFAULT);
      code = c.exit_code();
    }
  }
  if (uv_loop_close(&loop) != 0) {
    std::fprintf(stderr, "nlohmann-chat: a handle is still open\n");
    return 1;
  }
  return code;
}
