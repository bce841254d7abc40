# SPDX-License-Identifier: MIT
"""Loads npipe's shared library and declares its C interface (npipe/npipe.h)
for ctypes. Nothing here is public: the package's modules wrap it.

ctypes.CDLL releases the GIL for the duration of every foreign call, so each
blocking npipe call lets other Python threads run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import os
import sys
from ctypes import (POINTER, Structure, c_char, c_char_p, c_int, c_int64, c_size_t, c_uint, c_uint32, c_void_p)

ERROR_MESSAGE_SIZE = 512
FOREVER = -1

#: The C header's version this module was written against: the library must
#: have the same major version.
HEADER_MAJOR = 0


class npipe_error(Structure):
    _fields_ = [("status", c_int), ("os_code", c_int), ("message", c_char * ERROR_MESSAGE_SIZE)]


class npipe_pipe_info(Structure):
    _fields_ = [("type", c_int), ("read_mode", c_int), ("max_message_size", c_size_t), ("is_open", c_int),
                ("name", c_char * 512)]


class npipe_peer_identity(Structure):
    _fields_ = [("pid", c_int64), ("uid", c_int64), ("gid", c_int64), ("user", c_char * 256),
                ("remote_address", c_char * 256), ("sid", c_char * 256)]


def _candidates() -> list[str]:
    """Where the library may be, in the order tried."""
    found: list[str] = []
    explicit = os.environ.get("NPIPE_LIBRARY")
    if explicit:
        return [explicit]  # asked for one library: no fallback that could hide a mistake
    try:  # written by `cmake --install`: the library installed with this package
        found.append(importlib.import_module("._install", __package__).LIBRARY)
    except ImportError:
        pass
    if sys.platform == "win32":
        found.append("npipe.dll")
    else:
        found.append("libnpipe.so.0")
        util = ctypes.util.find_library("npipe")
        if util:
            found.append(util)
    return found


def _load() -> ctypes.CDLL:
    tried = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path}: {e}")
    raise ImportError("npipe: cannot load npipe's shared library (tried " + "; ".join(tried) +
                      "). Install npipe (cmake --install BUILD_DIR), or set NPIPE_LIBRARY to the path of "
                      "libnpipe.so.0 (npipe.dll on Windows).")


lib = _load()

_ERR = POINTER(npipe_error)
_VP = c_void_p
_PVP = POINTER(c_void_p)
_PSZ = POINTER(c_size_t)

_signatures = {
    "npipe_version": (c_char_p, []),
    "npipe_version_number": (c_int, []),
    "npipe_status_name": (c_char_p, [c_int]),
    "npipe_free": (None, [_VP]),
    "npipe_server_options_new": (_VP, []),
    "npipe_server_options_free": (None, [_VP]),
    "npipe_server_options_set_type": (c_int, [_VP, c_int, _ERR]),
    "npipe_server_options_set_read_mode": (c_int, [_VP, c_int, _ERR]),
    "npipe_server_options_set_max_instances": (c_int, [_VP, c_uint, _ERR]),
    "npipe_server_options_set_max_message_size": (c_int, [_VP, c_size_t, _ERR]),
    "npipe_server_options_set_buffer_sizes": (c_int, [_VP, c_size_t, c_size_t, _ERR]),
    "npipe_server_options_allow_everyone": (c_int, [_VP, c_int, _ERR]),
    "npipe_server_options_set_pipe_dir": (c_int, [_VP, c_char_p, _ERR]),
    "npipe_client_options_new": (_VP, []),
    "npipe_client_options_free": (None, [_VP]),
    "npipe_client_options_set_read_mode": (c_int, [_VP, c_int, _ERR]),
    "npipe_client_options_set_max_message_size": (c_int, [_VP, c_size_t, _ERR]),
    "npipe_client_options_set_pipe_dir": (c_int, [_VP, c_char_p, _ERR]),
    "npipe_client_options_require_server_uid": (c_int, [_VP, c_uint32, _ERR]),
    "npipe_connect": (c_int, [c_char_p, _VP, c_int64, _PVP, _ERR]),
    "npipe_call_alloc": (c_int, [c_char_p, c_char_p, c_size_t, _PVP, _PSZ, c_int64, _VP, _ERR]),
    "npipe_server_open": (c_int, [c_char_p, _VP, _PVP, _ERR]),
    "npipe_server_accept": (c_int, [_VP, c_int64, _PVP, _ERR]),
    "npipe_server_close": (None, [_VP]),
    "npipe_server_free": (None, [_VP]),
    "npipe_write": (c_int, [_VP, c_char_p, c_size_t, c_int64, _ERR]),
    "npipe_read": (c_int, [_VP, _VP, c_size_t, _PSZ, POINTER(c_int), c_int64, _ERR]),
    "npipe_receive_alloc": (c_int, [_VP, _PVP, _PSZ, c_int64, _ERR]),
    "npipe_transact_alloc": (c_int, [_VP, c_char_p, c_size_t, _PVP, _PSZ, c_int64, _ERR]),
    "npipe_peek": (c_int, [_VP, _VP, c_size_t, _PSZ, _PSZ, _PSZ, _ERR]),
    "npipe_flush": (c_int, [_VP, c_int64, _ERR]),
    "npipe_set_read_mode": (c_int, [_VP, c_int, _ERR]),
    "npipe_connection_info": (c_int, [_VP, POINTER(npipe_pipe_info), _ERR]),
    "npipe_connection_peer": (c_int, [_VP, POINTER(npipe_peer_identity), _ERR]),
    "npipe_connection_close": (None, [_VP]),
    "npipe_connection_free": (None, [_VP]),
}

# Present from the version that has native handles; the package works
# without them (the asyncio layer then waits on threads).
_optional = {
    "npipe_connection_native_handle": (c_int, [_VP, POINTER(ctypes.c_ssize_t), _ERR]),
    "npipe_server_native_handle": (c_int, [_VP, POINTER(ctypes.c_ssize_t), _ERR]),
}

for _name, (_res, _args) in _signatures.items():
    _f = getattr(lib, _name)
    _f.restype = _res
    _f.argtypes = _args

has_native_handles = True
for _name, (_res, _args) in _optional.items():
    _f = getattr(lib, _name, None)
    if _f is None:
        has_native_handles = False
        continue
    _f.restype = _res
    _f.argtypes = _args

version: str = lib.npipe_version().decode()
if int(version.split(".")[0]) != HEADER_MAJOR:
    raise ImportError(f"npipe: the shared library is version {version}, this package needs "
                      f"{HEADER_MAJOR}.x; install matching versions")
