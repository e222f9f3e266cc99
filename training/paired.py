"""Two evaluations of the same items, compared item by item: the paired difference, its 95%
interval and a p-value, per benchmark metric and per capability.

The ablation table and `docs/alignment/report.json` are both made of these rows. The statistics
are the evaluation's (`training/evaluate/stats.py`: Wilson or bootstrap intervals, paired
bootstrap, exact McNemar/sign test); this module only finds each item's outcome in an evaluation
folder's `<benchmark>.predictions.jsonl` (one rule per kind of file in `OUTCOME_RULES`) and adds
the smallest difference a comparison of that size could detect.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from training.evaluate.stats import mean_interval, paired_comparison
from training.layout import CAPABILITY_RECORDS, PREDICTIONS

Z95 = 1.959964
Z80 = 0.841621  # one-sided, for 80% power


# ---- per-item outcomes -------------------------------------------------------------------------
DEGENERATE = "degenerate"  # the metric of a generation that loops or echoes its prompt (lower is better)


def _degenerate(rows: list[dict], key: str) -> dict[str, dict[str, float]]:
    # Generated items carry their degeneration flags (training/evaluate/degeneration.py); cloze items none.
    flags = {str(r[key]): float(bool(d["repeated_ngram"] or d["echoes_prompt"]))
             for r in rows if (d := r.get("degeneration"))}
    return {DEGENERATE: flags} if flags else {}


def _capability_outcomes(rows: list[dict]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        out.setdefault(r["capability"], {})[r["id"]] = float(r["score"])
    return out | _degenerate(rows, "id")


# Fields of a multiple-choice prediction that are not a scoring mode's pick.
NOT_PICKS = {"id", "gold", "subject", "generated_text"}


def _multiple_choice_outcomes(rows: list[dict]) -> dict[str, dict[str, float]]:
    # Every scoring mode that wrote a pick beside the gold label is one metric: acc_<mode>. Labels are
    # letters (MedMCQA) or words (PubMedQA's yes / no / maybe); a mode that did not run wrote null.
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        for mode, pick in r.items():
            if mode not in NOT_PICKS and isinstance(pick, str):
                out.setdefault(f"acc_{mode}", {})[r["id"]] = float(pick == r["gold"])
    return out


def _ifeval_outcomes(rows: list[dict]) -> dict[str, dict[str, float]]:
    return {"prompt_level_strict_acc": {str(r["key"]): float(all(_flags(r["strict"]))) for r in rows},
            "prompt_level_loose_acc": {str(r["key"]): float(all(_flags(r["loose"]))) for r in rows}} | _degenerate(rows, "key")


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


def _with_degeneration(rows: list[dict], records_file: Path) -> list[dict]:
    """Capability predictions written before they carried degeneration flags get them from the records file
    the evaluation folder kept (prompt and reference answer), in memory: the folder is left as it is."""
    if not records_file.exists() or any("degeneration" in r for r in rows):
        return rows
    from training.evaluate.degeneration import degeneration

    records = {}
    for line in records_file.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            records[record["id"]] = record
    for r in rows:
        record = records.get(r["id"])
        if r.get("method") == "generate" and record is not None:
            prompt = record["messages"][-1]["content"]
            r["degeneration"] = vars(degeneration(r.get("completion", ""), prompt, reference=record.get("reference", "")))
    return rows


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
        benchmark = path.name.removesuffix(suffix)
        if benchmark in CAPABILITY_RECORDS:
            rows = _with_degeneration(rows, eval_dir / CAPABILITY_RECORDS[benchmark])
        rule = next((fn for match, fn in OUTCOME_RULES if rows and match(rows[0])), None)
        if rule is not None:
            out[benchmark] = rule(rows)
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
    significant: bool  # the interval excludes zero and p < 0.05
    base_ci: tuple[float, float]
    aligned_ci: tuple[float, float]
    discordant: float  # share of items whose outcome differs between the two
    detectable: float  # smallest difference this n detects at 5% with 80% power, given `discordant`

    def public(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def detectable_difference(n: int, discordant: float) -> float:
    """The smallest paired difference that n items detect (two-sided 5%, power 80%).

    McNemar's normal approximation: a difference d among a discordant share q is detected when
    d >= (z_.975 + z_.8) * sqrt(q / n). Before anything is measured, q = 0.5 is a cautious guess."""
    if n == 0:
        return float("nan")
    return (Z95 + Z80) * math.sqrt(max(discordant, 1 / n) / n)


def paired_row(benchmark: str, metric: str, a: dict[str, float], b: dict[str, float], seed: int = 0) -> PairedRow:
    """b against a over the same items (the evaluation's paired comparison refuses different items)."""
    c = paired_comparison(a, b, seed=seed)
    discordant = (c.a_better + c.b_better) / c.n
    ids = sorted(a)
    return PairedRow(benchmark, metric, c.n, c.a, c.b, c.diff, c.ci_low, c.ci_high, c.p, c.significant,
                     mean_interval([a[i] for i in ids], seed), mean_interval([b[i] for i in ids], seed), discordant,
                     detectable_difference(c.n, discordant or 0.5))


def compare_evaluations(base_dir: Path, aligned_dir: Path, seed: int = 0) -> list[PairedRow]:
    """Every metric and capability both evaluation folders scored, paired over their items."""
    base, aligned = item_outcomes(base_dir), item_outcomes(aligned_dir)
    rows = []
    for benchmark in sorted(base.keys() & aligned.keys()):
        for metric in sorted(base[benchmark].keys() & aligned[benchmark].keys()):
            rows.append(paired_row(benchmark, metric, base[benchmark][metric], aligned[benchmark][metric], seed))
    return rows
