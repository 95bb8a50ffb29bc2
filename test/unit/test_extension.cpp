// Extensions without the network: bayeux_message editing, the pipeline's order, asynchronous
// completion, failures and cancellation, and the built-in ack, replay and token extensions.
#include <catch2/catch.hpp>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "extension_pipeline.hpp"
#include "uvcometd/extension.hpp"
#include "uvcometd/extensions.hpp"

using uvcometd::bayeux_message;
using uvcometd::errc;
using uvcometd::extension_done;
using uvcometd::message_batch;
using uvcometd::detail::direction;
using uvcometd::detail::extension_pipeline;

namespace {

message_batch batch_of(const std::string& frame) {
  message_batch b;
  REQUIRE(uvcometd::detail::split_frame(frame, b.messages));
  return b;
}

struct step : uvcometd::extension {
  step(std::string n, std::vector<std::string>& l) : name(std::move(n)), log(l) {}
  std::string name;
  std::vector<std::string>& log;
  bool hold = false;
  std::vector<extension_done> held;
  void run(const char* dir, message_batch& b, extension_done done) {
    log.push_back(name + dir + std::to_string(b.messages.size()));
    if (hold)
      held.push_back(std::move(done));
    else
      done({});
  }
  void outgoing(message_batch& b, extension_done done) override { run(">", b, std::move(done)); }
  void incoming(message_batch& b, extension_done done) override { run("<", b, std::move(done)); }
};

}  // namespace

TEST_CASE("bayeux_message reads and edits fields and ext, keeping valid JSON", "[extension]") {
  auto m = bayeux_message::parse(
      R"( {"channel":"/meta/subscribe","id":"7","successful":false,"ext":{"a":1,"b\u0022":[1,2]},"subscription":"/x"} )");
  CHECK(m.channel() == "/meta/subscribe");
  CHECK(m.is_meta());
  CHECK(m.successful() == false);
  CHECK(m.field("id") == "\"7\"");
  CHECK(m.string_field("id") == "7");
  CHECK(m.ext("a") == "1");
  CHECK(m.ext("b\"") == "[1,2]");
  CHECK(m.ext("none").empty());
  m.set_ext("a", " {\"x\":true} ");
  m.set_ext("c", "\"new\"");
  CHECK(m.erase_ext("b\""));
  CHECK_FALSE(m.erase_ext("b\""));
  CHECK(m.field("ext") == R"({"a":{"x":true},"c":"new"})");
  m.set_string_field("clientId", "q\"uote");
  CHECK(m.string_field("clientId") == "q\"uote");
  CHECK(m.erase_field("successful"));
  CHECK_FALSE(m.successful().has_value());
  CHECK(
      m.to_json() ==
      R"({"channel":"/meta/subscribe","id":"7","ext":{"a":{"x":true},"c":"new"},"subscription":"/x","clientId":"q\"uote"})");
  CHECK_THROWS_AS(m.set_field("data", "{bad"), std::system_error);
  CHECK_THROWS_AS(m.set_ext("k", ""), std::system_error);
  CHECK_THROWS_AS(bayeux_message::parse("[1]"), std::system_error);
  CHECK_THROWS_AS(bayeux_message::parse(R"({"a":1} x)"), std::system_error);
  // An ext that is not an object is replaced by one.
  auto n = bayeux_message::parse(R"({"channel":"/a","ext":5})");
  n.set_ext("k", "1");
  CHECK(n.field("ext") == R"({"k":1})");
}

TEST_CASE("bayeux_message refuses a member named twice, however it is spelled", "[extension]") {
  CHECK_THROWS_AS(bayeux_message::parse(R"({"channel":"/a","channel":"/b"})"), std::system_error);
  CHECK_THROWS_AS(bayeux_message::parse(R"({"channel":"/a","chann\u0065l":"/b"})"),
                  std::system_error);
  CHECK_THROWS_AS(bayeux_message::parse(R"({"x":1,"\u0078":2})"), std::system_error);
  CHECK(bayeux_message::parse(R"({"chann\u0065l":"/a"})").channel() == "/a");
}

TEST_CASE("lazy batches are made when their turn comes, one after the other", "[extension]") {
  std::vector<std::string> log;
  auto a = std::make_shared<step>("A", log);
  a->hold = true;
  extension_pipeline p({a}, nullptr, nullptr);
  std::vector<std::string> finished;
  p.push(direction::incoming, batch_of(R"([{"channel":"/one"}])"), 0,
         [&](message_batch&&, const uvcometd::error&) { finished.push_back("one"); });
  int made = 0;
  p.push_lazy(
      direction::incoming,
      [&](message_batch& b) {
        ++made;
        b = batch_of(made == 1 ? R"([{"channel":"/two"},{"channel":"/three"}])"
                               : R"([{"channel":"/four"}])");
        return made == 1;  // a second batch follows the first
      },
      0,
      [&](message_batch&& b, const uvcometd::error& e) {
        CHECK_FALSE(e);
        finished.push_back(b.messages.at(0).channel().substr(1));
      });
  p.push(direction::incoming, batch_of(R"([{"channel":"/five"}])"), 0,
         [&](message_batch&&, const uvcometd::error&) { finished.push_back("five"); });
  CHECK(made == 0);  // the first batch is still held by the extension
  REQUIRE(a->held.size() == 1);
  auto first = std::move(a->held.front());
  a->held.clear();
  first({});
  CHECK(made == 1);
  REQUIRE(a->held.size() == 1);
  auto second = std::move(a->held.front());
  a->held.clear();
  second({});
  CHECK(made == 2);  // the lazy job's second batch, before the batch pushed after it
  REQUIRE(a->held.size() == 1);
  auto third = std::move(a->held.front());
  a->held.clear();
  third({});
  REQUIRE(a->held.size() == 1);
  auto fourth = std::move(a->held.front());
  a->held.clear();
  fourth({});
  CHECK(made == 2);
  CHECK(finished == std::vector<std::string>{"one", "two", "four", "five"});
}

TEST_CASE("split_frame accepts only arrays of objects", "[extension]") {
  std::vector<bayeux_message> out;
  CHECK(uvcometd::detail::split_frame("[]", out));
  CHECK(uvcometd::detail::split_frame(R"([{"a":1}, {"b":2}])", out));
  CHECK(out.size() == 2);
  CHECK(uvcometd::detail::join_frame(out) == R"([{"a":1},{"b":2}])");
  // A single object is a batch of one (some servers answer that way; the codec accepts it).
  std::vector<bayeux_message> one;
  CHECK(uvcometd::detail::split_frame(R"( {"channel":"/a"} )", one));
  REQUIRE(one.size() == 1);
  CHECK(one[0].channel() == "/a");
  for (const char* bad : {"", "[1]", "[{}", R"([{"a":1},])", "[{}] x", "{} x", "1"}) {
    std::vector<bayeux_message> o;
    INFO(bad);
    CHECK_FALSE(uvcometd::detail::split_frame(bad, o));
  }
}

TEST_CASE(
    "the pipeline runs outgoing batches in registration order, incoming in reverse, auth "
    "last out and first in",
    "[extension]") {
  std::vector<std::string> log;
  auto a = std::make_shared<step>("A", log);
  auto b = std::make_shared<step>("B", log);
  struct auth_step : uvcometd::auth_extension {
    std::vector<std::string>* log;
    void outgoing(message_batch&, extension_done done) override {
      log->push_back("Z>");
      done({});
    }
    void incoming(message_batch&, extension_done done) override {
      log->push_back("Z<");
      done({});
    }
    void authenticate(extension_done done) override { done({}); }
  };
  auto z = std::make_shared<auth_step>();
  z->log = &log;
  extension_pipeline p({a, b}, z, nullptr);
  int finished = 0;
  p.push(direction::outgoing, batch_of(R"([{"channel":"/x"}])"), 0,
         [&](message_batch&& out, const uvcometd::error& e) {
           CHECK_FALSE(e);
           CHECK(out.messages.size() == 1);
           ++finished;
         });
  p.push(direction::incoming, batch_of(R"([{"channel":"/y"},{"channel":"/z"}])"), 0,
         [&](message_batch&&, const uvcometd::error&) { ++finished; });
  CHECK(finished == 2);
  CHECK(log == std::vector<std::string>{"A>1", "B>1", "Z>", "Z<", "B<2", "A<2"});
}

TEST_CASE("asynchronous extensions: later batches and pass-through events wait their turn",
          "[extension]") {
  std::vector<std::string> log;
  auto a = std::make_shared<step>("A", log);
  a->hold = true;
  extension_pipeline p({a}, nullptr, nullptr);
  std::vector<int> order;
  p.push(direction::incoming, batch_of(R"([{"n":1}])"), 0,
         [&](message_batch&&, const uvcometd::error&) { order.push_back(1); });
  p.push(direction::incoming, std::nullopt, 0,
         [&](message_batch&&, const uvcometd::error&) { order.push_back(2); });
  p.push(direction::incoming, batch_of(R"([{"n":3}])"), 0,
         [&](message_batch&&, const uvcometd::error&) { order.push_back(3); });
  // The other direction is independent.
  p.push(direction::outgoing, batch_of(R"([{"n":9}])"), 0,
         [&](message_batch&&, const uvcometd::error&) { order.push_back(9); });
  CHECK(order.empty());
  REQUIRE(a->held.size() == 2);  // first incoming and the outgoing one
  auto first = std::move(a->held[0]);
  first({});
  CHECK(order == std::vector<int>{1, 2});
  REQUIRE(a->held.size() == 3);
  a->held[2]({});
  CHECK(order == std::vector<int>{1, 2, 3});
  a->held[1]({});
  CHECK(order == std::vector<int>{1, 2, 3, 9});
}

TEST_CASE(
    "pipeline failures: a throw or an error becomes extension_error, a second done is "
    "ignored, cancelled jobs never finish but hold the lane while an extension has them",
    "[extension]") {
  struct bad : uvcometd::extension {
    int mode = 0;
    extension_done kept;
    void outgoing(message_batch&, extension_done done) override {
      if (mode == 0) throw std::runtime_error("kaboom");
      if (mode == 1)
        done(uvcometd::error{uvcometd::make_error_code(errc::invalid_argument), "nope"});
      if (mode == 2) {
        done({});
        done({});
      }
      if (mode == 3) kept = std::move(done);
    }
  };
  auto x = std::make_shared<bad>();
  std::vector<std::string> logs;
  extension_pipeline p({x}, nullptr,
                       [&](uvcometd::log_level, std::string_view t) { logs.emplace_back(t); });
  uvcometd::error got;
  int calls = 0;
  auto finish = [&](message_batch&&, const uvcometd::error& e) {
    got = e;
    ++calls;
  };
  p.push(direction::outgoing, batch_of("[{}]"), 0, finish);
  CHECK(got.code == errc::extension_error);
  CHECK(got.message.find("kaboom") != std::string::npos);
  x->mode = 1;
  p.push(direction::outgoing, batch_of("[{}]"), 0, finish);
  CHECK(got.code == errc::extension_error);
  CHECK(got.message.find("nope") != std::string::npos);
  x->mode = 2;
  p.push(direction::outgoing, batch_of("[{}]"), 0, finish);
  CHECK_FALSE(got);
  CHECK(calls == 3);
  CHECK(logs.size() == 1);
  x->mode = 3;
  p.push(direction::outgoing, batch_of("[{}]"), 7, finish);
  p.cancel(direction::outgoing, 7);
  x->mode = 2;
  p.push(direction::outgoing, batch_of("[{}]"), 0, finish);
  // The extension still has the cancelled batch: the next one waits for it, so an extension
  // never works on two batches of one direction at once.
  CHECK(calls == 3);
  x->kept({});  // the cancelled batch never finishes; the next one then goes through
  CHECK(calls == 4);
  CHECK_FALSE(got);
}

TEST_CASE("cancelling the events of a tag leaves its batches in the lane", "[extension]") {
  std::vector<std::string> log;
  auto a = std::make_shared<step>("A", log);
  a->hold = true;
  extension_pipeline p({a}, nullptr, nullptr);
  std::vector<int> order;
  p.push(direction::incoming, batch_of(R"([{"n":1}])"), 1,
         [&](message_batch&&, const uvcometd::error&) { order.push_back(1); });
  p.push(direction::incoming, std::nullopt, 1,
         [&](message_batch&&, const uvcometd::error&) { order.push_back(2); });
  p.push(direction::incoming, std::nullopt, 2,
         [&](message_batch&&, const uvcometd::error&) { order.push_back(3); });
  p.cancel(direction::incoming, 1, true);
  REQUIRE(a->held.size() == 1);
  a->held[0]({});
  CHECK(order == std::vector<int>{1, 3});
}

TEST_CASE("ack_extension: asks on handshake, then echoes the last batch on each connect",
          "[extension]") {
  uvcometd::ack_extension ack;
  auto out = batch_of(R"([{"channel":"/meta/handshake","id":"1"}])");
  ack.outgoing(out, [](const uvcometd::error&) {});
  CHECK(out.messages[0].ext("ack") == "true");
  auto in =
      batch_of(R"([{"channel":"/meta/handshake","id":"1","successful":true,"ext":{"ack":true}}])");
  ack.incoming(in, [](const uvcometd::error&) {});
  CHECK(ack.enabled());
  auto c1 = batch_of(R"([{"channel":"/meta/connect","id":"2"}])");
  ack.outgoing(c1, [](const uvcometd::error&) {});
  CHECK(c1.messages[0].ext("ack") == "0");
  auto r1 = batch_of(
      R"([{"channel":"/x","data":1},{"channel":"/meta/connect","id":"2","successful":true,"ext":{"ack":5}}])");
  ack.incoming(r1, [](const uvcometd::error&) {});
  CHECK(ack.batch() == 5);
  // A failed connect does not acknowledge anything.
  auto r2 =
      batch_of(R"([{"channel":"/meta/connect","id":"3","successful":false,"ext":{"ack":6}}])");
  ack.incoming(r2, [](const uvcometd::error&) {});
  CHECK(ack.batch() == 5);
  auto c2 = batch_of(R"([{"channel":"/meta/connect","id":"4"}])");
  ack.outgoing(c2, [](const uvcometd::error&) {});
  CHECK(c2.messages[0].ext("ack") == "5");
  // A server without acks: nothing added to connects.
  uvcometd::ack_extension plain;
  auto hs = batch_of(R"([{"channel":"/meta/handshake","id":"1","successful":true}])");
  plain.incoming(hs, [](const uvcometd::error&) {});
  auto c3 = batch_of(R"([{"channel":"/meta/connect","id":"2"}])");
  plain.outgoing(c3, [](const uvcometd::error&) {});
  CHECK(c3.messages[0].ext("ack").empty());
}

TEST_CASE("replay_extension: ids from data.event.replayId, the store, the fallback",
          "[extension]") {
  auto store = std::make_shared<uvcometd::memory_replay_store>();
  store->save("/t/b", 40);
  uvcometd::replay_extension r({-2, -1, store});
  auto sub = batch_of(
      R"([{"channel":"/meta/subscribe","id":"1","subscription":"/t/a"},{"channel":"/meta/subscribe","id":"2","subscription":"/t/b"}])");
  r.outgoing(sub, [](const uvcometd::error&) {});
  CHECK(sub.messages[0].ext("replay") == R"({"/t/a":-2})");
  CHECK(sub.messages[1].ext("replay") == R"({"/t/b":40})");
  auto data = batch_of(
      R"([{"channel":"/t/a","data":{"event":{"replayId":17},"payload":{}}},{"channel":"/t/a","data":{"payload":1}}])");
  r.incoming(data, [](const uvcometd::error&) {});
  CHECK(r.replay_id("/t/a") == 17);
  // The store follows deliveries, not arrivals.
  CHECK_FALSE(store->load("/t/a").has_value());
  uvcometd::message m;
  m.channel = "/t/a";
  m.data = R"({"event":{"replayId":17}})";
  r.delivered(m);
  CHECK(store->load("/t/a") == 17);
  // The server refuses 40: the subscribe goes again from -1.
  auto refused = batch_of(
      R"([{"channel":"/meta/subscribe","id":"2","subscription":"/t/b","successful":false,"error":"400::The replayId 40 you provided was invalid."}])");
  r.incoming(refused, [](const uvcometd::error&) {});
  CHECK(uvcometd::detail::message_access::resends(refused) == std::vector<std::uint64_t>{2});
  CHECK(r.replay_id("/t/b") == -1);
  auto again = batch_of(R"([{"channel":"/meta/subscribe","id":"3","subscription":"/t/b"}])");
  r.outgoing(again, [](const uvcometd::error&) {});
  CHECK(again.messages[0].ext("replay") == R"({"/t/b":-1})");
  // Refused again with the fallback id itself: no second resend.
  auto refused2 = batch_of(
      R"([{"channel":"/meta/subscribe","id":"3","subscription":"/t/b","successful":false,"error":"400::The replayId -1 you provided was invalid."}])");
  r.incoming(refused2, [](const uvcometd::error&) {});
  CHECK(uvcometd::detail::message_access::resends(refused2).empty());
}

TEST_CASE("token_auth: the provider runs before the first request and on authenticate()",
          "[extension]") {
  int calls = 0;
  uvcometd::token_auth::token_callback pending;
  uvcometd::token_auth t(
      [&](uvcometd::token_auth::token_callback cb) {
        ++calls;
        pending = std::move(cb);
      },
      {"Authorization", "Bearer", "auth"});
  auto b = batch_of(R"([{"channel":"/meta/handshake","id":"1"}])");
  bool done = false;
  t.outgoing(b, [&](const uvcometd::error& e) {
    CHECK_FALSE(e);
    done = true;
  });
  CHECK(calls == 1);
  CHECK_FALSE(done);
  pending({}, "tok1");
  CHECK(done);
  REQUIRE(b.headers.size() == 1);
  CHECK(b.headers[0] == std::pair<std::string, std::string>{"Authorization", "Bearer tok1"});
  CHECK(b.messages[0].ext("auth") == R"({"token":"tok1"})");
  uvcometd::error auth_err;
  t.authenticate([&](const uvcometd::error& e) { auth_err = e; });
  CHECK(calls == 2);
  bool second_waiter = false;
  t.authenticate([&](const uvcometd::error& e) {
    CHECK(e.code == errc::invalid_argument);
    second_waiter = true;
  });
  CHECK(calls == 2);  // joins the call in flight
  pending(uvcometd::error{uvcometd::make_error_code(errc::invalid_argument), "down"}, "");
  CHECK(auth_err.code == errc::invalid_argument);
  CHECK(second_waiter);
  CHECK(t.token() == "tok1");  // kept on failure
  auto c = batch_of(R"([{"channel":"/meta/connect","id":"2"}])");
  c.headers.emplace_back("authorization", "old");
  t.outgoing(c, [](const uvcometd::error&) {});
  CHECK(calls == 2);
  REQUIRE(c.headers.size() == 1);
  CHECK(c.headers[0].second == "Bearer tok1");
  CHECK(c.messages[0].ext("auth").empty());  // only the handshake carries it
}
