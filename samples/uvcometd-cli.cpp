// uvcometd-cli — subscribe to and publish on a Bayeux (CometD) server from the command line.
//
// stdout carries one JSON line per received message and nothing else; errors, the -v state lines
// and the library's log go to stderr, every byte of them made safe for a terminal first (server
// text can hold escape sequences). Exit status: 0 done, 1 refused / failed, 2 usage, 3
// connection timeout, 128+N a signal N before a session or with publishes unacknowledged, 141
// stdout closed by its reader. The manual page (uvcometd-cli.1) is the reference.
//
// stdout is line-buffered on a terminal. Otherwise it is fully buffered (64 KiB) and flushed at
// most every 20 ms, so a pipe sees each batch of messages without a write per line. A write
// error ends the run: EPIPE (SIGPIPE is ignored) quietly with 141, as a shell reports a command
// killed by SIGPIPE; any other error with its message and 1.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <cassert>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "cli_args.hpp"
#include "uvcometd/checks.hpp"
#include "uvcometd/client.hpp"
#include "uvcometd/extensions.hpp"
#include "uvcometd/version.hpp"

namespace {

using uvcometd_cli::cli_config;

constexpr int exit_done = 0;
constexpr int exit_failed = 1;
constexpr int exit_usage = 2;
constexpr int exit_timeout = 3;
constexpr int exit_signal_base = 128;                         // + the signal's number, as shells do
constexpr int exit_broken_pipe = exit_signal_base + SIGPIPE;  // 141

// The environment variable holding extra headers, one "Name: value" per line.
constexpr const char* headers_env = "UVCOMETD_HEADERS";
// A header file larger than this is refused (it is not a header file).
constexpr std::size_t max_header_file = 1 << 20;

// Writes `text` + '\n' to stderr, made safe for a terminal.
void print_line(std::string_view text) {
  std::string line = uvcometd_cli::terminal_safe(text);
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stderr);
}

void print_error(std::string_view text) { print_line("uvcometd-cli: " + std::string(text)); }

std::string sv(std::string_view s) { return std::string(s); }

// Reads the file at `path` whole (it may be a pipe such as <(...)). Returns an error text or empty.
std::string read_small_file(const std::string& path, std::string& text) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::strerror(errno);
  char buf[4096];
  std::string err;
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      err = std::strerror(errno);
      break;
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > max_header_file) {
      err = "larger than 1 MiB";
      break;
    }
  }
  ::close(fd);
  return err;
}

// Completes the configuration from the environment and the files it names (headers from
// $UVCOMETD_HEADERS and --header-file, a readable --cacert). Returns a usage error or empty.
// Runs before the loop: the files are read with blocking calls.
std::string load_files(cli_config& cfg) {
  std::vector<std::string> headers;
  if (const char* env = std::getenv(headers_env); env != nullptr) {
    const std::string why = uvcometd_cli::parse_header_text(env, headers_env, headers);
    if (!why.empty()) return why;
  }
  for (const std::string& path : cfg.header_files) {
    std::string text;
    const std::string err = read_small_file(path, text);
    if (!err.empty()) return "--header-file " + path + ": " + err;
    const std::string why = uvcometd_cli::parse_header_text(text, path, headers);
    if (!why.empty()) return "--header-file " + why;
  }
  headers.insert(headers.end(), cfg.headers.begin(), cfg.headers.end());
  cfg.headers = std::move(headers);
  if (!cfg.ca_file.empty()) {
    // Read a byte, which also refuses a directory; curl would only say later that TLS failed.
    const int fd = ::open(cfg.ca_file.c_str(), O_RDONLY | O_CLOEXEC);
    char byte;
    const bool ok = fd >= 0 && ::read(fd, &byte, 1) >= 0;
    const int e = errno;
    if (fd >= 0) ::close(fd);
    if (!ok) return "--cacert " + cfg.ca_file + ": " + std::strerror(e);
  }
  return {};
}

uvcometd::options make_options(const cli_config& cfg) {
  uvcometd::options o;
  if (cfg.fallbacks.empty()) {
    o.url = cfg.url;
  } else {
    o.urls.push_back(cfg.url);
    o.urls.insert(o.urls.end(), cfg.fallbacks.begin(), cfg.fallbacks.end());
  }
  o.connection_types = cfg.connection_types;
  o.connection_timeout = cfg.connection_timeout;
  o.max_pending_count = cfg.max_pending_count;
  o.headers = cfg.headers;
  o.handshake_ext = cfg.handshake_ext;
  o.tls_verify = cfg.tls_verify;
  o.ca_file = cfg.ca_file;
  if (cfg.ack) o.extensions.push_back(std::make_shared<uvcometd::ack_extension>());
  if (cfg.replay_from) {
    uvcometd::replay_extension::settings s;
    s.initial_id = *cfg.replay_from;
    s.fallback_id = std::nullopt;  // an id the server refuses fails the subscription: say so
    o.extensions.push_back(std::make_shared<uvcometd::replay_extension>(std::move(s)));
  }
  if (cfg.debug || cfg.verbose > 0) {
    const auto min =
        cfg.debug || cfg.verbose > 1 ? uvcometd::log_level::debug : uvcometd::log_level::info;
    o.log = [min](uvcometd::log_level level, std::string_view text) {
      if (level < min) return;
      static const char* const names[] = {"debug", "info", "warning", "error"};
      print_line("uvcometd-cli: [" + std::string(names[static_cast<int>(level)]) + "] " + sv(text));
    };
  }
  return o;
}

// Reads stdin on the loop and hands it over line by line: a pipe, socket or terminal through a
// uv stream, anything else (a regular file, /dev/null) through uv_fs_read on the thread pool.
// The receiver may pause() delivery (reading stops once the buffered lines are used up) and
// resume() it later, so memory stays bounded by one read plus one line.
class stdin_lines {
 public:
  struct receiver {
    // One line (without its '\n'), numbered from 1; `too_long` when it exceeded max_line (its
    // text is then empty and the rest of it is skipped).
    virtual void on_line(std::string_view line, std::size_t number, bool too_long) = 0;
    // The end of stdin (`error` empty) or a read error. Called once, after the last line.
    virtual void on_end(const std::string& error) = 0;

   protected:
    ~receiver() = default;
  };

  static constexpr std::size_t max_line = 16u << 20;

  stdin_lines(uv_loop_t* loop, receiver& r) : loop_(loop), receiver_(r) {}
  stdin_lines(const stdin_lines&) = delete;
  stdin_lines& operator=(const stdin_lines&) = delete;

  // Starts reading. Returns an error text, or empty.
  std::string start() {
    int rc = 0;
    switch (uv_guess_handle(STDIN_FILENO)) {
      case UV_TTY:
        rc = uv_tty_init(loop_, &h_.tty, STDIN_FILENO, 1);
        if (rc == 0) kind_ = kind::stream;
        break;
      case UV_NAMED_PIPE:
        rc = uv_pipe_init(loop_, &h_.pipe, 0);
        if (rc == 0) {
          kind_ = kind::stream;
          rc = uv_pipe_open(&h_.pipe, STDIN_FILENO);
        }
        break;
      case UV_TCP:
        rc = uv_tcp_init(loop_, &h_.tcp);
        if (rc == 0) {
          kind_ = kind::stream;
          rc = uv_tcp_open(&h_.tcp, STDIN_FILENO);
        }
        break;
      default: kind_ = kind::file; break;
    }
    if (rc != 0) return std::string("stdin: ") + uv_strerror(rc);
    if (kind_ == kind::stream) stream()->data = this;
    fs_.data = this;
    read_more();
    return {};
  }

  void pause() noexcept { paused_ = true; }

  void resume() {
    if (!paused_ || closed_) return;
    paused_ = false;
    deliver();
    if (!paused_ && !closed_) read_more();
  }

  // Stops reading for good; no callback runs after it.
  void close() {
    if (closed_) return;
    closed_ = true;
    if (kind_ == kind::stream) {
      uv_close(reinterpret_cast<uv_handle_t*>(stream()), nullptr);
    } else if (fs_busy_) {
      uv_cancel(reinterpret_cast<uv_req_t*>(&fs_));  // fails once a thread runs it: it ends then
    }
  }

 private:
  enum class kind { none, stream, file };

  uv_stream_t* stream() noexcept { return reinterpret_cast<uv_stream_t*>(&h_); }

  void read_more() {
    if (closed_ || eof_ || ended_ || paused_) return;
    if (kind_ == kind::stream) {
      if (reading_) return;
      const int rc = uv_read_start(
          stream(),
          [](uv_handle_t* h, std::size_t, uv_buf_t* buf) {
            auto* self = static_cast<stdin_lines*>(h->data);
            *buf = uv_buf_init(self->chunk_, sizeof self->chunk_);
          },
          [](uv_stream_t* s, ssize_t n, const uv_buf_t*) {
            static_cast<stdin_lines*>(s->data)->on_read(n);
          });
      if (rc != 0) return end(std::string("stdin: ") + uv_strerror(rc));
      reading_ = true;
    } else if (kind_ == kind::file && !fs_busy_) {
      uv_buf_t buf = uv_buf_init(chunk_, sizeof chunk_);
      const int rc = uv_fs_read(loop_, &fs_, STDIN_FILENO, &buf, 1, -1, [](uv_fs_t* req) {
        const auto n = static_cast<ssize_t>(req->result);
        uv_fs_req_cleanup(req);
        auto* self = static_cast<stdin_lines*>(req->data);
        self->fs_busy_ = false;
        self->on_read(n == 0 ? static_cast<ssize_t>(UV_EOF) : n);
      });
      if (rc != 0) return end(std::string("stdin: ") + uv_strerror(rc));
      fs_busy_ = true;
    }
  }

  void on_read(ssize_t n) {
    if (closed_) return;
    if (n == 0) return;  // EAGAIN on a stream
    if (n == UV_EOF || n < 0) {
      if (kind_ == kind::stream && reading_) uv_read_stop(stream());
      reading_ = false;
      if (n == UV_ECANCELED) return;
      eof_ = true;
      read_error_ =
          n == UV_EOF ? std::string() : std::string("stdin: ") + uv_strerror(static_cast<int>(n));
      deliver();
      return;
    }
    append(std::string_view(chunk_, static_cast<std::size_t>(n)));
    deliver();
    if (paused_ && kind_ == kind::stream && reading_) {
      uv_read_stop(stream());
      reading_ = false;
    }
    read_more();
  }

  // Adds read bytes to the buffer. Only the new bytes are searched for a newline, so a line
  // arriving over many reads costs linear time. An unfinished line past max_line is dropped,
  // marked to be reported as too long, and the rest of it skipped.
  void append(std::string_view bytes) {
    while (!bytes.empty()) {
      const auto nl = bytes.find('\n');
      if (skipping_) {
        if (nl == std::string_view::npos) return;
        skipping_ = false;
        bytes.remove_prefix(nl + 1);
        continue;
      }
      const std::size_t piece = nl == std::string_view::npos ? bytes.size() : nl;
      if (buffer_.size() - tail_ + piece > max_line) {
        buffer_.resize(tail_);
        overlong_at_.push_back(tail_);
        skipping_ = true;
        continue;
      }
      if (nl == std::string_view::npos) {
        buffer_.append(bytes);
        return;
      }
      buffer_.append(bytes.substr(0, nl + 1));
      tail_ = buffer_.size();
      bytes.remove_prefix(nl + 1);
    }
  }

  void deliver() {
    while (!paused_ && !closed_) {
      if (!overlong_at_.empty() && pos_ == overlong_at_.front()) {
        overlong_at_.erase(overlong_at_.begin());
        receiver_.on_line({}, ++line_no_, true);
        continue;
      }
      if (pos_ >= tail_) break;                  // no complete line left
      const auto nl = buffer_.find('\n', pos_);  // before tail_
      const std::string_view line(buffer_.data() + pos_, nl - pos_);
      pos_ = nl + 1;
      receiver_.on_line(line, ++line_no_, false);
    }
    if (closed_) return;
    buffer_.erase(0, pos_);
    tail_ -= pos_;
    for (auto& at : overlong_at_) at -= pos_;
    pos_ = 0;
    if (paused_ || !eof_) return;
    if (!buffer_.empty()) {  // a last line without '\n'
      const std::string last = std::move(buffer_);
      buffer_.clear();
      tail_ = 0;
      receiver_.on_line(last, ++line_no_, false);
      if (paused_ || closed_) return;
    }
    end(read_error_);
  }

  void end(const std::string& error) {
    if (ended_ || closed_) return;
    ended_ = true;
    receiver_.on_end(error);
  }

  uv_loop_t* loop_;
  receiver& receiver_;
  union handles {
    uv_tty_t tty;
    uv_pipe_t pipe;
    uv_tcp_t tcp;
  } h_{};
  uv_fs_t fs_{};
  kind kind_ = kind::none;
  char chunk_[64 * 1024];
  std::string buffer_;
  std::size_t pos_ = 0;   // the start of the lines not yet delivered
  std::size_t tail_ = 0;  // the start of the unfinished last line (no '\n' from there)
  std::size_t line_no_ = 0;
  std::string read_error_;
  bool reading_ = false;  // uv_read_start in effect
  bool fs_busy_ = false;  // a uv_fs_read in flight
  bool paused_ = false;
  bool eof_ = false;
  bool ended_ = false;
  bool closed_ = false;
  std::vector<std::size_t> overlong_at_;  // where lines longer than max_line were dropped
  bool skipping_ = false;                 // dropping the rest of an overlong line
};

// One run of the program on the caller's loop: open, subscribe, publish, print, close.
class app final : private stdin_lines::receiver {
 public:
  app(uv_loop_t* loop, cli_config cfg, std::unique_ptr<uvcometd::client> c)
      : loop_(loop), cfg_(std::move(cfg)), client_(std::move(c)), stdin_(loop, *this) {}
  app(const app&) = delete;
  app& operator=(const app&) = delete;

  // Sets up the handles and opens the client; the caller then runs the loop until it returns.
  // Returns false when nothing was started (the exit code is set and nothing needs the loop).
  bool start() {
    for (int signum : {SIGINT, SIGTERM, SIGHUP}) {
      if (!init_signal(signum)) return false;
    }
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
    if (cfg_.meta && cfg_.verbose > 0) {
      (void)client_->on_meta("/meta/**", [](const uvcometd::meta_message& m) {
        std::string line = "meta " + sv(m.channel) + (m.successful ? " successful" : " failed");
        if (!m.successful && !m.error.empty()) line += ": " + sv(m.error);
        if (!m.json.empty()) line += " " + sv(m.json);
        print_line(line);
      });
    }
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
  bool init_signal(int signum) {
    auto h = std::make_unique<uv_signal_t>();
    int rc = uv_signal_init(loop_, h.get());
    if (rc == 0) {
      h->data = this;
      signals_.push_back(std::move(h));
      rc = uv_signal_start(
          signals_.back().get(),
          [](uv_signal_t* s, int n) { static_cast<app*>(s->data)->on_signal(n); }, signum);
    }
    if (rc != 0) {
      print_error(std::string("signal handler: ") + uv_strerror(rc));
      exit_code_ = exit_failed;
      close_handles();
      return false;
    }
    return true;
  }

  void on_signal(int signum) {
    if (!finishing_) {
      // The normal end of a subscriber is a signal: 0 when the session was established and no
      // publish is left unacknowledged; otherwise the run was cut short, which 128+N tells.
      const bool complete =
          opened_ && publishes_pending_ == 0 && calls_pending_ == 0 && stdin_in_flight_ == 0;
      finish(complete ? exit_done : exit_signal_base + signum);
      return;
    }
    // A second signal while closing: stop waiting for the server now. Destroying a client that
    // is closing ends its wait for the /meta/disconnect reply; its handles close on their own,
    // and close()'s completion never runs, so ours close here.
    flush();
    client_.reset();
    close_handles();
  }

  void on_state(uvcometd::state s, uvcometd::connection_type t, const uvcometd::error& why) {
    if (cfg_.verbose > 0) {
      // The server in use, on a line of its own whenever it changes (a cluster's failover).
      if (client_->current_url() != shown_url_) {
        shown_url_ = client_->current_url();
        print_line("url=" + shown_url_);
      }
      std::string line =
          "state=" + sv(uvcometd::to_string(s)) + " transport=" + sv(uvcometd::to_string(t));
      if (why) line += " error=" + why.to_string();
      print_line(line);
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
    for (std::size_t i = 0; i < cfg_.publish.size() && !finishing_; ++i) {
      const auto& p = cfg_.publish[i];
      if (p.from_stdin) {
        stdin_channel_ = &p.channel;
        continue;
      }
      ++publishes_pending_;
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
    if (finishing_) return;
    call_all();
    if (finishing_) return;
    if (stdin_channel_ != nullptr) {
      stdin_reading_ = true;
      const std::string err = stdin_.start();
      if (!err.empty()) {
        print_error(err);
        finish(exit_failed);
        return;
      }
    }
    check_publishing_done();
  }

  // --call: each reply's data is one JSON line on stdout; a refusal or a timeout ends the run
  // with 1 once every call is answered.
  void call_all() {
    for (std::size_t i = 0; i < cfg_.calls.size() && !finishing_; ++i) {
      const auto& call = cfg_.calls[i];
      ++calls_pending_;
      const std::error_code ec = client_->remote_call(
          call.target, call.data, cfg_.call_timeout,
          [this, i](const uvcometd::error& err, const uvcometd::message& reply) {
            on_called(i, err, reply);
          });
      if (ec) {
        --calls_pending_;
        print_error("call " + call.target + ": " + ec.message());
        finish(ec == uvcometd::errc::invalid_channel || ec == uvcometd::errc::invalid_argument
                   ? exit_usage
                   : exit_failed);
      }
    }
  }

  void on_called(std::size_t i, const uvcometd::error& err, const uvcometd::message& reply) {
    if (finishing_) return;
    --calls_pending_;
    if (err) {
      print_error("call " + cfg_.calls[i].target + ": " + err.to_string());
      call_failed_ = true;
    } else {
      line_.clear();
      if (reply.data.empty()) {
        line_ = "null";
      } else if (!uvcometd_cli::append_compact_json(reply.data, line_)) {
        print_error("call " + cfg_.calls[i].target +
                    ": the reply's data is not JSON (not printed)");
        call_failed_ = true;
      }
      if (!line_.empty()) {
        line_ += '\n';
        write(line_);
      }
    }
    check_publishing_done();
  }

  void on_published(std::size_t i, const uvcometd::error& err) {
    if (finishing_) return;
    --publishes_pending_;
    if (err) {
      print_error("publish " + cfg_.publish[i].channel + ": " + err.to_string());
      publish_failed_ = true;
    }
    check_publishing_done();
  }

  // stdin_lines::receiver: one line of stdin, one publish. Blank lines are skipped; a line that
  // is not JSON is reported with its number and skipped (the run then exits 1).
  void on_line(std::string_view line, std::size_t number, bool too_long) override {
    if (finishing_) return;
    const std::string where = "stdin:" + std::to_string(number) + ": ";
    if (too_long) {
      print_error(where + "line longer than " + std::to_string(stdin_lines::max_line) +
                  " bytes (skipped)");
      stream_failed_ = true;
      return;
    }
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) return;
    if (const std::string bad = uvcometd_cli::json_problem(line); !bad.empty()) {
      print_error(where + bad + " (line skipped)");
      stream_failed_ = true;
      return;
    }
    const std::error_code ec = client_->publish(
        *stdin_channel_, line,
        [this, number](const uvcometd::error& err) { on_stdin_published(number, err); });
    if (ec) {
      print_error(where + "publish " + *stdin_channel_ + ": " + ec.message());
      stream_failed_ = true;
      return;
    }
    if (++stdin_in_flight_ >= stdin_window) stdin_.pause();
  }

  void on_end(const std::string& error) override {
    if (finishing_) return;
    if (!error.empty()) {
      print_error(error);
      stream_failed_ = true;
    }
    stdin_reading_ = false;
    check_publishing_done();
  }

  void on_stdin_published(std::size_t number, const uvcometd::error& err) {
    if (finishing_) return;
    --stdin_in_flight_;
    if (err) {
      print_error("stdin:" + std::to_string(number) + ": publish " + *stdin_channel_ + ": " +
                  err.to_string());
      stream_failed_ = true;
    }
    if (stdin_reading_ && stdin_in_flight_ <= stdin_window / 2) stdin_.resume();
    check_publishing_done();
  }

  // Once every -p CHANNEL=JSON is acknowledged, a refused one ends the run (1). Without -s the
  // run ends once stdin (-p CHANNEL=-) is used up too and every line of it acknowledged.
  void check_publishing_done() {
    if (finishing_ || publishes_pending_ != 0 || calls_pending_ != 0) return;
    if (publish_failed_ || call_failed_) return finish(exit_failed);
    if (stdin_reading_ || stdin_in_flight_ != 0) return;
    if (cfg_.subscribe.empty()) finish(exit_done);
  }

  void on_message(std::size_t i, const uvcometd::message& m) {
    if (finishing_) return;
    // The library hands a message to every local subscription whose pattern matches (-s /a/* and
    // -s /a/b): print it once, from the first matching one. If our matching ever disagrees with
    // the library's, print rather than lose the message.
    const std::size_t first = first_match(m.channel);
    if (first != npos && first != i) return;
    if (!write_message_line(m.channel, m.data)) return;
    if (finishing_) return;  // stdout went away
    ++received_;
    if (cfg_.count && received_ >= *cfg_.count) finish(exit_done);
  }

  std::size_t first_match(std::string_view channel) const noexcept {
    for (std::size_t i = 0; i < cfg_.subscribe.size(); ++i) {
      if (uvcometd::channel_matches(cfg_.subscribe[i], channel)) return i;
    }
    return npos;
  }

  // Writes the message's line (uvcometd_cli::append_message_line) from a reused buffer. The data
  // is re-serialised compactly with its UTF-8 repaired, so every line is one valid JSON value.
  bool write_message_line(std::string_view channel, std::string_view data) {
    line_.clear();
    const std::string ts = cfg_.timestamps
                               ? uvcometd_cli::iso8601_utc(std::chrono::system_clock::now())
                               : std::string();
    if (!uvcometd_cli::append_message_line(line_, cfg_.format, channel, data, ts)) {
      // The library hands over valid JSON only; should that ever fail, no broken line is printed.
      print_error("message on " + sv(channel) + ": data is not JSON (not printed)");
      return false;
    }
    write(line_);
    return true;
  }

  void write(std::string_view line) {
    if (output_closed_) return;
    if (std::fwrite(line.data(), 1, line.size(), stdout) != line.size()) {
      output_error();
      return;
    }
    dirty_ = true;
    if (flusher_ready_ && !flush_armed_ && !handles_closed_) {
      flush_armed_ = true;
      uv_timer_start(
          &flusher_,
          [](uv_timer_t* h) {
            auto* self = static_cast<app*>(h->data);
            self->flush_armed_ = false;
            self->flush();
          },
          flush_period_ms, 0);
    }
  }

  void flush() {
    if (!dirty_ || output_closed_) return;
    dirty_ = false;
    if (std::fflush(stdout) != 0) output_error();
  }

  // stdout failed: the run ends, with 141 for a reader gone (EPIPE), else 1 and the reason. A
  // failure while finishing (the last flush) still changes a successful exit code.
  void output_error() {
    const int e = errno;
    if (output_closed_) return;
    output_closed_ = true;
    const int code = e == EPIPE ? exit_broken_pipe : exit_failed;
    if (e != EPIPE) print_error(std::string("stdout: ") + std::strerror(e));
    if (!finishing_) {
      finish(code);
    } else if (exit_code_ == exit_done) {
      exit_code_ = code;
    }
  }

  // Records the exit code (the first one wins) and closes the client, then our handles; uv_run
  // returns when everything is closed.
  void finish(int code) {
    if (finishing_) return;
    finishing_ = true;
    if (code == exit_done && stream_failed_) code = exit_failed;
    exit_code_ = code;
    stdin_.close();
    flush();
    client_->close([this](const uvcometd::error&) { close_handles(); });
  }

  void close_handles() {
    if (handles_closed_) return;
    handles_closed_ = true;
    for (auto& s : signals_) uv_close(reinterpret_cast<uv_handle_t*>(s.get()), nullptr);
    if (flusher_ready_) uv_close(reinterpret_cast<uv_handle_t*>(&flusher_), nullptr);
  }

  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  // Publishes from stdin awaiting their acknowledgement, above which reading pauses (below the
  // library's max_queued_messages, so a reconnect never makes publish() refuse a line).
  static constexpr std::size_t stdin_window = 256;

  uv_loop_t* loop_;
  cli_config cfg_;
  std::unique_ptr<uvcometd::client> client_;
  std::vector<std::unique_ptr<uv_signal_t>> signals_;  // SIGINT, SIGTERM, SIGHUP (initialised)
  static constexpr std::uint64_t flush_period_ms = 20;
  uv_timer_t flusher_{};
  bool flusher_ready_ = false;
  bool flush_armed_ = false;
  stdin_lines stdin_;
  const std::string* stdin_channel_ = nullptr;  // -p CHANNEL=-

  int exit_code_ = exit_done;
  bool finishing_ = false;
  bool handles_closed_ = false;
  bool opened_ = false;
  bool publish_failed_ = false;  // a -p CHANNEL=JSON was refused
  bool call_failed_ = false;     // a --call was refused or not answered in time
  bool stream_failed_ = false;   // a line of stdin was skipped or refused, or stdin failed
  bool stdin_reading_ = false;
  bool dirty_ = false;
  bool output_closed_ = false;
  std::size_t subscribes_pending_ = 0;
  std::size_t publishes_pending_ = 0;
  std::size_t calls_pending_ = 0;
  std::size_t stdin_in_flight_ = 0;
  std::size_t received_ = 0;
  std::string line_;
  std::string shown_url_;  // -v: the server last named on stderr
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
      // The library it runs with: the CLI is released with it, under the same version.
      std::printf("uvcometd-cli %s\n", uvcometd::version());
      return std::fflush(stdout) == 0 ? exit_done : exit_failed;
    case uvcometd_cli::parse_action::usage_error:
      print_error(parsed.error);
      std::fputs(uvcometd_cli::usage().c_str(), stderr);
      return exit_usage;
    case uvcometd_cli::parse_action::run: break;
  }
  if (const std::string why = load_files(parsed.config); !why.empty()) {
    print_error(why);
    std::fputs("Try 'uvcometd-cli --help'.\n", stderr);
    return exit_usage;
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
      // The library refused the options (a URL it cannot use, ...): a usage error.
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

  if (!output_closed && std::fflush(stdout) != 0) {
    if (errno == EPIPE) {
      if (code == exit_done) code = exit_broken_pipe;
    } else {
      print_error(std::string("stdout: ") + std::strerror(errno));
      if (code == exit_done) code = exit_failed;
    }
  }
  return code;
}
