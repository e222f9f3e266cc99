"""serving/middleware.py's Guard on a stand-in app (no server): what /readyz says while CDS Hooks runs
in a development or refusing mode. The real server's /readyz is replayed in tests/security/."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from serving.middleware import Guard

UNSIGNED = "CDS Hooks accepts unsigned calls (BALANCEDBIO_CDS_ALLOW_UNSIGNED=1, development only)"


def guarded(ready: bool, warning: str) -> TestClient:
    async def readyz(_):  # BentoML's answers: a bare newline when ready, its reason with 503 otherwise
        if ready:
            return PlainTextResponse("\n")
        return PlainTextResponse("Service is not ready because .__is_ready__() returns False.", status_code=503)

    app = Starlette(routes=[Route("/readyz", readyz, methods=["GET", "HEAD"]),
                            Route("/livez", lambda _: PlainTextResponse("\n"))])
    settings = SimpleNamespace(api_keys=(), metrics_keys=(), metrics_access="open")
    return TestClient(Guard(app, settings=settings, count=lambda *a: None, warning=lambda: warning))


@pytest.mark.parametrize("ready,status,first", [(True, 200, "ready"), (False, 503, "Service is not ready")],
                         ids=["ready", "not_ready"])
def test_readyz_body_and_header_carry_the_cds_warning(ready, status, first):
    response = guarded(ready, UNSIGNED).get("/readyz")
    assert response.status_code == status  # what probes read is BentoML's, unchanged
    lines = response.text.splitlines()
    assert lines[0].startswith(first) and lines[1:] == [f"warning: {UNSIGNED}"], response.text
    assert response.headers["x-balancedbio-warning"] == UNSIGNED
    assert int(response.headers["content-length"]) == len(response.content)


def test_readyz_without_a_warning_is_bentomls_own():
    response = guarded(True, "").get("/readyz")
    assert response.status_code == 200 and response.text == "\n" and "x-balancedbio-warning" not in response.headers


def test_head_readyz_gets_the_header_only_and_other_paths_nothing():
    client = guarded(True, UNSIGNED)
    head = client.head("/readyz")
    assert head.status_code == 200 and head.headers["x-balancedbio-warning"] == UNSIGNED and head.content == b""
    live = client.get("/livez")
    assert live.text == "\n" and "x-balancedbio-warning" not in live.headers
