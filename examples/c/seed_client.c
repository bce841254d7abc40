/* SPDX-License-Identifier: MIT */
/* The seed's NamedPipeClient in C, with npipe's C interface: connect to
   \\.\pipe\tpipe (or \\HOST\pipe\NAME), switch to message read mode, send
   a message, print the reply. */
#include <npipe/npipe.h>

#include <stdio.h>
#include <string.h>

static int fail(const char* what, const npipe_error* err) {
  fprintf(stderr, "%s: %d %s (%s)\n", what, (int)err->status, err->message, npipe_status_name(err->status));
  return 1;
}

int main(int argc, char** argv) {
  const char* name = argc > 1 ? argv[1] : "\\\\.\\pipe\\tpipe";
  const char* message = argc > 2 ? argv[2] : "Default message from client.";
  npipe_error err;
  npipe_connection* pipe = NULL;
  if (npipe_connect(name, NULL, 5000, &pipe, &err) != NPIPE_OK) return fail("CreateFile", &err);
  if (npipe_set_read_mode(pipe, NPIPE_READ_MESSAGE, &err) != NPIPE_OK) return fail("SetNamedPipeHandleState", &err);
  if (npipe_write(pipe, message, strlen(message), NPIPE_FOREVER, &err) != NPIPE_OK) return fail("WriteFile", &err);
  char reply[512];
  size_t size = 0;
  if (npipe_receive(pipe, reply, sizeof reply - 1, &size, NPIPE_FOREVER, &err) != NPIPE_OK)
    return fail("ReadFile", &err);
  reply[size] = '\0';
  printf("Response received: [%s]\n", reply);
  npipe_connection_free(pipe);
  return 0;
}
