/* The C API (<uvcometd.h>) from C, against a real server: one scenario per run, driven by
 * test_c_api.cpp, which starts the server and checks the exit status and the server's view.
 *
 *   c_api_client SCENARIO URL TRANSPORT [CHANNEL] [hold]
 *
 * TRANSPORT: websocket, long-polling or any. Every expectation that fails prints "FAIL file:line:
 * what" on stderr; the exit status is 0 when none failed (and the loop closed with
 * uv_loop_close() == 0), 1 otherwise, 2 on a usage error. Progress goes to stdout; with
 * C_API_LOG set in the environment the library's log lines go to stderr too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <uvcometd.h>

static int failures;

#define EXPECT(cond)                                                  \
  do {                                                                \
    if (!(cond)) {                                                    \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                     \
    }                                                                 \
  } while (0)

#define EXPECT_CODE(got, want)                                                                    \
  do {                                                                                            \
    int got_ = (got);                                                                             \
    if (got_ != (want)) {                                                                         \
      fprintf(stderr, "FAIL %s:%d: %s is %d (%s), expected %s\n", __FILE__, __LINE__, #got, got_, \
              uvcometd_strerror(got_), #want);                                                    \
      ++failures;                                                                                 \
    }                                                                                             \
  } while (0)

enum { max_states = 64 };

struct run {
  uv_loop_t loop;
  uvcometd_client_t* client;
  const char* channel;
  int forced; /* a single connection type was asked for */
  uvcometd_connection_type_t type;
  int hold; /* wait for stdin's end before closing */
  uv_pipe_t stdin_pipe;
  int destroyed;     /* the client was destroyed inside a callback */
  int after_destroy; /* callbacks that ran after that: must stay 0 */
  uvcometd_state_t states[max_states];
  int state_count;
  int log_lines;
  int log_attempts; /* log lines naming a (re)connect attempt */
  /* one counter per callback, each must end at 1 (or the count asked for) */
  int open_done, sub_a_done, sub_b_done, unsub_a_done, unsub_b_done, close_done;
  int publish_done, publish_ok, publish_cancelled;
  int a_received, b_received, received_after_close;
  int refused_sub_done, refused_pub_done, must_not_run;
  int open_status, open_http_status;
  uint64_t connection_timeout_ms;
  uvcometd_subscription_t a, b, refused;
  /* calls scenario */
  const char* url;
  int calls_done, echo_ok, refuse_ok, silent_ok, meta_handshakes, meta_connects, meta_subscribes;
  int unmatched;
  uint64_t meta_id;
};

static void on_log(uvcometd_log_level_t level, const char* text, void* user) {
  struct run* r = user;
  if (getenv("C_API_LOG")) fprintf(stderr, "log: %s\n", text);
  EXPECT(level >= UVCOMETD_LOG_DEBUG && level <= UVCOMETD_LOG_ERROR);
  EXPECT(text != NULL);
  ++r->log_lines;
  if (strstr(text, "attempt") != NULL) ++r->log_attempts;
}

static void on_state(uvcometd_client_t* client, uvcometd_state_t state,
                     uvcometd_connection_type_t type, const uvcometd_error_t* why, void* user) {
  struct run* r = user;
  (void)type;
  if (r->destroyed) ++r->after_destroy;
  EXPECT(client == r->client);
  EXPECT(why != NULL);
  EXPECT(why->message != NULL);
  printf("state %s\n", uvcometd_state_name(state));
  if (r->state_count < max_states) r->states[r->state_count++] = state;
}

/* Whether `states` holds the given states in this order (others may come between). */
static int saw_in_order(const struct run* r, const uvcometd_state_t* want, int n) {
  int i, k = 0;
  for (i = 0; i < r->state_count && k < n; ++i) {
    if (r->states[i] == want[k]) ++k;
  }
  return k == n;
}

static void must_not_run(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                         void* user) {
  struct run* r = user;
  (void)client, (void)status, (void)err;
  ++r->must_not_run;
}

static void must_not_receive(uvcometd_client_t* client, const uvcometd_message_t* msg, void* user) {
  struct run* r = user;
  (void)client, (void)msg;
  ++r->must_not_run;
}

/* Options for the scenario; NULL when they cannot be made. */
static uvcometd_options_t* make_options(struct run* r, const char* url) {
  uvcometd_options_t* o = uvcometd_options_new();
  EXPECT(o != NULL);
  if (o == NULL) return NULL;
  EXPECT_CODE(uvcometd_options_set_url(o, url), 0);
  if (r->forced) EXPECT_CODE(uvcometd_options_set_connection_types(o, &r->type, 1), 0);
  EXPECT_CODE(uvcometd_options_set_connection_timeout(o, r->connection_timeout_ms), 0);
  EXPECT_CODE(uvcometd_options_set_disconnect_timeout(o, 5000), 0);
  EXPECT_CODE(uvcometd_options_set_log(o, on_log, r), 0);
  return o;
}

static int make_client(struct run* r, const char* url) {
  uvcometd_options_t* o = make_options(r, url);
  int rc;
  if (o == NULL) return -1;
  rc = uvcometd_client_new(&r->loop, o, &r->client);
  uvcometd_options_free(o); /* the client holds a copy */
  EXPECT_CODE(rc, 0);
  if (rc != 0) return -1;
  uvcometd_client_set_data(r->client, r);
  EXPECT(uvcometd_client_get_data(r->client) == r);
  EXPECT(uvcometd_client_loop(r->client) == &r->loop);
  EXPECT(uvcometd_client_state(r->client) == UVCOMETD_STATE_DISCONNECTED);
  EXPECT(strcmp(uvcometd_client_id(r->client), "") == 0);
  EXPECT(uvcometd_client_pending_count(r->client) == 0);
  uvcometd_client_on_state(r->client, on_state, r);
  return 0;
}

/* ---- close, with destroy inside its completion ------------------------------------------ */

static void on_closed_destroy(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                              void* user) {
  struct run* r = user;
  ++r->close_done;
  EXPECT_CODE(status, 0);
  EXPECT(err != NULL && err->code == 0);
  EXPECT(uvcometd_client_state(client) == UVCOMETD_STATE_CLOSED);
  /* Closed already: a second close fails at once and never calls back. */
  EXPECT_CODE(uvcometd_client_close(client, must_not_run, r), UVCOMETD_EINVALID_STATE);
  /* Publishing after close fails synchronously; its callback never runs. */
  EXPECT_CODE(uvcometd_client_publish(client, "/x", "1", must_not_run, r), UVCOMETD_EINVALID_STATE);
  uvcometd_client_destroy(client);
  r->client = NULL;
}

static void close_client(struct run* r) {
  EXPECT_CODE(uvcometd_client_close(r->client, on_closed_destroy, r), 0);
}

/* ---- roundtrip: open, two subscriptions, publish, receive, unsubscribe, close ----------- */

static void on_unsub_b(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                       void* user);
static void on_published(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                         void* user);

static void maybe_unsubscribe_a(struct run* r);

static void on_stdin_closed(uv_handle_t* h) {
  struct run* r = h->data;
  close_client(r);
}

static void on_stdin_alloc(uv_handle_t* h, size_t size, uv_buf_t* buf) {
  static char space[256];
  (void)h, (void)size;
  buf->base = space;
  buf->len = sizeof space;
}

static void on_stdin_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  (void)buf;
  if (n < 0) uv_close((uv_handle_t*)s, on_stdin_closed); /* end of stdin: go on */
}

static void check_message(struct run* r, const uvcometd_message_t* msg) {
  EXPECT(msg->channel_len == strlen(r->channel));
  EXPECT(memcmp(msg->channel, r->channel, msg->channel_len) == 0);
  EXPECT(msg->data_len > 0 && msg->data[0] == '{');
  EXPECT(msg->json_len > msg->data_len);
  EXPECT(msg->id != NULL && msg->ext != NULL);
}

static void on_message_a(uvcometd_client_t* client, const uvcometd_message_t* msg, void* user) {
  struct run* r = user;
  (void)client;
  check_message(r, msg);
  ++r->a_received;
  EXPECT(r->unsub_a_done == 0); /* never called once unsubscribed */
  maybe_unsubscribe_a(r);
}

static void on_message_b(uvcometd_client_t* client, const uvcometd_message_t* msg, void* user) {
  struct run* r = user;
  check_message(r, msg);
  printf("b received %.*s\n", (int)msg->data_len, msg->data);
  ++r->b_received;
  if (r->b_received == 4) {
    /* The message published after A ended reached B only: A is really gone. */
    EXPECT(r->a_received == 3);
    EXPECT_CODE(uvcometd_client_unsubscribe(client, r->b, on_unsub_b, r), 0);
  }
  maybe_unsubscribe_a(r);
}

static void on_unsub_a(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                       void* user) {
  struct run* r = user;
  (void)err;
  ++r->unsub_a_done;
  EXPECT_CODE(status, 0);
  EXPECT_CODE(uvcometd_client_publish(client, r->channel, "{\"n\":3}", on_published, r), 0);
}

/* Once the three first messages reached both subscriptions and were acknowledged (replies and
 * messages come in either order), A ends. */
static void maybe_unsubscribe_a(struct run* r) {
  if (r->a_received == 3 && r->b_received == 3 && r->publish_ok == 3 && r->unsub_a_done == 0 &&
      r->a != 0) {
    EXPECT_CODE(uvcometd_client_unsubscribe(r->client, r->a, on_unsub_a, r), 0);
    /* The second unsubscribe of one subscription is refused at once. */
    EXPECT_CODE(uvcometd_client_unsubscribe(r->client, r->a, must_not_run, r),
                UVCOMETD_EINVALID_ARGUMENT);
    r->a = 0;
  }
}

static void on_published(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                         void* user) {
  struct run* r = user;
  (void)client, (void)err;
  ++r->publish_done;
  EXPECT_CODE(status, 0);
  if (status == 0) ++r->publish_ok;
  maybe_unsubscribe_a(r);
}

static void on_unsub_b(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                       void* user) {
  struct run* r = user;
  (void)client, (void)err;
  ++r->unsub_b_done;
  EXPECT_CODE(status, 0);
  if (!r->hold) {
    close_client(r);
    return;
  }
  /* The driver checks the server's subscriptions now, then ends our stdin. */
  printf("UNSUBSCRIBED\n");
  fflush(stdout);
  EXPECT_CODE(uv_pipe_init(&r->loop, &r->stdin_pipe, 0), 0);
  r->stdin_pipe.data = r;
  EXPECT_CODE(uv_pipe_open(&r->stdin_pipe, 0), 0);
  EXPECT_CODE(uv_read_start((uv_stream_t*)&r->stdin_pipe, on_stdin_alloc, on_stdin_read), 0);
}

static void on_subscribed(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                          void* user) {
  struct run* r = user;
  int i;
  (void)err;
  EXPECT_CODE(status, 0);
  if (r->sub_a_done + r->sub_b_done < 2) return;
  for (i = 0; i < 3; ++i) {
    char json[32];
    snprintf(json, sizeof json, "{\"n\":%d}", i);
    EXPECT_CODE(uvcometd_client_publish(client, r->channel, json, on_published, r), 0);
  }
}

static void on_subscribed_a(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                            void* user) {
  ++((struct run*)user)->sub_a_done;
  on_subscribed(client, status, err, user);
}

static void on_subscribed_b(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                            void* user) {
  ++((struct run*)user)->sub_b_done;
  on_subscribed(client, status, err, user);
}

static void roundtrip_open(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                           void* user) {
  struct run* r = user;
  ++r->open_done;
  EXPECT_CODE(status, 0);
  EXPECT(err != NULL && err->code == status);
  if (status != 0) {
    fprintf(stderr, "open: %s: %s\n", uvcometd_strerror(status), err->message);
    close_client(r);
    return;
  }
  EXPECT(uvcometd_client_state(client) == UVCOMETD_STATE_CONNECTED);
  EXPECT(strlen(uvcometd_client_id(client)) > 0);
  printf("client %s over %s\n", uvcometd_client_id(client),
         uvcometd_connection_type_name(uvcometd_client_connection_type(client)));
  if (r->forced) EXPECT(uvcometd_client_connection_type(client) == r->type);
  /* Two local subscriptions to one channel: one server subscription. */
  EXPECT_CODE(
      uvcometd_client_subscribe(client, r->channel, on_message_a, on_subscribed_a, r, &r->a), 0);
  EXPECT_CODE(
      uvcometd_client_subscribe(client, r->channel, on_message_b, on_subscribed_b, r, &r->b), 0);
  EXPECT(r->a != 0 && r->b != 0 && r->a != r->b);
}

static void scenario_roundtrip(struct run* r) {
  const uvcometd_state_t order[] = {UVCOMETD_STATE_CONNECTING, UVCOMETD_STATE_CONNECTED,
                                    UVCOMETD_STATE_DISCONNECTING, UVCOMETD_STATE_CLOSED};
  EXPECT_CODE(uvcometd_client_open(r->client, roundtrip_open, r), 0);
  uv_run(&r->loop, UV_RUN_DEFAULT);
  EXPECT(r->open_done == 1);
  EXPECT(r->sub_a_done == 1 && r->sub_b_done == 1);
  EXPECT(r->a_received == 3 && r->b_received == 4);
  EXPECT(r->publish_done == 4 && r->publish_ok == 4);
  EXPECT(r->unsub_a_done == 1 && r->unsub_b_done == 1);
  EXPECT(r->close_done == 1);
  EXPECT(r->must_not_run == 0);
  EXPECT(saw_in_order(r, order, 4));
}

/* ---- errors: synchronous refusals, and the server's ------------------------------------ */

static void maybe_close_after_errors(struct run* r) {
  if (r->refused_sub_done == 1 && r->refused_pub_done == 1) close_client(r);
}

static void on_refused_subscribe(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                                 void* user) {
  struct run* r = user;
  ++r->refused_sub_done;
  EXPECT_CODE(status, UVCOMETD_ESERVER_ERROR);
  EXPECT(err->code == status);
  EXPECT(err->server_code == 403);
  EXPECT(err->message != NULL && err->message[0] != '\0');
  EXPECT(err->arg_count == 0 || err->args != NULL);
  printf("subscribe refused: %d %s\n", err->server_code, err->message);
  /* The refused subscription has ended. */
  EXPECT_CODE(uvcometd_client_unsubscribe(client, r->refused, must_not_run, r),
              UVCOMETD_EINVALID_ARGUMENT);
  maybe_close_after_errors(r);
}

static void on_refused_publish(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                               void* user) {
  struct run* r = user;
  (void)client;
  ++r->refused_pub_done;
  EXPECT_CODE(status, UVCOMETD_ESERVER_ERROR);
  EXPECT(err->server_code == 403);
  printf("publish refused: %d %s\n", err->server_code, err->message);
  maybe_close_after_errors(r);
}

static void errors_open(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                        void* user) {
  struct run* r = user;
  (void)err;
  ++r->open_done;
  EXPECT_CODE(status, 0);
  if (status != 0) {
    close_client(r);
    return;
  }
  EXPECT_CODE(uvcometd_client_open(client, must_not_run, r), UVCOMETD_EINVALID_STATE);
  EXPECT_CODE(uvcometd_client_subscribe(client, "/a/**/b", must_not_receive, must_not_run, r, NULL),
              UVCOMETD_EINVALID_CHANNEL);
  EXPECT_CODE(
      uvcometd_client_subscribe(client, "no-slash", must_not_receive, must_not_run, r, NULL),
      UVCOMETD_EINVALID_CHANNEL);
  EXPECT_CODE(uvcometd_client_publish(client, "/a/*", "1", must_not_run, r),
              UVCOMETD_EINVALID_CHANNEL);
  EXPECT_CODE(uvcometd_client_publish(client, "/meta/x", "1", must_not_run, r),
              UVCOMETD_EINVALID_CHANNEL);
  EXPECT_CODE(uvcometd_client_publish(client, "/a", "{not json", must_not_run, r),
              UVCOMETD_EINVALID_ARGUMENT);
  EXPECT_CODE(uvcometd_client_publish(client, "/a", NULL, must_not_run, r),
              UVCOMETD_EINVALID_ARGUMENT);
  EXPECT_CODE(uvcometd_client_subscribe(client, NULL, must_not_receive, must_not_run, r, NULL),
              UVCOMETD_EINVALID_ARGUMENT);
  EXPECT_CODE(uvcometd_client_subscribe(client, "/a", NULL, must_not_run, r, NULL),
              UVCOMETD_EINVALID_ARGUMENT);
  EXPECT_CODE(uvcometd_client_unsubscribe(client, 987654321u, must_not_run, r),
              UVCOMETD_EINVALID_ARGUMENT);
  EXPECT_CODE(uvcometd_client_end_batch(client), UVCOMETD_EINVALID_STATE);
  /* What only the server can refuse (test/servers: subscribing under /private, publishing
   * under /forbidden). */
  EXPECT_CODE(uvcometd_client_subscribe(client, "/private/c", must_not_receive,
                                        on_refused_subscribe, r, &r->refused),
              0);
  EXPECT_CODE(uvcometd_client_publish(client, "/forbidden/c", "{\"x\":1}", on_refused_publish, r),
              0);
}

static void scenario_errors(struct run* r) {
  int code;
  /* Before open: the state is wrong, never the callback's turn. */
  EXPECT_CODE(uvcometd_client_subscribe(r->client, "/a", must_not_receive, must_not_run, r, NULL),
              UVCOMETD_EINVALID_STATE);
  EXPECT_CODE(uvcometd_client_publish(r->client, "/a", "1", must_not_run, r),
              UVCOMETD_EINVALID_STATE);
  EXPECT_CODE(uvcometd_client_reconnect_now(r->client), UVCOMETD_EINVALID_STATE);
  for (code = UVCOMETD_ECERTIFICATE_ERROR; code <= UVCOMETD_EINVALID_STATE; ++code)
    EXPECT(strcmp(uvcometd_strerror(code), "unknown error") != 0);
  EXPECT(strcmp(uvcometd_strerror(UVCOMETD_ECANCELLED), "cancelled by close") == 0);
  EXPECT(strcmp(uvcometd_strerror(UVCOMETD_ENOMEM), "unknown error") != 0);
  EXPECT(strcmp(uvcometd_strerror(-999), "unknown error") == 0);
  EXPECT(strcmp(uvcometd_strerror(7), "unknown error") == 0);
  EXPECT_CODE(uvcometd_client_open(r->client, errors_open, r), 0);
  uv_run(&r->loop, UV_RUN_DEFAULT);
  EXPECT(r->open_done == 1);
  EXPECT(r->refused_sub_done == 1 && r->refused_pub_done == 1);
  EXPECT(r->close_done == 1);
}

/* ---- open fails: a websocket upgrade refused, an unreachable server ---------------------- */

static void expect_open_fails(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                              void* user) {
  struct run* r = user;
  (void)client;
  ++r->open_done;
  printf("open: %s: %s\n", uvcometd_strerror(status), err->message);
  r->open_status = status;
  r->open_http_status = err->http_status;
  close_client(r);
}

static void scenario_open_fails(struct run* r, int want) {
  const uvcometd_state_t order[] = {UVCOMETD_STATE_CONNECTING, UVCOMETD_STATE_FAILED};
  EXPECT_CODE(uvcometd_client_open(r->client, expect_open_fails, r), 0);
  uv_run(&r->loop, UV_RUN_DEFAULT);
  EXPECT(r->open_done == 1);
  EXPECT_CODE(r->open_status, want);
  EXPECT(r->close_done == 1);
  EXPECT(saw_in_order(r, order, 2));
}

/* ---- close from inside callbacks -------------------------------------------------------- */

static void count_publish(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                          void* user) {
  struct run* r = user;
  (void)client, (void)err;
  if (r->destroyed) ++r->after_destroy;
  ++r->publish_done;
  if (status == 0)
    ++r->publish_ok;
  else if (status == UVCOMETD_ECANCELLED)
    ++r->publish_cancelled;
  else
    EXPECT_CODE(status, 0);
}

static void on_closed_count(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                            void* user) {
  struct run* r = user;
  (void)client, (void)err;
  ++r->close_done;
  EXPECT_CODE(status, 0);
}

static void close_on_message(uvcometd_client_t* client, const uvcometd_message_t* msg, void* user) {
  struct run* r = user;
  (void)msg;
  if (r->close_done > 0 || uvcometd_client_state(client) == UVCOMETD_STATE_DISCONNECTING) {
    ++r->received_after_close;
    return;
  }
  ++r->a_received;
  EXPECT_CODE(uvcometd_client_close(client, on_closed_count, r), 0);
  EXPECT(r->close_done == 0); /* never inside the call */
  EXPECT(uvcometd_client_state(client) == UVCOMETD_STATE_DISCONNECTING ||
         uvcometd_client_state(client) == UVCOMETD_STATE_CLOSED);
  /* Undelivered messages were dropped by the close. */
  EXPECT(uvcometd_client_pending_count(client) == 0);
}

static void publish_five(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                         void* user) {
  struct run* r = user;
  int i;
  (void)err;
  if (r->destroyed) ++r->after_destroy;
  ++r->sub_a_done;
  EXPECT_CODE(status, 0);
  /* Five messages in one frame, so that several arrive together. */
  uvcometd_client_start_batch(client);
  for (i = 0; i < 5; ++i)
    EXPECT_CODE(uvcometd_client_publish(client, r->channel, "{\"k\":1}", count_publish, r), 0);
  EXPECT_CODE(uvcometd_client_end_batch(client), 0);
}

static void subscribe_then(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                           void* user, uvcometd_message_cb on_message) {
  struct run* r = user;
  (void)err;
  if (r->destroyed) ++r->after_destroy;
  ++r->open_done;
  EXPECT_CODE(status, 0);
  if (status != 0) return;
  EXPECT_CODE(uvcometd_client_subscribe(client, r->channel, on_message, publish_five, r, &r->a), 0);
}

static void open_close_on_message(uvcometd_client_t* client, int status,
                                  const uvcometd_error_t* err, void* user) {
  subscribe_then(client, status, err, user, close_on_message);
}

static void scenario_close_in_message(struct run* r) {
  EXPECT_CODE(uvcometd_client_open(r->client, open_close_on_message, r), 0);
  uv_run(&r->loop, UV_RUN_DEFAULT);
  EXPECT(r->open_done == 1 && r->sub_a_done == 1);
  EXPECT(r->a_received == 1);
  EXPECT(r->received_after_close == 0);
  EXPECT(r->close_done == 1);
  /* Each publish completed exactly once: acknowledged, or cancelled by the close. */
  EXPECT(r->publish_done == 5);
  EXPECT(r->publish_ok + r->publish_cancelled == 5);
  uvcometd_client_destroy(r->client);
  r->client = NULL;
}

static void close_in_open(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                          void* user) {
  struct run* r = user;
  (void)err;
  ++r->open_done;
  EXPECT_CODE(status, 0);
  /* A publish issued just before closing still completes exactly once. */
  EXPECT_CODE(uvcometd_client_publish(client, "/c/open", "true", count_publish, r), 0);
  EXPECT_CODE(uvcometd_client_close(client, on_closed_count, r), 0);
  /* While closing: adds a second done. */
  EXPECT_CODE(uvcometd_client_close(client, on_closed_count, r), 0);
}

static void scenario_close_in_open(struct run* r) {
  EXPECT_CODE(uvcometd_client_open(r->client, close_in_open, r), 0);
  uv_run(&r->loop, UV_RUN_DEFAULT);
  EXPECT(r->open_done == 1);
  EXPECT(r->close_done == 2);
  EXPECT(r->publish_done == 1);
  EXPECT(uvcometd_client_state(r->client) == UVCOMETD_STATE_CLOSED);
  uvcometd_client_destroy(r->client);
  r->client = NULL;
}

/* ---- destroy from inside callbacks: nothing runs afterwards ----------------------------- */

static void destroy_on_message(uvcometd_client_t* client, const uvcometd_message_t* msg,
                               void* user) {
  struct run* r = user;
  (void)msg;
  if (r->destroyed) {
    ++r->after_destroy;
    return;
  }
  ++r->a_received;
  r->destroyed = 1;
  uvcometd_client_destroy(client);
  r->client = NULL;
}

static void open_destroy_on_message(uvcometd_client_t* client, int status,
                                    const uvcometd_error_t* err, void* user) {
  subscribe_then(client, status, err, user, destroy_on_message);
}

static void scenario_destroy_in_message(struct run* r) {
  EXPECT_CODE(uvcometd_client_open(r->client, open_destroy_on_message, r), 0);
  uv_run(&r->loop, UV_RUN_DEFAULT);
  EXPECT(r->destroyed);
  EXPECT(r->a_received == 1);
  EXPECT(r->after_destroy == 0);
}

static void destroy_when_connected(uvcometd_client_t* client, uvcometd_state_t state,
                                   uvcometd_connection_type_t type, const uvcometd_error_t* why,
                                   void* user) {
  struct run* r = user;
  on_state(client, state, type, why, user);
  if (state == UVCOMETD_STATE_CONNECTED && !r->destroyed) {
    r->destroyed = 1;
    uvcometd_client_destroy(client);
    r->client = NULL;
  }
}

static void scenario_destroy_in_state(struct run* r) {
  uvcometd_client_on_state(r->client, destroy_when_connected, r);
  EXPECT_CODE(uvcometd_client_open(r->client, must_not_run, r), 0);
  uv_run(&r->loop, UV_RUN_DEFAULT);
  EXPECT(r->destroyed);
  EXPECT(r->after_destroy == 0);
  EXPECT(r->must_not_run == 0); /* open's completion never ran: destroyed first */
}

/* ---- calls: remote calls, meta listeners, ext, unmatched, current URL ------------------- */

static int text_is(const char* p, size_t n, const char* want) {
  return n == strlen(want) && memcmp(p, want, n) == 0;
}

static void on_meta_any(uvcometd_client_t* client, const uvcometd_meta_message_t* m, void* user) {
  struct run* r = user;
  EXPECT(client == r->client);
  EXPECT(m->channel_len > 6 && memcmp(m->channel, "/meta/", 6) == 0);
  if (text_is(m->channel, m->channel_len, "/meta/handshake")) {
    ++r->meta_handshakes;
    EXPECT(m->successful == 1);
    EXPECT(m->json_len > 0);
  } else if (text_is(m->channel, m->channel_len, "/meta/connect")) {
    ++r->meta_connects;
  } else if (text_is(m->channel, m->channel_len, "/meta/subscribe")) {
    ++r->meta_subscribes;
    EXPECT(m->successful == 1);
  }
}

static void on_unmatched(uvcometd_client_t* client, const uvcometd_message_t* msg, void* user) {
  struct run* r = user;
  printf("unmatched %.*s %.*s\n", (int)msg->channel_len, msg->channel, (int)msg->data_len,
         msg->data);
  ++r->unmatched;
  if (r->hold && r->unmatched == 1) close_client(r);
  (void)client;
}

static void on_silent_call(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                           const uvcometd_message_t* reply, void* user);

static void calls_maybe_done(struct run* r) {
  ++r->calls_done;
  /* The call nobody answers goes alone: a server answers a request once all of its messages
   * are, so it would hold the others' replies too. */
  if (r->calls_done == 3)
    EXPECT_CODE(
        uvcometd_client_remote_call(r->client, "silent", "{}", 300, NULL, on_silent_call, r), 0);
  if (r->calls_done < 4) return;
  printf("calls done\n");
  EXPECT(r->echo_ok == 1 && r->refuse_ok == 1 && r->silent_ok == 1);
  EXPECT(r->meta_handshakes == 1 && r->meta_connects >= 1);
  EXPECT_CODE(uvcometd_client_remove_meta_listener(r->client, r->meta_id), 0);
  EXPECT_CODE(uvcometd_client_remove_meta_listener(r->client, r->meta_id),
              UVCOMETD_EINVALID_ARGUMENT);
  if (r->hold) {
    printf("READY\n"); /* the driver now has the server deliver a message to this session */
  } else {
    close_client(r);
  }
}

static void on_echo(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                    const uvcometd_message_t* reply, void* user) {
  struct run* r = user;
  (void)client;
  EXPECT_CODE(status, 0);
  EXPECT(err != NULL && reply != NULL);
  EXPECT(text_is(reply->channel, reply->channel_len, "/service/echo"));
  if (!text_is(reply->data, reply->data_len, "{\"v\":42,\"s\":\"x\"}"))
    fprintf(stderr, "FAIL echo data: %.*s\n", (int)reply->data_len, reply->data), ++failures;
  else
    ++r->echo_ok;
  calls_maybe_done(r);
}

static void on_refused_call(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                            const uvcometd_message_t* reply, void* user) {
  struct run* r = user;
  (void)client;
  EXPECT_CODE(status, UVCOMETD_ESERVER_ERROR);
  EXPECT(err->server_code == 403);
  EXPECT(strstr(err->message, "refused by the test server") != NULL);
  EXPECT(reply->json_len > 0); /* the refusal is a reply */
  if (status == UVCOMETD_ESERVER_ERROR) ++r->refuse_ok;
  calls_maybe_done(r);
}

static void on_silent_call(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                           const uvcometd_message_t* reply, void* user) {
  struct run* r = user;
  (void)client, (void)err;
  EXPECT_CODE(status, UVCOMETD_ETIMEOUT);
  EXPECT(reply->json_len == 0 && reply->data_len == 0);
  if (status == UVCOMETD_ETIMEOUT) ++r->silent_ok;
  calls_maybe_done(r);
}

static void on_calls_subscribed(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                                void* user) {
  struct run* r = user;
  (void)client, (void)err;
  EXPECT_CODE(status, 0);
  calls_maybe_done(r);
}

static void on_call_must_not_run(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                                 const uvcometd_message_t* reply, void* user) {
  struct run* r = user;
  (void)client, (void)status, (void)err, (void)reply;
  ++r->must_not_run;
}

static void calls_open(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                       void* user) {
  struct run* r = user;
  (void)err;
  EXPECT_CODE(status, 0);
  if (status != 0) {
    close_client(r);
    return;
  }
  EXPECT(strcmp(uvcometd_client_current_url(client), r->url) == 0);
  /* Refused at once; their callbacks never run. */
  EXPECT_CODE(uvcometd_client_remote_call(client, "", "1", 0, NULL, on_call_must_not_run, r),
              UVCOMETD_EINVALID_CHANNEL);
  EXPECT_CODE(uvcometd_client_remote_call(client, "echo", "{x", 0, NULL, on_call_must_not_run, r),
              UVCOMETD_EINVALID_ARGUMENT);
  EXPECT_CODE(uvcometd_client_remote_call(client, "echo", "1", 0, NULL, NULL, r),
              UVCOMETD_EINVALID_ARGUMENT);
  EXPECT_CODE(uvcometd_client_publish_ext(client, "/c/calls", "1", "{x", must_not_run, r),
              UVCOMETD_EINVALID_ARGUMENT);
  /* One subscribe with its own ext, three calls: answered, refused, never answered. */
  EXPECT_CODE(uvcometd_client_subscribe_ext(client, r->channel, "{\"props\":1}", must_not_receive,
                                            on_calls_subscribed, r, NULL),
              0);
  EXPECT_CODE(uvcometd_client_remote_call(client, "echo", "{\"v\":42,\"s\":\"x\"}", 0,
                                          "{\"trace\":\"c\"}", on_echo, r),
              0);
  EXPECT_CODE(uvcometd_client_remote_call(client, "refuse", "{}", 0, NULL, on_refused_call, r), 0);
}

static void scenario_calls(struct run* r, const char* url) {
  r->url = url;
  EXPECT_CODE(uvcometd_client_on_meta(r->client, "/meta/**", on_meta_any, r, &r->meta_id), 0);
  EXPECT_CODE(uvcometd_client_on_meta(r->client, "/c/calls", on_meta_any, r, NULL),
              UVCOMETD_EINVALID_CHANNEL);
  EXPECT_CODE(uvcometd_client_on_meta(r->client, "/meta/connect", NULL, r, NULL),
              UVCOMETD_EINVALID_ARGUMENT);
  uvcometd_client_on_unmatched(r->client, on_unmatched, r);
  EXPECT(strcmp(uvcometd_client_current_url(r->client), url) == 0);
  EXPECT_CODE(uvcometd_client_open(r->client, calls_open, r), 0);
  uv_run(&r->loop, UV_RUN_DEFAULT);
  EXPECT(r->calls_done == 4);
  EXPECT(r->meta_subscribes == 1); /* its listener may run after the subscribe's completion */
  EXPECT(r->must_not_run == 0);
  EXPECT(r->close_done == 1);
  if (r->hold) EXPECT(r->unmatched == 1);
}

/* ---- options and names, no network ------------------------------------------------------ */

static void scenario_options(struct run* r, const char* url) {
  uvcometd_options_t* o = uvcometd_options_new();
  uvcometd_client_t* c = NULL;
  const uvcometd_connection_type_t both[] = {UVCOMETD_LONG_POLLING, UVCOMETD_WEBSOCKET};
  uvcometd_connection_type_t bad = (uvcometd_connection_type_t)7;
  EXPECT(strcmp(uvcometd_version(), UVCOMETD_VERSION_STRING) == 0);
  EXPECT(UVCOMETD_VERSION_NUMBER ==
         UVCOMETD_VERSION_MAJOR * 10000 + UVCOMETD_VERSION_MINOR * 100 + UVCOMETD_VERSION_PATCH);
  EXPECT(strcmp(uvcometd_state_name(UVCOMETD_STATE_CONNECTED), "connected") == 0);
  EXPECT(strcmp(uvcometd_connection_type_name(UVCOMETD_LONG_POLLING), "long-polling") == 0);
  EXPECT(strcmp(uvcometd_connection_type_name(UVCOMETD_WEBSOCKET), "websocket") == 0);
  /* C lets any int through an enum parameter: the library answers, UBSan stays quiet. */
  EXPECT(strcmp(uvcometd_state_name((uvcometd_state_t)42), "unknown") == 0);
  EXPECT(strcmp(uvcometd_connection_type_name(bad), "unknown") == 0);
  EXPECT(o != NULL);
  if (o == NULL) return;
  /* No URL yet: refused, with the reason. */
  EXPECT(uvcometd_options_problem(o) != NULL);
  EXPECT_CODE(uvcometd_client_new(&r->loop, o, &c), UVCOMETD_EINVALID_ARGUMENT);
  EXPECT(c == NULL);
  EXPECT_CODE(uvcometd_options_set_url(o, "ftp://127.0.0.1/x"), 0);
  EXPECT(uvcometd_options_problem(o) != NULL);
  EXPECT_CODE(uvcometd_options_set_url(o, NULL), UVCOMETD_EINVALID_ARGUMENT);
  EXPECT_CODE(uvcometd_options_set_url(o, url), 0);
  EXPECT(uvcometd_options_problem(o) == NULL);
  EXPECT_CODE(uvcometd_options_set_connection_types(o, both, 2), 0);
  EXPECT_CODE(uvcometd_options_set_connection_types(o, both, 0), UVCOMETD_EINVALID_ARGUMENT);
  EXPECT_CODE(uvcometd_options_set_connection_types(o, &bad, 1), UVCOMETD_EINVALID_ARGUMENT);
  EXPECT_CODE(uvcometd_options_set_connection_timeout(o, 0), 0);
  EXPECT_CODE(uvcometd_options_set_max_network_delay(o, 5000), 0);
  EXPECT_CODE(uvcometd_options_set_websocket_connect_timeout(o, 5000), 0);
  EXPECT_CODE(uvcometd_options_set_websocket_ping_interval(o, 5000), 0);
  EXPECT_CODE(uvcometd_options_set_disconnect_timeout(o, UINT64_MAX), UVCOMETD_EINVALID_ARGUMENT);
  EXPECT_CODE(uvcometd_options_set_backoff(o, 100, 1000, 0.25), 0);
  EXPECT_CODE(uvcometd_options_set_backoff(o, 100, 1000, 1.5), UVCOMETD_EINVALID_ARGUMENT);
  EXPECT_CODE(uvcometd_options_add_header(o, "X-Test: 1"), 0);
  EXPECT_CODE(uvcometd_options_add_header(o, NULL), UVCOMETD_EINVALID_ARGUMENT);
  EXPECT_CODE(uvcometd_options_set_handshake_ext(o, "{\"a\":1}"), 0);
  EXPECT_CODE(uvcometd_options_set_max_pending_count(o, 10), 0);
  EXPECT_CODE(uvcometd_options_set_max_message_size(o, 1024 * 1024), 0);
  EXPECT_CODE(uvcometd_options_set_queue_while_reconnecting(o, 0, 0), 0);
  EXPECT_CODE(uvcometd_options_set_tls_verify(o, 1), 0);
  EXPECT_CODE(uvcometd_options_set_ca_file(o, ""), 0);
  EXPECT_CODE(uvcometd_options_set_log(o, NULL, NULL), 0);
  EXPECT_CODE(uvcometd_options_set_failback_after(o, 60000), 0);
  EXPECT_CODE(uvcometd_options_set_failback_after(o, UINT64_MAX), UVCOMETD_EINVALID_ARGUMENT);
  EXPECT(uvcometd_options_problem(o) == NULL);
  /* A URL list beside the single URL is refused; the list alone is fine. */
  EXPECT_CODE(uvcometd_options_add_url(o, NULL), UVCOMETD_EINVALID_ARGUMENT);
  EXPECT_CODE(uvcometd_options_add_url(o, url), 0);
  EXPECT(uvcometd_options_problem(o) != NULL);
  EXPECT_CODE(uvcometd_options_set_url(o, ""), 0);
  EXPECT_CODE(uvcometd_options_add_url(o, "http://127.0.0.2:9/bayeux"), 0);
  EXPECT(uvcometd_options_problem(o) == NULL);
  /* A handshake ext that is not a JSON object is refused when the client is made. */
  EXPECT_CODE(uvcometd_options_set_handshake_ext(o, "[1"), 0);
  EXPECT(uvcometd_options_problem(o) != NULL);
  EXPECT_CODE(uvcometd_client_new(&r->loop, o, &c), UVCOMETD_EINVALID_ARGUMENT);
  EXPECT_CODE(uvcometd_options_set_handshake_ext(o, ""), 0);
  EXPECT_CODE(uvcometd_client_new(NULL, o, &c), UVCOMETD_EINVALID_ARGUMENT);
  EXPECT_CODE(uvcometd_client_new(&r->loop, o, &c), 0);
  uvcometd_options_free(o);
  if (c == NULL) return;
  /* Created, never opened, destroyed: nothing left on the loop afterwards. */
  uvcometd_client_destroy(c);
  uvcometd_client_destroy(NULL);
  uvcometd_options_free(NULL);
  uv_run(&r->loop, UV_RUN_DEFAULT);
}

int main(int argc, char** argv) {
  struct run r;
  const char* scenario;
  int rc;

  if (argc < 4 || argc > 6) {
    fprintf(stderr, "usage: c_api_client SCENARIO URL TRANSPORT [CHANNEL] [hold]\n");
    return 2;
  }
  memset(&r, 0, sizeof r);
  scenario = argv[1];
  if (strcmp(argv[3], "websocket") == 0) {
    r.forced = 1;
    r.type = UVCOMETD_WEBSOCKET;
  } else if (strcmp(argv[3], "long-polling") == 0) {
    r.forced = 1;
    r.type = UVCOMETD_LONG_POLLING;
  } else if (strcmp(argv[3], "any") != 0) {
    fprintf(stderr, "c_api_client: unknown transport %s\n", argv[3]);
    return 2;
  }
  r.channel = argc > 4 ? argv[4] : "/c/room";
  r.hold = argc > 5 && strcmp(argv[5], "hold") == 0;
  /* Generous for the real servers; short where giving up is the point. */
  r.connection_timeout_ms = strcmp(scenario, "unreachable") == 0 ? 1500 : 15000;
  setvbuf(stdout, NULL, _IOLBF, 0); /* progress visible to the driver as it happens */
  if (uv_loop_init(&r.loop) != 0) return 1;

  if (strcmp(scenario, "options") == 0) {
    scenario_options(&r, argv[2]);
  } else if (make_client(&r, argv[2]) != 0) {
    /* counted as a failure already */
  } else if (strcmp(scenario, "roundtrip") == 0) {
    scenario_roundtrip(&r);
  } else if (strcmp(scenario, "errors") == 0) {
    scenario_errors(&r);
  } else if (strcmp(scenario, "upgrade-refused") == 0) {
    scenario_open_fails(&r, UVCOMETD_EHTTP_ERROR);
    EXPECT(r.open_http_status == 400);
  } else if (strcmp(scenario, "unreachable") == 0) {
    scenario_open_fails(&r, UVCOMETD_ECONNECTION_TIMEOUT);
    EXPECT(r.log_attempts > 0); /* the log callback was told of the retries */
  } else if (strcmp(scenario, "calls") == 0) {
    scenario_calls(&r, argv[2]);
  } else if (strcmp(scenario, "close-in-message") == 0) {
    scenario_close_in_message(&r);
  } else if (strcmp(scenario, "close-in-open") == 0) {
    scenario_close_in_open(&r);
  } else if (strcmp(scenario, "destroy-in-message") == 0) {
    scenario_destroy_in_message(&r);
  } else if (strcmp(scenario, "destroy-in-state") == 0) {
    scenario_destroy_in_state(&r);
  } else {
    fprintf(stderr, "c_api_client: unknown scenario %s\n", scenario);
    uvcometd_client_destroy(r.client);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    uv_loop_close(&r.loop);
    return 2;
  }
  if (r.client != NULL) {
    /* A scenario that failed early: still leave the loop clean. */
    uvcometd_client_destroy(r.client);
    r.client = NULL;
  }
  uv_run(&r.loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&r.loop);
  EXPECT_CODE(rc, 0);
  printf("%s: %d failure(s), %d log line(s)\n", scenario, failures, r.log_lines);
  return failures == 0 ? 0 : 1;
}
