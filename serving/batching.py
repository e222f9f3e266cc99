"""The rows the engine decodes together, and how requests join and leave them.

Continuous batching: a request that arrives while others decode is prefilled on its own and joins
the running rows at the next decode step, instead of waiting for the whole batch to drain (static
batching). A finished row leaves at once. Each row keeps its own positions and attention mask, and
the KV cache is padded to a common length with masked columns, so a row's tokens do not depend on
when it joined or whom it decoded beside (tests/serving/test_batching.py).

The cache arrays are the exported graph's: one per past_key_values input, each
[rows, kv_heads, past_len, head_dim]; `mask` is [rows, past_len] with 1 where a row has a token.
Two layouts, by what the graph's attention reads:
- `left` (Optimum's export: attention takes the mask and explicit position ids): a row's tokens are
  the last columns; a decode step appends one column that every row uses.
- `right` (a fused GroupQueryAttention graph, `training/export_fused.py`): the operator takes each
  row's length from its mask's sum, reads the row's tokens from column 0 on and writes the new token
  at that length, so a row's tokens are the first columns and a step sets one more column per row.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

BATCHING_MODES = ("continuous", "static")
CACHE_LAYOUTS = ("left", "right")
LAYOUT_METADATA_KEY = "balancedbio.cache_layout"  # in the ONNX graph's metadata; absent means left


@dataclass
class DecodeBatch:
    """Rows mid-decode: each row's job, its sampling generator, and the token it feeds next."""

    jobs: list
    rngs: list
    next_tokens: list[int]
    past: list[np.ndarray]
    mask: np.ndarray  # [rows, past_len]
    positions: np.ndarray  # [rows, 1]: the position of each row's last token (its count of tokens - 1)
    layout: str = "left"  # CACHE_LAYOUTS

    def __len__(self) -> int:
        return len(self.jobs)

    def keep(self, slots: Sequence[int]) -> DecodeBatch | None:
        """Only the rows at `slots` (finished rows leave); None when none is left."""
        if not slots:
            return None
        if len(slots) == len(self.jobs):
            return self
        rows = np.asarray(slots)
        kept = DecodeBatch([self.jobs[s] for s in slots], [self.rngs[s] for s in slots],
                           [self.next_tokens[s] for s in slots], [p[rows] for p in self.past],
                           self.mask[rows], self.positions[rows], self.layout)
        return kept.trimmed()

    def trimmed(self) -> DecodeBatch:
        """Without the cache columns no row attends to (the padding of rows that left): the leading
        ones in the left layout, the trailing ones in the right."""
        used = self.mask.any(axis=0)
        if self.layout == "right":
            end = int(len(used) - used[::-1].argmax()) if used.any() else 0
            if end == self.mask.shape[1]:
                return self
            self.past = [p[:, :, :end] for p in self.past]
            self.mask = self.mask[:, :end]
            return self
        first = int(used.argmax()) if used.any() else self.mask.shape[1]
        if first == 0:
            return self
        self.past = [p[:, :, first:] for p in self.past]
        self.mask = self.mask[:, first:]
        return self

    def merged(self, other: DecodeBatch | None) -> DecodeBatch:
        """These rows and `other`'s in one batch: the shorter cache is padded with masked columns."""
        if other is None:
            return self
        if other.layout != self.layout:
            raise ValueError(f"cannot merge a {self.layout}-padded batch with a {other.layout}-padded one")
        width = max(self.mask.shape[1], other.mask.shape[1])
        a, b = self.padded_to(width), other.padded_to(width)
        return DecodeBatch(a.jobs + b.jobs, a.rngs + b.rngs, a.next_tokens + b.next_tokens,
                           [np.concatenate([x, y]) for x, y in zip(a.past, b.past)],
                           np.concatenate([a.mask, b.mask]), np.concatenate([a.positions, b.positions]), self.layout)

    def padded_to(self, width: int) -> DecodeBatch:
        extra = width - self.mask.shape[1]
        if extra <= 0:
            return self
        pad = (0, extra) if self.layout == "right" else (extra, 0)
        past = [np.pad(p, ((0, 0), (0, 0), pad, (0, 0))) for p in self.past]
        mask = np.pad(self.mask, ((0, 0), pad))
        return DecodeBatch(self.jobs, self.rngs, self.next_tokens, past, mask, self.positions, self.layout)

    def advance(self) -> None:
        """The mask and positions for the next step, in which each row feeds one token: the left
        layout appends a column every row uses; the right one marks the column after each row's last
        token (appending a column when the longest row needs it). The cache grows to the mask's width
        in that step's output."""
        self.positions = self.positions + 1
        if self.layout == "left":
            self.mask = np.concatenate([self.mask, np.ones((len(self), 1), np.int64)], axis=1)
            return
        width = max(int(self.positions.max()) + 1, self.mask.shape[1])
        self.mask = np.pad(self.mask, ((0, 0), (0, width - self.mask.shape[1])))  # a copy: views stay as they were
        self.mask[np.arange(len(self)), self.positions[:, 0]] = 1


def admit(queue_get: Callable[[float | None], object], capacity: int, window_s: float, running: bool,
          stop: object = None, idle_wait: float | None = None) -> tuple[list, bool]:
    """Requests to start now, and whether the stop signal came.

    With nothing running, wait for a first request (at most `idle_wait` seconds; None: until one
    comes) and then up to `window_s` for more (so requests sent together share one prefill); with
    rows running, take only what is already waiting, so the running rows are not held up.
    `queue_get(timeout)` raises queue.Empty when nothing came."""
    jobs: list = []
    if capacity <= 0:
        return jobs, False
    deadline = None
    while len(jobs) < capacity:
        if not jobs and not running:
            timeout = idle_wait  # idle: wait for the first request
        elif running:
            timeout = 0.0
        else:
            deadline = deadline or time.perf_counter() + window_s
            timeout = max(0.0, deadline - time.perf_counter())
        try:
            job = queue_get(timeout)
        except queue.Empty:
            break
        if job is stop:
            return jobs, True
        jobs.append(job)
    return jobs, False
