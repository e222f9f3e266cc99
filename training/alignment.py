"""`python -m training.alignment BASE_EVAL ALIGNED_EVAL`: the machine-readable alignment result.

From two evaluation folders over the same items (the base model's and the aligned model's, e.g.
`runs/base/eval` and `runs/standard/eval`) it writes `docs/alignment/report.json`: per benchmark
metric and per capability `n, base, aligned, diff, ci_low, ci_high, p` (the paired difference
aligned - base, its 95% interval and the paired test's p), and whether the interval excludes zero.
It only reports what the two folders hold; it never runs a model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from training.paired import DEGENERATE, PairedRow, compare_evaluations

DEFAULT_OUT = Path("docs/alignment/report.json")
CAPABILITIES_BENCHMARK = "capabilities"  # the evaluation's name for the four capability scores
FIELDS = ("n", "base", "aligned", "diff", "ci_low", "ci_high", "p")


def alignment_report(base_eval: Path, aligned_eval: Path, seed: int = 0) -> dict:
    rows = compare_evaluations(base_eval, aligned_eval, seed=seed)
    if not rows:
        raise ValueError(f"{base_eval} and {aligned_eval} share no benchmark metric; evaluate both on the same benchmarks")
    report = {"base": str(base_eval), "aligned": str(aligned_eval), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "method": "paired over the same items (training/evaluate/stats.py): diff = aligned - base; 95% interval "
                        "by paired bootstrap; p by the exact sign test on the items that differ (McNemar's exact test "
                        "for pass/fail items); significant = interval excludes 0 and p < 0.05; `detectable` is the "
                        "smallest difference n items detect at 5% with 80% power",
              "capabilities": {}, "benchmarks": {}, "degeneration": {}}
    for row in rows:
        entry = _entry(row)
        if row.metric == DEGENERATE:  # not a score: the share of generations that loop or echo, lower is better
            report["degeneration"][row.benchmark] = entry
        elif row.benchmark == CAPABILITIES_BENCHMARK:
            report["capabilities"][row.metric] = entry
        elif row.benchmark.startswith(CAPABILITIES_BENCHMARK + "_"):  # another capability set, e.g. trained facts asked anew
            report["capabilities"][f"{row.benchmark.removeprefix(CAPABILITIES_BENCHMARK + '_')}/{row.metric}"] = entry
        else:
            report["benchmarks"][f"{row.benchmark}/{row.metric}"] = entry
    return report


def _entry(row: PairedRow) -> dict:
    public = row.public()
    return {**{k: public[k] for k in FIELDS}, "significant": row.significant, "detectable": public["detectable"],
            "base_ci": [round(v, 4) for v in row.base_ci], "aligned_ci": [round(v, 4) for v in row.aligned_ci]}


def alignment_markdown(report: dict) -> str:
    """The same numbers as a table for people (report.md beside report.json)."""
    lines = [f"# Aligned against base, paired over the same items ({report['created'][:10]})", "",
             f"Base evaluation `{report['base']}`, aligned evaluation `{report['aligned']}`. Method: {report['method']}.", "",
             "| score | n | base [95%] | aligned [95%] | diff | 95% interval | p | detectable |",
             "|---|---:|---|---|---:|---|---:|---:|"]
    for section in ("capabilities", "benchmarks", "degeneration"):
        for name, e in report.get(section, {}).items():
            diff = f"**{e['diff']:+.3f}**" if e["significant"] else f"{e['diff']:+.3f}"
            label = {"capabilities": f"capabilities/{name}", "benchmarks": name,
                     "degeneration": f"degenerate generations: {name} (lower is better)"}[section]
            lines.append(f"| {label} | {e['n']} | "
                         f"{e['base']:.3f} [{e['base_ci'][0]:.3f}, {e['base_ci'][1]:.3f}] | "
                         f"{e['aligned']:.3f} [{e['aligned_ci'][0]:.3f}, {e['aligned_ci'][1]:.3f}] | {diff} | "
                         f"[{e['ci_low']:+.3f}, {e['ci_high']:+.3f}] | {e['p']:.3g} | {e['detectable']:.3f} |".replace("| 0 |", "| < 0.0001 |"))
    lines += ["", "Bold: the interval excludes zero and p < 0.05. `trained_anew/`: facts the model was trained on, "
              "asked through templates and distractors no training record used; the other capability rows are "
              "unseen facts. `degenerate generations`: the share of generated outputs that repeat a 4-gram of words "
              "3+ times or reproduce 12 consecutive prompt words beyond what the item's reference answer restates "
              "(training/evaluate/degeneration.py); there a positive difference is a loss."]
    return "\n".join(lines) + "\n"


def write_alignment_report(base_eval: Path, aligned_eval: Path, out: Path = DEFAULT_OUT, seed: int = 0) -> dict:
    report = alignment_report(Path(base_eval), Path(aligned_eval), seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    out.with_suffix(".md").write_text(alignment_markdown(report))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.alignment", description=__doc__.split("\n\n")[0])
    parser.add_argument("base_eval", type=Path, help="the base model's evaluation folder (holds *.predictions.jsonl)")
    parser.add_argument("aligned_eval", type=Path, help="the aligned model's evaluation folder, over the same items")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where to write the JSON (default {DEFAULT_OUT})")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args(argv)
    try:
        report = write_alignment_report(args.base_eval, args.aligned_eval, args.out, args.seed)
    except (FileNotFoundError, ValueError) as e:  # ItemMismatchError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    for section in ("capabilities", "benchmarks", "degeneration"):
        for name, e in report[section].items():
            mark = "*" if e["significant"] else " "
            print(f"{mark} {name:<40} n={e['n']:<5} {e['base']:.3f} -> {e['aligned']:.3f}  diff {e['diff']:+.3f} "
                  f"[{e['ci_low']:+.3f}, {e['ci_high']:+.3f}]  p={e['p']:.3g}")
    print(f"wrote {args.out} (* = 95% interval excludes zero)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
