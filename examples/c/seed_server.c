/* SPDX-License-Identifier: MIT */
/* The seed's NamedPipeServer in C, with npipe's C interface: create
   \\.\pipe\tpipe in message mode, wait for a client, read one message of
   any length (the ERROR_MORE_DATA loop), reply with the version and time,
   flush, disconnect. */
#include <npipe/npipe.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int fail(const char* what, const npipe_error* err) {
  fprintf(stderr, "%s: %d %s (%s)\n", what, (int)err->status, err->message, npipe_status_name(err->status));
  return 1;
}

int main(int argc, char** argv) {
  const char* name = argc > 1 ? argv[1] : "\\\\.\\pipe\\tpipe";
  npipe_error err;
  npipe_server* srv = NULL;
  if (npipe_server_open(name, NULL, &srv, &err) != NPIPE_OK) return fail("CreateNamedPipe", &err);
  npipe_connection* client = NULL;
  if (npipe_server_accept(srv, NPIPE_FOREVER, &client, &err) != NPIPE_OK) return fail("ConnectNamedPipe", &err);

  /* A message of any length: read on while it says there is more. */
  char chunk[16];
  size_t total = 0, got = 0;
  int more = 1;
  while (more) {
    if (npipe_read(client, chunk, sizeof chunk, &got, &more, NPIPE_FOREVER, &err) != NPIPE_OK)
      return fail("ReadFile", &err);
    total += got;
  }
  printf("Bytes received: %lu\n", (unsigned long)total);

  char reply[96];
  time_t now = time(NULL);
  char when[32];
  strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime(&now));
  snprintf(reply, sizeof reply, "npipe %s | %s", npipe_version(), when);
  if (npipe_write(client, reply, strlen(reply), NPIPE_FOREVER, &err) != NPIPE_OK) return fail("WriteFile", &err);
  if (npipe_flush(client, NPIPE_FOREVER, &err) != NPIPE_OK) return fail("FlushFileBuffers", &err);
  npipe_connection_free(client); /* DisconnectNamedPipe */
  npipe_server_free(srv);
  return 0;
}
