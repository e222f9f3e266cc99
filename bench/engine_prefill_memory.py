"""Peak resident memory and time of the engine's prefill, by prefill budget (`OnnxEngine(prefill_tokens=)`).

    python bench/engine_prefill_memory.py [--export DIR] [--rows 8] [--words 150 600] [--budgets 256 512 100000]

Each budget runs in a fresh process (a process's peak resident set only grows), which loads the
export, then prefills --rows prompts of each length (4 new tokens, greedy) and reports its resident
set after loading and its peak after each length. A budget of 100000 is the prompt in one piece,
as the engine did before chunking; ratios are against it, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CASE = ("A 67-year-old man with type 2 diabetes and chronic kidney disease presents with fever, a productive "
        "cough and crackles at the right base; he takes metformin, lisinopril and atorvastatin. ")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(export: str, rows: int, words: list[int], budget: int, threads: int) -> dict:
    from serving.engine import OnnxEngine

    engine = OnnxEngine(export, threads=threads, prefer_gpu=False, max_batch=rows, prefill_tokens=budget)
    out = {"budget": budget, "loaded_mb": round(_peak_mb()), "lengths": []}
    for n_words in words:
        text = " ".join((CASE * (n_words // len(CASE.split()) + 1)).split()[:n_words])
        prompts = [engine.chat_prompt([{"role": "user", "content": f"{text} Case {i}: what next?"}]) for i in range(rows)]
        start = time.perf_counter()
        engine.generate(prompts, 4)
        out["lengths"].append({"tokens": len(engine.encode(prompts[0])), "peak_mb": round(_peak_mb()),
                               "seconds": round(time.perf_counter() - start, 2)})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", default=str(Path.home() / ".cache/balancedbio/onnx/smollm2-135m"),
                        help="an export folder (python -m training.export), default the cached base export")
    parser.add_argument("--rows", type=int, default=8, help="prompts prefilled together (the engine's max_batch)")
    parser.add_argument("--words", type=int, nargs="+", default=[150, 600], help="prompt lengths in words")
    parser.add_argument("--budgets", type=int, nargs="+", default=[256, 512, 100_000], help="prefill_tokens values")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.export, args.rows, args.words, args.child, args.threads)))
        return 0
    results = {}
    for budget in args.budgets:
        cmd = [sys.executable, __file__, "--export", args.export, "--rows", str(args.rows), "--threads", str(args.threads),
               "--words", *map(str, args.words), "--child", str(budget)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[budget] = json.loads(done.stdout.strip().splitlines()[-1])
    whole = results[max(args.budgets)]
    print(f"{args.rows} prompts prefilled together, {args.threads} thread(s); ratios against budget {max(args.budgets)}")
    print("| prefill_tokens | loaded (MB) | prompt tokens | peak (MB) | peak ratio | seconds | time ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for budget, r in results.items():
        for mine, ref in zip(r["lengths"], whole["lengths"]):
            print(f"| {budget} | {r['loaded_mb']} | {mine['tokens']} | {mine['peak_mb']} | "
                  f"{mine['peak_mb'] / ref['peak_mb']:.2f} | {mine['seconds']} | {mine['seconds'] / ref['seconds']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
