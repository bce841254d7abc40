# SPDX-License-Identifier: MIT
"""Python against C++, C and Python in other processes: the seed demo in
every pairing, and large messages and conditions across processes."""

import os
import re
import subprocess
import sys
import time

import pytest

import npipe
from conftest import example

EXAMPLES = os.path.join(os.environ.get("NPIPE_SOURCE_DIR", "."), "examples", "python")
REPLY = re.compile(r"Response received: \[npipe \d+\.\d+\.\d+ \| \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\]\n")


def python(script):
    return [sys.executable, os.path.join(EXAMPLES, script)]


SERVERS = {"python": lambda: python("seed_server.py"), "c++": lambda: [example("example_seed_server")],
           "c": lambda: [example("example_c_seed_server")]}
CLIENTS = {"python": lambda: python("seed_client.py"), "c++": lambda: [example("example_seed_client")],
           "c": lambda: [example("example_c_seed_client")]}


def wait_for_pipe(pipe_dir, name, proc):
    """Until the server has created its pipe (its socket file exists)."""
    deadline = time.monotonic() + 30
    path = os.path.join(pipe_dir, name)
    while not os.path.exists(path):
        assert proc.poll() is None, f"server exited early: {proc.communicate()}"
        assert time.monotonic() < deadline, "the server did not create its pipe"
        time.sleep(0.005)


@pytest.mark.parametrize("server,client", [("python", "python"), ("c++", "python"), ("python", "c++"),
                                           ("c", "python"), ("python", "c")])
def test_seed_demo(server, client, name, pipe_dir):
    srv = subprocess.Popen(SERVERS[server]() + [name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_pipe(pipe_dir, name, srv)
        out = subprocess.run(CLIENTS[client]() + [name, "hello from the example"], capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 0, out.stderr
        assert REPLY.fullmatch(out.stdout), out.stdout
        srv_out, srv_err = srv.communicate(timeout=30)
        assert srv.returncode == 0, srv_err
        assert srv_out == "Bytes received: 22\n"
    finally:
        srv.kill()
        srv.wait()


def test_python_client_error_is_a_code_and_a_message(name):
    out = subprocess.run(python("seed_client.py") + [name], capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert out.stderr.startswith("not_found: not found"), out.stderr
    assert name in out.stderr


CHILD = r"""
import sys, npipe
name, size = sys.argv[1], int(sys.argv[2])
with npipe.Server(name, max_message_size=64 << 20) as s, s.accept(timeout=30) as c:
    print("accepted", flush=True)
    while True:
        try:
            m = c.receive()
        except npipe.BrokenPipe:
            break
        c.write(len(m).to_bytes(8, "little") + m[-16:])
"""


def test_large_messages_across_processes(name, pipe_dir):
    child = subprocess.Popen([sys.executable, "-c", CHILD, name, "0"], stdout=subprocess.PIPE, text=True)
    try:
        wait_for_pipe(pipe_dir, name, child)
        with npipe.connect(name) as c:
            assert child.stdout.readline() == "accepted\n"
            for size in (0, 1, 65535, 65536, 1 << 20, 32 << 20):
                msg = os.urandom(size)
                reply = c.transact(msg, timeout=60)
                assert int.from_bytes(reply[:8], "little") == size
                assert reply[8:] == msg[-16:]
            assert c.peer.pid == child.pid
        assert child.wait(timeout=30) == 0
    finally:
        child.kill()
        child.wait()


def test_peer_that_dies_is_a_broken_pipe(name, pipe_dir):
    child = subprocess.Popen([sys.executable, "-c", CHILD, name, "0"], stdout=subprocess.PIPE, text=True)
    try:
        wait_for_pipe(pipe_dir, name, child)
        with npipe.connect(name) as c:
            assert child.stdout.readline() == "accepted\n"
            child.kill()
            child.wait()
            with pytest.raises(npipe.BrokenPipe):
                c.receive(timeout=30)
    finally:
        child.kill()
        child.wait()
