"""Re-read the stored predictions of docs/baseline/ (written by the letter/generate evaluator of
2026-11-22, commit 1754ee7 and before) with today's statistics: Wilson intervals, picked-label
distributions, degeneration. Nothing is re-generated: every figure comes from predictions.jsonl.

    PYTHONPATH=. python scripts/baseline_reanalyse.py docs/baseline > docs/baseline/reanalysis.json
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path

from training.evaluate.degeneration import degeneration_rates
from training.evaluate.ifeval import load_ifeval
from training.evaluate.stats import proportion


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def multiple_choice(folder: Path, ids: list[str] | None = None) -> dict:
    rows = _rows(folder / "predictions.jsonl")
    if ids is not None:
        by_id = {r["id"]: r for r in rows}
        rows = [by_id[i] for i in ids]
    out = {"n": len(rows), "gold": dict(Counter(r["gold"] for r in rows).most_common())}
    for mode, key in (("letter", "loglik"), ("generate", "generated")):
        if any(key in r for r in rows):
            picks = Counter(r.get(key) or "(unparseable)" for r in rows)
            top, count = picks.most_common(1)[0]
            out[mode] = {"acc": proportion(sum(r.get(key) == r["gold"] for r in rows), len(rows)).as_dict(),
                         "picks": dict(picks.most_common()), "top_label": top, "top_share": count / len(rows),
                         "label_bias": count / len(rows) > 0.5}
    return out


def ifeval(folder: Path, data: Path) -> dict:
    rows = _rows(folder / "predictions.jsonl")
    prompts = {item.key: item.prompt for item in load_ifeval(data)}
    out = {"n": len(rows)}
    for kind in ("strict", "loose"):
        out[f"prompt_level_{kind}_acc"] = proportion(sum(all(r[kind]) for r in rows), len(rows)).as_dict()
        out[f"inst_level_{kind}_acc"] = proportion(sum(sum(r[kind]) for r in rows), sum(len(r[kind]) for r in rows)).as_dict()
    out["degeneration"] = degeneration_rates([r["response"] for r in rows], [prompts[r["key"]] for r in rows])
    return out


def main(root: Path) -> dict:
    data = Path(os.environ.get("BALANCEDBIO_DATA", "../shared/data")) / "benchmarks"
    ids = [x.strip() for x in (root / "medmcqa_ids.txt").read_text().splitlines() if x.strip() and not x.startswith("#")]
    letter = root / "letter_era"
    return {
        "source": "predictions.jsonl of the 2026-11-22 baseline (letter log-likelihood and generation), re-read",
        "medmcqa_all": multiple_choice(letter / "medmcqa"),
        "medmcqa_fixed_1000": multiple_choice(letter / "medmcqa", ids),
        "pubmedqa": multiple_choice(letter / "pubmedqa"),
        "medqa_sample": multiple_choice(letter / "medqa"),
        "mmlu_medical_sample": multiple_choice(letter / "mmlu_medical"),
        "ifeval": ifeval(letter / "ifeval", data / "ifeval_input_data.jsonl"),
    }


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/baseline")), indent=2))
