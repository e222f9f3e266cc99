"""Issue 13, the soak: 16 clients for 5 minutes against a real `bentoml serve` on 127.0.0.1, with
zero errors, resident memory growth under 10 %, and every acknowledged consult and feedback row
present in the database afterwards.

Bounded by time (BALANCEDBIO_SOAK_SECONDS, default 300) and by count (at most 2,000 requests a
client). The mix per client turn: a consult, a chat completion, a streamed chat read to the end,
feedback on the consult (and a repeat of it, which must return the same id). Memory is the summed
RSS of the server's process tree (arbiter and workers), from /proc, measured after a warm-up
(until every client has finished one whole turn, at most half the run) and at the end. The figures go to stdout and, when set, to the JSON
file BALANCEDBIO_SOAK_REPORT; docs/security.md records a run.
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import bearer, start_server

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
CLIENTS = int(os.environ.get("BALANCEDBIO_SOAK_CLIENTS", "16"))
SECONDS = float(os.environ.get("BALANCEDBIO_SOAK_SECONDS", "300"))
MAX_TURNS = 2000  # per client: the loop ends on time or on this count, whichever comes first
MAX_RSS_GROWTH = 0.10


def tree_rss_bytes(root: int) -> int:
    """Summed resident memory of `root` and all its descendants (Linux /proc). BentoML's workers
    are children of its arbiter but not in its process group, so the tree is followed by ppid."""
    parent, rss = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid = int(stat.parent.name)
            parent[pid] = int(fields[1])  # field 4 of stat: the parent pid
            rss[pid] = next(int(line.split()[1]) * 1024 for line in (stat.parent / "status").read_text().splitlines()
                            if line.startswith("VmRSS:"))
        except (OSError, IndexError, ValueError, StopIteration):
            continue  # the process ended meanwhile, or a kernel thread without VmRSS
    tree, grew = {root}, True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return sum(rss.get(pid, 0) for pid in tree)


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = {}
        self.errors: list[str] = []
        self.consults: set[str] = set()
        self.feedback: set[str] = set()
        self.turns: dict[int, int] = {}  # client -> completed turns

    def timed(self, what: str, fn):
        started = time.perf_counter()
        try:
            result = fn()
        except Exception as exc:  # every failure is an error of the soak, with what failed
            with self.lock:
                self.errors.append(f"{what}: {type(exc).__name__}: {str(exc)[:200]}")
            return None
        with self.lock:
            self.latencies.setdefault(what, []).append(time.perf_counter() - started)
        return result


def _ok(response: httpx.Response) -> httpx.Response:
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
    return response


def client_loop(url: str, key: str, n: int, deadline: float, tally: Tally) -> None:
    headers = bearer(key)
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        for turn in range(MAX_TURNS):
            if time.monotonic() > deadline:
                return
            consult = tally.timed("consult", lambda: _ok(http.post("/consult", json={
                "question": f"Client {n} turn {turn}: what is the first-line treatment of hypertension?",
                "max_tokens": 4})).json())
            if consult:
                with tally.lock:
                    tally.consults.add(consult["consult_id"])
                fb = tally.timed("feedback", lambda: _ok(http.post("/feedback", json={
                    "consult_id": consult["consult_id"], "outcome": "accept", "correct": True})).json())
                again = tally.timed("feedback", lambda: _ok(http.post("/feedback", json={
                    "consult_id": consult["consult_id"], "outcome": "accept", "correct": True})).json())
                if fb and again:
                    with tally.lock:
                        tally.feedback.add(fb["feedback_id"])
                        if again["feedback_id"] != fb["feedback_id"]:
                            tally.errors.append("feedback: a repeat got a new id")
            chat = tally.timed("chat", lambda: _ok(http.post("/v1/chat/completions", json={
                "messages": [{"role": "user", "content": "Name one statin."}], "max_tokens": 4})).json())
            if chat:
                with tally.lock:
                    tally.consults.add(chat["id"].removeprefix("chatcmpl-"))

            def stream() -> str:
                with http.stream("POST", "/v1/chat/completions", json={
                        "messages": [{"role": "user", "content": "Define HbA1c."}], "max_tokens": 4,
                        "stream": True}) as r:
                    if r.status_code != 200:
                        r.read()
                        _ok(r)
                    lines = [line for line in r.iter_lines() if line.startswith("data: ")]
                if lines[-1] != "data: [DONE]":
                    raise RuntimeError("stream ended without [DONE]")
                return json.loads(lines[0][6:])["id"]
            sid = tally.timed("chat_stream", stream)
            with tally.lock:
                if sid:
                    tally.consults.add(sid.removeprefix("chatcmpl-"))
                tally.turns[n] = tally.turns.get(n, 0) + 1


def test_soak_16_clients(base_export, tmp_path):
    server = start_server(base_export, tmp_path / "soak", BALANCEDBIO_RATE_LIMIT="1000000")
    try:
        tally = Tally()
        started = time.monotonic()
        deadline = started + SECONDS
        threads = [threading.Thread(target=client_loop, args=(server.url, server.key, n, deadline, tally)) for n in range(CLIENTS)]
        for t in threads:
            t.start()
        # Warm-up, by work done: until every client has finished a whole turn (so the engine has run
        # full batches of every request kind and ONNX Runtime's arena has grown to them), at most
        # half the run. Growth is measured from there to the end.
        while time.monotonic() < started + SECONDS / 2:
            with tally.lock:
                if len(tally.turns) == CLIENTS:
                    break
            time.sleep(2)
        warmup_s = time.monotonic() - started
        rss_start = tree_rss_bytes(server.proc.pid)
        samples = [rss_start]
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline + 180:
            time.sleep(10)
            samples.append(tree_rss_bytes(server.proc.pid))
        for t in threads:
            t.join(timeout=180)
        elapsed = time.monotonic() - started
        rss_end = tree_rss_bytes(server.proc.pid)
        load = os.getloadavg()

        with sqlite3.connect(server.data_dir / "balancedbio.db") as db:
            stored_consults = {r[0] for r in db.execute("SELECT id FROM consults")}
            stored_feedback = {r[0] for r in db.execute("SELECT id FROM feedback")}
        requests = {k: len(v) for k, v in tally.latencies.items()}
        report = {
            "clients": CLIENTS, "seconds": round(elapsed, 1), "warmup_s": round(warmup_s, 1), "requests": requests,
            "requests_total": sum(requests.values()), "errors": len(tally.errors), "first_errors": tally.errors[:5],
            "latency_p50_s": {k: round(statistics.median(v), 3) for k, v in tally.latencies.items()},
            "latency_p95_s": {k: round(sorted(v)[int(0.95 * (len(v) - 1))], 3) for k, v in tally.latencies.items()},
            "rss_after_warmup_mib": round(rss_start / 2**20, 1), "rss_end_mib": round(rss_end / 2**20, 1),
            "rss_max_mib": round(max(samples + [rss_end]) / 2**20, 1),
            "rss_growth": round(rss_end / rss_start - 1, 4),
            "acknowledged_consults": len(tally.consults), "missing_consults": len(tally.consults - stored_consults),
            "acknowledged_feedback": len(tally.feedback), "missing_feedback": len(tally.feedback - stored_feedback),
            "loadavg_1_5_15": [round(x, 2) for x in load],
        }
        print("SOAK " + json.dumps(report))
        if os.environ.get("BALANCEDBIO_SOAK_REPORT"):
            Path(os.environ["BALANCEDBIO_SOAK_REPORT"]).write_text(json.dumps(report, indent=2))
        assert tally.errors == [], tally.errors[:5]
        assert report["missing_consults"] == 0 and report["missing_feedback"] == 0
        assert report["acknowledged_consults"] > 0 and report["acknowledged_feedback"] > 0
        assert report["rss_growth"] < MAX_RSS_GROWTH, report
    finally:
        server.kill()
