"""Load each knowledge source once per process, on first use, and record what it cost.

The sources are large (the HPO ontology takes tens of seconds and hundreds of MB), and most
processes need only some of them: the ONNX server's guardrails never touch HPO, a unit test of
ICD-10 never needs drugs. So nothing is loaded at import time, and a source that is loaded is
shared by every KnowledgeBase in the process.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from clinical.knowledge.models import KnowledgeSourceError, LoadStats

T = TypeVar("T")

# Every LazySource registers itself here so load_stats() can report on all of them.
_REGISTRY: dict[str, "LazySource"] = {}


def _rss_mb() -> float | None:
    """Resident set size of this process in MiB, or None off Linux.

    Read from /proc rather than psutil so `clinical` keeps no dependency for a diagnostic.
    """
    try:
        with open("/proc/self/statm") as fh:
            resident_pages = int(fh.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class LazySource(Generic[T]):
    """A value built by `loader` the first time `get()` is called, then kept.

    Thread-safe: serving runs requests on threads, and two of them arriving before the first load
    finishes must not both pay for it (or both mutate a package's global tables).
    """

    def __init__(self, name: str, loader: Callable[[], T], depends_on: tuple["LazySource", ...] = ()) -> None:
        if name in _REGISTRY:
            raise ValueError(f"A knowledge source named {name!r} is already registered; names must be unique.")
        self.name = name
        self._loader = loader
        # Loaded before this source's clock starts, so each source's stats count only itself.
        self._depends_on = depends_on
        self._lock = threading.Lock()
        self._value: T | None = None
        self._loaded = False
        self._stats: LoadStats | None = None
        self._load_count = 0
        _REGISTRY[name] = self

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def stats(self) -> LoadStats | None:
        return self._stats

    def get(self) -> T:
        if self._loaded:  # fast path: no lock once loaded
            return self._value  # type: ignore[return-value]
        for dependency in self._depends_on:
            dependency.get()
        with self._lock:
            if not self._loaded:
                self._load()
        return self._value  # type: ignore[return-value]

    def _load(self) -> None:
        rss_before = _rss_mb()
        started = time.perf_counter()
        try:
            value = self._loader()
        except Exception as exc:  # the original is chained; this adds which source and what to do
            raise KnowledgeSourceError(
                f"Could not load the knowledge source {self.name!r}: {exc!r}. Check that the project "
                f"is installed with its pinned dependencies (pip install -e .) and that its data files exist."
            ) from exc
        seconds = time.perf_counter() - started
        rss_after = _rss_mb()
        self._load_count += 1
        delta = None if rss_before is None or rss_after is None else round(rss_after - rss_before, 1)
        self._stats = LoadStats(self.name, round(seconds, 3), delta, self._load_count)
        self._value = value
        self._loaded = True


def all_load_stats() -> dict[str, LoadStats]:
    """Load statistics of the sources loaded so far in this process, by source name."""
    return {name: src.stats for name, src in _REGISTRY.items() if src.stats is not None}


def registered_sources() -> list[str]:
    return list(_REGISTRY)
