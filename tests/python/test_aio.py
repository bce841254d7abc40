# SPDX-License-Identifier: MIT
"""npipe.aio: transact, serve, and cancellation that loses nothing, both
ways of waiting (on the native handle in the loop, and on threads)."""

import asyncio
import os
import sys
import threading

import pytest

import npipe
import npipe.aio


@pytest.fixture(params=["handles", "threads"])
def waits(request, monkeypatch):
    if request.param == "threads":
        monkeypatch.setattr(npipe.aio, "_force_threads", True)
    else:
        assert npipe._native.has_native_handles, "the library has no native handles"
    return request.param


def run(coro, seconds=20):
    async def bounded():
        return await asyncio.wait_for(coro, seconds)
    return asyncio.run(bounded())


def check_mode(conn, waits):
    assert (conn._fd is None) == (waits == "threads"), repr(conn)


async def echo(conn):
    while True:
        try:
            m = await conn.receive()
        except npipe.BrokenPipe:
            return
        await conn.write(b"re:" + m)


def test_transact_and_serve_many_clients(name, waits):
    async def main():
        async with npipe.aio.Server(name) as server:
            serving = asyncio.ensure_future(server.serve(echo))

            async def client(i):
                async with await npipe.aio.connect(name) as c:
                    check_mode(c, waits)
                    for j in range(20):
                        assert await c.transact(f"{i}.{j}".encode()) == f"re:{i}.{j}".encode()
            await asyncio.gather(*(client(i) for i in range(8)))
            serving.cancel()
            with pytest.raises(asyncio.CancelledError):
                await serving
        with pytest.raises(npipe.NotFound):  # serve() ended: the name is free
            await npipe.aio.connect(name)
    run(main())


def test_loop_keeps_running_while_waiting(name, waits):
    """A receive that waits does not block the loop: other tasks run."""
    async def main():
        async with npipe.aio.Server(name) as server:
            got = asyncio.ensure_future(server.accept())
            async with await npipe.aio.connect(name) as c:
                async with await got as s:
                    check_mode(s, waits)
                    pending = asyncio.ensure_future(s.receive())
                    for _ in range(10):
                        await asyncio.sleep(0)
                    assert not pending.done()
                    await c.write(b"late")
                    assert await pending == b"late"
    run(main())


def test_cancelled_receive_loses_nothing(name, waits):
    big = os.urandom(16 << 20)

    async def main():
        async with npipe.aio.Server(name, max_message_size=64 << 20) as server:
            accepting = asyncio.ensure_future(server.accept())
            async with await npipe.aio.connect(name) as c:
                async with await accepting as s:
                    # nothing there: the receive is cancelled while it waits
                    with pytest.raises(asyncio.TimeoutError):
                        await asyncio.wait_for(s.receive(), 0.05)
                    # a big message in flight: receives keep getting cancelled
                    # part way; the one after them gets it whole
                    writing = asyncio.ensure_future(c.write(big))
                    cancelled = 0
                    while True:
                        try:
                            m = await asyncio.wait_for(s.receive(), 0.001)
                            break
                        except asyncio.TimeoutError:
                            cancelled += 1
                    assert m == big
                    assert cancelled > 0  # the message did arrive in pieces across cancelled receives
                    await writing
                    await c.write(b"next")
                    assert await s.receive() == b"next"
    run(main(), 40)


def test_cancelled_write_is_sent_whole(name, waits):
    async def main():
        async with npipe.aio.Server(name) as server:
            accepting = asyncio.ensure_future(server.accept())
            async with await npipe.aio.connect(name) as c:
                async with await accepting as s:
                    big = os.urandom(8 << 20)
                    w = asyncio.ensure_future(c.write(big))
                    await asyncio.sleep(0)
                    w.cancel()
                    after = asyncio.ensure_future(c.write(b"after"))
                    assert await s.receive() == big
                    assert await s.receive() == b"after"
                    await after
                    await c.flush()
    run(main())


def test_cancelled_transact_discards_its_reply(name, waits):
    async def main():
        release = asyncio.Event()

        async def slow(conn):
            m = await conn.receive()
            await release.wait()
            await conn.write(b"reply to " + m)
            await echo(conn)
        async with npipe.aio.Server(name) as server:
            serving = asyncio.ensure_future(server.serve(slow))
            async with await npipe.aio.connect(name) as c:
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(c.transact(b"first"), 0.05)
                release.set()
                assert await c.transact(b"second") == b"re:second"  # not "reply to first"
            serving.cancel()
    run(main())


def test_cancelled_accept_loses_no_client(name, waits):
    async def main():
        async with npipe.aio.Server(name) as server:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(server.accept(), 0.05)
            async with await npipe.aio.connect(name) as c:
                async with await server.accept() as s:
                    await c.write(b"hi")
                    assert await s.receive() == b"hi"
    run(main())


def test_close_wakes_a_waiting_receive(name, waits):
    async def main():
        async with npipe.aio.Server(name) as server:
            accepting = asyncio.ensure_future(server.accept())
            async with await npipe.aio.connect(name) as c:
                s = await accepting
                waiting = asyncio.ensure_future(s.receive())
                await asyncio.sleep(0)
                s.close()
                with pytest.raises(npipe.NotConnected):
                    await waiting
                with pytest.raises(npipe.BrokenPipe):
                    await c.receive()
    run(main())


def test_handler_errors_reach_the_loop_and_end_one_client(name, waits):
    async def main():
        seen = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: seen.append(ctx["exception"]))

        async def picky(conn):
            m = await conn.receive()
            if m == b"bad":
                raise ValueError("bad request")
            await conn.write(b"ok")
        async with npipe.aio.Server(name) as server:
            serving = asyncio.ensure_future(server.serve(picky))
            async with await npipe.aio.connect(name) as c:
                await c.write(b"bad")
                with pytest.raises(npipe.BrokenPipe):
                    await c.receive()
            async with await npipe.aio.connect(name) as c:
                assert await c.transact(b"good") == b"ok"
            serving.cancel()
        assert len(seen) == 1 and isinstance(seen[0], ValueError)
    run(main())


def test_errors_are_the_blocking_ones(name, waits):
    async def main():
        with pytest.raises(npipe.NotFound):
            await npipe.aio.connect(name)
        async with npipe.aio.Server(name, max_instances=1) as server:
            first = await npipe.aio.connect(name)
            with pytest.raises(npipe.PipeBusy):
                await npipe.aio.connect(name, timeout=0)
            first.close()
            with pytest.raises(npipe.NotConnected):
                await first.write(b"x")
            (await server.accept()).close()
    run(main())
