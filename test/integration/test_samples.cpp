// The samples end to end: each runs as a child process against a real server (path in env
// UVCOMETD_NLOHMANN_SAMPLE for nlohmann-chat); checks exit status and output. test/meson.build
// registers this file only when the samples are built.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "rigs.hpp"

using namespace std::chrono_literals;
using uvcometd::test::child_process;
using uvcometd::test::lines_of;
using uvcometd::test::server_process;

namespace {

// The sample's path; the test fails without it.
std::string nlohmann_sample() {
  const char* path = uvcometd::test::env_path("UVCOMETD_NLOHMANN_SAMPLE");
  INFO("UVCOMETD_NLOHMANN_SAMPLE is not set (meson test sets it when the sample is built)");
  REQUIRE(path != nullptr);
  return path;
}

}  // namespace

TEST_CASE("nlohmann-chat receives every message it published to its channel, then exits 0",
          "[integration][samples]") {
  const std::string sample = nlohmann_sample();
  server_process srv("faye-server.js");
  child_process r({sample, srv.url(), "/chat/room1", "4"});
  r.wait(30s);
  INFO(r.describe());
  CHECK(r.exit_code() == 0);
  CHECK(r.err().empty());
  auto lines = lines_of(r.out());
  std::sort(lines.begin(), lines.end());  // the sample does not promise an order
  CHECK(lines ==
        std::vector<std::string>{R"({"seq":0,"text":"hello"})", R"({"seq":1,"text":"hello"})",
                                 R"({"seq":2,"text":"hello"})", R"({"seq":3,"text":"hello"})"});
  // It left by /meta/disconnect: the server holds no client and no subscriber any more.
  const auto stats = uvcometd::test::server_stats(srv);
  INFO("stats: " << stats.dump());
  CHECK(stats["clients"] == 0);
  CHECK(stats["subscriptions"].count("/chat/room1") == 0);
}

TEST_CASE("nlohmann-chat exits 2 on a usage error", "[integration][samples]") {
  const std::string sample = nlohmann_sample();
  const std::vector<std::vector<std::string>> cases = {
      {},                                              // no URL, no channel
      {"http://127.0.0.1:9/bayeux"},                   // no channel
      {"http://127.0.0.1:9/bayeux", "/chat", "zero"},  // count not a number
      {"http://127.0.0.1:9/bayeux", "/chat", "0"},     // count out of range
      {"ftp://127.0.0.1:9/bayeux", "/chat"},           // not an http(s) URL
  };
  for (const auto& args : cases) {
    std::vector<std::string> argv{sample};
    argv.insert(argv.end(), args.begin(), args.end());
    child_process r(argv);
    r.wait(15s);
    INFO(r.describe());
    CHECK(r.exit_code() == 2);
    CHECK(r.out().empty());
    CHECK(r.err().find("nlohmann-chat") != std::string::npos);
  }
}
