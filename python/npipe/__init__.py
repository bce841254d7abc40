# SPDX-License-Identifier: MIT
"""npipe for Python: named pipes with Win32 semantics on Linux and Windows.

The blocking API of npipe's C interface, as Python objects::

    import npipe

    with npipe.Server("tpipe") as server:           # CreateNamedPipe, message mode
        with server.accept() as client:             # ConnectNamedPipe
            request = client.receive()              # one whole message
            client.write(b"pong")                   # WriteFile
            client.flush()                          # FlushFileBuffers

    reply = npipe.call("tpipe", b"ping")            # CallNamedPipe

Timeouts are seconds as floats: ``None`` waits without limit, ``0`` does not
wait. Every blocking call releases the GIL. Failures raise a subclass of
:class:`npipe.Error` (an ``OSError``) per condition: :class:`NotFound`,
:class:`PipeBusy`, :class:`TimedOut`, :class:`AccessDenied`... The asyncio
layer is :mod:`npipe.aio`.

Threads: one thread may read while another writes on a connection;
``close()`` from any thread wakes the calls of the others. A server's
``accept()`` may run on several threads at once.
"""

from __future__ import annotations

import ctypes
import enum
import math
from ctypes import byref, c_int, c_size_t, c_void_p
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional, Union

from . import _native
from ._errors import (AccessDenied, BrokenPipe, Error, InvalidArgument, InvalidName, InvalidState, MessageTooLarge,
                      MoreData, NameInUse, NotConnected, NotFound, NotSupported, OperationAborted, PipeBusy,
                      ProtocolError, SystemError_ as SystemError, TimedOut, UnsafeDirectory)
from ._errors import check as _check

__all__ = [
    "connect", "call", "Server", "Connection", "PipeType", "ReadMode", "ReadResult", "ReadIntoResult", "PeekResult", "PeerIdentity",
    "DEFAULT_CONNECT_TIMEOUT", "__version__", "Error", "NotFound", "PipeBusy", "MoreData", "TimedOut",
    "MessageTooLarge", "NameInUse", "AccessDenied", "BrokenPipe", "ProtocolError", "InvalidName",
    "InvalidArgument", "NotConnected", "OperationAborted", "InvalidState", "UnsafeDirectory", "NotSupported",
    "SystemError",
]

#: The version of the npipe library loaded ("0.1.0").
__version__: str = _native.version

#: What connect() waits for a free instance unless told otherwise, in
#: seconds (NMPWAIT_USE_DEFAULT_WAIT).
DEFAULT_CONNECT_TIMEOUT: float = 5.0

Timeout = Optional[float]
Bytes = Union[bytes, bytearray, memoryview]


class PipeType(enum.IntEnum):
    """What the server made the pipe carry."""
    BYTE = 0     #: a byte stream (PIPE_TYPE_BYTE)
    MESSAGE = 1  #: messages, kept whole (PIPE_TYPE_MESSAGE)


class ReadMode(enum.IntEnum):
    """How an end reads (PIPE_READMODE_*)."""
    BYTE = 0     #: what is there, ignoring message boundaries
    MESSAGE = 1  #: one message at a time


class ReadResult(NamedTuple):
    """What :meth:`Connection.read` returned."""
    data: bytes
    #: message read mode: the message goes on, read again for the rest (ERROR_MORE_DATA)
    more_data: bool


class ReadIntoResult(NamedTuple):
    """What :meth:`Connection.read_into` returned."""
    bytes: int       #: bytes stored in the buffer
    more_data: bool  #: as ReadResult.more_data


class PeekResult(NamedTuple):
    """What :meth:`Connection.peek` saw (PeekNamedPipe)."""
    data: bytes             #: up to the size asked for, not consumed
    available: int          #: payload bytes ready to read now
    left_this_message: int  #: message read mode: unread bytes of the current message


@dataclass(frozen=True)
class PeerIdentity:
    """Who is at the other end (GetNamedPipeClientProcessId and friends)."""
    pid: Optional[int]   #: process id, None if unknown (a remote peer)
    uid: Optional[int]   #: user id (Linux), None if unknown
    gid: Optional[int]   #: primary group id (Linux), None if unknown
    user: str            #: account name, or a remote peer's TLS identity; may be ""
    remote_address: str  #: a remote peer's "host:port", "" for a local peer
    sid: str             #: Windows: the user's SID, else ""

    @property
    def is_remote(self) -> bool:
        return bool(self.remote_address)


def _ms(timeout: Timeout) -> int:
    """Seconds (None: forever) as the C interface's milliseconds, rounded up."""
    if timeout is None:
        return _native.FOREVER
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, not {type(timeout).__name__}")
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"timeout must be None or >= 0 seconds, not {timeout!r}")
    if math.isinf(timeout):
        return _native.FOREVER
    return min(math.ceil(timeout * 1000), 2**62)


def _name(name: Union[str, bytes]) -> bytes:
    if isinstance(name, bytes):
        return name
    if not isinstance(name, str):
        raise TypeError(f"a pipe name is a str, not {type(name).__name__}")
    return name.encode("utf-8")


def _data(data: Bytes) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        raise TypeError("npipe sends bytes: encode the text first (text.encode())")
    return bytes(data)


def _take(ptr: c_void_p, size: c_size_t) -> bytes:
    """The bytes of a buffer an _alloc call returned, freeing it."""
    if not ptr.value:
        return b""
    try:
        return ctypes.string_at(ptr.value, size.value)
    finally:
        _native.lib.npipe_free(ptr)


def _str(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


class _ClientOptions:
    def __init__(self, read_mode: Optional[ReadMode], max_message_size: Optional[int], pipe_dir: Optional[str],
                 require_server_uid: Optional[int]) -> None:
        lib = _native.lib
        self.ptr = c_void_p(lib.npipe_client_options_new())
        if not self.ptr.value:
            raise MemoryError("npipe: out of memory for client options")
        err = _native.npipe_error()
        try:
            if read_mode is not None:
                _check(lib.npipe_client_options_set_read_mode(self.ptr, int(read_mode), byref(err)), err)
            if max_message_size is not None:
                _check(lib.npipe_client_options_set_max_message_size(self.ptr, max_message_size, byref(err)), err)
            if pipe_dir is not None:
                _check(lib.npipe_client_options_set_pipe_dir(self.ptr, _name(pipe_dir), byref(err)), err)
            if require_server_uid is not None:
                _check(lib.npipe_client_options_require_server_uid(self.ptr, require_server_uid, byref(err)), err)
        except BaseException:
            self.free()
            raise

    def free(self) -> None:
        if self.ptr.value:
            _native.lib.npipe_client_options_free(self.ptr)
            self.ptr = c_void_p()


class Connection:
    """One end of a connected pipe, from :func:`connect` or
    :meth:`Server.accept`. A context manager: leaving the block closes it."""

    def __init__(self, handle: c_void_p) -> None:
        self._h = handle
        info = self._info()
        self._type = PipeType(info.type)
        self._name = _str(info.name)
        self._peer_max = int(info.max_message_size)
        peer = _native.npipe_peer_identity()
        err = _native.npipe_error()
        _check(_native.lib.npipe_connection_peer(self._h, byref(peer), byref(err)), err)
        self._peer = PeerIdentity(pid=None if peer.pid < 0 else peer.pid, uid=None if peer.uid < 0 else peer.uid,
                                  gid=None if peer.gid < 0 else peer.gid, user=_str(peer.user),
                                  remote_address=_str(peer.remote_address), sid=_str(peer.sid))

    def _info(self) -> _native.npipe_pipe_info:
        info = _native.npipe_pipe_info()
        err = _native.npipe_error()
        _check(_native.lib.npipe_connection_info(self._h, byref(info), byref(err)), err)
        return info

    def __del__(self) -> None:
        h = getattr(self, "_h", None)
        if h is not None and h.value:
            self._h = c_void_p()
            _native.lib.npipe_connection_free(h)

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<npipe.Connection {self._name!r} {self._type.name.lower()} {state}>"

    # -- what it is --------------------------------------------------------
    @property
    def type(self) -> PipeType:
        """The pipe's type, as the server chose it."""
        return self._type

    @property
    def name(self) -> str:
        """The pipe's name."""
        return self._name

    @property
    def peer(self) -> PeerIdentity:
        """Who is at the other end."""
        return self._peer

    @property
    def peer_max_message_size(self) -> int:
        """The largest message the peer accepts."""
        return self._peer_max

    @property
    def is_open(self) -> bool:
        """False once closed here, once a write broke the send side, or
        once the peer has gone as far as this end knows."""
        return bool(self._info().is_open)

    @property
    def read_mode(self) -> ReadMode:
        """This end's read mode; set it to switch (SetNamedPipeHandleState)."""
        return ReadMode(self._info().read_mode)

    @read_mode.setter
    def read_mode(self, mode: ReadMode) -> None:
        self.set_read_mode(mode)

    def set_read_mode(self, mode: ReadMode) -> None:
        """Switch the read mode: byte mode on any pipe, message mode on a
        message pipe (else InvalidArgument)."""
        err = _native.npipe_error()
        _check(_native.lib.npipe_set_read_mode(self._h, int(mode), byref(err)), err)

    def fileno(self) -> int:
        """The OS handle (the socket's file descriptor on Linux, the pipe
        HANDLE on Windows), for waiting on readiness in an event loop; see
        the documentation of native handles for what else is allowed.
        Raises NotSupported with a library that has no native handles."""
        if not _native.has_native_handles:
            raise NotSupported("npipe: this npipe library has no native handles; update it")
        out = ctypes.c_ssize_t(-1)
        err = _native.npipe_error()
        _check(_native.lib.npipe_connection_native_handle(self._h, byref(out), byref(err)), err)
        return out.value

    # -- data --------------------------------------------------------------
    def write(self, data: Bytes, timeout: Timeout = None) -> None:
        """Write all of ``data`` as one message (a byte pipe: as bytes).
        A message larger than the peer's limit raises MessageTooLarge and
        sends nothing; a timeout after part of a message was sent breaks
        the connection (the peer never sees a torn message)."""
        b = _data(data)
        err = _native.npipe_error()
        _check(_native.lib.npipe_write(self._h, b, len(b), _ms(timeout), byref(err)), err)

    def read(self, size: int = 65536, timeout: Timeout = None) -> ReadResult:
        """Read up to ``size`` bytes (ReadFile). Message read mode: at most
        one message, with ``more_data`` True when it goes on (the rest
        comes with the next read; this is not an error). Byte read mode:
        what is there, at least one byte."""
        if size <= 0:
            raise ValueError("read size must be at least 1 byte")
        buf = ctypes.create_string_buffer(size)
        n = self.read_into(buf, timeout)
        return ReadResult(buf.raw[:n.bytes], n.more_data)

    def read_into(self, buffer: Any, timeout: Timeout = None) -> ReadIntoResult:
        """read() into a writable buffer (bytearray, memoryview, ctypes
        array); returns (bytes stored, more_data)."""
        view = memoryview(buffer).cast("B")
        if view.readonly:
            raise TypeError("read_into needs a writable buffer")
        if view.nbytes == 0:
            raise ValueError("read_into needs a buffer of at least 1 byte")
        c = (ctypes.c_char * view.nbytes).from_buffer(view)
        got = c_size_t(0)
        more = c_int(0)
        err = _native.npipe_error()
        _check(_native.lib.npipe_read(self._h, c, view.nbytes, byref(got), byref(more), _ms(timeout), byref(err)),
               err)
        return ReadIntoResult(got.value, bool(more.value))

    def receive(self, timeout: Timeout = None) -> bytes:
        """One whole message (message read mode) or the bytes that are
        there (byte read mode). A message over this end's limit raises
        MessageTooLarge before anything is allocated and ends the
        connection. A timeout keeps what has arrived of a message for the
        next call."""
        ptr = c_void_p()
        size = c_size_t(0)
        err = _native.npipe_error()
        _check(_native.lib.npipe_receive_alloc(self._h, byref(ptr), byref(size), _ms(timeout), byref(err)), err)
        return _take(ptr, size)

    def transact(self, request: Bytes, timeout: Timeout = None) -> bytes:
        """Write ``request`` and receive the reply (TransactNamedPipe):
        message pipes in message read mode, with nothing unread (else
        InvalidState). A reply that comes after the timeout is discarded
        when it arrives, never handed to a later call."""
        b = _data(request)
        ptr = c_void_p()
        size = c_size_t(0)
        err = _native.npipe_error()
        _check(_native.lib.npipe_transact_alloc(self._h, b, len(b), byref(ptr), byref(size), _ms(timeout),
                                                byref(err)), err)
        return _take(ptr, size)

    def peek(self, size: int = 0) -> PeekResult:
        """Look at what is waiting without consuming it and without waiting
        (PeekNamedPipe): up to ``size`` bytes (message mode: of the current
        message), how much is ready, how much of this message is left."""
        if size < 0:
            raise ValueError("peek size must be >= 0")
        buf = ctypes.create_string_buffer(size) if size else None
        copied, avail, left = c_size_t(0), c_size_t(0), c_size_t(0)
        err = _native.npipe_error()
        _check(_native.lib.npipe_peek(self._h, buf, size, byref(copied), byref(avail), byref(left), byref(err)), err)
        return PeekResult(buf.raw[:copied.value] if buf is not None else b"", avail.value, left.value)

    def flush(self, timeout: Timeout = None) -> None:
        """Wait until the peer has read everything written so far
        (FlushFileBuffers). TimedOut leaves the data queued; a peer that
        closes without reading raises BrokenPipe."""
        err = _native.npipe_error()
        _check(_native.lib.npipe_flush(self._h, _ms(timeout), byref(err)), err)

    def close(self) -> None:
        """Close this end (a server's: DisconnectNamedPipe). Any thread,
        any number of times; calls blocked on other threads return
        (NotConnected)."""
        if self._h.value:
            _native.lib.npipe_connection_close(self._h)

    disconnect = close


def connect(name: str, timeout: Timeout = DEFAULT_CONNECT_TIMEOUT, *, read_mode: Optional[ReadMode] = None,
            max_message_size: Optional[int] = None, pipe_dir: Optional[str] = None,
            require_server_uid: Optional[int] = None) -> Connection:
    """Open a client end (CreateFile + WaitNamedPipe).

    ``name`` is "NAME", r"\\\\.\\pipe\\NAME" or r"\\\\HOST\\pipe\\NAME". If every
    instance is taken, waits up to ``timeout`` seconds for one (``0``: raise
    PipeBusy at once; ``None``: as long as it takes). No server at all
    raises NotFound at once. ``read_mode`` defaults to the pipe's type
    (message reads on a message pipe);
    ``max_message_size`` bounds what this end accepts; ``pipe_dir``
    (Linux) is the directory the pipe lives in; ``require_server_uid``
    (Linux) refuses a server that does not run as that uid (AccessDenied).
    """
    opts = _ClientOptions(read_mode, max_message_size, pipe_dir, require_server_uid)
    try:
        h = c_void_p()
        err = _native.npipe_error()
        _check(_native.lib.npipe_connect(_name(name), opts.ptr, _ms(timeout), byref(h), byref(err)), err)
    finally:
        opts.free()
    return Connection(h)


def call(name: str, request: Bytes, timeout: Timeout = DEFAULT_CONNECT_TIMEOUT, *,
         max_message_size: Optional[int] = None, pipe_dir: Optional[str] = None,
         require_server_uid: Optional[int] = None) -> bytes:
    """CallNamedPipe: connect, send ``request``, return the reply, close.
    ``timeout`` bounds the whole call."""
    b = _data(request)
    opts = _ClientOptions(None, max_message_size, pipe_dir, require_server_uid)
    try:
        ptr = c_void_p()
        size = c_size_t(0)
        err = _native.npipe_error()
        _check(_native.lib.npipe_call_alloc(_name(name), b, len(b), byref(ptr), byref(size), _ms(timeout), opts.ptr,
                                            byref(err)), err)
    finally:
        opts.free()
    return _take(ptr, size)


class Server:
    """A pipe name this process serves (CreateNamedPipe). From the
    constructor on, clients can connect (up to ``max_instances``) before
    any accept. A context manager: leaving the block closes it.

    ``type``: MESSAGE (the default) or BYTE. ``read_mode``: of the ends
    accept() returns (default: as the type). ``max_instances``: 1..255, 255
    meaning unlimited. ``max_message_size``: the largest message a client
    may send. ``in_buffer``/``out_buffer``: nInBufferSize/nOutBufferSize
    (0: the system's default). ``allow_everyone``: any local user may
    connect (default: only this user). ``pipe_dir`` (Linux): the directory
    for the pipe's socket.
    """

    def __init__(self, name: str, *, type: PipeType = PipeType.MESSAGE, read_mode: Optional[ReadMode] = None,
                 max_instances: Optional[int] = None, max_message_size: Optional[int] = None, in_buffer: int = 0,
                 out_buffer: int = 0, allow_everyone: bool = False, pipe_dir: Optional[str] = None) -> None:
        lib = _native.lib
        self._h = c_void_p()
        opts = c_void_p(lib.npipe_server_options_new())
        if not opts.value:
            raise MemoryError("npipe: out of memory for server options")
        err = _native.npipe_error()
        try:
            _check(lib.npipe_server_options_set_type(opts, int(type), byref(err)), err)
            if read_mode is not None:
                _check(lib.npipe_server_options_set_read_mode(opts, int(read_mode), byref(err)), err)
            if max_instances is not None:
                if max_instances < 0:
                    raise InvalidArgument(f"npipe: max_instances must be 1..255, not {max_instances}")
                _check(lib.npipe_server_options_set_max_instances(opts, max_instances, byref(err)), err)
            if max_message_size is not None:
                _check(lib.npipe_server_options_set_max_message_size(opts, max_message_size, byref(err)), err)
            if in_buffer or out_buffer:
                _check(lib.npipe_server_options_set_buffer_sizes(opts, in_buffer, out_buffer, byref(err)), err)
            if allow_everyone:
                _check(lib.npipe_server_options_allow_everyone(opts, 1, byref(err)), err)
            if pipe_dir is not None:
                _check(lib.npipe_server_options_set_pipe_dir(opts, _name(pipe_dir), byref(err)), err)
            _check(lib.npipe_server_open(_name(name), opts, byref(self._h), byref(err)), err)
        finally:
            lib.npipe_server_options_free(opts)
        self._name = name
        self._type = PipeType(type)

    def __del__(self) -> None:
        h = getattr(self, "_h", None)
        if h is not None and h.value:
            self._h = c_void_p()
            _native.lib.npipe_server_free(h)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<npipe.Server {self._name!r} {self._type.name.lower()}>"

    @property
    def name(self) -> str:
        return self._name

    @property
    def type(self) -> PipeType:
        return self._type

    def accept(self, timeout: Timeout = None) -> Connection:
        """ConnectNamedPipe: wait up to ``timeout`` seconds for the next
        client (TimedOut), or until close() (OperationAborted)."""
        h = c_void_p()
        err = _native.npipe_error()
        _check(_native.lib.npipe_server_accept(self._h, _ms(timeout), byref(h), byref(err)), err)
        return Connection(h)

    def fileno(self) -> int:
        """An OS handle that is ready exactly when accept(timeout=0) has a
        client (or an error) to return; see the documentation of native
        handles. Raises NotSupported with a library that has none."""
        if not _native.has_native_handles:
            raise NotSupported("npipe: this npipe library has no native handles; update it")
        out = ctypes.c_ssize_t(-1)
        err = _native.npipe_error()
        _check(_native.lib.npipe_server_native_handle(self._h, byref(out), byref(err)), err)
        return out.value

    def close(self) -> None:
        """Stop accepting, wake every accept (OperationAborted) and give the
        name back; connections already accepted live on."""
        if self._h.value:
            _native.lib.npipe_server_close(self._h)
