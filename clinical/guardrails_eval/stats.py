"""Precision/recall with Wilson 95% intervals, shared by the evaluation's categories."""

from __future__ import annotations

from scipy.stats import binomtest


def wilson(successes: int, n: int) -> tuple[float, float] | None:
    """Wilson score 95% interval for a proportion (scipy's, as the evaluator uses); None when n == 0."""
    if n == 0:
        return None
    ci = binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


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
