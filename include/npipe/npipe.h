/* SPDX-License-Identifier: MIT */
#ifndef NPIPE_NPIPE_H
#define NPIPE_NPIPE_H
/*
 * npipe's C interface (C99): named pipes with Win32 semantics on Linux and
 * Windows, for C and for every language that can call C. The same calls as
 * the C++ API's blocking part (npipe/npipe.hpp), over opaque handles.
 *
 * Errors. Every call that can fail returns an npipe_status (NPIPE_OK, 0, on
 * success) and, when `err` is not NULL, fills the caller's npipe_error: the
 * status, the OS code behind it (errno or GetLastError(), 0 if none) and a
 * message saying what happened and, where it helps, what to do. The error
 * lives in the caller's memory: no call keeps state that two threads could
 * race on.
 *
 * Timeouts are milliseconds: NPIPE_FOREVER (-1) waits without limit,
 * NPIPE_NO_WAIT (0) does not wait.
 *
 * Ownership. Every npipe_* handle a call gives out is the caller's, to be
 * freed once with its _free function (NULL is accepted and ignored). Buffers
 * a call allocates (the _alloc variants) are freed with npipe_free().
 * Strings passed in are copied before the call returns.
 *
 * Threads. Options objects: one thread at a time. A connection: one reader
 * and one writer at a time (as the C++ connection), npipe_connection_close()
 * from any thread, which wakes the others' calls. A server:
 * npipe_server_accept() from several threads at once, npipe_server_close()
 * from any thread, which wakes every accept. A handle must not be freed while
 * another thread is inside a call on it.
 */

#include <npipe/export.h>
#include <npipe/version.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The conditions of npipe::errc, with the same values. */
typedef enum npipe_status {
  NPIPE_OK = 0,
  NPIPE_NOT_FOUND = 1,          /* no server is listening on this name (ERROR_FILE_NOT_FOUND) */
  NPIPE_PIPE_BUSY = 2,          /* every instance of the pipe is taken (ERROR_PIPE_BUSY) */
  NPIPE_MORE_DATA = 3,          /* the buffer held only part of the message (ERROR_MORE_DATA) */
  NPIPE_TIMED_OUT = 4,          /* the timeout passed (ERROR_SEM_TIMEOUT) */
  NPIPE_MESSAGE_TOO_LARGE = 5,  /* a message exceeds the receiver's limit */
  NPIPE_NAME_IN_USE = 6,        /* another live server owns this name */
  NPIPE_ACCESS_DENIED = 7,      /* the access policy or file permissions refuse this peer */
  NPIPE_BROKEN_PIPE = 8,        /* the peer closed the pipe (ERROR_BROKEN_PIPE) */
  NPIPE_PROTOCOL_ERROR = 9,     /* the peer sent bytes that are not npipe's protocol */
  NPIPE_INVALID_NAME = 10,      /* the pipe name is malformed or cannot be mapped */
  NPIPE_INVALID_ARGUMENT = 11,  /* a parameter or option is out of range */
  NPIPE_NOT_CONNECTED = 12,     /* the connection is closed or was never opened */
  NPIPE_OPERATION_ABORTED = 13, /* the server or connection was closed while waiting */
  NPIPE_INVALID_STATE = 14,     /* the call does not fit the connection's state */
  NPIPE_UNSAFE_DIRECTORY = 15,  /* the pipe directory fails the safety checks (Linux) */
  NPIPE_NOT_SUPPORTED = 16,     /* not available in this build or on this pipe */
  NPIPE_SYSTEM_ERROR = 17       /* an OS failure with no closer meaning (see os_code), or out of memory */
} npipe_status;

#define NPIPE_ERROR_MESSAGE_SIZE 512

typedef struct npipe_error {
  npipe_status status;
  int os_code;                            /* errno (Linux) or GetLastError() (Windows); 0 if none */
  char message[NPIPE_ERROR_MESSAGE_SIZE]; /* UTF-8, NUL-terminated, cut to fit; "" on success */
} npipe_error;

#define NPIPE_FOREVER ((int64_t)-1)
#define NPIPE_NO_WAIT ((int64_t)0)

/* Parameters that take one of these are `int`: a value outside the enum is
   then NPIPE_INVALID_ARGUMENT, not undefined behaviour. */
typedef enum npipe_pipe_type { NPIPE_TYPE_BYTE = 0, NPIPE_TYPE_MESSAGE = 1 } npipe_pipe_type;
typedef enum npipe_read_mode { NPIPE_READ_BYTE = 0, NPIPE_READ_MESSAGE = 1 } npipe_read_mode;

typedef struct npipe_server npipe_server;
typedef struct npipe_connection npipe_connection;
typedef struct npipe_server_options npipe_server_options;
typedef struct npipe_client_options npipe_client_options;

/* The library's version, "MAJOR.MINOR.PATCH", and as NPIPE_VERSION_NUMBER
   counts it: compare with the header's to detect a mismatch. */
NPIPE_API const char* npipe_version(void);
NPIPE_API int npipe_version_number(void);
/* The short stable name of a status ("pipe_busy"); "unknown" for others. */
NPIPE_API const char* npipe_status_name(int status);
/* Frees a buffer an _alloc call returned. */
NPIPE_API void npipe_free(void* p);

/* ---- options (NULL wherever options are taken means the defaults) ---- */

/* A new set of defaults (the C++ server_options / client_options); NULL when
   out of memory. */
NPIPE_API npipe_server_options* npipe_server_options_new(void);
NPIPE_API void npipe_server_options_free(npipe_server_options* o);
NPIPE_API npipe_status npipe_server_options_set_type(npipe_server_options* o, int type, npipe_error* err);
NPIPE_API npipe_status npipe_server_options_set_read_mode(npipe_server_options* o, int mode, npipe_error* err);
/* 1..255; 255 is unlimited (PIPE_UNLIMITED_INSTANCES). Checked at open. */
NPIPE_API npipe_status npipe_server_options_set_max_instances(npipe_server_options* o, unsigned n, npipe_error* err);
NPIPE_API npipe_status npipe_server_options_set_max_message_size(npipe_server_options* o, size_t bytes,
                                                                 npipe_error* err);
/* Buffer sizes, as nOutBufferSize/nInBufferSize (0: the system's default). */
NPIPE_API npipe_status npipe_server_options_set_buffer_sizes(npipe_server_options* o, size_t in_bytes,
                                                             size_t out_bytes, npipe_error* err);
/* Who may connect: only this user (the default), or any local user. */
NPIPE_API npipe_status npipe_server_options_allow_everyone(npipe_server_options* o, int everyone, npipe_error* err);
/* Linux: the directory the pipe's socket lives in (NULL or "": $NPIPE_DIR, else the default). */
NPIPE_API npipe_status npipe_server_options_set_pipe_dir(npipe_server_options* o, const char* dir, npipe_error* err);

NPIPE_API npipe_client_options* npipe_client_options_new(void);
NPIPE_API void npipe_client_options_free(npipe_client_options* o);
NPIPE_API npipe_status npipe_client_options_set_read_mode(npipe_client_options* o, int mode, npipe_error* err);
NPIPE_API npipe_status npipe_client_options_set_max_message_size(npipe_client_options* o, size_t bytes,
                                                                 npipe_error* err);
NPIPE_API npipe_status npipe_client_options_set_pipe_dir(npipe_client_options* o, const char* dir, npipe_error* err);
/* Linux: refuse a server that does not run as this uid (NPIPE_ACCESS_DENIED). */
NPIPE_API npipe_status npipe_client_options_require_server_uid(npipe_client_options* o, uint32_t uid,
                                                               npipe_error* err);

/* ---- clients ---- */

/* Connects to `name` (UTF-8: "NAME", "\\.\pipe\NAME" or "\\HOST\pipe\NAME"),
   waiting up to `timeout_ms` for a free instance (WaitNamedPipe). On success
   *out is the new connection. */
NPIPE_API npipe_status npipe_connect(const char* name, const npipe_client_options* opts, int64_t timeout_ms,
                                     npipe_connection** out, npipe_error* err);

/* CallNamedPipe: connect, send `request`, read the reply, close. The reply
   goes into `reply` (`capacity` bytes) and *reply_size is its length; a reply
   longer than `capacity` fills the buffer and says NPIPE_MORE_DATA, with
   *reply_size the whole reply's length (the rest is discarded). */
NPIPE_API npipe_status npipe_call(const char* name, const void* request, size_t request_size, void* reply,
                                  size_t capacity, size_t* reply_size, int64_t timeout_ms,
                                  const npipe_client_options* opts, npipe_error* err);
/* The same with the reply in a buffer the call allocates (*reply, free it
   with npipe_free; NULL for an empty reply). */
NPIPE_API npipe_status npipe_call_alloc(const char* name, const void* request, size_t request_size, void** reply,
                                        size_t* reply_size, int64_t timeout_ms, const npipe_client_options* opts,
                                        npipe_error* err);

/* ---- servers ---- */

/* Creates the pipe `name` ("NAME" or "\\.\pipe\NAME"): from now on clients
   can connect, up to the instance limit, before any accept. */
NPIPE_API npipe_status npipe_server_open(const char* name, const npipe_server_options* opts, npipe_server** out,
                                         npipe_error* err);
/* ConnectNamedPipe: waits up to `timeout_ms` for the next client. */
NPIPE_API npipe_status npipe_server_accept(npipe_server* s, int64_t timeout_ms, npipe_connection** out,
                                           npipe_error* err);
/* Stops accepting, wakes every accept (NPIPE_OPERATION_ABORTED) and gives
   the name back; connections handed out live on. Any thread, any number of
   times. */
NPIPE_API void npipe_server_close(npipe_server* s);
/* Closes (if open) and frees. */
NPIPE_API void npipe_server_free(npipe_server* s);
/* A handle (*out) that is ready exactly while npipe_server_accept would
   not wait (a client is ready, or the server was closed), for another
   event loop to wait on before an accept with timeout 0: on Linux an
   eventfd (an int's value; wait for readability), on Windows an event
   HANDLE (WaitForSingleObject). The server's own: never read, write, set,
   reset or close it; valid until npipe_server_free. Any thread. */
NPIPE_API npipe_status npipe_server_native_handle(const npipe_server* s, intptr_t* out, npipe_error* err);

/* ---- connections ---- */

/* WriteFile: one message (a byte pipe: bytes), all of it or an error. */
NPIPE_API npipe_status npipe_write(npipe_connection* c, const void* data, size_t size, int64_t timeout_ms,
                                   npipe_error* err);
/* ReadFile: up to `capacity` bytes into `buf`; *got is how many. In message
   read mode *more_data (if not NULL) is 1 when the message goes on (read
   again for the rest; this is success, not NPIPE_MORE_DATA). */
NPIPE_API npipe_status npipe_read(npipe_connection* c, void* buf, size_t capacity, size_t* got, int* more_data,
                                  int64_t timeout_ms, npipe_error* err);
/* One whole message into `buf`. A message longer than `capacity`: the
   buffer is filled, NPIPE_MORE_DATA, and the rest stays to be read
   (npipe_read; npipe_peek tells its size). *size is the bytes stored. */
NPIPE_API npipe_status npipe_receive(npipe_connection* c, void* buf, size_t capacity, size_t* size,
                                     int64_t timeout_ms, npipe_error* err);
/* One whole message in a buffer the call allocates (free with npipe_free;
   NULL for an empty message). */
NPIPE_API npipe_status npipe_receive_alloc(npipe_connection* c, void** msg, size_t* size, int64_t timeout_ms,
                                           npipe_error* err);
/* TransactNamedPipe: write `request` and read one reply: message pipes in
   message read mode only, with nothing unread. A reply longer than
   `capacity` fills the buffer and says NPIPE_MORE_DATA, with *reply_size the
   whole reply's length; unlike TransactNamedPipe the rest is discarded (use
   npipe_transact_alloc, or write + npipe_read, for replies of unknown size). */
NPIPE_API npipe_status npipe_transact(npipe_connection* c, const void* request, size_t request_size, void* reply,
                                      size_t capacity, size_t* reply_size, int64_t timeout_ms, npipe_error* err);
NPIPE_API npipe_status npipe_transact_alloc(npipe_connection* c, const void* request, size_t request_size,
                                            void** reply, size_t* reply_size, int64_t timeout_ms, npipe_error* err);
/* PeekNamedPipe: copies up to `capacity` bytes (buf may be NULL with 0)
   without consuming them and without waiting. Any output may be NULL. */
NPIPE_API npipe_status npipe_peek(npipe_connection* c, void* buf, size_t capacity, size_t* copied,
                                  size_t* available, size_t* left_this_message, npipe_error* err);
/* FlushFileBuffers: returns once the peer has read everything written before. */
NPIPE_API npipe_status npipe_flush(npipe_connection* c, int64_t timeout_ms, npipe_error* err);
/* SetNamedPipeHandleState(PIPE_READMODE_*): byte read mode on any pipe,
   message read mode on message pipes. */
NPIPE_API npipe_status npipe_set_read_mode(npipe_connection* c, int mode, npipe_error* err);

typedef struct npipe_pipe_info {
  npipe_pipe_type type;
  npipe_read_mode read_mode;
  size_t max_message_size;      /* what the peer accepts */
  int is_open;                  /* 0 once closed, or once the peer has gone */
  char name[512];               /* the pipe's name, UTF-8, cut to fit */
} npipe_pipe_info;
NPIPE_API npipe_status npipe_connection_info(const npipe_connection* c, npipe_pipe_info* out, npipe_error* err);

typedef struct npipe_peer_identity {
  int64_t pid; /* -1 if unknown */
  int64_t uid; /* Linux; -1 if unknown */
  int64_t gid; /* Linux; -1 if unknown */
  char user[256];           /* account name, may be "" */
  char remote_address[256]; /* a remote peer's "host:port", else "" */
  char sid[256];            /* Windows: the user's SID ("S-1-5-..."), else "" */
} npipe_peer_identity;
/* Who is at the other end (GetNamedPipeClientProcessId and the like). */
NPIPE_API npipe_status npipe_connection_peer(const npipe_connection* c, npipe_peer_identity* out, npipe_error* err);

/* The handle under the connection (*out): the socket descriptor on Linux,
   the pipe HANDLE on Windows, to wait on for readability in another event
   loop. npipe's own: never read, write, close or reconfigure it; valid until
   npipe_connection_free. On Linux, once it is readable a call with timeout
   0 does not block; read with timeout 0 until NPIPE_TIMED_OUT before waiting
   again (npipe may hold bytes it has taken off the socket).
   NPIPE_NOT_CONNECTED once closed. Any thread. */
NPIPE_API npipe_status npipe_connection_native_handle(const npipe_connection* c, intptr_t* out, npipe_error* err);

/* DisconnectNamedPipe / CloseHandle: the peer sees the end; other threads'
   calls on `c` return. Any thread, any number of times. */
NPIPE_API void npipe_connection_close(npipe_connection* c);
/* Closes (if open) and frees. */
NPIPE_API void npipe_connection_free(npipe_connection* c);

#ifdef __cplusplus
}
#endif

#endif /* NPIPE_NPIPE_H */
