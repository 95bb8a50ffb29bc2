// Test helper: runs one of the Node.js Bayeux servers of test/servers as a child process.
#pragma once

#include <sys/types.h>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace uvcometd::test {

// Directory holding the server scripts: env UVCOMETD_SERVERS_DIR, else the compiled-in
// UVCOMETD_SERVERS_DIR macro (meson passes the source dir's test/servers).
std::string servers_dir();

// Starts `node <servers_dir>/<script> <args...>`, waits (at most 15 s) for its "PORT <n>" line,
// and kills (SIGKILL) and reaps it in the destructor. The child runs in its own process group and
// dies with the test process (PR_SET_PDEATHSIG). Throws std::runtime_error with the tail of the
// server's stderr on failure. The node binary is $UVCOMETD_NODE, else `node` (or `nodejs`) on PATH.
//
// Scripts: "faye-server.js" (websocket + long-polling at /bayeux) and "cometd-server.js"
// (long-polling at /cometd), both taking --timeout SECONDS and --port N; cometd-server.js also
// --max-interval MS. Not thread-safe: use one object from one thread.
// A program other than a Node.js script (redis-server, haproxy): it listens on a port the caller
// chose, its stdout and stderr both go to the log quoted on failure, and `ready` says when it
// serves (polled every 5 ms, at most 15 s, while the program runs).
struct program_spec {
  std::string program;            // an absolute path, or a name looked up on PATH
  std::vector<std::string> args;  // its arguments (argv[1]...)
  int port = 0;                   // the port it listens on (port(), base_url(), url())
  std::function<bool()> ready;    // true once it serves; may throw to fail the start
  std::string ready_what;         // what `ready` waits for, for the error message
};

class server_process {
 public:
  explicit server_process(const std::string& script, std::vector<std::string> args = {});
  // Starts a program_spec; throws std::runtime_error (with the log's tail) when it exits or is
  // not ready within 15 s. restart() runs it again with the same arguments (the same port).
  explicit server_process(program_spec spec);
  // Starts several node scripts ({script, args} each) at once, so that their start-ups overlap,
  // and returns once all printed their port (throws like the constructor, the others stopped).
  static std::vector<std::unique_ptr<server_process>> start_all(
      const std::vector<std::pair<std::string, std::vector<std::string>>>& scripts);
  ~server_process();
  server_process(const server_process&) = delete;
  server_process& operator=(const server_process&) = delete;

  int port() const;
  // "http://127.0.0.1:<port>/bayeux" for faye-server.js, "http://127.0.0.1:<port>/cometd" for
  // cometd-server.js (base_url() for any other script).
  std::string url() const;
  // "http://127.0.0.1:<port>"
  std::string base_url() const;
  // True while the server runs (started and not stopped, and has not exited on its own).
  bool running();
  // The server's process id (0 when stopped).
  pid_t pid() const { return pid_; }

  // SIGKILL and reap (idempotent).
  void stop();
  // Starts again with the same arguments on the same port (retrying while the port is busy).
  void restart();

  // Blocking helpers (libcurl easy API). Both throw std::runtime_error on a transport error or a
  // status other than 200, with the body in the message. A server started with --tls 1 is asked
  // over https, without verifying its test certificate.
  // POST base_url()+path with a JSON body; returns the response body.
  std::string control(const std::string& path, const std::string& json_body);
  // GET base_url()+path; returns the response body (e.g. get("/control/stats")).
  std::string get(const std::string& path);
  // POST /control/publish {"channel":channel,"data":<data_json>,"count":count}: publishes
  // server-side; returns once the server published them all. With count > 1 and an object as
  // data, each message's data also gets "seq": 0..count-1.
  void publish(const std::string& channel, const std::string& data_json, int count = 1);

 private:
  struct launch_only {};
  server_process(launch_only, const std::string& script, std::vector<std::string> args);
  // spawn(): launch() then await_start(). launch() forks and execs (always from the calling
  // thread: PR_SET_PDEATHSIG ties the child to the thread that forked it, so never from a
  // short-lived one); await_start() waits for the port or readiness, and on failure reaps the
  // child and throws.
  void spawn(const std::vector<std::string>& args);
  void launch(const std::vector<std::string>& args);
  void await_start();
  // Polls spec_.ready while the child runs; returns "" when ready, else why not (`exited`: the
  // child ended and was reaped, `status` says how).
  std::string wait_ready(pid_t pid, int& status, bool& exited);
  std::string control_base() const;
  std::string stderr_tail() const;

  std::string script_;
  program_spec spec_;  // for a program (spec_.program not empty)
  std::vector<std::string> args_;
  int port_ = 0;
  pid_t pid_ = 0;
  int stderr_fd_ = -1;   // the child's stderr (an unlinked temporary file)
  int out_fd_ = -1;      // a launched script's stdout until await_start() read its port
  std::string command_;  // the launched command line, for error messages
};

}  // namespace uvcometd::test
