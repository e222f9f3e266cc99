"""Two ConText engines on the same texts: where their assertions differ, and what each costs per check.

    OMP_NUM_THREADS=1 python bench/context_engines.py --baseline 577e278 [--rounds 3]

--baseline names a commit whose clinical/guardrails/context.py (read with `git show`) is loaded as a
second module beside the current one.

Agreement: every red-flag phrase (as emergency.py finds them) and every dictionary drug mention in the
texts of the guardrail evaluation sets (interaction and patient-rule cases, emergency questions,
de-identification sentences, clinical/guardrails_eval/cases.jsonl) goes through both engines'
`assert_spans`; each target whose four flags differ is printed.

Latency: the guardrails' `assert_spans` is pointed at one engine, then the other, in alternating
rounds over the same calls, so both see the same machine load. A round times check_input on every
question of the labelled sets and check_output on the hand-written answers of cases.jsonl plus answers
built from the questions' drugs, all against one patient on simvastatin and warfarin. Both pipelines
are built before timing, as the service does at startup.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clinical.fhir import Medication, PatientContext
from clinical.guardrails import check_input, check_output, context, emergency, mentions
from clinical.knowledge import get_knowledge_base

EVAL = Path(__file__).resolve().parents[1] / "clinical/guardrails_eval"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def calls() -> tuple[list[str], list[str]]:
    questions = [r["text"] for r in _rows(EVAL / "data/interaction_rule_cases.jsonl")]
    questions += [r["text"] for r in _rows(EVAL / "data/emergency_questions.jsonl")]
    answers = [r["text"] for r in _rows(EVAL / "cases.jsonl") if r["check"] == "output"]
    kb = get_knowledge_base()
    for q in questions[:80]:  # model-like answers naming the same drugs, some negated
        drugs = [m.text for m in kb.find_drugs(q)]
        if drugs:
            answers.append(f"Do not start {drugs[-1]} with {drugs[0]}; consider another option and monitor.")
            answers.append(f"Yes, {drugs[-1]} 10 mg once daily is reasonable if tolerated.")
    return questions, answers


def disagreements(baseline, texts: list[str]) -> tuple[int, list[str]]:
    """(targets compared, one line per target whose flags differ between baseline and current)."""
    kb = get_knowledge_base()
    compared, lines = 0, []
    for text in dict.fromkeys(texts):
        norm = emergency.normalise(text)
        for where, spans in ((norm, [m.span() for _, p in emergency.RED_FLAGS for m in p.finditer(norm)]),
                             (text, [(m.start, m.end) for m in kb.find_drugs(text)])):
            if not spans:
                continue
            for (s, e), old, new in zip(spans, baseline.assert_spans(where, spans), context.assert_spans(where, spans)):
                compared += 1
                flags = [(a.negated, a.hypothetical, a.family, a.historical) for a in (old, new)]
                if flags[0] != flags[1]:
                    lines.append(f"{where!r}: {where[s:e]!r} baseline {old.cues} -> current {new.cues}")
    return compared, lines


def load_baseline(commit: str):
    source = subprocess.run(["git", "show", f"{commit}:clinical/guardrails/context.py"], check=True,
                            capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1]).stdout
    path = Path(tempfile.mkdtemp()) / "baseline_context.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_context", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_context"] = module  # dataclasses look the module up while the file runs
    spec.loader.exec_module(module)
    return module


def use(assert_spans) -> None:
    mentions.assert_spans = assert_spans
    emergency.assert_spans = assert_spans


def time_round(questions, answers, patient) -> list[tuple[float, float]]:
    """(wall, CPU) seconds per call; CPU time moves less than wall time on a shared machine."""
    per_call = []
    for check, texts in ((check_input, questions), (check_output, answers)):
        for text in texts:
            wall, cpu = time.perf_counter(), time.process_time()
            check(text, patient)
            per_call.append((time.perf_counter() - wall, time.process_time() - cpu))
    return per_call


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True, help="commit whose clinical/guardrails/context.py is compared")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per engine")
    args = ap.parse_args()
    baseline = load_baseline(args.baseline)
    engines = {f"baseline ({args.baseline})": baseline.assert_spans, "current": context.assert_spans}
    patient = PatientContext(medications=[Medication(text="simvastatin 40 mg", drugs=["simvastatin"]),
                                          Medication(text="warfarin 5 mg", drugs=["warfarin"])])
    questions, answers = calls()
    baseline.load()
    context.load()
    texts = questions + answers + [r["text"] for r in _rows(EVAL / "data/deid_sentences.jsonl")]
    texts += [r["text"] for r in _rows(EVAL / "cases.jsonl") if "text" in r]
    compared, differing = disagreements(baseline, texts)
    print(f"assertions: {compared - len(differing)} of {compared} targets agree; they differ on:")
    print("\n".join(differing) or "(none)")
    for fn in engines.values():  # warm-up: caches, first-call costs
        use(fn)
        time_round(questions[:20], answers[:20], patient)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in engines}
    for _ in range(args.rounds):
        for name, fn in engines.items():
            use(fn)
            times[name] += time_round(questions, answers, patient)
    print(f"{len(questions)} check_input + {len(answers)} check_output calls per round, {args.rounds} rounds per "
          f"engine, alternating; load average {os.getloadavg()[0]:.1f}")
    print("| engine | calls | wall mean | wall p50 | wall p95 | CPU mean | CPU p50 |\n|---|---|---|---|---|---|---|")
    summary = {}
    for name, ts in times.items():
        wall, cpu = (sorted(t[i] * 1000 for t in ts) for i in (0, 1))
        summary[name] = [statistics.fmean(wall), statistics.median(wall), statistics.fmean(cpu), statistics.median(cpu)]
        print(f"| {name} | {len(ts)} | {summary[name][0]:.2f} ms | {summary[name][1]:.2f} ms | "
              f"{wall[int(0.95 * (len(wall) - 1))]:.2f} ms | {summary[name][2]:.2f} ms | {summary[name][3]:.2f} ms |")
    base, current = summary.values()
    print("current / baseline: " + ", ".join(f"{label} {c / b:.2f}x" for label, b, c in
                                             zip(("wall mean", "wall p50", "CPU mean", "CPU p50"), base, current)))

if __name__ == "__main__":
    main()
