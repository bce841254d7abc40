# SPDX-License-Identifier: MIT
"""npipe's exceptions: one class per npipe condition, all subclassing
npipe.Error and through it OSError, and the built-in OSError subclass that
means the same (NotFound is a FileNotFoundError, TimedOut a TimeoutError...).
"""

from __future__ import annotations

import errno as _errno
import sys

from . import _native


class Error(OSError):
    """An npipe call failed.

    ``status`` is the condition's number (the C interface's npipe_status),
    ``status_name`` its short name ("pipe_busy"), ``os_code`` the OS error
    behind it (errno on Linux, GetLastError() on Windows; 0 if none).
    ``errno`` is the POSIX error that fits (the OS's own on Linux, where it
    has one), ``winerror`` the Windows code (Windows only), ``strerror`` the
    message saying what happened and what to do.
    """

    status: int = 17
    status_name: str = "system_error"
    os_code: int = 0
    _errno: int = _errno.EIO

    def __init__(self, message: str, os_code: int = 0) -> None:
        if sys.platform == "win32":
            super().__init__(self._errno, message, None, os_code or None)
        else:
            super().__init__(os_code or self._errno, message)
        self.os_code = os_code


def _define(name: str, status: int, status_name: str, err: int, *bases: type, doc: str) -> type:
    cls = type(name, (Error, *bases), {"status": status, "status_name": status_name, "_errno": err,
                                       "__doc__": doc, "__module__": "npipe"})
    return cls


NotFound = _define("NotFound", 1, "not_found", _errno.ENOENT, FileNotFoundError,
                   doc="No server is listening on this name (ERROR_FILE_NOT_FOUND).")
PipeBusy = _define("PipeBusy", 2, "pipe_busy", _errno.EBUSY,
                   doc="Every instance of the pipe is taken and none freed in time (ERROR_PIPE_BUSY).")
MoreData = _define("MoreData", 3, "more_data", _errno.EMSGSIZE,
                   doc="The buffer held only part of the message (ERROR_MORE_DATA).")
TimedOut = _define("TimedOut", 4, "timed_out", _errno.ETIMEDOUT, TimeoutError,
                   doc="The timeout passed (ERROR_SEM_TIMEOUT); the connection stays usable.")
MessageTooLarge = _define("MessageTooLarge", 5, "message_too_large", _errno.EMSGSIZE,
                          doc="A message exceeds the receiver's limit.")
NameInUse = _define("NameInUse", 6, "name_in_use", _errno.EADDRINUSE, FileExistsError,
                    doc="Another live server owns this pipe name.")
AccessDenied = _define("AccessDenied", 7, "access_denied", _errno.EACCES, PermissionError,
                       doc="The access policy or the file permissions refuse this peer.")
BrokenPipe = _define("BrokenPipe", 8, "broken_pipe", _errno.EPIPE, BrokenPipeError,
                     doc="The peer closed the pipe (ERROR_BROKEN_PIPE).")
ProtocolError = _define("ProtocolError", 9, "protocol_error", _errno.EPROTO,
                        doc="The peer sent bytes that are not npipe's protocol.")
InvalidName = _define("InvalidName", 10, "invalid_name", _errno.EINVAL, ValueError,
                      doc="The pipe name is malformed or cannot be mapped.")
InvalidArgument = _define("InvalidArgument", 11, "invalid_argument", _errno.EINVAL, ValueError,
                          doc="A parameter or option is out of range.")
NotConnected = _define("NotConnected", 12, "not_connected", _errno.ENOTCONN,
                       doc="The connection is closed or was never opened.")
OperationAborted = _define("OperationAborted", 13, "operation_aborted", _errno.ECANCELED,
                           doc="The server or connection was closed while the call waited.")
InvalidState = _define("InvalidState", 14, "invalid_state", _errno.EINVAL,
                       doc="The call does not fit the connection's state (a transact with data unread).")
UnsafeDirectory = _define("UnsafeDirectory", 15, "unsafe_directory", _errno.EPERM, PermissionError,
                          doc="The pipe directory fails the safety checks (Linux).")
NotSupported = _define("NotSupported", 16, "not_supported", _errno.EOPNOTSUPP,
                       doc="Not available in this build or on this pipe.")
SystemError_ = _define("SystemError", 17, "system_error", _errno.EIO,
                       doc="An OS failure with no closer meaning (see os_code), or out of memory.")

_by_status: dict[int, type] = {c.status: c for c in (
    NotFound, PipeBusy, MoreData, TimedOut, MessageTooLarge, NameInUse, AccessDenied, BrokenPipe, ProtocolError,
    InvalidName, InvalidArgument, NotConnected, OperationAborted, InvalidState, UnsafeDirectory, NotSupported,
    SystemError_)}


def from_error(err: _native.npipe_error) -> Error:
    """The exception for a filled npipe_error."""
    cls = _by_status.get(err.status, SystemError_)
    return cls(err.message.decode("utf-8", "replace"), err.os_code)


def check(status: int, err: _native.npipe_error) -> None:
    if status != 0:
        raise from_error(err)
