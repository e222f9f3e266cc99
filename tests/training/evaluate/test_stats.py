"""Wilson intervals and the paired comparison (bootstrap interval, exact McNemar p, significance)."""

from __future__ import annotations

import math

import pytest

from training.evaluate.stats import ItemMismatchError, mean_interval, paired_comparison, proportion, wilson_interval


def _wilson_by_formula(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k,n", [(0, 10), (10, 10), (322, 1000), (1, 2), (137, 500)])
def test_wilson_matches_its_formula_and_stays_in_bounds(k, n):
    low, high = wilson_interval(k, n)
    assert (low, high) == pytest.approx(_wilson_by_formula(k, n), abs=1e-9)
    assert 0 <= low <= k / n <= high <= 1


@pytest.mark.parametrize("k,n,message", [(1, 0, "at least one trial"), (5, 4, "in \\[0, n\\]"), (-1, 4, "in \\[0, n\\]")])
def test_wilson_refuses_impossible_counts(k, n, message):
    with pytest.raises(ValueError, match=message):
        wilson_interval(k, n)


def test_proportion_of_nothing_is_not_a_zero():
    assert proportion(0, 0).value is None and str(proportion(0, 0)) == "n/a (n=0)"


def test_mean_interval_uses_wilson_for_binary_and_bootstrap_otherwise():
    assert mean_interval([1, 0, 0, 1]) == pytest.approx(wilson_interval(2, 4))
    low, high = mean_interval([0.25, 0.5, 0.75, 1.0] * 10)
    assert low < 0.625 < high and (low, high) == mean_interval([0.25, 0.5, 0.75, 1.0] * 10)  # seeded


def _scores(pattern: str) -> dict[str, float]:
    return {f"q{i}": float(c) for i, c in enumerate(pattern)}


# name, A's 0/1 per item, B's, expected significant, expected McNemar p (exact binomial on discordant pairs)
PAIRED = [
    ("identical", "1010" * 50, "1010" * 50, False, 1.0),
    ("B fixes 30 of A's errors, breaks none", "0" * 30 + "1" * 170, "1" * 200, True, 2 * 0.5 ** 30),
    ("one discordant pair each way", "10" + "1" * 98, "01" + "1" * 98, False, 1.0),
    ("B breaks 12, fixes 2", "1" * 12 + "0" * 2 + "1" * 86, "0" * 12 + "1" * 2 + "1" * 86, True, 0.012939453125),
]


@pytest.mark.parametrize("name,a,b,significant,p", PAIRED, ids=[c[0] for c in PAIRED])
def test_paired_comparison(name, a, b, significant, p):
    result = paired_comparison(_scores(a), _scores(b), seed=1)
    assert result.n == len(a)
    assert result.diff == pytest.approx(b.count("1") / len(b) - a.count("1") / len(a))
    assert result.p == pytest.approx(p, rel=1e-6)
    assert result.significant is significant
    assert result.ci_low <= result.diff <= result.ci_high
    assert result == paired_comparison(_scores(a), _scores(b), seed=1)  # seeded: the same interval twice


def test_paired_comparison_refuses_different_items():
    with pytest.raises(ItemMismatchError, match="different items .*1 only in A.*'q3'"):
        paired_comparison(_scores("1011"), _scores("101"))
