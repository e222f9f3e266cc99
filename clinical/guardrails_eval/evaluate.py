"""Precision and recall of the guardrails on cases.jsonl, per finding kind.

A case lists the kinds it should raise. For order and output checks a prediction is a finding of
severity warning or critical (info findings, such as ONC low-priority pairs, do not interrupt);
for input checks every finding counts.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from clinical.fhir import Allergy, Condition, Medication, PatientContext, resolve_drugs
from clinical.guardrails import check_input, check_orders, check_output
from clinical.guardrails_eval.build import CASES


def _patient(spec: dict | None) -> PatientContext | None:
    if spec is None:
        return None
    return PatientContext(
        pregnant=spec.get("pregnant"),
        medications=[Medication(text=m["text"], drugs=resolve_drugs(m["text"])) for m in spec.get("medications", [])],
        allergies=[Allergy(substance=a["substance"], drugs=resolve_drugs(a["substance"]), criticality=a.get("criticality"))
                   for a in spec.get("allergies", [])],
        conditions=[Condition(display=c["display"]) for c in spec.get("conditions", [])],
    )


def predict(case: dict) -> set[str]:
    patient = _patient(case.get("patient"))
    if case["check"] == "input":
        return {f.kind for f in check_input(case["text"], patient).findings}
    findings = check_orders(case["orders"], patient) if case["check"] == "orders" else check_output(case["text"], patient)
    return {f.kind for f in findings if f.severity in ("warning", "critical")}


def evaluate(path: Path = CASES) -> dict:
    cases = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    tp, fp, fn = Counter(), Counter(), Counter()
    errors = []
    started = time.perf_counter()
    for case in cases:
        predicted, expected = predict(case), set(case["expected"])
        for kind in predicted & expected:
            tp[kind] += 1
        for kind in predicted - expected:
            fp[kind] += 1
        for kind in expected - predicted:
            fn[kind] += 1
        if predicted != expected:
            errors.append({"id": case["id"], "expected": sorted(expected), "predicted": sorted(predicted)})
    kinds = sorted(set(tp) | set(fp) | set(fn))
    rows = {}
    for kind in kinds:
        p = tp[kind] / (tp[kind] + fp[kind]) if tp[kind] + fp[kind] else None
        r = tp[kind] / (tp[kind] + fn[kind]) if tp[kind] + fn[kind] else None
        rows[kind] = {"tp": tp[kind], "fp": fp[kind], "fn": fn[kind], "precision": p, "recall": r}
    total_tp, total_fp, total_fn = sum(tp.values()), sum(fp.values()), sum(fn.values())
    return {"cases": len(cases), "by_kind": rows, "errors": errors, "seconds": round(time.perf_counter() - started, 2),
            "micro": {"tp": total_tp, "fp": total_fp, "fn": total_fn,
                      "precision": total_tp / (total_tp + total_fp) if total_tp + total_fp else None,
                      "recall": total_tp / (total_tp + total_fn) if total_tp + total_fn else None}}


def table(result: dict) -> str:
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"
    lines = ["| kind | TP | FP | FN | precision | recall |", "|---|---|---|---|---|---|"]
    for kind, r in result["by_kind"].items():
        lines.append(f"| {kind} | {r['tp']} | {r['fp']} | {r['fn']} | {fmt(r['precision'])} | {fmt(r['recall'])} |")
    m = result["micro"]
    lines.append(f"| **all (micro)** | {m['tp']} | {m['fp']} | {m['fn']} | {fmt(m['precision'])} | {fmt(m['recall'])} |")
    return "\n".join(lines)
