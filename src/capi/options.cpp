// SPDX-License-Identifier: MIT
// npipe's C interface: versions, status names, memory and the option
// setters (npipe_c.cpp has the rest).

#include "capi/capi.hpp"

using namespace npipe::capi;

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

} // extern "C"
