"""Serve a quantised variant only on evidence: its scores paired with fp32's on the same items.

    python -m training.quantization EXPORT --data MKGSG_DIR [--variants int4,int8] [--tolerance 0.03]
                                    [--medmcqa 200] [--per_capability 250] [--max_new_tokens 192]

EXPORT is a `training.export` folder with the variants (`--int8 --int4`); MKGSG_DIR a data folder
with `test.jsonl` (a run's `data/`). Every variant and fp32 are evaluated on the export itself,
generation and log-likelihood alike (`--engine onnx-all`: PyTorch does not have the quantised
weights): MedMCQA's fixed ids (`docs/baseline/medmcqa_ids.txt`, the first --medmcqa of them drawn
with the seed) by letter and cloze, and the capability test split (knowledge and reasoning by
cloze, instruction and integration by generation and the verifiers). A variant is accepted when,
for every score, the 95% interval of its paired difference to fp32 stays above -tolerance
(non-inferiority: a variant that may have lost more than the tolerance is not served, and one
whose interval is too wide to tell is not either). The fastest accepted variant (int4, then int8)
becomes the export's served one; the card records the evidence for every variant, accepted or not.
Evaluations are kept per benchmark, so a stopped run resumes (`--out`, default EXPORT/acceptance).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from training.export import CARD_JSON, QUANTIZED, VARIANT_FILES, acceptance_markdown, write_card
from training.layout import read_json
from training.paired import PairedRow, compare_evaluations

MIN_CLOZE_ITEMS = 200  # the floor: fewer cloze items cannot bound a small difference


@dataclass
class VariantVerdict:
    variant: str
    tolerance: float
    accepted: bool
    reason: str
    rows: list[PairedRow] = field(default_factory=list)

    def public(self) -> dict:
        return {"variant": self.variant, "tolerance": self.tolerance, "accepted": self.accepted, "reason": self.reason,
                "rows": [r.public() for r in self.rows]}


def judge(variant: str, rows: list[PairedRow], tolerance: float, min_cloze_items: int = MIN_CLOZE_ITEMS) -> VariantVerdict:
    """Non-inferiority on every paired score: each interval's lower end at or above -tolerance."""
    cloze = [r for r in rows if r.metric.startswith("acc_cloze")]
    if not cloze or min(r.n for r in cloze) < min_cloze_items:
        n = min((r.n for r in cloze), default=0)
        return VariantVerdict(variant, tolerance, False, f"{variant}: {n} cloze items scored, at least {min_cloze_items} "
                              "are needed to accept a variant", rows)
    if not any(r.benchmark.startswith("capabilities") for r in rows):
        return VariantVerdict(variant, tolerance, False, f"{variant}: the capability test split was not scored", rows)
    worse = [r for r in rows if r.ci_low < -tolerance]
    if worse:
        named = "; ".join(f"{r.benchmark}/{r.metric} {r.diff:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]" for r in worse)
        return VariantVerdict(variant, tolerance, False, f"{variant} may lose more than {tolerance} on: {named}", rows)
    lowest = min(rows, key=lambda r: r.ci_low)
    return VariantVerdict(variant, tolerance, True,
                          f"{variant}: every paired 95% interval stays above -{tolerance} over {len(rows)} scores "
                          f"(lowest {lowest.benchmark}/{lowest.metric}: {lowest.ci_low:+.3f})", rows)


def serve_choice(verdicts: list[VariantVerdict]) -> tuple[str, str]:
    """The fastest accepted variant, else fp32; with the reason the card states."""
    accepted = {v.variant for v in verdicts if v.accepted}
    for variant in QUANTIZED:
        if variant in accepted:
            return variant, next(v.reason for v in verdicts if v.variant == variant)
    reasons = "; ".join(v.reason for v in verdicts) or "no quantised variant was evaluated"
    return "fp32", f"{reasons}: serving fp32"


def evaluate_variants(export: Path, data: Path, variants: list[str], out: Path, medmcqa: int, per_capability: int,
                      max_new_tokens: int, seed: int = 0) -> dict[str, Path]:
    """fp32 and each variant on the same items, on the export; the evaluation folder of each."""
    from training.config import RunConfig
    from training.layout import RunDirectory
    from training.stages import stage_evaluate

    config = RunConfig(eval_engine="onnx-all", eval_benchmarks=f"medmcqa:{medmcqa}", eval_per_capability=per_capability,
                       eval_max_new_tokens=max_new_tokens, seed=seed)
    run = RunDirectory(out)
    folders = {}
    for variant in ["fp32", *variants]:
        stage = f"eval_{variant}"
        stage_evaluate(config, run, model=f"{export.name}:{variant}", data=str(data), stage=stage,
                       onnx_dir=str(export / variant))
        folders[variant] = run.stage(stage)
    return folders


def record_in_card(export: Path, verdicts: list[VariantVerdict]) -> dict:
    """The evidence and the served variant, written into the export's card."""
    card = read_json(export / CARD_JSON)
    serve, why = serve_choice(verdicts)
    card["serve"], card["serve_reason"] = serve, why
    card["model_version"] = card["model_version"].rsplit("-", 1)[0] + f"-{serve}"
    card["acceptance"] = {v.variant: v.public() for v in verdicts}
    write_card(export, card)
    return card


def markdown(verdicts: list[VariantVerdict]) -> str:
    return "\n\n".join("\n".join(acceptance_markdown(v.variant, v.public())) for v in verdicts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.quantization", description=__doc__.split("\n\n")[0])
    parser.add_argument("export", help="a training.export folder holding fp32/ and the variants to judge")
    parser.add_argument("--data", required=True, help="MKGSG folder whose test.jsonl is the capability test split")
    parser.add_argument("--variants", default="int4,int8", help="variants to judge, comma-separated")
    parser.add_argument("--tolerance", type=float, default=0.03,
                        help="largest loss (0-1) the paired 95%% interval may allow on any score")
    parser.add_argument("--medmcqa", type=int, default=MIN_CLOZE_ITEMS, help="MedMCQA items (cloze and letter)")
    parser.add_argument("--per_capability", type=int, default=250, help="capability test records per capability")
    parser.add_argument("--max_new_tokens", type=int, default=192, help="generation budget of the capability split")
    parser.add_argument("--out", help="where the evaluations go (default: EXPORT/acceptance)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    export = Path(args.export)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in QUANTIZED]
    if unknown:
        parser.error(f"--variants {','.join(unknown)}: judge one of {', '.join(QUANTIZED)}")
    missing = [v for v in ["fp32", *variants] if not (export / v / VARIANT_FILES[v]).is_file()]
    if missing or not (export / CARD_JSON).is_file():
        parser.error(f"{export} lacks {', '.join(missing) or CARD_JSON}: export with "
                     f"`python -m training.export --run MODEL --out {export} --int8 --int4`")
    if not (Path(args.data) / "test.jsonl").is_file():
        parser.error(f"--data {args.data} has no test.jsonl: pass an MKGSG output folder such as runs/NAME/data")
    out = Path(args.out) if args.out else export / "acceptance"
    folders = evaluate_variants(export, Path(args.data), variants, out, args.medmcqa, args.per_capability,
                                args.max_new_tokens)
    verdicts = [judge(v, compare_evaluations(folders["fp32"], folders[v]), args.tolerance) for v in variants]
    (out / "acceptance.json").write_text(json.dumps([v.public() for v in verdicts], indent=2) + "\n")
    (out / "acceptance.md").write_text(markdown(verdicts))
    card = record_in_card(export, verdicts)
    print(markdown(verdicts))
    print(f"serving {card['serve']}: {card['serve_reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
