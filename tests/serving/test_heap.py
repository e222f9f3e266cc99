"""A worker gives freed memory back to the system once its engine is idle (serving/heap.py)."""

from __future__ import annotations

import platform
import subprocess
import sys
import time

import pytest

# Large blocks, each followed by a small object that stays alive (so the heap cannot shrink from its
# top), freed together; prints what the process still holds in MB, then again after the release.
PROBE = """
import numpy as np
from serving.heap import release_free_memory
def rss():
    return next(int(l.split()[1]) // 1024 for l in open('/proc/self/status') if l.startswith('VmRSS'))
freed = np.ones(16 << 17); del freed  # a 16 MB block freed: glibc raises its mmap threshold to 16 MB
base = rss()
big, small = [], []
for _ in range(100):
    big.append(np.ones(2 << 17))  # 2 MB
    small.append(np.ones(100))
del big
held = rss() - base
assert release_free_memory()
print(held, rss() - base)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_freed_blocks_that_glibc_keeps_leave_on_release():
    held, after = map(int, subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                                          cwd=".").stdout.split())
    assert held >= 150, f"glibc returned the blocks by itself ({held} MB held): the probe no longer probes"
    assert after <= 20, f"{after} MB of freed blocks stayed resident after the release"


def test_the_engine_releases_memory_once_idle_and_not_while_busy(base_export, monkeypatch):
    import serving.engine as engine_module
    from serving.engine import OnnxEngine, SamplingParams

    releases = []
    monkeypatch.setattr(engine_module, "release_free_memory", lambda: releases.append(time.monotonic()))
    monkeypatch.setattr(engine_module, "IDLE_RELEASE_INTERVAL_S", 0.5)
    engine = OnnxEngine(base_export, threads=1)
    try:
        engine.start()
        time.sleep(0.3)
        assert releases == [], "an engine that has not worked released memory"
        ids = engine.encode(engine.chat_prompt([{"role": "user", "content": "What does HbA1c measure?"}]))
        *_, done = engine.stream(ids, SamplingParams(max_new_tokens=4))
        finished = time.monotonic()
        deadline = finished + 10
        while not releases and time.monotonic() < deadline:
            time.sleep(0.05)
        assert releases and releases[0] >= finished - 0.05, "the engine did not release memory after its work"
        time.sleep(1.5)
        assert len(releases) == 1, "an idle engine kept releasing with nothing new to give back"
    finally:
        engine.close()
