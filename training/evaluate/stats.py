"""Uncertainty for every score: Wilson intervals for shares, paired tests for comparisons of two reports.

A 135M model's scores sit a few points from chance, and the test sets hold hundreds of items, so a score
without its interval (or a difference without its paired test) cannot be read. scipy does the statistics:
`binomtest(...).proportion_ci(method="wilson")` for intervals, `binomtest` on the discordant pairs for the
exact McNemar test, `bootstrap(..., paired=True)` for the interval of a paired difference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
BOOTSTRAP_RESAMPLES = 10_000


@dataclass(frozen=True)
class Proportion:
    """k successes out of n, with its Wilson 95% interval (None when n is 0: nothing was measured)."""

    k: int
    n: int
    value: float | None
    ci_low: float | None
    ci_high: float | None

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        if self.value is None:
            return "n/a (n=0)"
        return f"{self.value:.3f} [{self.ci_low:.3f}, {self.ci_high:.3f}] (n={self.n})"


def wilson_interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of k successes in n trials; stays inside [0, 1] and is sane at k=0 or k=n."""
    if n <= 0:
        raise ValueError(f"a proportion needs at least one trial, got n={n}")
    if not 0 <= k <= n:
        raise ValueError(f"successes must lie in [0, n]; got k={k}, n={n}")
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def proportion(k: int, n: int) -> Proportion:
    if n == 0:
        return Proportion(k=0, n=0, value=None, ci_low=None, ci_high=None)
    low, high = wilson_interval(k, n)
    return Proportion(k=int(k), n=int(n), value=k / n, ci_low=low, ci_high=high)


def mean_interval(scores: list[float], seed: int = 0) -> tuple[float, float]:
    """95% interval of the mean of per-item scores in [0, 1]: Wilson when all are 0/1, else a seeded bootstrap."""
    values = np.asarray(scores, dtype=float)
    if values.size == 0:
        raise ValueError("no scores to take the mean of")
    if np.all((values == 0) | (values == 1)):
        return wilson_interval(int(values.sum()), int(values.size))
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    res = stats.bootstrap((values,), np.mean, n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=CONFIDENCE,
                          method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


@dataclass(frozen=True)
class PairedComparison:
    """B against A over the same items: diff = mean(B) - mean(A)."""

    n: int
    a: float
    b: float
    diff: float
    ci_low: float
    ci_high: float
    p: float
    b_better: int  # items where B scored higher than A (for 0/1 scores: B right, A wrong)
    a_better: int
    significant: bool

    def as_dict(self) -> dict:
        return asdict(self)


class ItemMismatchError(ValueError):
    """Two reports scored different items, so a paired comparison would compare different questions."""


def paired_comparison(a: Mapping[str, float], b: Mapping[str, float], seed: int = 0) -> PairedComparison:
    """Paired difference of per-item scores keyed by item id.

    Interval: paired bootstrap (items resampled together, percentile method, seeded). p: exact two-sided
    sign test on the items where the two differ, which for 0/1 scores is exactly McNemar's exact test
    (a binomial test of b_better against a_better at 1/2). `significant` asks both to agree: the interval
    excludes 0 and p < 0.05.
    """
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise ItemMismatchError(
            f"the two reports scored different items ({len(only_a)} only in A, e.g. {only_a[:3]}; {len(only_b)} "
            f"only in B, e.g. {only_b[:3]}); evaluate both with the same data, --limit and --seed")
    if not a:
        raise ItemMismatchError("no items to compare")
    ids = sorted(a)
    xa = np.asarray([float(a[i]) for i in ids])
    xb = np.asarray([float(b[i]) for i in ids])
    delta = xb - xa
    b_better, a_better = int((delta > 0).sum()), int((delta < 0).sum())
    diff = float(delta.mean())
    if b_better + a_better == 0:
        low = high = 0.0
        p = 1.0
    else:
        res = stats.bootstrap((xa, xb), lambda x, y, axis=-1: np.mean(y, axis=axis) - np.mean(x, axis=axis),
                              paired=True, vectorized=True, n_resamples=BOOTSTRAP_RESAMPLES,
                              confidence_level=CONFIDENCE, method="percentile", rng=np.random.default_rng(seed),
                              batch=1000)
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        p = float(stats.binomtest(b_better, b_better + a_better, 0.5).pvalue)
    significant = (low > 0 or high < 0) and p < ALPHA
    return PairedComparison(n=len(ids), a=float(xa.mean()), b=float(xb.mean()), diff=diff, ci_low=low,
                            ci_high=high, p=p, b_better=b_better, a_better=a_better, significant=bool(significant))
