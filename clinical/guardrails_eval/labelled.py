"""The labelled evaluation of issue 12: interactions, patient rules, emergencies and identifiers.

None of the labels come from the tables the guardrails read:
- interactions (data/interaction_rule_cases.jsonl, `ix-*`): 40 pairs whose interaction is stated in
  US prescribing information (the label is named in each case), 20 pairs with none in either label,
  and 20 of the positive pairs again with the new drug negated ("we will avoid ..."), all asked as
  questions with the first drug on the patient's medication list;
- patient rules (`rule-*`): 30 drug/patient cases written from US labels and paediatric guidance
  (renal function, potassium, pregnancy, age, allergy, conditions);
- emergencies (data/emergency_questions.jsonl): 168 hand-written questions, scored on the held-out
  half only (88), the other half having been used to develop the rules;
- identifiers (data/deid_sentences.jsonl): 104 hand-written sentences holding 118 identifiers.

    python -m clinical.guardrails_eval labelled
"""

from __future__ import annotations

import json
from pathlib import Path

from clinical.fhir import Allergy, Condition, Lab, Medication, PatientContext, resolve_drugs
from clinical.guardrails import check_input
from clinical.guardrails_eval import deid_eval, emergency_eval
from clinical.guardrails_eval.stats import fmt_row, prf

CASES = Path(__file__).with_name("data") / "interaction_rule_cases.jsonl"
RULE_KINDS = {"allergy", "contraindication", "renal", "electrolyte", "paediatric"}
RAISES = {"interaction": lambda f: f.kind == "interaction",
          "patient_rule": lambda f: f.kind in RULE_KINDS}


def patient(spec: dict) -> PatientContext:
    return PatientContext(
        age_years=spec.get("age"), sex=spec.get("sex"), pregnant=spec.get("pregnant"),
        medications=[Medication(text=m, drugs=resolve_drugs(m)) for m in spec.get("medications", [])],
        allergies=[Allergy(substance=a, drugs=resolve_drugs(a), criticality="high") for a in spec.get("allergies", [])],
        conditions=[Condition(display=c) for c in spec.get("conditions", [])],
        labs=[Lab(**lab) for lab in spec.get("labs", [])])


def _case_prediction(case: dict) -> bool:
    findings = check_input(case["text"], patient(case["patient"])).findings
    return any(RAISES[case["category"]](f) and f.severity in ("warning", "critical") for f in findings)


def evaluate_cases(path: Path = CASES) -> dict:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out = {}
    for category in ("interaction", "patient_rule"):
        tp = fp = fn = 0
        errors = []
        for case in (r for r in rows if r["category"] == category):
            got = _case_prediction(case)
            tp += got and case["expected"]
            fp += got and not case["expected"]
            fn += (not got) and case["expected"]
            if got != case["expected"]:
                errors.append({"id": case["id"], "expected": case["expected"], "text": case["text"]})
        n = sum(1 for r in rows if r["category"] == category)
        out[category] = {"n": n, **prf(tp, fp, fn), "errors": errors}
    return out


def evaluate() -> dict:
    result = evaluate_cases()
    em = emergency_eval.evaluate("heldout")
    result["emergency (held-out)"] = em
    de = deid_eval.evaluate()
    result["identifiers"] = de
    return result


def table(result: dict) -> str:
    lines = ["| category | TP | FP | FN | precision [95% CI] | recall [95% CI] |", "|---|---|---|---|---|---|"]
    for name in ("interaction", "patient_rule", "emergency (held-out)"):
        lines.append(fmt_row(f"{name} (n={result[name]['n']})", result[name]))
    de = result["identifiers"]
    lo, hi = de["recall_ci"]
    lines.append(f"| identifiers ({de['sentences']} sentences, {de['identifiers']} identifiers) | "
                 f"{round(de['recall'] * de['identifiers'])} | n/a | {de['identifiers'] - round(de['recall'] * de['identifiers'])} "
                 f"| other words removed: {de['other_words_removed']:.3f} (n={de['other_words_n']}) "
                 f"| {de['recall']:.2f} [{lo:.2f}, {hi:.2f}] (n={de['identifiers']}) |")
    return "\n".join(lines)
