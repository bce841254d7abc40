// SPDX-License-Identifier: MIT
// npipe's C interface (include/npipe/npipe.h) over the C++ API: handles own
// the C++ objects, every call catches what the C++ side may throw (out of
// memory) and fills the caller's npipe_error from the error code and this
// thread's last_error_detail().

#include <npipe/npipe.h>
#include <npipe/npipe.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <span>
#include <string>
#include <system_error>
#include <vector>

struct npipe_server_options {
  npipe::server_options o;
};
struct npipe_client_options {
  npipe::client_options o;
};
struct npipe_server {
  npipe::server s;
};
struct npipe_connection {
  npipe::connection c;
};

namespace {

static_assert(NPIPE_SYSTEM_ERROR == static_cast<int>(npipe::errc::system_error), "npipe_status mirrors npipe::errc");
static_assert(NPIPE_UNSAFE_DIRECTORY == static_cast<int>(npipe::errc::unsafe_directory));
static_assert(NPIPE_TYPE_MESSAGE == static_cast<int>(npipe::pipe_type::message));
static_assert(NPIPE_READ_MESSAGE == static_cast<int>(npipe::read_mode::message));

void copy_text(char* out, std::size_t size, const std::string& text) {
  std::size_t n = std::min(text.size(), size - 1);
  std::memcpy(out, text.data(), n);
  out[n] = '\0';
}

npipe_status fill(npipe_error* err, npipe_status st, int os, const std::string& message) {
  if (err) {
    err->status = st;
    err->os_code = os;
    copy_text(err->message, sizeof err->message, message);
  }
  return st;
}

npipe_status ok(npipe_error* err) { return fill(err, NPIPE_OK, 0, {}); }

// What a failed C++ call says, in the caller's npipe_error.
npipe_status fail(npipe_error* err, const std::error_code& ec) {
  auto st = static_cast<npipe_status>(npipe::condition_of(ec));
  std::string message = ec.message();
  if (auto detail = npipe::last_error_detail(); !detail.empty()) message += ": " + detail;
  return fill(err, st, npipe::os_error(ec), message);
}

npipe_status invalid(npipe_error* err, const char* what) { return fill(err, NPIPE_INVALID_ARGUMENT, 0, what); }

npipe_status out_of_memory(npipe_error* err) {
  return fill(err, NPIPE_SYSTEM_ERROR, 0, "out of memory: the call could not allocate what it needed");
}

npipe::timeout ms(int64_t t) { return t < 0 ? npipe::forever : npipe::timeout(t); }

// Runs `f` (which returns an npipe_status) with C++ exceptions turned into statuses.
template <class F>
npipe_status guarded(npipe_error* err, F&& f) noexcept {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return out_of_memory(err);
  } catch (const std::system_error& e) {
    return fail(err, e.code());
  } catch (const std::exception& e) {
    return fill(err, NPIPE_SYSTEM_ERROR, 0, e.what());
  }
}

bool parse_name(const char* text, npipe::pipe_name& out, npipe_error* err, npipe_status& st) {
  if (!text) {
    st = invalid(err, "the pipe name is NULL");
    return false;
  }
  std::error_code ec;
  out = npipe::pipe_name::parse(text, ec);
  if (ec) st = fail(err, ec);
  return !ec;
}

std::span<const std::byte> bytes(const void* p, std::size_t n) { return {static_cast<const std::byte*>(p), n}; }

// A whole reply or message into the caller's buffer: NPIPE_MORE_DATA when it does not fit.
npipe_status deliver(const std::vector<std::byte>& v, void* buf, std::size_t capacity, std::size_t* size,
                     npipe_error* err) {
  std::size_t n = std::min(v.size(), capacity);
  if (n) std::memcpy(buf, v.data(), n);
  if (size) *size = v.size();
  if (v.size() > capacity)
    return fill(err, NPIPE_MORE_DATA, 0,
                "the reply is " + std::to_string(v.size()) + " bytes, the buffer " + std::to_string(capacity) +
                    "; the first " + std::to_string(capacity) + " are in it (use the _alloc call for all of it)");
  return ok(err);
}

// A whole message in a malloc'ed buffer (NULL when empty).
npipe_status deliver_alloc(const std::vector<std::byte>& v, void** out, std::size_t* size, npipe_error* err) {
  *out = nullptr;
  if (size) *size = v.size();
  if (v.empty()) return ok(err);
  void* p = std::malloc(v.size());
  if (!p) return out_of_memory(err);
  std::memcpy(p, v.data(), v.size());
  *out = p;
  return ok(err);
}

// Changes an options object (its C++ options `o->o`); checks are made where they are used.
template <class Options, class F>
npipe_status set(Options* o, npipe_error* err, F&& f) noexcept {
  if (!o) return invalid(err, "the options handle is NULL");
  return guarded(err, [&] {
    f(o->o);
    return ok(err);
  });
}

// A native_handle_type as the C ABI's intptr_t.
std::intptr_t native_int(npipe::native_handle_type h) noexcept {
#ifdef _WIN32
  return reinterpret_cast<std::intptr_t>(h);
#else
  return h;
#endif
}

template <class T>
bool non_null(const T* p, const char* what, npipe_error* err, npipe_status& st) {
  if (p) return true;
  st = invalid(err, what);
  return false;
}

} // namespace

extern "C" {

const char* npipe_version(void) { return npipe::version; }
int npipe_version_number(void) { return NPIPE_VERSION_NUMBER; }
const char* npipe_status_name(int s) {
  if (s < NPIPE_OK || s > NPIPE_SYSTEM_ERROR) return "unknown";
  return npipe::to_string(static_cast<npipe::errc>(s));
}
void npipe_free(void* p) { std::free(p); }

// ------------------------------------------------------------------ options

npipe_server_options* npipe_server_options_new(void) { return new (std::nothrow) npipe_server_options; }
void npipe_server_options_free(npipe_server_options* o) { delete o; }

npipe_status npipe_server_options_set_type(npipe_server_options* o, int t, npipe_error* err) {
  if (t != NPIPE_TYPE_BYTE && t != NPIPE_TYPE_MESSAGE) return invalid(err, "the pipe type is not 0 or 1");
  return set(o, err, [&](auto& x) { x.type = static_cast<npipe::pipe_type>(t); });
}
npipe_status npipe_server_options_set_read_mode(npipe_server_options* o, int m, npipe_error* err) {
  if (m != NPIPE_READ_BYTE && m != NPIPE_READ_MESSAGE) return invalid(err, "the read mode is not 0 or 1");
  return set(o, err, [&](auto& x) { x.read_mode = static_cast<npipe::read_mode>(m); });
}
npipe_status npipe_server_options_set_max_instances(npipe_server_options* o, unsigned n, npipe_error* err) {
  return set(o, err, [&](auto& x) { x.max_instances = n; });
}
npipe_status npipe_server_options_set_max_message_size(npipe_server_options* o, size_t bytes, npipe_error* err) {
  return set(o, err, [&](auto& x) { x.max_message_size = bytes; });
}
npipe_status npipe_server_options_set_buffer_sizes(npipe_server_options* o, size_t in_bytes, size_t out_bytes,
                                                   npipe_error* err) {
  return set(o, err, [&](auto& x) {
    x.in_buffer_size = in_bytes;
    x.out_buffer_size = out_bytes;
  });
}
npipe_status npipe_server_options_allow_everyone(npipe_server_options* o, int everyone, npipe_error* err) {
  return set(o, err, [&](auto& x) {
    x.access = everyone ? npipe::access_policy::everyone() : npipe::access_policy::current_user();
  });
}
npipe_status npipe_server_options_set_pipe_dir(npipe_server_options* o, const char* dir, npipe_error* err) {
  return set(o, err, [&](auto& x) { x.pipe_dir = dir ? dir : ""; });
}

npipe_client_options* npipe_client_options_new(void) { return new (std::nothrow) npipe_client_options; }
void npipe_client_options_free(npipe_client_options* o) { delete o; }

npipe_status npipe_client_options_set_read_mode(npipe_client_options* o, int m, npipe_error* err) {
  if (m != NPIPE_READ_BYTE && m != NPIPE_READ_MESSAGE) return invalid(err, "the read mode is not 0 or 1");
  return set(o, err, [&](auto& x) { x.read_mode = static_cast<npipe::read_mode>(m); });
}
npipe_status npipe_client_options_set_max_message_size(npipe_client_options* o, size_t bytes, npipe_error* err) {
  return set(o, err, [&](auto& x) { x.max_message_size = bytes; });
}
npipe_status npipe_client_options_set_pipe_dir(npipe_client_options* o, const char* dir, npipe_error* err) {
  return set(o, err, [&](auto& x) { x.pipe_dir = dir ? dir : ""; });
}
npipe_status npipe_client_options_require_server_uid(npipe_client_options* o, uint32_t uid, npipe_error* err) {
  return set(o, err, [&](auto& x) { x.require_server_uid = uid; });
}

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
