"""A real Prometheus (Debian's `prometheus` binary) scrapes the running service's /metrics.

The service is started with `bentoml serve` (service_process.py); Prometheus gets a generated
config that scrapes it every second on loopback and loads deploy/prometheus/rules.yml, so the
recording rules are evaluated on real series too. Everything is read back through Prometheus's
HTTP API (`/api/v1/query`), the way Grafana and the alerts see it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from service_process import free_port
from system_programs import require

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "rules.yml"
WAIT_S = 90.0
POLL_S = 0.5


@pytest.fixture(scope="module")
def prometheus(service, tmp_path_factory):
    exe = str(require("prometheus"))
    workdir = tmp_path_factory.mktemp("prometheus")
    target = service.url.removeprefix("http://")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "balancedbio", "metrics_path": "/metrics",
                            "static_configs": [{"targets": [target]}]}],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(workdir / "prometheus.log", "wb")
    proc = subprocess.Popen(
        [exe, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    api = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: ready(api), "Prometheus to be ready (/-/ready)",
                 lambda: (workdir / "prometheus.log").read_text(errors="replace")[-3000:])
        wait_for(lambda: query(api, 'up{job="balancedbio"}') == 1.0, "Prometheus to scrape the service (up == 1)",
                 lambda: (workdir / "prometheus.log").read_text(errors="replace")[-3000:])
        yield api
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()


def ready(api: str) -> bool:
    try:
        return httpx.get(f"{api}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def query(api: str, promql: str) -> float | None:
    """The value of a query that returns one sample (summed if several), None when it is empty."""
    try:
        response = httpx.get(f"{api}/api/v1/query", params={"query": promql}, timeout=5)
    except httpx.HTTPError:
        return None
    if response.status_code == 503:  # "Service Unavailable" (plain text) while the TSDB starts
        return None
    body = response.json()
    assert body["status"] == "success", body
    result = body["data"]["result"]
    if not result:
        return None
    return sum(float(r["value"][1]) for r in result)


def labels_of(api: str, promql: str) -> list[dict]:
    body = httpx.get(f"{api}/api/v1/query", params={"query": promql}, timeout=5).json()
    return [r["metric"] for r in body["data"]["result"]]


def wait_for(condition, what: str, context=lambda: "") -> None:
    deadline = time.monotonic() + WAIT_S
    for _ in range(int(WAIT_S / POLL_S) + 1):
        if condition():
            return
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_S)
    pytest.fail(f"timed out after {WAIT_S:.0f} s waiting for {what}\n{context()}")


def test_model_info_is_scraped(prometheus):
    info = labels_of(prometheus, "balancedbio_model_info == 1")
    assert len(info) == 1, info
    assert info[0]["aligned"] in ("true", "false") and info[0]["version"]


@pytest.fixture(scope="module")
def traffic(service, prometheus):
    """Requests made after Prometheus is scraping, so increase() over them is exact."""
    wait_for(lambda: query(prometheus, 'balancedbio_feedback_total{outcome="accept"}') is not None,
             "the zero-initialised feedback series to be scraped")
    accept_before = query(prometheus, 'balancedbio_feedback_total{outcome="accept"}')
    models = httpx.get(service.url + "/v1/models", headers=service.headers, timeout=30)
    assert models.status_code == 200, models.text
    unauthorized = httpx.get(service.url + "/v1/models", timeout=30)  # no key at all
    assert unauthorized.status_code == 401, unauthorized.text
    consult = httpx.post(service.url + "/consult", headers=service.headers, timeout=600,
                         json={"question": "What is the first-line drug treatment for type 2 diabetes?",
                               "patient": None, "max_tokens": 16})
    assert consult.status_code == 200, consult.text
    feedback = httpx.post(service.url + "/feedback", headers=service.headers, timeout=30,
                          json={"consult_id": consult.json()["consult_id"], "outcome": "accept", "correct": True})
    assert feedback.status_code == 200, feedback.text
    wait_for(lambda: (query(prometheus, 'balancedbio_feedback_total{outcome="accept"}') or 0) >= accept_before + 1,
             "the accepted feedback to be scraped")
    return consult.json()


def test_requests_consults_and_feedback_reach_prometheus(prometheus, traffic):
    cases = {  # name: (PromQL, the least value it must have)
        "models requests": ('balancedbio_requests_total{endpoint="/v1/models",status="200"}', 1),
        "unauthorized request": ('balancedbio_requests_total{endpoint="/v1/models",status="401"}', 1),
        "consult request": ('balancedbio_requests_total{endpoint="/consult",status="200"}', 1),
        "feedback request": ('balancedbio_requests_total{endpoint="/feedback",status="200"}', 1),
        "consult latency observed": ('balancedbio_request_duration_seconds_count{endpoint="/consult"}', 1),
        "accepted feedback": ('balancedbio_feedback_total{outcome="accept"}', 1),
        "graded correct": ('balancedbio_feedback_graded_total{correct="true"}', 1),
        "tokens generated": ("balancedbio_generated_tokens_total", 1),
        "time per output token observed": ("balancedbio_time_per_output_token_seconds_count", 1),
    }
    wait_for(lambda: all((query(prometheus, q) or 0) >= least for q, least in cases.values()),
             "every series of the cases to be scraped",
             lambda: {name: query(prometheus, q) for name, (q, _) in cases.items()})


def test_recording_rules_compute_the_acceptance_ratio(prometheus, traffic):
    """deploy/prometheus/rules.yml on real series: all feedback in this run was a correct 'accept'."""
    wait_for(lambda: query(prometheus, "balancedbio:acceptance_ratio:1h") == 1.0,
             "balancedbio:acceptance_ratio:1h == 1",
             lambda: str(labels_of(prometheus, "balancedbio_feedback_total")))
    wait_for(lambda: query(prometheus, "balancedbio:online_accuracy:1d") == 1.0, "balancedbio:online_accuracy:1d == 1")
