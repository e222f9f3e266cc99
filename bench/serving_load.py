"""The service under load: overhead over the bare engine, and throughput at 1, 4 and 16 clients.

    python bench/serving_load.py [--model DIR] [--threads 2] [--max-tokens 16] [--repeats 7]
                                 [--clients 1,4,16] [--requests 8,16,32] [--level-seconds 120]

Starts a real `bentoml serve` on 127.0.0.1 (a free port, a temporary data folder), serving DIR
(default: the exported base model, serving.config.ensure_base_export), and always stops it by its
process group at the end. Traffic goes to 127.0.0.1 only.

(a) Overhead: one fixed non-streaming /v1/chat/completions request (greedy, --max-tokens) timed end
to end over HTTP, against the same prompt and parameters through serving.engine.OnnxEngine in this
process, on the same export with the same ONNX Runtime thread count. The two are timed alternately
(engine, HTTP, engine, ...), each while the other is idle, so drift on a shared machine hits both;
the ratio is of the medians. The engine is timed from the chat messages to the finished text
(chat template, tokenisation, generation, detokenisation): everything but the service itself.

(b) Load: N client threads send the same request back to back; every level is bounded both in
requests (--requests) and in wall time (--level-seconds). Errors (non-200, exceptions) are counted.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

KEY = "bench-key-0123456789"
MESSAGES = [{"role": "user", "content": "A 67-year-old on warfarin asks whether ibuprofen is safe for knee pain. "
                                        "Explain the risks and a safer option."}]
READY_DEADLINE_S = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`bentoml serve` in its own process group, so stopping it reaches the arbiter and its worker."""

    def __init__(self, model: Path, threads: int, max_tokens: int, data_dir: Path, env: dict | None = None):
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_path = data_dir / "server.log"
        env = {**os.environ, "BALANCEDBIO_MODEL": str(model), "BALANCEDBIO_API_KEYS": KEY,
               "BALANCEDBIO_DATA_DIR": str(data_dir), "BALANCEDBIO_MAX_TOKENS": str(max(max_tokens, 64)),
               "BALANCEDBIO_RATE_LIMIT": "1000000", "BALANCEDBIO_ORT_THREADS": str(threads),
               "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "BENTOML_DO_NOT_TRACK": "true", **(env or {})}
        env.pop("BALANCEDBIO_DB_URL", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", "--host", "127.0.0.1", "--port", self.url.rsplit(":", 1)[1]],
            cwd=REPO, env=env, stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self) -> None:
        from serving.__main__ import wait_ready  # the main job's own readiness poll, with a deadline

        try:
            wait_ready(self.url, self.proc, READY_DEADLINE_S)
        except SystemExit as e:
            raise RuntimeError(f"{e}:\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        from serving.__main__ import stop_server  # reaches the workers too, not only the arbiter

        stop_server(self.proc)


def chat_body(max_tokens: int) -> dict:
    return {"model": "balancedbio", "messages": MESSAGES, "max_tokens": max_tokens, "temperature": 0}


def post(client: httpx.Client, url: str, max_tokens: int) -> dict:
    r = client.post(url + "/v1/chat/completions", json=chat_body(max_tokens),
                    headers={"Authorization": f"Bearer {KEY}"}, timeout=300)
    r.raise_for_status()
    return r.json()


def overhead(server: Server, model: Path, threads: int, max_tokens: int, repeats: int, seconds: float) -> dict:
    from serving.engine import OnnxEngine, SamplingParams

    engine = OnnxEngine(model, threads=threads, prefer_gpu=False)  # no batcher: nothing but the generation
    params = SamplingParams(max_new_tokens=max_tokens)

    def engine_once():
        done = {}
        start = time.perf_counter()
        ids = engine.encode(engine.chat_prompt(MESSAGES))
        engine.submit(ids, params, lambda kind, value: done.setdefault(kind, value))
        seconds = time.perf_counter() - start
        if "done" not in done:
            raise RuntimeError(f"engine failed: {done}")
        return seconds, done["done"]

    engine_s, http_s = [], []
    deadline = time.monotonic() + seconds
    with httpx.Client() as client:
        engine_once(), post(client, server.url, max_tokens)  # warm-up both (first-call allocations)
        for i in range(repeats):
            if i >= 3 and time.monotonic() > deadline:  # bounded in time too; three pairs at the least
                break
            seconds, out = engine_once()
            engine_s.append(seconds)
            start = time.perf_counter()
            reply = post(client, server.url, max_tokens)
            http_s.append(time.perf_counter() - start)
            # Same work on both sides, or the ratio means nothing.
            if reply["choices"][0]["message"]["content"] != out.text or \
                    reply["usage"]["completion_tokens"] != out.completion_tokens:
                raise RuntimeError(f"the service answered differently from the engine: {reply} vs {out}")
    del engine
    e, h = statistics.median(engine_s), statistics.median(http_s)
    # Each HTTP run over the engine run just before it, too: a shared machine drifts, and a pair
    # is close in time (the median of these is the steadier figure under load).
    pairs = statistics.median(b / a for a, b in zip(engine_s, http_s))
    return {"repeats": len(engine_s), "completion_tokens": out.completion_tokens, "prompt_tokens": out.prompt_tokens,
            "engine_s": e, "http_s": h, "ratio": h / e, "pair_ratio_median": pairs,
            "engine_runs": engine_s, "http_runs": http_s}


def load_level(url: str, clients: int, requests: int, seconds: float, max_tokens: int | list[int]) -> dict:
    """`clients` threads share a budget of `requests`; all stop at the wall-time deadline. A list of
    `max_tokens` is cycled over the requests in the order they are sent (a mix of short and long answers)."""
    budgets = max_tokens if isinstance(max_tokens, list) else [max_tokens]
    lock = threading.Lock()
    state = {"left": requests}
    latencies, tokens, errors = [], [], []
    deadline = time.monotonic() + seconds

    def client_loop():
        with httpx.Client() as client:
            while time.monotonic() < deadline:
                with lock:
                    if state["left"] <= 0:
                        return
                    state["left"] -= 1
                    budget = budgets[(requests - state["left"] - 1) % len(budgets)]
                start = time.perf_counter()
                try:
                    reply = post(client, url, budget)
                except Exception as e:  # counted, never fatal: the figure is how many fail
                    errors.append(repr(e)[:200])
                    continue
                with lock:
                    latencies.append(time.perf_counter() - start)
                    tokens.append(reply["usage"]["completion_tokens"])

    threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 330)  # a request in flight at the deadline may take its own timeout
    elapsed = time.perf_counter() - start
    lat = sorted(latencies)
    pct = (lambda q: lat[min(len(lat) - 1, int(round(q * (len(lat) - 1))))]) if lat else (lambda q: float("nan"))
    return {"clients": clients, "requests": len(lat) + len(errors), "ok": len(lat), "errors": len(errors),
            "error_samples": errors[:3], "seconds": elapsed, "requests_per_s": len(lat) / elapsed,
            "tokens_per_s": sum(tokens) / elapsed, "p50_s": pct(0.50), "p95_s": pct(0.95),
            "hit_deadline": state["left"] > 0}


def report(args, model: Path, over: dict, levels: list[dict]) -> str:
    lines = [f"model `{model}`, {args.threads} ORT threads, max_tokens {args.max_tokens} (greedy), "
             f"{over['prompt_tokens']} prompt tokens", "",
             "| request | engine in-process (median) | HTTP end to end (median) | ratio of medians | "
             "median of paired ratios |", "|---|---|---|---|---|",
             f"| /v1/chat/completions, {over['completion_tokens']} tokens, {over['repeats']} alternating pairs | "
             f"{over['engine_s'] * 1000:.0f} ms | {over['http_s'] * 1000:.0f} ms | **{over['ratio']:.3f}** | "
             f"{over['pair_ratio_median']:.3f} |", "",
             "| clients | requests | errors | requests/s | tokens/s | p50 | p95 | throughput vs 1 client |",
             "|---|---|---|---|---|---|---|---|"]
    base = levels[0]["requests_per_s"] if levels else 0
    for lv in levels:
        lines.append(f"| {lv['clients']} | {lv['requests']} | {lv['errors']} | {lv['requests_per_s']:.2f} | "
                     f"{lv['tokens_per_s']:.1f} | {lv['p50_s'] * 1000:.0f} ms | {lv['p95_s'] * 1000:.0f} ms | "
                     + (f"{lv['requests_per_s'] / base:.2f}x |" if base else "- |")
                     + (" (stopped at the time bound)" if lv["hit_deadline"] else ""))
    return "\n".join(lines)


def load_levels(parser: argparse.ArgumentParser, args) -> tuple[list[int], list[int]]:
    """--clients and --requests as (clients per level, request budget per level)."""
    clients = [int(c) for c in args.clients.split(",")]
    budgets = [int(r) for r in args.requests.split(",")]
    budgets = budgets * len(clients) if len(budgets) == 1 else budgets
    if len(budgets) != len(clients):
        parser.error("--requests takes one value or one per --clients level")
    return clients, budgets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="export folder to serve (default: the exported base model)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads, server and engine")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7, help="alternating engine/HTTP runs for the overhead")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--requests", default="8,16,32", help="request budget per level (one value, or one per level)")
    parser.add_argument("--level-seconds", type=float, default=120,
                        help="wall-time bound per load level, and for the overhead runs")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    clients, budgets = load_levels(parser, args)

    from serving.config import ensure_base_export

    model = Path(args.model) if args.model else ensure_base_export()
    with tempfile.TemporaryDirectory(prefix="balancedbio-load-") as tmp:
        server = Server(model, args.threads, args.max_tokens, Path(tmp))
        try:
            started = time.perf_counter()
            server.wait_ready()
            print(f"server ready at {server.url} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
            over = overhead(server, model, args.threads, args.max_tokens, args.repeats, args.level_seconds)
            levels = []
            for c, budget in zip(clients, budgets):
                levels.append(load_level(server.url, c, budget, args.level_seconds, args.max_tokens))
                print(f"{c} clients: {levels[-1]['ok']} ok, {levels[-1]['errors']} errors", file=sys.stderr)
        except Exception:
            print(server.log(), file=sys.stderr)
            raise
        finally:
            server.stop()
    print(report(args, model, over, levels))
    if args.json:
        Path(args.json).write_text(json.dumps({"model": str(model), "threads": args.threads,
                                               "max_tokens": args.max_tokens, "overhead": over,
                                               "load": levels}, indent=2))
    return 0 if all(lv["errors"] == 0 for lv in levels) else 1


if __name__ == "__main__":
    sys.exit(main())
