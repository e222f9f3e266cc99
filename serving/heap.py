"""Give a worker's freed memory back to the system when the engine goes idle (glibc's malloc).

A decode step allocates KV caches, logits and prefill buffers of 1-100 MB beside long-lived small
objects. glibc serves such blocks from its heap once a freed block of that size has raised its mmap
threshold, and a heap page that a small live object shares is never returned by itself, so every
batch's peak stayed resident. Two cures were measured (docs/serving.md, "Worker memory"): mapping
every block over 1 MB on its own (mallopt M_MMAP_THRESHOLD) returned the memory but made 4 prompts of
871 tokens decode in 62-66 s instead of 28-33 s (each step faults fresh zeroed pages in); calling
malloc_trim(0) once the running batch has drained keeps the hot loop as it was (32.6-32.8 s) and
brought that process from 1.4-2.1 GB to 1.0 GB. The trim itself took 0.16-0.26 s, so the engine
does it when idle and at most every `IDLE_RELEASE_INTERVAL_S`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("balancedbio.heap")

IDLE_RELEASE_INTERVAL_S = 10.0
_trim = None  # glibc's malloc_trim, resolved on first use; False where the C library has none


def release_free_memory() -> bool:
    """Return the free pages of every malloc arena to the system (glibc's malloc_trim); False, with a
    log line the first time, where the C library has no malloc_trim."""
    global _trim
    if _trim is None:
        try:
            _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _trim = False
            log.info("malloc_trim is not available (not glibc?): freed memory stays with the worker")
    if _trim is False:
        return False
    _trim(0)
    return True
