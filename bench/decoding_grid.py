"""Choose the decoding defaults by measurement: degeneration and capability scores over a grid of
transformers' repetition controls, greedy, on validation prompts (never the test split).

    python bench/decoding_grid.py --records runs/mkgsg/val.jsonl --out runs/decoding_grid
    python bench/decoding_grid.py --records runs/mkgsg/val.jsonl --out runs/decoding_grid --score-only

Two prompt sets per grid point:
- the MKGSG capability records of the split given (their four capability scores, by the project's verifiers);
- consult prompts built from the Synthea bundles exactly as /consult builds them (clinical.fhir's
  patient summary under serving.consult's system prompt), with benign questions, so the guardrails
  never escalate and the model is always called.

Generations go to OUT/generations.jsonl as they are made (one line per prompt and grid point), so a
killed run continues where it stopped; scoring reads that file. Degeneration is
training.evaluate.degeneration's metric (a 4-gram repeated 3+ times; an echoed prompt).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GRID_PENALTY = (1.0, 1.1, 1.2, 1.3)
GRID_NGRAM = (0, 3, 4)
# The grid's points, most informative first (off; each control alone; both), so a run stopped by its
# time budget has measured what matters.
ORDER = [(1.0, 0), (1.2, 0), (1.0, 3), (1.2, 3), (1.1, 0), (1.3, 0), (1.0, 4), (1.2, 4), (1.1, 3), (1.3, 3),
         (1.1, 4), (1.3, 4)]
# Questions a clinician asks about the patient in front of them; none is an emergency, so the
# input guardrails pass them to the model (an escalated consult never reaches it).
CONSULT_QUESTIONS = (
    "Summarise this patient's active problems and current medications in three sentences.",
    "Which of this patient's conditions should be followed up at the next visit, and why?",
)


def consult_prompts(synthea_dir: Path, n: int = 20) -> list[dict]:
    """`n` consult chats over the bundles, cycling the questions; patient identifiers never enter them."""
    from serving.consult import prepare

    bundles = sorted(synthea_dir.glob("*.json"))
    if not bundles:
        raise SystemExit(f"no Synthea bundles in {synthea_dir}; set BALANCEDBIO_DATA to the shared data folder")
    out = []
    for i in range(n):
        bundle, question = bundles[i % len(bundles)], CONSULT_QUESTIONS[(i // len(bundles)) % len(CONSULT_QUESTIONS)]
        c = prepare(question, json.loads(bundle.read_text()))
        if c.escalation:
            raise SystemExit(f"consult {i}: the guardrails escalate {question!r}; pick a benign question")
        out.append({"id": f"consult-{i:02d}", "messages": c.messages()})
    return out


def grid(points: str = ""):
    """The grid points to run: `points` as "1.0:0,1.2:3" (penalty:n-gram), else the whole grid in ORDER."""
    from training.evaluate.decoding import DecodingConfig

    chosen = [(float(a), int(b)) for a, b in (pt.split(":") for pt in points.split(",") if pt)] if points else \
        [pn for pn in dict.fromkeys(ORDER) if pn[0] in GRID_PENALTY and pn[1] in GRID_NGRAM]
    return [DecodingConfig(repetition_penalty=p, no_repeat_ngram_size=n) for p, n in chosen]


def subsample(records: list, per_capability: int) -> list:
    """The first `per_capability` records of each capability in id order (0: all): the same set every run."""
    if per_capability == 0:
        return records
    by_cap: dict[str, list] = {}
    for r in sorted(records, key=lambda r: r.id):
        by_cap.setdefault(r.capability.value, []).append(r)
    return [r for group in by_cap.values() for r in group[:per_capability]]


def language_model(args):
    """The served ONNX engine (its greedy tokens equal PyTorch's under every setting: tests/serving/test_engine.py),
    or PyTorch's generate(); `lm.decoding` is switched per grid point."""
    if args.backend == "onnx":
        from serving.config import ensure_base_export
        from serving.engine import OnnxEngine

        if args.model != "smollm2-135m" and not Path(args.model, "model_card.json").is_file():
            raise SystemExit("--backend onnx needs an export folder (python -m training.export) or smollm2-135m")
        export = ensure_base_export() if args.model == "smollm2-135m" else Path(args.model)
        return OnnxEngine(export, threads=args.threads, prefer_gpu=False, max_batch=args.batch)
    from training.evaluate.lm import TorchLM
    from training.models import load_model

    model, tokenizer = load_model(args.model)
    return TorchLM(model, tokenizer, name=args.model, max_gen_batch=args.batch, progress=False)


def generate(args) -> None:
    from training.records import load_records

    records = subsample(load_records(args.records), args.per_capability)
    consults = consult_prompts(Path(args.synthea), args.consults) if args.consults else []
    lm = language_model(args)
    out = Path(args.out) / "generations.jsonl"
    done = set()
    if out.is_file():
        done = {(r["config"], r["id"]) for r in map(json.loads, out.read_text().splitlines())}
    items = [("capability", r.id, [m.model_dump() for m in r.messages]) for r in records if args.per_capability >= 0] + \
            [("consult", c["id"], c["messages"]) for c in consults]
    deadline = time.monotonic() + args.budget_minutes * 60
    for config in grid(args.points):
        todo = [it for it in items if (config.label(), it[1]) not in done]
        if not todo:
            continue
        if time.monotonic() > deadline:
            print(f"time budget of {args.budget_minutes} min spent: {config.label()} and later points not run")
            break
        lm.decoding = config
        prompts = [lm.chat_prompt(messages) for _, _, messages in todo]
        started = time.perf_counter()
        completions = lm.generate(prompts, args.max_new_tokens)
        seconds = time.perf_counter() - started
        with open(out, "a") as f:
            for (kind, id_, _), prompt, completion in zip(todo, prompts, completions):
                f.write(json.dumps({"config": config.label(), "backend": args.backend,
                                    "repetition_penalty": config.repetition_penalty, "no_repeat_ngram_size": config.no_repeat_ngram_size, "kind": kind, "id": id_,
                                    "prompt": prompt, "completion": completion}) + "\n")
        print(f"{config.label()}: {len(todo)} prompts in {seconds:.0f} s", flush=True)


def score(args) -> dict:
    from training.evaluate.capabilities import verify_record
    from training.evaluate.degeneration import degeneration_rates
    from training.evaluate.stats import mean_interval
    from training.records import load_records

    records = {r.id: r for r in subsample(load_records(args.records), args.per_capability)}
    rows = [json.loads(line) for line in (Path(args.out) / "generations.jsonl").read_text().splitlines()]
    table = []
    for config in grid():
        mine = [r for r in rows if r["config"] == config.label() and (r["kind"] == "consult" or r["id"] in records)]
        if not mine:
            continue
        entry = {"repetition_penalty": config.repetition_penalty, "no_repeat_ngram_size": config.no_repeat_ngram_size}
        for kind in ("capability", "consult"):
            group = [r for r in mine if r["kind"] == kind]
            if not group:
                continue
            entry[kind] = degeneration_rates([r["completion"] for r in group], [r["prompt"] for r in group])
            entry[kind]["mean_words"] = sum(len(r["completion"].split()) for r in group) / max(len(group), 1)
        caps: dict[str, list[float]] = {}
        picked = [r for r in mine if r["kind"] == "capability"]
        for r in picked:
            verdict = verify_record(records[r["id"]], r["completion"])
            caps.setdefault(verdict.capability, []).append(verdict.score)
        entry["capabilities"] = {c: {"n": len(v), "score": sum(v) / len(v), "ci": mean_interval(v)}
                                 for c, v in caps.items()}
        entry["capability_mean"] = sum(e["score"] for e in entry["capabilities"].values()) / max(len(caps), 1)
        table.append(entry)
    result = {"records": str(args.records), "model": args.model, "backend": args.backend,
              "max_new_tokens": args.max_new_tokens, "greedy": True, "grid": table}
    (Path(args.out) / "grid.json").write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    return result


def markdown(result: dict) -> str:
    caps = sorted({c for e in result["grid"] for c in e["capabilities"]})
    head = ("| rep. penalty | no-repeat n-gram | capability loops (n) | consult loops (n) | consult echoes | "
            + " | ".join(caps) + " | mean |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]

    def rate(d, key):
        if d is None:
            return "not run"
        r = d[key]
        return f"{r['value']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}] ({r['k']}/{r['n']})"

    for e in result["grid"]:
        cells = [f"{e['capabilities'][c]['score']:.2f} [{e['capabilities'][c]['ci'][0]:.2f}, "
                 f"{e['capabilities'][c]['ci'][1]:.2f}]" for c in caps]
        lines.append(f"| {e['repetition_penalty']:g} | {e['no_repeat_ngram_size']} | "
                     f"{rate(e.get('capability'), 'repeated_ngram')} | "
                     f"{rate(e.get('consult'), 'repeated_ngram')} | {rate(e.get('consult'), 'echoes_prompt')} | "
                     + " | ".join(cells) + f" | {e['capability_mean']:.3f} |")
    n = {c: next(e["capabilities"][c]["n"] for e in result["grid"] if c in e["capabilities"]) for c in caps}
    lines.append("")
    lines.append("Capability n: " + ", ".join(f"{c} {v}" for c, v in n.items()) + "; intervals are 95% "
                 "(Wilson for rates, bootstrap for mean scores: training.evaluate.stats).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    data = Path(os.environ.get("BALANCEDBIO_DATA") or REPO.parent / "shared" / "data")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", required=True, help="MKGSG capability JSONL of the VALIDATION split (val.jsonl)")
    parser.add_argument("--out", required=True, help="folder for generations.jsonl and grid.json")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--synthea", default=str(data / "fhir" / "synthea"))
    parser.add_argument("--consults", type=int, default=20, help="consult prompts built from the Synthea bundles (0: none)")
    parser.add_argument("--points", default="", help="grid points to generate, e.g. '1.0:0,1.2:3' (default: the whole grid)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16, help="generation rows per batch")
    parser.add_argument("--backend", choices=["onnx", "torch"], default="onnx",
                        help="onnx: the served engine (the base model's cached export); torch: transformers' generate()")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads")
    parser.add_argument("--per-capability", type=int, default=16,
                        help="records per capability (0: all; -1: none, consult prompts only)")
    parser.add_argument("--budget-minutes", type=float, default=60,
                        help="start no new grid point after this long (points run most informative first)")
    parser.add_argument("--score-only", action="store_true", help="score OUT/generations.jsonl, generate nothing")
    args = parser.parse_args(argv)
    if Path(args.records).name.startswith("test"):
        parser.error("decoding defaults are chosen on the validation split; pass val.jsonl, not the test split")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if not args.score_only:
        generate(args)
    score(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
