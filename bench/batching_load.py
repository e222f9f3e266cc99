"""Static against continuous batching under load, in one run: throughput and p95 latency at 1, 4 and 16 clients.

    python bench/batching_load.py [--model DIR] [--threads 1] [--max-tokens 16,96] [--clients 1,4,16]
                                  [--requests 8,16,32] [--level-seconds 120] [--rounds 1]

For each round and each batching mode (BALANCEDBIO_BATCHING=static, then continuous) a real
`bentoml serve` starts on 127.0.0.1 (bench/serving_load.py's Server), the load levels run against
it, and it is stopped by its process group. Requests cycle through --max-tokens, so short and long
answers mix: that is where the modes differ, since under static batching a short request that
arrives while a long one decodes waits for it. Each level is bounded in requests and wall time.
The ratios (continuous / static) are computed per level within the same round, so a shared machine's
drift between rounds does not enter them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving_load as load  # noqa: E402  (bench/serving_load.py: its Server, load levels and their parsing)

MODES = ("static", "continuous")


def run_mode(model: Path, mode: str, args, clients: list[int], budgets: list[int], max_tokens: list[int]) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix=f"balancedbio-batching-{mode}-") as tmp:
        server = load.Server(model, args.threads, max(max_tokens), Path(tmp), env={"BALANCEDBIO_BATCHING": mode})
        try:
            started = time.perf_counter()
            server.wait_ready()
            print(f"{mode}: server ready in {time.perf_counter() - started:.0f} s", file=sys.stderr)
            levels = []
            for c, budget in zip(clients, budgets):
                level = load.load_level(server.url, c, budget, args.level_seconds, max_tokens)
                levels.append({"mode": mode, **level})
                print(f"{mode}, {c} clients: {level['ok']} ok, {level['errors']} errors, "
                      f"{level['requests_per_s']:.2f} req/s, p95 {level['p95_s']:.1f} s", file=sys.stderr)
            return levels
        except Exception:
            print(server.log(), file=sys.stderr)
            raise
        finally:
            server.stop()


def report(rounds: list[dict[str, list[dict]]], args) -> str:
    lines = [f"{args.threads} ONNX Runtime thread(s), max_tokens cycled over {args.max_tokens} (greedy), "
             f"{len(rounds)} round(s)", "",
             "| round | clients | mode | requests | errors | requests/s | tokens/s | p50 | p95 | "
             "continuous ÷ static: requests/s | p95 |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r, by_mode in enumerate(rounds, 1):
        for static, continuous in zip(by_mode["static"], by_mode["continuous"]):
            for lv in (static, continuous):
                ratio = ""
                if lv is continuous and static["requests_per_s"] and static["p95_s"]:
                    ratio = (f"**{continuous['requests_per_s'] / static['requests_per_s']:.2f}x** | "
                             f"{continuous['p95_s'] / static['p95_s']:.2f}x")
                lines.append(f"| {r} | {lv['clients']} | {lv['mode']} | {lv['requests']} | {lv['errors']} | "
                             f"{lv['requests_per_s']:.2f} | {lv['tokens_per_s']:.1f} | {lv['p50_s'] * 1000:.0f} ms | "
                             f"{lv['p95_s'] * 1000:.0f} ms | {ratio or '|'} |"
                             + (" (time bound)" if lv["hit_deadline"] else ""))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="export folder to serve (default: the exported base model)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads of the server")
    parser.add_argument("--max-tokens", default="16,96", help="per-request token budgets, cycled over the requests")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--requests", default="8,16,32", help="request budget per level (one value, or one per level)")
    parser.add_argument("--level-seconds", type=float, default=120, help="wall-time bound per load level")
    parser.add_argument("--rounds", type=int, default=1, help="static then continuous, this many times")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    clients, budgets = load.load_levels(parser, args)
    max_tokens = [int(t) for t in args.max_tokens.split(",")]
    if args.rounds < 1 or any(t < 1 for t in max_tokens):
        parser.error("--rounds and every --max-tokens value must be at least 1")

    from serving.config import ensure_base_export

    model = Path(args.model) if args.model else ensure_base_export()
    rounds = [{mode: run_mode(model, mode, args, clients, budgets, max_tokens) for mode in MODES}
              for _ in range(args.rounds)]
    print(report(rounds, args))
    if args.json:
        Path(args.json).write_text(json.dumps({"model": str(model), "threads": args.threads, "max_tokens": max_tokens,
                                               "rounds": rounds}, indent=2))
    errors = sum(lv["errors"] for by_mode in rounds for levels in by_mode.values() for lv in levels)
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
