/* Smallest C program using uvcometd as a dependency (the C API): creates a client on a loop,
 * closes it without ever opening it, and checks that every handle is gone afterwards. Nothing
 * touches the network. Prints "ok". */
#include <stdio.h>
#include <string.h>
#include <uv.h>
#include <uvcometd.h>

static int closed;

static void on_closed(uvcometd_client_t* client, int status, const uvcometd_error_t* err,
                      void* user) {
  (void)client, (void)err, (void)user;
  if (status != 0) fprintf(stderr, "close reported: %s\n", uvcometd_strerror(status));
  ++closed;
}

int main(void) {
  uv_loop_t loop;
  uvcometd_options_t* opts;
  uvcometd_client_t* client = NULL;
  int rc;

  if (strcmp(uvcometd_version(), UVCOMETD_VERSION_STRING) != 0) {
    fprintf(stderr, "library %s, headers %s\n", uvcometd_version(), UVCOMETD_VERSION_STRING);
    return 1;
  }
  if (uv_loop_init(&loop) != 0) return 1;
  opts = uvcometd_options_new();
  if (opts == NULL || uvcometd_options_set_url(opts, "http://127.0.0.1:9/bayeux") != 0) return 1;
  rc = uvcometd_client_new(&loop, opts, &client);
  uvcometd_options_free(opts);
  if (rc != 0) {
    fprintf(stderr, "uvcometd_client_new: %s\n", uvcometd_strerror(rc));
    return 1;
  }
  if (uvcometd_client_state(client) != UVCOMETD_STATE_DISCONNECTED) return 1;
  uvcometd_client_close(client, on_closed, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  if (uvcometd_client_state(client) != UVCOMETD_STATE_CLOSED || closed != 1) {
    fprintf(stderr, "state %s, close completion ran %d times\n",
            uvcometd_state_name(uvcometd_client_state(client)), closed);
    return 1;
  }
  uvcometd_client_destroy(client);
  uv_run(&loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&loop);
  if (rc != 0) {
    fprintf(stderr, "uv_loop_close: %s\n", uv_strerror(rc));
    return 1;
  }
  printf("ok\n");
  return 0;
}
