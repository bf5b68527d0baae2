"""Freed message buffers leave the process (receiver.malloc), measured in a fresh one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from receiver.malloc import unmap_large_blocks

ROOT = Path(__file__).resolve().parent.parent

# Three 20 MB messages at a time, six times over, while small objects keep being made
# (as sessions do): what the process still holds after the last one is gone, in MiB.
PROBE = """
import sys
from receiver.malloc import unmap_large_blocks

def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) * 1024

if sys.argv[1] == "set":
    assert unmap_large_blocks()
before = rss()
small = []
for _ in range(6):
    held = [b"x" * (20 << 20) for _ in range(3)]
    small.append(b"y" * 100)
    del held
print((rss() - before) >> 20)
"""


def retained_mib(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout
    return int(out)


@pytest.mark.skipif(
    not Path("/proc/self/status").exists() or not unmap_large_blocks(),
    reason="needs glibc's mallopt and /proc",
)
def test_freed_large_buffers_go_back_to_the_os():
    assert retained_mib("default") >= 15  # glibc's own adjustment keeps a 20 MB block
    assert retained_mib("set") < 5
