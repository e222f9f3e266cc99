"""A worker returns large freed blocks to the system (serving/heap.py)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# Large blocks, each followed by a small object that stays alive (so the heap cannot shrink from its
# top), freed together; what the process still holds afterwards is printed in MB.
PROBE = """
import sys, numpy as np
def rss():
    return next(int(l.split()[1]) // 1024 for l in open('/proc/self/status') if l.startswith('VmRSS'))
if sys.argv[1] == 'mapped':
    from serving.heap import map_large_blocks
    assert map_large_blocks()
freed = np.ones(16 << 17); del freed  # a 16 MB block freed: glibc raises its mmap threshold to 16 MB
base = rss()
big, small = [], []
for _ in range(100):
    big.append(np.ones(2 << 17))  # 2 MB
    small.append(np.ones(100))
del big
print(rss() - base)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
@pytest.mark.parametrize("mode, most_held_mb, least_held_mb", [("default", None, 150), ("mapped", 20, None)],
                         ids=["glibc keeps 200 MB of freed 2 MB blocks", "with large blocks mapped it keeps none"])
def test_freed_large_blocks_leave_the_process(mode, most_held_mb, least_held_mb):
    held = int(subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                              cwd=".").stdout.split()[-1])
    if most_held_mb is not None:
        assert held <= most_held_mb, f"{held} MB of freed blocks stayed resident"
    if least_held_mb is not None:  # the probe must show the problem, or its pass above would prove nothing
        assert held >= least_held_mb, f"glibc returned the blocks by itself ({held} MB held): the probe no longer probes"
