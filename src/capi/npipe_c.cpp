// SPDX-License-Identifier: MIT
// npipe's C interface (include/npipe/npipe.h) over the C++ API: handles own
// the C++ objects, every call catches what the C++ side may throw (out of
// memory) and fills the caller's npipe_error from the error code and this
// thread's last_error_detail(). This file: clients, servers and
// connections; options.cpp: versions, status names and the option setters.

#include "capi/capi.hpp"

using namespace npipe::capi;

extern "C" {

// ------------------------------------------------------------------ clients

npipe_status npipe_connect(const char* name, const npipe_client_options* opts, int64_t timeout_ms,
                           npipe_connection** out, npipe_error* err) {
  npipe_status st = NPIPE_OK;
  if (!non_null(out, "the connection out-pointer is NULL", err, st)) return st;
  *out = nullptr;
  return guarded(err, [&] {
    npipe::pipe_name n;
    if (!parse_name(name, n, err, st)) return st;
    std::error_code ec;
    auto c = npipe::connect(n, opts ? opts->o : npipe::client_options{}, ms(timeout_ms), ec);
    if (ec) return fail(err, ec);
    *out = new npipe_connection{std::move(c)};
    return ok(err);
  });
}

namespace {
npipe_status call_vector(const char* name, const void* request, size_t size, int64_t timeout_ms,
                         const npipe_client_options* opts, std::vector<std::byte>& reply, npipe_error* err) {
  npipe_status st = NPIPE_OK;
  if (!request && size) return invalid(err, "the request is NULL");
  npipe::pipe_name n;
  if (!parse_name(name, n, err, st)) return st;
  std::error_code ec;
  reply = npipe::call(n, bytes(request, size), ms(timeout_ms), ec, opts ? opts->o : npipe::client_options{});
  return ec ? fail(err, ec) : ok(err);
}
} // namespace

npipe_status npipe_call(const char* name, const void* request, size_t request_size, void* reply, size_t capacity,
                        size_t* reply_size, int64_t timeout_ms, const npipe_client_options* opts, npipe_error* err) {
  if (!reply && capacity) return invalid(err, "the reply buffer is NULL");
  return guarded(err, [&] {
    std::vector<std::byte> v;
    if (auto st = call_vector(name, request, request_size, timeout_ms, opts, v, err)) return st;
    return deliver(v, reply, capacity, reply_size, err);
  });
}

npipe_status npipe_call_alloc(const char* name, const void* request, size_t request_size, void** reply,
                              size_t* reply_size, int64_t timeout_ms, const npipe_client_options* opts,
                              npipe_error* err) {
  npipe_status st = NPIPE_OK;
  if (!non_null(reply, "the reply out-pointer is NULL", err, st)) return st;
  *reply = nullptr;
  return guarded(err, [&] {
    std::vector<std::byte> v;
    if (auto s = call_vector(name, request, request_size, timeout_ms, opts, v, err)) return s;
    return deliver_alloc(v, reply, reply_size, err);
  });
}

// ------------------------------------------------------------------ servers

npipe_status npipe_server_open(const char* name, const npipe_server_options* opts, npipe_server** out,
                               npipe_error* err) {
  npipe_status st = NPIPE_OK;
  if (!non_null(out, "the server out-pointer is NULL", err, st)) return st;
  *out = nullptr;
  return guarded(err, [&] {
    npipe::pipe_name n;
    if (!parse_name(name, n, err, st)) return st;
    auto s = new npipe_server;
    std::error_code ec;
    s->s.open(n, opts ? opts->o : npipe::server_options{}, ec);
    if (ec) {
      delete s;
      return fail(err, ec);
    }
    *out = s;
    return ok(err);
  });
}

npipe_status npipe_server_accept(npipe_server* s, int64_t timeout_ms, npipe_connection** out, npipe_error* err) {
  npipe_status st = NPIPE_OK;
  if (!non_null(s, "the server handle is NULL", err, st) || !non_null(out, "the connection out-pointer is NULL", err, st))
    return st;
  *out = nullptr;
  return guarded(err, [&] {
    std::error_code ec;
    auto c = s->s.accept(ms(timeout_ms), ec);
    if (ec) return fail(err, ec);
    *out = new npipe_connection{std::move(c)};
    return ok(err);
  });
}

void npipe_server_close(npipe_server* s) {
  if (s) s->s.close();
}
void npipe_server_free(npipe_server* s) { delete s; }

npipe_status npipe_server_native_handle(const npipe_server* s, intptr_t* out, npipe_error* err) {
  npipe_status st = NPIPE_OK;
  if (!non_null(s, "the server handle is NULL", err, st) || !non_null(out, "the handle out-pointer is NULL", err, st))
    return st;
  return guarded(err, [&] {
    std::error_code ec;
    *out = native_int(s->s.native_handle(ec));
    return ec ? fail(err, ec) : ok(err);
  });
}

// -------------------------------------------------------------- connections

#define NPIPE_NEED_CONNECTION                                                                                \
  if (!c) return invalid(err, "the connection handle is NULL")

npipe_status npipe_write(npipe_connection* c, const void* data, size_t size, int64_t timeout_ms, npipe_error* err) {
  NPIPE_NEED_CONNECTION;
  if (!data && size) return invalid(err, "the data is NULL");
  std::error_code ec;
  c->c.write(bytes(data, size), ms(timeout_ms), ec);
  return ec ? fail(err, ec) : ok(err);
}

npipe_status npipe_read(npipe_connection* c, void* buf, size_t capacity, size_t* got, int* more_data,
                        int64_t timeout_ms, npipe_error* err) {
  NPIPE_NEED_CONNECTION;
  if (!buf && capacity) return invalid(err, "the buffer is NULL");
  std::error_code ec;
  auto r = c->c.read({static_cast<std::byte*>(buf), capacity}, ms(timeout_ms), ec);
  if (got) *got = r.bytes;
  if (more_data) *more_data = r.more_data ? 1 : 0;
  return ec ? fail(err, ec) : ok(err);
}

npipe_status npipe_receive(npipe_connection* c, void* buf, size_t capacity, size_t* size, int64_t timeout_ms,
                           npipe_error* err) {
  NPIPE_NEED_CONNECTION;
  if (!buf && capacity) return invalid(err, "the buffer is NULL");
  std::error_code ec;
  auto r = c->c.read({static_cast<std::byte*>(buf), capacity}, ms(timeout_ms), ec);
  if (size) *size = r.bytes;
  if (ec) return fail(err, ec);
  if (r.more_data)
    return fill(err, NPIPE_MORE_DATA, 0,
                "the message is longer than the buffer (" + std::to_string(capacity) +
                    " bytes); its rest is still to read (npipe_peek says how much)");
  return ok(err);
}

npipe_status npipe_receive_alloc(npipe_connection* c, void** msg, size_t* size, int64_t timeout_ms, npipe_error* err) {
  NPIPE_NEED_CONNECTION;
  npipe_status st = NPIPE_OK;
  if (!non_null(msg, "the message out-pointer is NULL", err, st)) return st;
  *msg = nullptr;
  return guarded(err, [&] {
    std::error_code ec;
    auto v = c->c.receive(ms(timeout_ms), ec);
    if (ec) return fail(err, ec);
    return deliver_alloc(v, msg, size, err);
  });
}

npipe_status npipe_transact(npipe_connection* c, const void* request, size_t request_size, void* reply,
                            size_t capacity, size_t* reply_size, int64_t timeout_ms, npipe_error* err) {
  NPIPE_NEED_CONNECTION;
  if ((!request && request_size) || (!reply && capacity)) return invalid(err, "the request or reply buffer is NULL");
  return guarded(err, [&] {
    std::error_code ec;
    auto v = c->c.transact(bytes(request, request_size), ms(timeout_ms), ec);
    if (ec) return fail(err, ec);
    return deliver(v, reply, capacity, reply_size, err);
  });
}

npipe_status npipe_transact_alloc(npipe_connection* c, const void* request, size_t request_size, void** reply,
                                  size_t* reply_size, int64_t timeout_ms, npipe_error* err) {
  NPIPE_NEED_CONNECTION;
  npipe_status st = NPIPE_OK;
  if (!non_null(reply, "the reply out-pointer is NULL", err, st)) return st;
  *reply = nullptr;
  if (!request && request_size) return invalid(err, "the request is NULL");
  return guarded(err, [&] {
    std::error_code ec;
    auto v = c->c.transact(bytes(request, request_size), ms(timeout_ms), ec);
    if (ec) return fail(err, ec);
    return deliver_alloc(v, reply, reply_size, err);
  });
}

npipe_status npipe_peek(npipe_connection* c, void* buf, size_t capacity, size_t* copied, size_t* available,
                        size_t* left_this_message, npipe_error* err) {
  NPIPE_NEED_CONNECTION;
  if (!buf && capacity) return invalid(err, "the buffer is NULL");
  std::error_code ec;
  auto r = c->c.peek({static_cast<std::byte*>(buf), capacity}, ec);
  if (copied) *copied = r.bytes_read;
  if (available) *available = r.total_available;
  if (left_this_message) *left_this_message = r.left_this_message;
  return ec ? fail(err, ec) : ok(err);
}

npipe_status npipe_flush(npipe_connection* c, int64_t timeout_ms, npipe_error* err) {
  NPIPE_NEED_CONNECTION;
  std::error_code ec;
  c->c.flush(ms(timeout_ms), ec);
  return ec ? fail(err, ec) : ok(err);
}

npipe_status npipe_set_read_mode(npipe_connection* c, int m, npipe_error* err) {
  NPIPE_NEED_CONNECTION;
  if (m != NPIPE_READ_BYTE && m != NPIPE_READ_MESSAGE) return invalid(err, "read mode is not 0 or 1");
  std::error_code ec;
  c->c.set_read_mode(static_cast<npipe::read_mode>(m), ec);
  return ec ? fail(err, ec) : ok(err);
}

npipe_status npipe_connection_info(const npipe_connection* c, npipe_pipe_info* out, npipe_error* err) {
  NPIPE_NEED_CONNECTION;
  if (!out) return invalid(err, "the info out-pointer is NULL");
  return guarded(err, [&] {
    out->type = static_cast<npipe_pipe_type>(c->c.type());
    out->read_mode = static_cast<npipe_read_mode>(c->c.read_mode());
    out->max_message_size = c->c.peer_max_message_size();
    out->is_open = c->c.is_open() ? 1 : 0;
    copy_text(out->name, sizeof out->name, c->c.name().str());
    return ok(err);
  });
}

npipe_status npipe_connection_peer(const npipe_connection* c, npipe_peer_identity* out, npipe_error* err) {
  NPIPE_NEED_CONNECTION;
  if (!out) return invalid(err, "the identity out-pointer is NULL");
  const auto& p = c->c.peer();
  out->pid = p.pid;
  out->uid = p.uid;
  out->gid = p.gid;
  copy_text(out->user, sizeof out->user, p.user);
  copy_text(out->remote_address, sizeof out->remote_address, p.remote_address);
  copy_text(out->sid, sizeof out->sid, p.sid);
  return ok(err);
}

npipe_status npipe_connection_native_handle(const npipe_connection* c, intptr_t* out, npipe_error* err) {
  NPIPE_NEED_CONNECTION;
  if (!out) return invalid(err, "the handle out-pointer is NULL");
  return guarded(err, [&] {
    std::error_code ec;
    *out = native_int(c->c.native_handle(ec));
    return ec ? fail(err, ec) : ok(err);
  });
}

#undef NPIPE_NEED_CONNECTION

void npipe_connection_close(npipe_connection* c) {
  if (c) c->c.close();
}
void npipe_connection_free(npipe_connection* c) { delete c; }

} // extern "C"
