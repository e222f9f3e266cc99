"""What a service worker holds, and whether it stays put under load.

    python bench/worker_memory.py components
    python bench/worker_memory.py load [--model DIR] [--threads 1] [--clients 4] [--minutes 5]
                                       [--variant "NAME=VAR=VALUE,VAR=VALUE" ...]

`components`: a fresh process loads what a worker loads, in the worker's order (libraries, the
service module with CDS Hooks and the Gradio UI, the ONNX engine, the guardrails' NLP pipelines),
then decodes batches of 8 prompts; its resident set is printed after each step.

`load`: for each --variant (a name and the environment the server gets, e.g.
"arena on=BALANCEDBIO_ORT_ARENA=1"; default: the service as configured), a real `bentoml serve` on 127.0.0.1
(bench/serving_load.py's Server) is loaded by --clients clients sending chat completions back to
back (max_tokens cycling 16 and 96) for --minutes, bounded in time and requests; the worker's
resident set (the largest process under the server) is sampled every 2 s. Reported: at ready, peak,
at the end, and the drift (mean of the last minute minus mean of the second). The server is stopped
by its process group. With matplotlib installed, --plot writes resident set over time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def rss_mb(pid: int | None = None) -> float:
    """Resident set of a process (this one by default) in MiB; 0 once it has gone."""
    import psutil  # a dependency of BentoML, as in serving.__main__.stop_server

    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.NoSuchProcess:
        return 0.0


def worker_rss_mb(server_pid: int) -> float:
    """The largest resident set under the server: BentoML's arbiter starts the worker as a child."""
    import psutil

    try:
        return max((rss_mb(p.pid) for p in psutil.Process(server_pid).children(recursive=True)), default=0.0)
    except psutil.NoSuchProcess:
        return 0.0


def components() -> list[tuple[str, float]]:
    steps: list[tuple[str, float]] = []

    def mark(name: str) -> None:
        steps.append((name, rss_mb()))
        print(f"{name:55s} {steps[-1][1]:7.0f} MB", file=sys.stderr)

    mark("python")
    import torch  # noqa: F401  (transformers' logits processors run on torch tensors)
    mark("torch")
    import transformers  # noqa: F401
    mark("transformers")
    import onnxruntime  # noqa: F401
    mark("onnxruntime")
    import serving.service  # noqa: F401  (builds the FastAPI app, CDS Hooks and the Gradio UI)
    mark("serving.service (FastAPI, CDS Hooks, Gradio UI)")
    from serving.config import Settings, ensure_base_export
    from serving.engine import OnnxEngine

    settings = Settings.from_env()
    engine = OnnxEngine(ensure_base_export(), threads=1, memory_arena=settings.ort_arena)
    mark(f"ONNX engine, fp32 export (arena {'on' if settings.ort_arena else 'off'})")
    from clinical import deid
    from clinical.guardrails import context

    context.load()
    mark("guardrails: negation context (medspaCy)")
    deid.load()
    mark("guardrails: de-identification (Presidio)")
    case = "A 67-year-old on warfarin asks whether ibuprofen is safe for knee pain. " * 6
    prompt = engine.chat_prompt([{"role": "user", "content": case}])
    for n in range(3):
        engine.generate([prompt] * 8, 32)
        mark(f"8 prompts of {len(engine.encode(prompt))} tokens, 32 new tokens (batch {n + 1})")
    return steps


def load_run(variant: str, args) -> dict:
    import serving_load as load  # bench/serving_load.py: its Server and load levels

    from serving.config import ensure_base_export

    model = Path(args.model) if args.model else ensure_base_export()
    with tempfile.TemporaryDirectory(prefix="balancedbio-memory-") as tmp:
        name, _, settings = variant.partition("=")
        env = dict(pair.split("=", 1) for pair in filter(None, settings.split(",")))
        server = load.Server(model, args.threads, 96, Path(tmp), env=env)
        try:
            server.wait_ready()
            ready = worker_rss_mb(server.proc.pid)
            samples: list[tuple[float, float]] = []
            result: dict = {}
            seconds = args.minutes * 60
            traffic = threading.Thread(target=lambda: result.update(
                load.load_level(server.url, args.clients, args.max_requests, seconds, [16, 96])), daemon=True)
            start = time.monotonic()
            traffic.start()
            while traffic.is_alive() and time.monotonic() - start < seconds + 360:
                samples.append((time.monotonic() - start, worker_rss_mb(server.proc.pid)))
                traffic.join(timeout=2)
        except Exception:
            print(server.log(), file=sys.stderr)
            raise
        finally:
            server.stop()
    values = [v for _, v in samples]
    minute = lambda lo, hi: [v for t, v in samples if lo <= t < hi] or [float("nan")]  # noqa: E731
    last = samples[-1][0] if samples else 0.0
    drift = sum(minute(last - 60, last + 1)) / len(minute(last - 60, last + 1)) - sum(minute(60, 120)) / len(minute(60, 120))
    return {"variant": name, "env": env, "ready_mb": ready, "peak_mb": max(values, default=0.0), "end_mb": values[-1] if values else 0.0,
            "drift_mb": drift, "requests": result.get("ok", 0), "errors": result.get("errors", 0),
            "requests_per_s": result.get("requests_per_s", 0.0), "samples": samples}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("components", "load"))
    parser.add_argument("--model", help="export folder to serve (default: the exported base model)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--max-requests", type=int, default=2000, help="request bound per run, beside the time bound")
    parser.add_argument("--variant", action="append", help="NAME=VAR=VALUE,VAR=VALUE: a server environment to "
                        "measure (repeat to compare; in the order given)")
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--plot", help="write resident set over time here (PNG; needs matplotlib)")
    args = parser.parse_args()
    if args.what == "components":
        steps = components()
        print("| step | resident set | added |\n|---|---|---|")
        for (name, mb), (_, before) in zip(steps, [("", 0.0), *steps]):
            print(f"| {name} | {mb:.0f} MB | +{mb - before:.0f} MB |")
        if args.json:
            Path(args.json).write_text(json.dumps(steps, indent=2))
        return 0
    variants = args.variant or ["as configured="]
    if any("=" not in v for v in variants):
        parser.error("--variant takes NAME=VAR=VALUE,..., e.g. 'arena on=BALANCEDBIO_ORT_ARENA=1'")
    runs = [load_run(v, args) for v in variants]
    print(f"worker resident set, {args.clients} clients for {args.minutes:g} min, {args.threads} ORT thread(s)\n")
    print("| variant | requests | errors | requests/s | at ready | peak | at the end | drift (last minute - second) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r['variant']} | {r['requests']} | {r['errors']} | {r['requests_per_s']:.2f} | {r['ready_mb']:.0f} MB | "
              f"{r['peak_mb']:.0f} MB | {r['end_mb']:.0f} MB | {r['drift_mb']:+.0f} MB |")
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.5))
        for r in runs:
            ax.plot([t / 60 for t, _ in r["samples"]], [v for _, v in r["samples"]], label=r["variant"])
        ax.axhline(1536, color="grey", linestyle="--", linewidth=1, label="1.5 GB target")
        ax.set_xlabel("minutes under load")
        ax.set_ylabel("worker resident set (MB)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
    return 0 if all(r["errors"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
