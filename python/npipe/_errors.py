# SPDX-License-Identifier: MIT
"""npipe's exceptions: one class per npipe condition, all subclassing
npipe.Error and through it OSError, and the built-in OSError subclass that
means the same (NotFound is a FileNotFoundError, TimedOut a TimeoutError...).
"""

from __future__ import annotations

import errno as _errno_mod
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
    _errno: int = _errno_mod.EIO

    def __init__(self, message: str, os_code: int = 0) -> None:
        if sys.platform == "win32":
            super().__init__(self._errno, message, None, os_code or None)
        else:
            super().__init__(os_code or self._errno, message)
        self.os_code = os_code


class NotFound(Error, FileNotFoundError):
    """No server is listening on this name (ERROR_FILE_NOT_FOUND)."""
    status = 1
    status_name = "not_found"
    _errno = _errno_mod.ENOENT


class PipeBusy(Error):
    """Every instance of the pipe is taken and none freed in time (ERROR_PIPE_BUSY)."""
    status = 2
    status_name = "pipe_busy"
    _errno = _errno_mod.EBUSY


class MoreData(Error):
    """The buffer held only part of the message (ERROR_MORE_DATA)."""
    status = 3
    status_name = "more_data"
    _errno = _errno_mod.EMSGSIZE


class TimedOut(Error, TimeoutError):
    """The timeout passed (ERROR_SEM_TIMEOUT); the connection stays usable."""
    status = 4
    status_name = "timed_out"
    _errno = _errno_mod.ETIMEDOUT


class MessageTooLarge(Error):
    """A message exceeds the receiver's limit."""
    status = 5
    status_name = "message_too_large"
    _errno = _errno_mod.EMSGSIZE


class NameInUse(Error, FileExistsError):
    """Another live server owns this pipe name."""
    status = 6
    status_name = "name_in_use"
    _errno = _errno_mod.EADDRINUSE


class AccessDenied(Error, PermissionError):
    """The access policy or the file permissions refuse this peer."""
    status = 7
    status_name = "access_denied"
    _errno = _errno_mod.EACCES


class BrokenPipe(Error, BrokenPipeError):
    """The peer closed the pipe (ERROR_BROKEN_PIPE)."""
    status = 8
    status_name = "broken_pipe"
    _errno = _errno_mod.EPIPE


class ProtocolError(Error):
    """The peer sent bytes that are not npipe's protocol."""
    status = 9
    status_name = "protocol_error"
    _errno = _errno_mod.EPROTO


class InvalidName(Error, ValueError):
    """The pipe name is malformed or cannot be mapped."""
    status = 10
    status_name = "invalid_name"
    _errno = _errno_mod.EINVAL


class InvalidArgument(Error, ValueError):
    """A parameter or option is out of range."""
    status = 11
    status_name = "invalid_argument"
    _errno = _errno_mod.EINVAL


class NotConnected(Error):
    """The connection is closed or was never opened."""
    status = 12
    status_name = "not_connected"
    _errno = _errno_mod.ENOTCONN


class OperationAborted(Error):
    """The server or connection was closed while the call waited."""
    status = 13
    status_name = "operation_aborted"
    _errno = _errno_mod.ECANCELED


class InvalidState(Error):
    """The call does not fit the connection's state (a transact with data unread)."""
    status = 14
    status_name = "invalid_state"
    _errno = _errno_mod.EINVAL


class UnsafeDirectory(Error, PermissionError):
    """The pipe directory fails the safety checks (Linux)."""
    status = 15
    status_name = "unsafe_directory"
    _errno = _errno_mod.EPERM


class NotSupported(Error):
    """Not available in this build or on this pipe."""
    status = 16
    status_name = "not_supported"
    _errno = _errno_mod.EOPNOTSUPP


class SystemError_(Error):
    """An OS failure with no closer meaning (see os_code), or out of memory."""
    status = 17
    status_name = "system_error"
    _errno = _errno_mod.EIO


SystemError_.__name__ = SystemError_.__qualname__ = "SystemError"  # npipe.SystemError

_by_status: dict[int, type[Error]] = {c.status: c for c in (
    NotFound, PipeBusy, MoreData, TimedOut, MessageTooLarge, NameInUse, AccessDenied, BrokenPipe, ProtocolError,
    InvalidName, InvalidArgument, NotConnected, OperationAborted, InvalidState, UnsafeDirectory, NotSupported,
    SystemError_)}
for _cls in (Error, *_by_status.values()):
    _cls.__module__ = "npipe"  # as users see them: npipe.NotFound


def from_error(err: _native.npipe_error) -> Error:
    """The exception for a filled npipe_error."""
    cls = _by_status.get(err.status, SystemError_)
    return cls(err.message.decode("utf-8", "replace"), err.os_code)


def check(status: int, err: _native.npipe_error) -> None:
    if status != 0:
        raise from_error(err)
