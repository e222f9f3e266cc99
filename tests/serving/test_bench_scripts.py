"""The benchmark scripts' own logic (no timing asserted): load levels stay bounded and count errors;
llama.cpp is skipped with a message saying why."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def stub():
    """A loopback stand-in for /v1/chat/completions: `stub.fail` answers 500, `stub.delay` sleeps first."""
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            server.budgets.append(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["max_tokens"])
            time.sleep(server.delay)
            body = json.dumps({"usage": {"completion_tokens": 3}}).encode()
            self.send_response(500 if server.fail else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.fail, server.delay, server.budgets = False, 0.0, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("name,clients,budget,seconds,fail,delay,expect", [
    ("budget reached", 4, 10, 30, False, 0.0, {"requests": 10, "ok": 10, "errors": 0, "hit_deadline": False}),
    ("every error counted", 2, 6, 30, True, 0.0, {"requests": 6, "ok": 0, "errors": 6, "hit_deadline": False}),
    ("wall time bounds a slow server", 2, 1000, 0.5, False, 0.2, {"errors": 0, "hit_deadline": True}),
])
def test_load_level_is_bounded_and_counts_errors(stub, name, clients, budget, seconds, fail, delay, expect):
    load = _load("serving_load")
    stub.fail, stub.delay = fail, delay
    level = load.load_level(stub.url, clients, budget, seconds, max_tokens=4)
    assert {k: level[k] for k in expect} == expect
    assert level["requests"] <= budget and level["ok"] + level["errors"] == level["requests"]
    assert level["tokens_per_s"] == pytest.approx(3 * level["requests_per_s"])
    if level["ok"]:
        assert level["p50_s"] <= level["p95_s"]
    table = load.report(types.SimpleNamespace(threads=1, max_tokens=4), Path("m"),
                        {"prompt_tokens": 9, "completion_tokens": 4, "repeats": 3, "engine_s": 1.0, "http_s": 1.05,
                         "ratio": 1.05, "pair_ratio_median": 1.04}, [level])
    assert "**1.050** | 1.040 |" in table and f"| {clients} | {level['requests']} | {level['errors']} |" in table


def test_a_load_level_cycles_its_token_budgets_over_the_requests(stub):
    load = _load("serving_load")
    level = load.load_level(stub.url, 1, 5, 30, max_tokens=[16, 96])
    assert level["ok"] == 5 and stub.budgets == [16, 96, 16, 96, 16]


def test_the_batching_bench_reports_continuous_against_static_per_level():
    bench = _load("batching_load")
    level = lambda mode, rps, p95: {"mode": mode, "clients": 4, "requests": 8, "errors": 0, "requests_per_s": rps,  # noqa: E731
                                    "tokens_per_s": 10 * rps, "p50_s": p95 / 2, "p95_s": p95, "hit_deadline": False}
    table = bench.report([{"static": [level("static", 0.5, 4.0)], "continuous": [level("continuous", 0.75, 3.0)]}],
                         types.SimpleNamespace(threads=1, max_tokens="16,96"))
    assert "| 1 | 4 | continuous | 8 | 0 | 0.75 | 7.5 | 1500 ms | 3000 ms | **1.50x** | 0.75x |" in table


@pytest.mark.parametrize("name,module,arch,message", [
    ("llama_cpp not installed", None, "smollm2-135m", "pip install llama-cpp-python"),
    ("no GGUF ships for the architecture", types.ModuleType("llama_cpp"), "qwen2.5-0.5b", "no GGUF ships"),
])
def test_llama_cpp_skipped_with_a_reason(monkeypatch, name, module, arch, message):
    decode = _load("engine_decode")
    monkeypatch.setitem(sys.modules, "llama_cpp", module)  # None makes `import llama_cpp` raise ImportError
    run, why = decode.llama_cpp_backend("embedded", arch, threads=1)
    assert run is None and why.startswith("skipped llama.cpp") and message in why


def test_the_side_by_side_table_gives_speed_ups_against_pytorch_and_llama_cpp():
    decode = _load("engine_decode")
    row = lambda rate, ttft, e2e: {"decode_tokens_per_s": rate, "ttft_s": ttft, "end_to_end_s": e2e}  # noqa: E731
    results = {"pytorch eager fp32": row(10.0, 1.0, 8.0), "serving engine fp32": row(30.0, 0.25, 2.0),
               "llama.cpp 0.3.36 (x.gguf)": row(60.0, 0.5, 4.0)}
    table = decode.table(results, threads=1).splitlines()
    # Decode is a rate (higher is faster), TTFT and end to end are times (lower is faster): both as speed-ups.
    assert "| serving engine fp32 | 30.0 | 3.00x | 0.50x | 0.250 | 4.00x | 2.00x | 2.000 | 4.00x | 2.00x |" in table
    assert "| pytorch eager fp32 | 10.0 | 1.00x | 0.17x | 1.000 | 1.00x | 0.50x | 8.000 | 1.00x | 0.50x |" in table


def test_the_consult_prompt_reaches_its_length_without_overshooting_much():
    from transformers import AutoTokenizer

    from training.models import embedded_model_dir

    decode = _load("engine_decode")
    ids = decode.consult_ids(AutoTokenizer.from_pretrained(embedded_model_dir()), 300)
    assert 300 <= len(ids) <= 310


# (name, candidate logits built from the reference, expected top-1 agreement): the fused-graph screen's measure.
AGREEMENTS = [
    ("identical", lambda r: r.copy(), 1.0),
    ("shifted by a constant (same distribution)", lambda r: r + 3.0, 1.0),
    ("first position's winner swapped", lambda r: r[:, [1, 0, 2]], 0.5),
]


@pytest.mark.parametrize("candidate, top1", [c[1:] for c in AGREEMENTS], ids=[c[0] for c in AGREEMENTS])
def test_fused_graph_screen_agreement(candidate, top1):
    import numpy as np

    fused = _load("fused_graph")
    reference = np.array([[3.0, 1.0, 0.0], [0.0, 0.5, 2.0]])
    agreed, kl = fused.agreement(reference, candidate(reference))
    assert agreed == top1
    assert (kl < 1e-12) == (top1 == 1.0)
