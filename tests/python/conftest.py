# SPDX-License-Identifier: MIT
"""pytest setup for the Python package's tests, run by CTest (python.*).

CTest gives: PYTHONPATH (the package's source), NPIPE_LIBRARY (the shared
library just built), NPIPE_EXAMPLES (the directory of the C++ and C seed
programs) and NPIPE_SOURCE_DIR (the repository). Each test gets a private
pipe directory (NPIPE_DIR) and a random pipe name, and a watchdog that
dumps every thread's stack and ends the run if the test hangs.
"""

import faulthandler
import os
import secrets
import sys

import pytest

WATCHDOG_SECONDS = 60


@pytest.fixture(autouse=True)
def watchdog():
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True, file=sys.stderr)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True)
def pipe_dir(tmp_path, monkeypatch):
    d = tmp_path / "pipes"
    d.mkdir(mode=0o700)
    monkeypatch.setenv("NPIPE_DIR", str(d))
    return d


@pytest.fixture
def name():
    return "py-" + secrets.token_hex(6)


def example(program: str) -> str:
    path = os.path.join(os.environ["NPIPE_EXAMPLES"], program)
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing: build the examples (NPIPE_BUILD_EXAMPLES)")
    return path
