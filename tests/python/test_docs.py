# SPDX-License-Identifier: MIT
"""Every Python block (```python) of README.md and docs/*.md runs, as its
own program with a private pipe directory, and must finish by itself with
status 0, so the Python documentation cannot drift from the package. The
line before a block's fence may say `<!-- snippet: skip (why) -->`."""

import glob
import os
import re
import subprocess
import sys

import pytest

ROOT = os.environ.get("NPIPE_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
FENCE = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


def blocks():
    pages = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
    for page in pages:
        with open(page, encoding="utf-8") as f:
            text = f.read()
        for m in FENCE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
            where = f"{os.path.relpath(page, ROOT)}:{line}"
            yield pytest.param(m.group(1), before, id=where)


ALL = list(blocks())


def test_the_readme_has_python_blocks():
    assert any(p.id.startswith("README.md:") for p in ALL)


@pytest.mark.parametrize("code,before", ALL)
def test_block_runs(code, before, tmp_path):
    if before.startswith("<!-- snippet: skip"):
        assert re.fullmatch(r"<!-- snippet: skip \(.+\) -->", before), "a skip needs its reason"
        pytest.skip(before)
    assert not before.startswith("<!-- snippet"), f"unknown marker for a Python block: {before}"
    env = dict(os.environ, NPIPE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env=env,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
