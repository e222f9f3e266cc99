"""Issue 13, finding 5: `GET /<random path>` created a new bentoml_service_* series each time
(cardinality without bound) and the public /metrics showed Gradio event ids and upload paths.
"""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from conftest import KEY, bearer, start_server

LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def series(text: str) -> list[tuple[str, dict[str, str]]]:
    out = []
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" in line:
            name, labels = line.split("{", 1)
            out.append((name, dict(LABEL.findall(labels.rsplit("}", 1)[0]))))
    return out


@pytest.mark.e2e
def test_random_paths_and_ui_events_add_no_series_and_no_request_values(hardened):
    from monitoring.metrics import ENDPOINTS, OTHER

    endpoints_before = {l["endpoint"] for n, l in series(httpx.get(hardened.url + "/metrics", timeout=30).text)
                        if "endpoint" in l}
    secrets = [uuid.uuid4().hex for _ in range(30)]
    for s in secrets:  # bounded: 30 unknown paths, 5 Gradio event streams, 5 uploads
        httpx.get(f"{hardened.url}/{s}", timeout=30)
    for s in secrets[:5]:
        try:  # Gradio ends the event stream of an unknown event id without a closing chunk
            httpx.get(f"{hardened.url}/ui/gradio_api/call/connect/{s}", timeout=30)
        except httpx.RemoteProtocolError:
            pass
        httpx.post(f"{hardened.url}/ui/gradio_api/upload", files={"files": (f"{s}.json", b"{}")}, timeout=30)
    text = httpx.get(hardened.url + "/metrics", timeout=30).text
    assert not any(s in text for s in secrets), "a request-derived value reached /metrics"
    assert "/tmp/" not in text and "gradio_api" not in text
    endpoints = {l["endpoint"] for n, l in series(text) if "endpoint" in l}
    assert endpoints <= set(ENDPOINTS) | {OTHER}, endpoints - set(ENDPOINTS)
    # 35 distinct request paths may add at most the folded labels, never one label value per path
    assert endpoints - endpoints_before <= {OTHER, "/ui", "/metrics"}, endpoints - endpoints_before


def test_reduced_exposition_keeps_only_balancedbio_families(hardened):
    from monitoring.metrics import reduce_exposition

    full = httpx.get(hardened.url + "/metrics", timeout=30).text
    reduced = reduce_exposition(full)
    names = {n for n, _ in series(reduced)} | {l.split()[0] for l in reduced.splitlines() if l and not l.startswith("#")}
    assert names and all(n.startswith("balancedbio_") for n in names), names
    assert any(n.startswith("bentoml_") for n, _ in series(full))  # the full one had others to drop


@pytest.fixture(scope="module")
def metrics_behind_key(base_export, tmp_path_factory):
    srv = start_server(base_export, tmp_path_factory.mktemp("metricskey"), BALANCEDBIO_API_KEYS=KEY,
                       BALANCEDBIO_METRICS_ACCESS="key", BALANCEDBIO_METRICS_KEYS="scraper-key-77")
    yield srv
    srv.kill()


@pytest.mark.e2e
@pytest.mark.parametrize("headers,status", [({}, 401), (bearer("wrong"), 403), (bearer(KEY), 200),
                                            (bearer("scraper-key-77"), 200)],
                         ids=["no_key", "wrong_key", "api_key", "metrics_key"])
def test_metrics_behind_a_key(metrics_behind_key, headers, status):
    r = httpx.get(metrics_behind_key.url + "/metrics", headers=headers, timeout=30)
    assert r.status_code == status, r.text[:300]
    if status == 200:
        assert "balancedbio_requests_total" in r.text
