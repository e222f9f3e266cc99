"""Precision/recall with Wilson 95% intervals, shared by the evaluation's categories."""

from __future__ import annotations

import math


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """Wilson score interval for a proportion; None when n == 0 (nothing to estimate)."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def prf(tp: int, fp: int, fn: int) -> dict:
    """Precision and recall with their n and Wilson intervals."""
    return {"tp": tp, "fp": fp, "fn": fn,
            "precision": tp / (tp + fp) if tp + fp else None, "precision_n": tp + fp,
            "precision_ci": wilson(tp, tp + fp),
            "recall": tp / (tp + fn) if tp + fn else None, "recall_n": tp + fn, "recall_ci": wilson(tp, tp + fn)}


def fmt_row(name: str, r: dict) -> str:
    def one(v, ci, n):
        return "n/a" if v is None else f"{v:.2f} [{ci[0]:.2f}, {ci[1]:.2f}] (n={n})"
    return (f"| {name} | {r['tp']} | {r['fp']} | {r['fn']} | {one(r['precision'], r['precision_ci'], r['precision_n'])} "
            f"| {one(r['recall'], r['recall_ci'], r['recall_n'])} |")
