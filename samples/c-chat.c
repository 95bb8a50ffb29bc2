/* c-chat — uvcometd from plain C on a libuv loop (the C API, <uvcometd.h>).
 *
 *   c-chat URL CHANNEL [COUNT]
 *
 * Subscribes to CHANNEL, publishes COUNT (default 3) messages to it once the subscription is
 * confirmed, prints the data of each message received (one line each, as received), and closes
 * once it has received COUNT messages and every publish was acknowledged. Exit status: 0 done,
 * 1 failed, 2 usage. The same interface as nlohmann-chat. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <uvcometd.h>

struct chat {
  uvcometd_client_t* client;
  const char* channel;
  long count;
  long received;
  long acknowledged;
  int done;
  int exit_code;
};

static void finish(struct chat* chat, int code) {
  if (chat->done) return;
  chat->done = 1;
  chat->exit_code = code;
  /* The loop ends once every handle is closed; should close fail, main destroys the client. */
  if (uvcometd_client_close(chat->client, NULL, NULL) < 0)
    uv_stop(uvcometd_client_loop(chat->client));
}

static void fail(struct chat* chat, const char* what, int status, const uvcometd_error_t* err) {
  if (err != NULL && err->message[0] != '\0')
    fprintf(stderr, "c-chat: %s: %s: %s\n", what, uvcometd_strerror(status), err->message);
  else
    fprintf(stderr, "c-chat: %s: %s\n", what, uvcometd_strerror(status));
  finish(chat, 1);
}

static void finish_when_done(struct chat* chat) {
  if (chat->received >= chat->count && chat->acknowledged == chat->count) finish(chat, 0);
}

static void on_published(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                         void* user) {
  struct chat* chat = user;
  (void)client;
  if (chat->done) return; /* cancelled by our own close */
  if (status < 0) {
    fail(chat, "publish", status, err);
    return;
  }
  ++chat->acknowledged;
  finish_when_done(chat);
}

static void on_message(uvcometd_client_t* client, const uvcometd_message_t* msg, void* user) {
  struct chat* chat = user;
  (void)client;
  if (chat->done) return;
  /* msg->data points into the received frame, is not NUL-terminated, and is valid during this
   * call only. */
  printf("%.*s\n", (int)msg->data_len, msg->data);
  ++chat->received;
  finish_when_done(chat);
}

/* Publishing only once the server confirmed the subscription, so that our messages come back. */
static void on_subscribed(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                          void* user) {
  struct chat* chat = user;
  long i;
  if (status < 0) {
    fail(chat, "subscribe", status, err);
    return;
  }
  for (i = 0; i < chat->count && !chat->done; ++i) {
    char json[64];
    int rc;
    snprintf(json, sizeof json, "{\"text\":\"hello\",\"seq\":%ld}", i);
    rc = uvcometd_client_publish(client, chat->channel, json, on_published, chat);
    if (rc < 0) fail(chat, "publish", rc, NULL);
  }
}

static void on_open(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                    void* user) {
  struct chat* chat = user;
  int rc;
  if (status < 0) {
    fail(chat, "open", status, err);
    return;
  }
  rc = uvcometd_client_subscribe(client, chat->channel, on_message, on_subscribed, chat, NULL);
  if (rc < 0) fail(chat, "subscribe", rc, NULL);
}

int main(int argc, char** argv) {
  struct chat chat;
  uv_loop_t loop;
  uvcometd_options_t* opts;
  const char* problem;
  int rc;

  memset(&chat, 0, sizeof chat);
  chat.count = 3;
  if (argc < 3 || argc > 4) {
    fprintf(stderr, "usage: c-chat URL CHANNEL [COUNT]\n");
    return 2;
  }
  if (argc == 4) {
    char* end = NULL;
    errno = 0;
    chat.count = strtol(argv[3], &end, 10);
    if (*argv[3] == '\0' || *end != '\0' || errno != 0 || chat.count < 1 || chat.count > 1000000) {
      fprintf(stderr, "c-chat: COUNT must be a number from 1 to 1000000\n");
      return 2;
    }
  }
  chat.channel = argv[2];

  opts = uvcometd_options_new();
  if (opts == NULL || uvcometd_options_set_url(opts, argv[1]) != 0) {
    fprintf(stderr, "c-chat: out of memory\n");
    uvcometd_options_free(opts);
    return 1;
  }
  problem = uvcometd_options_problem(opts);
  if (problem != NULL) {
    fprintf(stderr, "c-chat: %s\n", problem);
    uvcometd_options_free(opts);
    return 2;
  }
  if (uv_loop_init(&loop) != 0) {
    uvcometd_options_free(opts);
    return 1;
  }
  rc = uvcometd_client_new(&loop, opts, &chat.client);
  uvcometd_options_free(opts); /* the client keeps a copy */
  if (rc < 0) {
    fprintf(stderr, "c-chat: %s\n", uvcometd_strerror(rc));
    uv_loop_close(&loop);
    return 1;
  }
  rc = uvcometd_client_open(chat.client, on_open, &chat);
  if (rc < 0) fail(&chat, "open", rc, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);

  uvcometd_client_destroy(chat.client);
  uv_run(&loop, UV_RUN_DEFAULT); /* nothing left after a close that completed; harmless */
  if (uv_loop_close(&loop) != 0) {
    fprintf(stderr, "c-chat: a handle is still open\n");
    return 1;
  }
  return chat.exit_code;
}
