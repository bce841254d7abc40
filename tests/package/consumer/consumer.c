/* SPDX-License-Identifier: MIT */
/* A C program built against an installed npipe (the shared library): the
   header's version matches the library's, and one message goes each way
   over a real pipe, in one thread (a Linux client's connect completes
   before the server accepts). */
#define _XOPEN_SOURCE 700 /* mkdtemp */
#include <npipe/npipe.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(const char* what, const npipe_error* err) {
  printf("consumer: %s failed: %s (%s)\n", what, err->message, npipe_status_name(err->status));
  return 1;
}

int main(void) {
  if (npipe_version_number() != NPIPE_VERSION_NUMBER || strcmp(npipe_version(), NPIPE_VERSION_STRING) != 0) {
    printf("consumer: header %s, library %s\n", NPIPE_VERSION_STRING, npipe_version());
    return 1;
  }
  char dir[] = "/tmp/npipe-c-consumer-XXXXXX";
  if (!mkdtemp(dir)) return 1;
  char name[64];
  snprintf(name, sizeof name, "\\\\.\\pipe\\c-consumer-%ld", (long)getpid());
  npipe_error err;
  npipe_server_options* so = npipe_server_options_new();
  npipe_client_options* co = npipe_client_options_new();
  if (!so || !co) return 1;
  if (npipe_server_options_set_pipe_dir(so, dir, &err) || npipe_client_options_set_pipe_dir(co, dir, &err))
    return fail("set_pipe_dir", &err);
  npipe_server* srv = NULL;
  npipe_connection* client = NULL;
  npipe_connection* served = NULL;
  if (npipe_server_open(name, so, &srv, &err)) return fail("npipe_server_open", &err);
  if (npipe_connect(name, co, 10000, &client, &err)) return fail("npipe_connect", &err);
  if (npipe_write(client, "hi", 2, 10000, &err)) return fail("npipe_write", &err);
  if (npipe_server_accept(srv, 10000, &served, &err)) return fail("npipe_server_accept", &err);
  void* msg = NULL;
  size_t size = 0;
  if (npipe_receive_alloc(served, &msg, &size, 10000, &err)) return fail("npipe_receive_alloc", &err);
  int ok = size == 2 && memcmp(msg, "hi", 2) == 0;
  npipe_free(msg);
  char reply[16];
  if (npipe_write(served, "re: hi", 6, 10000, &err)) return fail("npipe_write (reply)", &err);
  if (npipe_receive(client, reply, sizeof reply, &size, 10000, &err)) return fail("npipe_receive", &err);
  ok = ok && size == 6 && memcmp(reply, "re: hi", 6) == 0;
  npipe_connection_free(served);
  npipe_connection_free(client);
  npipe_server_free(srv);
  npipe_server_options_free(so);
  npipe_client_options_free(co);
  rmdir(dir);
  printf("consumer: %s\n", ok ? "ok" : "wrong message");
  return ok ? 0 : 1;
}
