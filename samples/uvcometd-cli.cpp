// uvcometd-cli — subscribe to and publish on a Bayeux (CometD) server from the command line.
//
// stdout carries one JSON line per received message and nothing else; errors and the -v state
// lines go to stderr. Exit status: 0 done, 1 refused / failed, 2 usage, 3 connection timeout.
//
// stdout is line-buffered on a terminal. Otherwise it is fully buffered (64 KiB) and flushed when
// the loop is about to wait for I/O, so a pipe sees each batch of messages without a write per
// line. If the reader of stdout goes away (EPIPE; SIGPIPE is ignored) the client closes quietly
// and exits 0, as a consumer like `head -n 3` expects; any other write error exits 1.
#include <cstdint>
#include <unistd.h>
#include <uv.h>

#include <cassert>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "cli_args.hpp"
#include "uvcometd/client.hpp"

#ifndef UVCOMETD_CLI_VERSION
#define UVCOMETD_CLI_VERSION "unknown"
#endif

namespace {

using uvcometd_cli::cli_config;

constexpr int exit_done = 0;
constexpr int exit_failed = 1;
constexpr int exit_usage = 2;
constexpr int exit_timeout = 3;

void print_error(std::string_view text) {
  std::fprintf(stderr, "uvcometd-cli: %.*s\n", static_cast<int>(text.size()), text.data());
}

std::string sv(std::string_view s) { return std::string(s); }

uvcometd::options make_options(const cli_config& cfg) {
  uvcometd::options o;
  o.url = cfg.url;
  o.connection_types = cfg.connection_types;
  o.connection_timeout = cfg.connection_timeout;
  o.max_pending_count = cfg.max_pending_count;
  o.headers = cfg.headers;
  o.handshake_ext = cfg.handshake_ext;
  o.tls_verify = cfg.tls_verify;
  o.ca_file = cfg.ca_file;
  if (cfg.debug) {
    o.log = [](uvcometd::log_level level, std::string_view text) {
      static const char* const names[] = {"debug", "info", "warning", "error"};
      std::fprintf(stderr, "uvcometd-cli: [%s] %.*s\n", names[static_cast<int>(level)],
                   static_cast<int>(text.size()), text.data());
    };
  }
  return o;
}

// One run of the program on the caller's loop: open, subscribe, publish, print, close.
class app {
 public:
  app(uv_loop_t* loop, cli_config cfg, std::unique_ptr<uvcometd::client> c)
      : loop_(loop), cfg_(std::move(cfg)), client_(std::move(c)) {}
  app(const app&) = delete;
  app& operator=(const app&) = delete;

  // Sets up the handles and opens the client; the caller then runs the loop until it returns.
  // Returns false when nothing was started (the exit code is set and nothing needs the loop).
  bool start() {
    if (!init_signal(&sigint_, SIGINT) || !init_signal(&sigterm_, SIGTERM)) return false;
    if (isatty(STDOUT_FILENO) == 0) {
      // Output to a pipe or file is buffered and flushed at most every flush_period, so a
      // reader sees lines promptly without a write per message.
      if (uv_timer_init(loop_, &flusher_) == 0) {
        flusher_.data = this;
        flusher_ready_ = true;
        uv_unref(reinterpret_cast<uv_handle_t*>(&flusher_));  // never keeps the loop alive
      }
    }
    client_->on_state([this](uvcometd::state s, uvcometd::connection_type t,
                             const uvcometd::error& why) { on_state(s, t, why); });
    const std::error_code ec = client_->open([this](const uvcometd::error& err) { on_open(err); });
    if (ec) {
      print_error("open: " + ec.message());
      finish(exit_failed);
    }
    return true;
  }

  int exit_code() const noexcept { return exit_code_; }
  bool output_closed() const noexcept { return output_closed_; }

 private:
  bool init_signal(uv_signal_t* h, int signum) {
    int rc = uv_signal_init(loop_, h);
    if (rc == 0) {
      h->data = this;
      signals_.push_back(h);
      rc = uv_signal_start(h, [](uv_signal_t* s, int) { static_cast<app*>(s->data)->on_signal(); },
                           signum);
    }
    if (rc != 0) {
      print_error(std::string("signal handler: ") + uv_strerror(rc));
      exit_code_ = exit_failed;
      close_handles();
      return false;
    }
    return true;
  }

  void on_signal() {
    if (!finishing_) {
      finish(exit_done);
      return;
    }
    // A second signal while closing: stop waiting for the server. Destroying the client runs no
    // further callback, so close() will never complete and our handles are closed here.
    client_.reset();
    close_handles();
  }

  void on_state(uvcometd::state s, uvcometd::connection_type t, const uvcometd::error& why) {
    if (cfg_.verbose) {
      std::string line = "state=" + sv(uvcometd::to_string(s)) +
                         " transport=" + sv(uvcometd::to_string(t));
      if (why) line += " error=" + why.to_string();
      std::fprintf(stderr, "%s\n", line.c_str());
    }
    // A failure before open() completed is reported by open's completion.
    if (s == uvcometd::state::failed && opened_ && !finishing_) {
      print_error(why ? why.to_string() : std::string("connection failed"));
      finish(why.code == uvcometd::errc::connection_timeout ? exit_timeout : exit_failed);
    }
  }

  void on_open(const uvcometd::error& err) {
    if (finishing_) return;
    if (err) {
      print_error(err.to_string());
      if (err.code == uvcometd::errc::connection_timeout) {
        finish(exit_timeout);
      } else if (err.code == uvcometd::errc::invalid_argument) {
        finish(exit_usage);  // an option the library rejected (e.g. --ext)
      } else {
        finish(exit_failed);
      }
      return;
    }
    opened_ = true;
    if (cfg_.subscribe.empty()) {
      start_publishing();
    } else {
      subscribe_all();
    }
  }

  void subscribe_all() {
    subscribes_pending_ = cfg_.subscribe.size();
    for (std::size_t i = 0; i < cfg_.subscribe.size() && !finishing_; ++i) {
      const std::string& channel = cfg_.subscribe[i];
      const std::error_code ec = client_->subscribe(
          channel, [this, i](const uvcometd::message& m) { on_message(i, m); },
          [this, i](const uvcometd::error& err) { on_subscribed(i, err); });
      if (ec) {
        print_error("subscribe " + channel + ": " + ec.message());
        finish(ec == uvcometd::errc::invalid_channel ? exit_usage : exit_failed);
      }
    }
  }

  void on_subscribed(std::size_t i, const uvcometd::error& err) {
    if (finishing_) return;
    if (err) {
      print_error("subscribe " + cfg_.subscribe[i] + ": " + err.to_string());
      finish(exit_failed);
      return;
    }
    if (--subscribes_pending_ == 0) start_publishing();
  }

  // After every subscription is confirmed, so that a publish to a subscribed channel comes back.
  void start_publishing() {
    if (cfg_.publish.empty()) {
      if (cfg_.subscribe.empty()) finish(exit_done);  // nothing to do but connect
      return;
    }
    publishes_pending_ = cfg_.publish.size();
    for (std::size_t i = 0; i < cfg_.publish.size() && !finishing_; ++i) {
      const auto& p = cfg_.publish[i];
      const std::error_code ec = client_->publish(
          p.channel, p.data, [this, i](const uvcometd::error& err) { on_published(i, err); });
      if (ec == uvcometd::errc::invalid_argument) {
        print_error("publish " + p.channel + ": invalid JSON: " + p.data);
        finish(exit_usage);
      } else if (ec) {
        print_error("publish " + p.channel + ": " + ec.message());
        finish(ec == uvcometd::errc::invalid_channel ? exit_usage : exit_failed);
      }
    }
  }

  void on_published(std::size_t i, const uvcometd::error& err) {
    if (finishing_) return;
    if (err) {
      print_error("publish " + cfg_.publish[i].channel + ": " + err.to_string());
      publish_failed_ = true;
    }
    if (--publishes_pending_ != 0) return;
    if (publish_failed_) {
      finish(exit_failed);
    } else if (cfg_.subscribe.empty()) {
      finish(exit_done);
    }
  }

  void on_message(std::size_t i, const uvcometd::message& m) {
    if (finishing_) return;
    // The library hands a message to every local subscription whose pattern matches (-s /a/* and
    // -s /a/b): print it once, from the first matching one. If our matching ever disagrees with
    // the library's, print rather than lose the message.
    const std::size_t first = first_match(m.channel);
    if (first != npos && first != i) return;
    write_message_line(m.channel, m.data);
    if (finishing_) return;  // stdout went away
    ++received_;
    if (cfg_.count && received_ >= *cfg_.count) finish(exit_done);
  }

  std::size_t first_match(std::string_view channel) const noexcept {
    for (std::size_t i = 0; i < cfg_.subscribe.size(); ++i) {
      if (uvcometd_cli::channel_matches(cfg_.subscribe[i], channel)) return i;
    }
    return npos;
  }

  // Writes the line uvcometd_cli::format_message_line(channel, data) makes, with `data` copied
  // as the server sent it, into a reused buffer: a message costs no allocation, and the quoted
  // channel is kept for the next message, which usually has the same channel.
  void write_message_line(std::string_view channel, std::string_view data) {
    if (channel != line_channel_ || line_prefix_.empty()) {
      line_channel_.assign(channel);
      line_prefix_ = "{\"channel\":" + uvcometd_cli::json_quote(channel) + ",\"data\":";
    }
    line_.assign(line_prefix_);
    line_.append(data.empty() ? std::string_view("null") : data);
    line_.append("}\n");
    write(line_);
  }

  void write(std::string_view line) {
    if (output_closed_) return;
    if (std::fwrite(line.data(), 1, line.size(), stdout) != line.size()) {
      output_error();
      return;
    }
    dirty_ = true;
    if (flusher_ready_ && !flush_armed_) {
      flush_armed_ = true;
      uv_timer_start(&flusher_, [](uv_timer_t* h) {
        auto* self = static_cast<app*>(h->data);
        self->flush_armed_ = false;
        self->flush();
      }, flush_period_ms, 0);
    }
  }

  void flush() {
    if (!dirty_ || output_closed_) return;
    dirty_ = false;
    if (std::fflush(stdout) != 0) output_error();
  }

  void output_error() {
    const int e = errno;
    output_closed_ = true;
    if (e == EPIPE) {
      finish(exit_done);
    } else {
      print_error(std::string("stdout: ") + std::strerror(e));
      finish(exit_failed);
    }
  }

  // Records the exit code (the first one wins) and closes the client, then our handles; uv_run
  // returns when everything is closed.
  void finish(int code) {
    if (finishing_) return;
    finishing_ = true;
    exit_code_ = code;
    flush();
    client_->close([this](const uvcometd::error&) { close_handles(); });
  }

  void close_handles() {
    if (handles_closed_) return;
    handles_closed_ = true;
    for (uv_signal_t* h : signals_) uv_close(reinterpret_cast<uv_handle_t*>(h), nullptr);
    if (flusher_ready_) uv_close(reinterpret_cast<uv_handle_t*>(&flusher_), nullptr);
  }

  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  uv_loop_t* loop_;
  cli_config cfg_;
  std::unique_ptr<uvcometd::client> client_;
  uv_signal_t sigint_{};
  uv_signal_t sigterm_{};
  std::vector<uv_signal_t*> signals_;  // the initialised ones
  static constexpr std::uint64_t flush_period_ms = 20;
  uv_timer_t flusher_{};
  bool flusher_ready_ = false;
  bool flush_armed_ = false;

  int exit_code_ = exit_done;
  bool finishing_ = false;
  bool handles_closed_ = false;
  bool opened_ = false;
  bool publish_failed_ = false;
  bool dirty_ = false;
  bool output_closed_ = false;
  std::size_t subscribes_pending_ = 0;
  std::size_t publishes_pending_ = 0;
  std::size_t received_ = 0;
  std::string line_channel_;  // the channel of line_prefix_
  std::string line_prefix_;   // {"channel":"<line_channel_>","data":
  std::string line_;
};

// Runs the loop until every handle is closed, then closes it.
void drain_and_close(uv_loop_t* loop) {
  uv_run(loop, UV_RUN_DEFAULT);
  const int rc = uv_loop_close(loop);
  assert(rc == 0 && "a handle is still open");
  (void)rc;
}

}  // namespace

int main(int argc, char* argv[]) {
  static char stdout_buffer[64 * 1024];
  if (isatty(STDOUT_FILENO) != 0) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
  } else {
    std::setvbuf(stdout, stdout_buffer, _IOFBF, sizeof stdout_buffer);
  }
  std::signal(SIGPIPE, SIG_IGN);

  uvcometd_cli::parse_result parsed = uvcometd_cli::parse_args(argc, argv);
  switch (parsed.action) {
    case uvcometd_cli::parse_action::help:
      std::fputs(uvcometd_cli::usage().c_str(), stdout);
      return std::fflush(stdout) == 0 ? exit_done : exit_failed;
    case uvcometd_cli::parse_action::version:
      std::fputs("uvcometd-cli " UVCOMETD_CLI_VERSION "\n", stdout);
      return std::fflush(stdout) == 0 ? exit_done : exit_failed;
    case uvcometd_cli::parse_action::usage_error:
      print_error(parsed.error);
      std::fputs(uvcometd_cli::usage().c_str(), stderr);
      return exit_usage;
    case uvcometd_cli::parse_action::run:
      break;
  }

  uv_loop_t loop;
  if (const int rc = uv_loop_init(&loop); rc != 0) {
    print_error(std::string("uv_loop_init: ") + uv_strerror(rc));
    return exit_failed;
  }

  int code = exit_done;
  bool output_closed = false;
  {
    std::unique_ptr<uvcometd::client> client;
    try {
      client = std::make_unique<uvcometd::client>(&loop, make_options(parsed.config));
    } catch (const std::system_error& e) {
      print_error(std::string(e.what()) + " (URL: " + parsed.config.url + ")");
      std::fputs("Try 'uvcometd-cli --help'.\n", stderr);
      drain_and_close(&loop);
      return exit_usage;
    } catch (const std::exception& e) {
      print_error(e.what());
      drain_and_close(&loop);
      return exit_failed;
    }

    app a(&loop, std::move(parsed.config), std::move(client));
    a.start();
    uv_run(&loop, UV_RUN_DEFAULT);
    code = a.exit_code();
    output_closed = a.output_closed();
  }  // the client, closed by now, is destroyed here
  drain_and_close(&loop);

  if (!output_closed && std::fflush(stdout) != 0 && errno != EPIPE) {
    print_error(std::string("stdout: ") + std::strerror(errno));
    if (code == exit_done) code = exit_failed;
  }
  return code;
}
