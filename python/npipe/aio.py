# SPDX-License-Identifier: MIT
"""npipe for asyncio::

    import asyncio, npipe.aio

    async def handler(conn: npipe.aio.Connection) -> None:
        request = await conn.receive()
        await conn.write(b"reply to " + request)

    async def main() -> None:
        async with npipe.aio.Server("tpipe") as server:
            serving = asyncio.create_task(server.serve(handler))
            async with await npipe.aio.connect("tpipe") as conn:
                print(await conn.transact(b"hello"))
            serving.cancel()

How it waits. Where the library gives native handles and the event loop
can watch file descriptors (Linux, the default selector loop), reads and
accepts wait on the handle in the loop itself and then call npipe without
waiting; everything else (writes, flushes, transacts, and reads on loops
that cannot watch handles, such as Windows' proactor loop) runs on a worker
thread of the connection, one for writes and one for reads, so a slow peer
never blocks the loop.

Timeouts: use asyncio's (``asyncio.timeout``, ``asyncio.wait_for``).

Cancellation loses nothing:

- a cancelled ``receive``/``read``/``accept`` consumes nothing: what arrives
  later (a message, part of one, a client) goes to the next call, whole;
- a ``write`` is queued whole when called and is sent even if the caller is
  cancelled (npipe never sends part of a message); writes go out in the
  order they were called, and ``flush`` waits for every write before it;
- a cancelled ``transact`` has sent (or will send) its request; its reply is
  discarded when it arrives, as a timed-out TransactNamedPipe does, and
  later reads wait until it has.
"""

from __future__ import annotations

import asyncio
import queue
import sys
import threading
from typing import Any, Awaitable, Callable, Optional, Union

import npipe
from npipe import Bytes, ReadResult, Timeout, PeekResult, PeerIdentity, PipeType, ReadMode

__all__ = ["connect", "Connection", "Server"]

_STOP = object()


class _Worker:
    """One thread that runs blocking calls in the order given and hands
    each result to the event loop as a future's."""

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self._loop = loop
        self._q: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> "asyncio.Future[Any]":
        fut = self._loop.create_future()
        # A caller cancelled while its call ran does not see how the call
        # ended; the next call on the connection reports a broken one.
        fut.add_done_callback(_retrieve)
        self._q.put((fn, args, fut))
        return fut

    def stop(self) -> None:
        self._q.put(_STOP)

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is _STOP:
                return
            fn, args, fut = item
            try:
                result, error = fn(*args), None
            except BaseException as e:  # handed to the awaiting task
                result, error = None, e
            try:
                self._loop.call_soon_threadsafe(_settle, fut, result, error)
            except RuntimeError:  # the loop has closed: nobody waits any more
                return


def _retrieve(fut: "asyncio.Future[Any]") -> None:
    if not fut.cancelled():
        fut.exception()


def _settle(fut: "asyncio.Future[Any]", result: Any, error: Optional[BaseException]) -> None:
    if fut.cancelled():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


def _watchable(loop: asyncio.AbstractEventLoop, handle: Callable[[], int]) -> Optional[int]:
    """The handle to wait on in `loop`, or None to wait on threads."""
    if not npipe._native.has_native_handles or _force_threads:
        return None
    if not isinstance(loop, asyncio.SelectorEventLoop):
        return None
    if sys.platform == "win32":
        # A pipe HANDLE and a server's event: Windows' selector (select())
        # watches sockets only.
        return None
    try:
        return handle()
    except npipe.NotSupported:
        return None


#: Tests set this to run the thread-based waits on a loop that could watch
#: handles, so that both ways are tested on Linux.
_force_threads = False


class Connection:
    """An npipe connection for asyncio; made by :func:`connect` and
    :meth:`Server.accept`. ``async with`` closes it."""

    def __init__(self, conn: npipe.Connection, loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        self._conn = conn
        self._loop = loop or asyncio.get_running_loop()
        self._fd = _watchable(self._loop, conn.fileno)
        self._rx_lock = asyncio.Lock()
        self._rx_worker: Optional[_Worker] = None
        self._tx_worker: Optional[_Worker] = None
        self._rx_pending: Optional["asyncio.Future[Any]"] = None  # a read a cancelled caller left running
        self._waiters: set["asyncio.Future[None]"] = set()
        self._closed = False

    # -- what it is (as npipe.Connection) ----------------------------------
    @property
    def connection(self) -> npipe.Connection:
        """The blocking connection underneath."""
        return self._conn

    @property
    def type(self) -> PipeType:
        return self._conn.type

    @property
    def name(self) -> str:
        return self._conn.name

    @property
    def peer(self) -> PeerIdentity:
        return self._conn.peer

    @property
    def read_mode(self) -> ReadMode:
        return self._conn.read_mode

    def set_read_mode(self, mode: ReadMode) -> None:
        self._conn.set_read_mode(mode)

    @property
    def is_open(self) -> bool:
        return self._conn.is_open

    def peek(self, size: int = 0) -> PeekResult:
        """PeekNamedPipe; never waits."""
        return self._conn.peek(size)

    async def __aenter__(self) -> "Connection":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        how = "threads" if self._fd is None else f"fd {self._fd}"
        return f"<npipe.aio.Connection {self.name!r} waits on {how}>"

    # -- reading -----------------------------------------------------------
    async def receive(self) -> bytes:
        """One whole message (byte read mode: the bytes that are there)."""
        data: bytes = await self._read_side(lambda: self._conn.receive(0), self._conn.receive)
        return data

    async def read(self, size: int = 65536) -> ReadResult:
        """ReadFile: up to ``size`` bytes, with ``more_data`` when the
        message goes on."""
        got: ReadResult = await self._read_side(lambda: self._conn.read(size, 0), lambda: self._conn.read(size))
        return got

    async def _read_side(self, now: Callable[[], Any], blocking: Callable[[], Any]) -> Any:
        async with self._rx_lock:
            if self._fd is not None and self._rx_pending is None:
                while True:
                    try:
                        return now()
                    except npipe.TimedOut:
                        await self._readable()
            if self._rx_pending is None:
                self._rx_pending = self._rx().submit(blocking)
            fut = self._rx_pending
            result = await asyncio.shield(fut)  # cancelled: fut stays for the next call
            self._rx_pending = None
            return result

    async def _readable(self) -> None:
        if self._closed:
            raise npipe.NotConnected("npipe: the connection is closed")
        fut: "asyncio.Future[None]" = self._loop.create_future()
        fd = self._fd
        assert fd is not None
        self._loop.add_reader(fd, _wake, fut)
        self._waiters.add(fut)
        try:
            await fut
        finally:
            self._waiters.discard(fut)
            if not self._closed:
                self._loop.remove_reader(fd)

    def _rx(self) -> _Worker:
        if self._rx_worker is None:
            self._rx_worker = _Worker(self._loop, "npipe-aio-read")
        return self._rx_worker

    def _tx(self) -> _Worker:
        if self._tx_worker is None:
            self._tx_worker = _Worker(self._loop, "npipe-aio-write")
        return self._tx_worker

    # -- writing -----------------------------------------------------------
    async def write(self, data: Bytes) -> None:
        """Write ``data`` as one message (a byte pipe: bytes). Queued whole
        at the call: cancelling the wait does not un-send it."""
        if self._closed:
            raise npipe.NotConnected("npipe: the connection is closed")
        await asyncio.shield(self._tx().submit(self._conn.write, npipe._data(data)))

    async def flush(self) -> None:
        """Wait until the peer has read everything written before."""
        if self._closed:
            raise npipe.NotConnected("npipe: the connection is closed")
        await asyncio.shield(self._tx().submit(self._conn.flush))

    async def transact(self, request: Bytes) -> bytes:
        """TransactNamedPipe: write ``request``, return the reply. Cancelled,
        the reply is discarded when it arrives."""
        if self._closed:
            raise npipe.NotConnected("npipe: the connection is closed")
        req = npipe._data(request)
        await self._rx_lock.acquire()
        try:
            if self._rx_pending is not None:  # its message would be taken for the reply
                raise npipe.InvalidState("npipe: transact while a cancelled read still waits for a message; "
                                         "receive that message first")
            fut = self._tx().submit(self._conn.transact, req)
        except BaseException:
            self._rx_lock.release()
            raise
        fut.add_done_callback(lambda _: self._rx_lock.release())
        return await asyncio.shield(fut)

    # -- closing -----------------------------------------------------------
    def close(self) -> None:
        """Close the connection; waiting reads fail with NotConnected."""
        if self._closed:
            return
        self._closed = True
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
        for w in list(self._waiters):
            _wake(w)
        self._conn.close()  # wakes the workers' blocked calls
        for worker in (self._rx_worker, self._tx_worker):
            if worker is not None:
                worker.stop()

    disconnect = close


def _wake(fut: "asyncio.Future[None]") -> None:
    if not fut.done():
        fut.set_result(None)


async def connect(name: str, timeout: Timeout = npipe.DEFAULT_CONNECT_TIMEOUT, **options: Any) -> Connection:
    """npipe.connect() without blocking the loop; the same options. A
    cancelled connect closes the connection it makes."""
    loop = asyncio.get_running_loop()
    worker = _Worker(loop, "npipe-aio-connect")
    job = worker.submit(lambda: npipe.connect(name, timeout, **options))
    worker.stop()
    try:
        conn = await asyncio.shield(job)
    except asyncio.CancelledError:
        job.add_done_callback(_close_result)
        raise
    return Connection(conn, loop)


def _close_result(f: "asyncio.Future[Any]") -> None:
    """Closes what a job nobody waits for any more made."""
    if not f.cancelled() and f.exception() is None:
        f.result().close()


class Server:
    """An npipe server for asyncio (the same options as npipe.Server).
    ``async with`` closes it."""

    def __init__(self, name: str, **options: Any) -> None:
        self._server = npipe.Server(name, **options)
        self._loop = asyncio.get_running_loop()
        self._fd = _watchable(self._loop, self._server.fileno)
        self._lock = asyncio.Lock()
        self._worker: Optional[_Worker] = None
        self._pending: Optional["asyncio.Future[Any]"] = None
        self._waiters: set["asyncio.Future[None]"] = set()
        self._closed = False

    @property
    def server(self) -> npipe.Server:
        """The blocking server underneath."""
        return self._server

    @property
    def name(self) -> str:
        return self._server.name

    async def __aenter__(self) -> "Server":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    async def accept(self) -> Connection:
        """The next client. A cancelled accept leaves its client to the next."""
        async with self._lock:
            if self._fd is not None and self._pending is None:
                while True:
                    try:
                        return Connection(self._server.accept(0), self._loop)
                    except npipe.TimedOut:
                        await self._ready()
            if self._pending is None:
                if self._worker is None:
                    self._worker = _Worker(self._loop, "npipe-aio-accept")
                self._pending = self._worker.submit(self._server.accept)
            fut = self._pending
            conn = await asyncio.shield(fut)
            self._pending = None
            return Connection(conn, self._loop)

    async def _ready(self) -> None:
        if self._closed:
            raise npipe.OperationAborted("npipe: the server is closed")
        fut: "asyncio.Future[None]" = self._loop.create_future()
        fd = self._fd
        assert fd is not None
        self._loop.add_reader(fd, _wake, fut)
        self._waiters.add(fut)
        try:
            await fut
        finally:
            self._waiters.discard(fut)
            if not self._closed:
                self._loop.remove_reader(fd)

    async def serve(self, handler: Callable[[Connection], Awaitable[Any]]) -> None:
        """Accept clients until the server is closed or this is cancelled,
        running ``await handler(conn)`` as its own task for each (the
        connection is closed when the handler returns). An exception from a
        handler goes to the loop's exception handler and ends only that
        client. When it ends, the server is closed and handlers still
        running are cancelled and awaited."""
        tasks: set["asyncio.Task[None]"] = set()

        async def run(conn: Connection) -> None:
            try:
                async with conn:
                    await handler(conn)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._loop.call_exception_handler({"message": f"npipe.aio: handler for {self.name!r} failed",
                                                   "exception": e})

        try:
            while True:
                try:
                    conn = await self.accept()
                except npipe.OperationAborted:
                    return
                t = asyncio.ensure_future(run(conn))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
        finally:
            self.close()
            for t in list(tasks):
                t.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        """Stop accepting and give the name back; accepts fail with
        OperationAborted. Connections accepted live on."""
        if self._closed:
            return
        self._closed = True
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
        for w in list(self._waiters):
            _wake(w)
        self._server.close()
        if self._pending is not None:  # a client a cancelled accept took: nobody will take it now
            self._pending.add_done_callback(_close_result)
        if self._worker is not None:
            self._worker.stop()
