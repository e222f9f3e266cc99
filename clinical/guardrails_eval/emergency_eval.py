"""Emergency detection on the hand-written question set, one split at a time.

The set (data/emergency_questions.jsonl) was written and committed before the rules in
clinical/guardrails/emergency.py were changed; its `heldout` half is scored only for reporting.
"""

from __future__ import annotations

import json
from pathlib import Path

from clinical.guardrails.emergency import detect_emergency
from clinical.guardrails_eval.stats import prf

QUESTIONS = Path(__file__).with_name("data") / "emergency_questions.jsonl"


def evaluate(split: str = "heldout", path: Path = QUESTIONS) -> dict:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if split == "all" or r["split"] == split]
    tp = fp = fn = 0
    errors = []
    for r in rows:
        got = detect_emergency(r["text"])
        if got.emergency and r["emergency"]:
            tp += 1
        elif got.emergency:
            fp += 1
        elif r["emergency"]:
            fn += 1
        if got.emergency != r["emergency"]:
            errors.append({"id": r["id"], "type": r["type"], "expected": r["emergency"], "reason": got.reason})
    return {"split": split, "n": len(rows), "positives": sum(r["emergency"] for r in rows),
            **prf(tp, fp, fn), "errors": errors}
