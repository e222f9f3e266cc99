"""Two evaluations of the same items, compared item by item: the paired difference, its 95%
interval and a p-value, per benchmark metric and per capability.

The ablation table and `docs/alignment/report.json` are both made of these rows. Two things are
kept behind small interfaces because the evaluation owns them:
- what an item's outcome is (`item_outcomes`): read from the evaluation folder's
  `<benchmark>.predictions.jsonl`, one rule per kind of file in `OUTCOME_RULES`;
- the statistics (`Statistics`): Wilson intervals, a paired bootstrap and McNemar's test.
  `STATISTICS` binds them; it is to be bound to `training/evaluate/stats.py` once the evaluation
  branch lands it (same three functions), so that one module owns the project's statistics.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

from training.layout import PREDICTIONS

Z95 = 1.959964
Z80 = 0.841621  # one-sided, for 80% power


class Statistics(Protocol):
    def wilson(self, successes: int, n: int) -> tuple[float, float]: ...

    def paired_bootstrap(self, a: Sequence[float], b: Sequence[float], seed: int = 0) -> tuple[float, float, float]:
        """(mean of b - a, 2.5th percentile, 97.5th percentile) over resampled items."""

    def mcnemar(self, a: Sequence[bool], b: Sequence[bool]) -> float:
        """Two-sided exact McNemar p-value for paired pass/fail outcomes."""


class _Interim:
    """Textbook versions, until the evaluation's module binds `STATISTICS` (see the module doc)."""

    resamples = 2000

    def wilson(self, successes: int, n: int) -> tuple[float, float]:
        if n == 0:
            return (0.0, 1.0)
        p, z2 = successes / n, Z95 ** 2
        centre, half = (p + z2 / (2 * n)) / (1 + z2 / n), Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
        return (max(0.0, centre - half), min(1.0, centre + half))

    def paired_bootstrap(self, a, b, seed: int = 0):
        diffs = [y - x for x, y in zip(a, b)]
        n = len(diffs)
        rng = random.Random(seed)
        means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(self.resamples))
        return (sum(diffs) / n, means[int(0.025 * self.resamples)], means[int(0.975 * self.resamples) - 1])

    def mcnemar(self, a, b) -> float:
        only_a = sum(1 for x, y in zip(a, b) if x and not y)
        only_b = sum(1 for x, y in zip(a, b) if y and not x)
        k, m = min(only_a, only_b), only_a + only_b
        if m == 0:
            return 1.0
        return min(1.0, 2 * sum(math.comb(m, i) for i in range(k + 1)) / 2 ** m)


STATISTICS: Statistics = _Interim()


# ---- per-item outcomes -------------------------------------------------------------------------
def _capability_outcomes(rows: list[dict]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        out.setdefault(r["capability"], {})[r["id"]] = float(r["score"])
    return out


def _multiple_choice_outcomes(rows: list[dict]) -> dict[str, dict[str, float]]:
    # Every scoring mode that wrote a pick beside the gold label is one metric: acc_<mode>.
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        for mode, pick in r.items():
            if mode not in ("id", "gold") and isinstance(pick, str) and len(pick) <= 2 and pick.isupper():
                out.setdefault(f"acc_{mode}", {})[r["id"]] = float(pick == r["gold"])
    return out


def _ifeval_outcomes(rows: list[dict]) -> dict[str, dict[str, float]]:
    return {"prompt_level_strict_acc": {str(r["key"]): float(all(_flags(r["strict"]))) for r in rows},
            "prompt_level_loose_acc": {str(r["key"]): float(all(_flags(r["loose"]))) for r in rows}}


def _flags(value) -> list[bool]:
    if isinstance(value, dict):
        value = value.get("follow_instruction_list", value.get("passed", []))
    return [bool(v) for v in (value if isinstance(value, list) else [value])]


# A predictions file is recognised by the keys of its rows.
OUTCOME_RULES: list[tuple[Callable[[dict], bool], Callable[[list[dict]], dict]]] = [
    (lambda row: "capability" in row and "score" in row, _capability_outcomes),
    (lambda row: "gold" in row, _multiple_choice_outcomes),
    (lambda row: "strict" in row and "loose" in row, _ifeval_outcomes),
]


def item_outcomes(eval_dir: Path) -> dict[str, dict[str, dict[str, float]]]:
    """{benchmark: {metric or capability: {item id: outcome in [0, 1]}}} from an evaluation folder."""
    eval_dir = Path(eval_dir)
    suffix = PREDICTIONS
    files = sorted(eval_dir.glob(f"*{suffix}"))
    if not files:
        raise FileNotFoundError(f"{eval_dir}: no *{suffix} files; pass an evaluation folder (runs/NAME/eval)")
    out = {}
    for path in files:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        rule = next((fn for match, fn in OUTCOME_RULES if rows and match(rows[0])), None)
        if rule is not None:
            out[path.name.removesuffix(suffix)] = rule(rows)
    return out


# ---- paired rows -----------------------------------------------------------------------------------
@dataclass
class PairedRow:
    benchmark: str
    metric: str
    n: int
    base: float
    aligned: float
    diff: float
    ci_low: float
    ci_high: float
    p: float
    base_ci: tuple[float, float]
    aligned_ci: tuple[float, float]
    discordant: float  # share of items whose outcome differs between the two
    detectable: float  # smallest difference this n detects at 5% with 80% power, given `discordant`

    @property
    def significant(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0

    def public(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def detectable_difference(n: int, discordant: float) -> float:
    """The smallest paired difference that n items detect (two-sided 5%, power 80%).

    McNemar's normal approximation: a difference d among a discordant share q is detected when
    d >= (z_.975 + z_.8) * sqrt(q / n). Before anything is measured, q = 0.5 is a cautious guess."""
    if n == 0:
        return float("nan")
    return (Z95 + Z80) * math.sqrt(max(discordant, 1 / n) / n)


def paired_row(benchmark: str, metric: str, a: dict[str, float], b: dict[str, float], seed: int = 0,
               stats: Statistics | None = None) -> PairedRow:
    stats = stats or STATISTICS
    ids = sorted(a.keys() & b.keys())
    if not ids:
        raise ValueError(f"{benchmark}/{metric}: the two evaluations share no items; evaluate both on the same items")
    x, y = [a[i] for i in ids], [b[i] for i in ids]
    n = len(ids)
    diff, low, high = stats.paired_bootstrap(x, y, seed=seed)
    binary = all(v in (0.0, 1.0) for v in x + y)
    # McNemar for pass/fail outcomes; for graded ones (share of constraints met) the bootstrap's
    # interval is the test, and p is the bootstrap's two-sided share of resamples across zero.
    p = stats.mcnemar([v == 1.0 for v in x], [v == 1.0 for v in y]) if binary else _bootstrap_p(x, y, seed)
    ci = (lambda v: stats.wilson(round(sum(v)), n)) if binary else (lambda v: _graded_interval(v, seed))
    discordant = sum(1 for u, v in zip(x, y) if u != v) / n
    return PairedRow(benchmark, metric, n, sum(x) / n, sum(y) / n, diff, low, high, p, ci(x), ci(y), discordant,
                     detectable_difference(n, discordant or 0.5))


def _bootstrap_p(x, y, seed: int, resamples: int = 2000) -> float:
    diffs = [v - u for u, v in zip(x, y)]
    n, rng = len(diffs), random.Random(seed)
    observed = sum(diffs) / n
    centred = [d - observed for d in diffs]
    extreme = sum(1 for _ in range(resamples) if abs(sum(centred[rng.randrange(n)] for _ in range(n)) / n) >= abs(observed))
    return (extreme + 1) / (resamples + 1)


def _graded_interval(values: Sequence[float], seed: int) -> tuple[float, float]:
    _, low, high = STATISTICS.paired_bootstrap([0.0] * len(values), list(values), seed=seed)
    return (low, high)


def compare_evaluations(base_dir: Path, aligned_dir: Path, seed: int = 0) -> list[PairedRow]:
    """Every metric and capability both evaluation folders scored, paired over their shared items."""
    base, aligned = item_outcomes(base_dir), item_outcomes(aligned_dir)
    rows = []
    for benchmark in sorted(base.keys() & aligned.keys()):
        for metric in sorted(base[benchmark].keys() & aligned[benchmark].keys()):
            rows.append(paired_row(benchmark, metric, base[benchmark][metric], aligned[benchmark][metric], seed))
    return rows
