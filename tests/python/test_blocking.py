# SPDX-License-Identifier: MIT
"""The blocking API, Python to Python across threads of one process."""

import errno
import os
import stat
import threading
import time

import pytest

import npipe


def wait_for(condition, seconds=30):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.001)


def in_poll(thread):
    """True while `thread` sleeps in a system call that waits for a socket
    (poll, ppoll, epoll_wait, recvmsg, recvfrom, read: x86-64 and arm64)."""
    try:
        with open(f"/proc/self/task/{thread.native_id}/syscall") as f:
            nr = f.read().split()[0]
    except (OSError, IndexError):
        return False
    if os.uname().machine == "aarch64":
        return nr in {"73", "22", "212", "207", "63"}
    return nr in {"7", "271", "232", "281", "45", "47", "0"}


def serve_once(server, handler):
    """Runs handler(connection) on the server's next client in a thread;
    join() re-raises what it raised."""
    box = {}

    def run():
        try:
            with server.accept(timeout=30) as c:
                box["result"] = handler(c)
        except BaseException as e:  # noqa: BLE001 - re-raised in join
            box["error"] = e

    t = threading.Thread(target=run)
    t.start()

    class Joiner:
        def join(self):
            t.join(30)
            assert not t.is_alive(), "server thread hung"
            if "error" in box:
                raise box["error"]
            return box.get("result")
    return Joiner()


def test_transact_and_call(name):
    with npipe.Server(name) as s:
        def echo(c):
            c.write(b"re:" + c.receive())
            c.flush()
        t = serve_once(s, echo)
        with npipe.connect(name) as c:
            assert c.type is npipe.PipeType.MESSAGE
            assert c.read_mode is npipe.ReadMode.MESSAGE
            assert c.transact(b"hello") == b"re:hello"
        t.join()
        t = serve_once(s, echo)
        assert npipe.call(name, bytearray(b"ping")) == b"re:ping"
        t.join()


def test_partial_reads_report_more_data(name):
    with npipe.Server(name) as s:
        t = serve_once(s, lambda c: (c.write(b"0123456789" * 10), c.flush()))
        with npipe.connect(name) as c:
            parts = []
            while True:
                r = c.read(16)
                parts.append(r.data)
                if not r.more_data:
                    break
            assert b"".join(parts) == b"0123456789" * 10
            assert [len(p) for p in parts] == [16] * 6 + [4]
        t.join()


def test_read_into_and_peek(name):
    with npipe.Server(name) as s:
        t = serve_once(s, lambda c: (c.write(b"abcdef"), c.flush()))
        with npipe.connect(name) as c:
            wait_for(lambda: c.peek().available == 6)
            p = c.peek(3)
            assert p == npipe.PeekResult(b"abc", 6, 6)
            buf = bytearray(4)
            n, more = c.read_into(memoryview(buf))
            assert (n, more, bytes(buf)) == (4, True, b"abcd")
            assert c.read(10) == (b"ef", False)
        t.join()


def test_large_message_both_ways(name):
    big = os.urandom(8 << 20)
    with npipe.Server(name) as s:
        def echo(c):
            m = c.receive()
            c.write(m[::-1])
        t = serve_once(s, echo)
        with npipe.connect(name) as c:
            assert c.transact(big) == big[::-1]
        t.join()


def test_byte_pipe(name):
    with npipe.Server(name, type=npipe.PipeType.BYTE) as s:
        t = serve_once(s, lambda c: c.write(b"x" * 100) or c.write(b"y" * 100) or c.flush())
        with npipe.connect(name) as c:
            assert c.type is npipe.PipeType.BYTE and c.read_mode is npipe.ReadMode.BYTE
            got = b""
            while len(got) < 200:
                r = c.read(1000)
                assert not r.more_data
                got += r.data
            assert got == b"x" * 100 + b"y" * 100
            with pytest.raises(npipe.InvalidArgument) as e:
                c.read_mode = npipe.ReadMode.MESSAGE
            assert isinstance(e.value, ValueError) and e.value.errno == errno.EINVAL
        t.join()


def test_read_mode_switch(name):
    with npipe.Server(name) as s:
        t = serve_once(s, lambda c: (c.write(b"one"), c.write(b"two"), c.flush()))
        with npipe.connect(name, read_mode=npipe.ReadMode.BYTE) as c:
            assert c.read_mode is npipe.ReadMode.BYTE
            got = b""
            while len(got) < 6:
                got += c.read(100).data
            assert got == b"onetwo"
        t.join()


def test_timeouts_are_seconds(name):
    with npipe.Server(name) as s:
        release = threading.Event()
        t = serve_once(s, lambda c: release.wait(30))
        with npipe.connect(name) as c:
            start = time.monotonic()
            with pytest.raises(npipe.TimedOut) as e:
                c.receive(timeout=0.2)
            took = time.monotonic() - start
            assert 0.2 <= took < 10
            assert isinstance(e.value, TimeoutError) and e.value.errno == errno.ETIMEDOUT
            assert "timed out" in e.value.strerror
            with pytest.raises(npipe.TimedOut):
                c.receive(timeout=0)
            assert c.is_open  # a timed-out read keeps the connection
            with pytest.raises(ValueError):
                c.receive(timeout=-1)
            with pytest.raises(TypeError):
                c.receive(timeout="1")
        release.set()
        t.join()
        with pytest.raises(npipe.TimedOut):
            s.accept(timeout=0.05)


def test_gil_is_released_while_blocked(name):
    with npipe.Server(name) as s:
        counted = threading.Event()
        count = [0]

        def count_up():
            while not counted.is_set():
                count[0] += 1
                if count[0] >= 100000:
                    counted.set()
        t = serve_once(s, lambda c: counted.wait(30) and c.write(b"done"))
        with npipe.connect(name) as c:
            counter = threading.Thread(target=count_up)
            counter.start()
            assert c.receive(timeout=30) == b"done"  # the counter ran while this call blocked
            counter.join()
        assert count[0] >= 100000
        t.join()


def test_not_found(name):
    with pytest.raises(npipe.NotFound) as e:
        npipe.connect(name)
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, OSError)
    assert e.value.errno == errno.ENOENT and e.value.status_name == "not_found"
    assert name in e.value.strerror


def test_pipe_busy(name):
    with npipe.Server(name, max_instances=1) as s:
        first = npipe.connect(name)
        with pytest.raises(npipe.PipeBusy) as e:
            npipe.connect(name, timeout=0)
        assert e.value.status_name == "pipe_busy"
        first.close()
        s.accept(timeout=30).close()


def test_name_in_use(name):
    with npipe.Server(name):
        with pytest.raises(npipe.NameInUse) as e:
            npipe.Server(name)
        assert isinstance(e.value, FileExistsError)


def test_access_denied_by_server_uid(name):
    with npipe.Server(name):
        with pytest.raises(npipe.AccessDenied) as e:
            npipe.connect(name, require_server_uid=os.getuid() + 1)
        assert isinstance(e.value, PermissionError)


def test_broken_pipe(name):
    with npipe.Server(name) as s:
        t = serve_once(s, lambda c: None)  # accepts and closes
        with npipe.connect(name) as c:
            with pytest.raises(npipe.BrokenPipe) as e:
                c.receive(timeout=30)
            assert isinstance(e.value, BrokenPipeError) and e.value.errno == errno.EPIPE
        t.join()


def test_message_too_large(name):
    def server_side(c):
        m = c.receive(timeout=30)
        with pytest.raises(npipe.MessageTooLarge):  # over the client's limit: refused, nothing sent
            c.write(b"y" * 5000)
        c.write(b"y" * 4999)
        c.flush()
        return m
    with npipe.Server(name, max_message_size=4096) as s:
        t = serve_once(s, server_side)
        with npipe.connect(name, max_message_size=4999) as c:
            assert c.peer_max_message_size == 4096
            with pytest.raises(npipe.MessageTooLarge) as e:
                c.write(b"x" * 4097)
            assert "4096" in e.value.strerror
            assert c.is_open  # refused before anything was sent
            c.write(b"x" * 4096)
            assert c.receive(timeout=30) == b"y" * 4999
        assert t.join() == b"x" * 4096


def test_invalid_name():
    with pytest.raises(npipe.InvalidName) as e:
        npipe.connect("a/b")
    assert isinstance(e.value, ValueError)
    with pytest.raises(TypeError):
        npipe.connect(42)


def test_invalid_argument(name):
    with pytest.raises(npipe.InvalidArgument):
        npipe.Server(name, max_instances=0)
    with pytest.raises(npipe.InvalidArgument):
        npipe.Server(name, max_instances=256)


def test_not_connected_after_close(name):
    with npipe.Server(name) as s:
        t = serve_once(s, lambda c: c.receive(timeout=30))
        c = npipe.connect(name)
        c.write(b"bye")
        c.close()
        c.close()
        assert not c.is_open
        with pytest.raises(npipe.NotConnected):
            c.write(b"again")
        t.join()


def test_close_wakes_a_blocked_receive(name):
    with npipe.Server(name) as s:
        t = serve_once(s, lambda c: c.receive(timeout=30))
        with npipe.connect(name) as c:
            box = {}

            def blocked():
                try:
                    c.receive()
                except npipe.Error as e:
                    box["e"] = e
            r = threading.Thread(target=blocked)
            r.start()
            wait_for(lambda: in_poll(r))  # blocked inside npipe, not yet failed
            c.close()
            r.join(30)
            assert isinstance(box.get("e"), npipe.NotConnected)
        with pytest.raises(npipe.BrokenPipe):
            t.join()


def test_operation_aborted_wakes_accept(name):
    s = npipe.Server(name)
    box = {}

    def waiting():
        try:
            s.accept()
        except npipe.Error as e:
            box["e"] = e
    t = threading.Thread(target=waiting)
    t.start()
    s.close()
    t.join(30)
    assert isinstance(box.get("e"), npipe.OperationAborted)
    with pytest.raises(npipe.OperationAborted):
        s.accept(timeout=0)


def test_invalid_state_transact_with_unread_data(name):
    with npipe.Server(name) as s:
        go = threading.Event()
        t = serve_once(s, lambda c: (c.write(b"unsolicited"), c.flush(), go.wait(30)))
        with npipe.connect(name) as c:
            wait_for(lambda: c.peek().available > 0)
            with pytest.raises(npipe.InvalidState):
                c.transact(b"q")
            assert c.receive() == b"unsolicited"
        go.set()
        t.join()


def test_unsafe_directory(tmp_path):
    d = tmp_path / "open"
    d.mkdir()
    os.chmod(d, 0o777)  # anyone could replace the socket: refused
    with pytest.raises(npipe.UnsafeDirectory) as e:
        npipe.Server("x", pipe_dir=str(d))
    assert isinstance(e.value, PermissionError)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o777


def test_peer_identity(name):
    with npipe.Server(name) as s:
        t = serve_once(s, lambda c: c.peer)
        with npipe.connect(name) as c:
            server_side = c.peer
        client_side = t.join()
        for p in (server_side, client_side):
            assert p.pid == os.getpid() and p.uid == os.getuid() and p.gid == os.getgid()
            assert not p.is_remote and p.remote_address == "" and p.sid == ""


def test_text_is_refused_with_advice(name):
    with npipe.Server(name) as s:
        t = serve_once(s, lambda c: None)
        with npipe.connect(name) as c:
            with pytest.raises(TypeError, match="encode"):
                c.write("text")
        t.join()


def test_every_status_has_its_class():
    classes = {npipe.NotFound: 1, npipe.PipeBusy: 2, npipe.MoreData: 3, npipe.TimedOut: 4, npipe.MessageTooLarge: 5,
               npipe.NameInUse: 6, npipe.AccessDenied: 7, npipe.BrokenPipe: 8, npipe.ProtocolError: 9,
               npipe.InvalidName: 10, npipe.InvalidArgument: 11, npipe.NotConnected: 12,
               npipe.OperationAborted: 13, npipe.InvalidState: 14, npipe.UnsafeDirectory: 15,
               npipe.NotSupported: 16, npipe.SystemError: 17}
    lib = npipe._native.lib
    for cls, status in classes.items():
        assert cls.status == status and issubclass(cls, npipe.Error) and issubclass(cls, OSError)
        assert cls.status_name == lib.npipe_status_name(status).decode()
    assert lib.npipe_status_name(18).decode() == "unknown"
