"""The attack suite's servers: the real `bentoml serve` of tests/serving/conftest.py, reused by path.

Each finding of issue 13 is replayed against a running server on 127.0.0.1 (a free port) with the
settings of a production start: CDS Hooks without the development switch, two API keys, a FHIR
allow-list naming only the local stub. Every server is stopped by its PID at teardown.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent


def _load(name: str, path: Path):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_serving = _load("serving_test_server", HERE.parent / "serving" / "conftest.py")
sys.path.insert(0, str(HERE.parent / "serving"))  # fhir_stub
start_server = _serving.start_server
base_export = _serving.base_export  # the session fixture: the base model's export, made once

KEY, OTHER_KEY, UNCHECKED_KEY = "sec-key-clinician-0001", "sec-key-other-0002", "sec-key-batch-0003"
SHARED = Path(os.environ.get("BALANCEDBIO_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data")
SYNTHEA = SHARED / "fhir" / "synthea"
KERMIT = SYNTHEA / "Kermit_Trantow_f1a650a5-737e-4fd7-828e-03c3348b9524.json"


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def fhir_stub():
    from fhir_stub import FHIRStub

    if not KERMIT.exists():
        pytest.skip(f"{KERMIT} is not here (set BALANCEDBIO_DATA)")
    stub = FHIRStub([KERMIT]).start()
    yield stub
    stub.stop()


@pytest.fixture(scope="module")
def hardened(base_export, fhir_stub, tmp_path_factory):
    """A server as an operator would start it: no CDS switch, the stub as the only FHIR server, and
    one key (a batch client's) that the operator exempted from the chat guardrails."""
    srv = start_server(base_export, tmp_path_factory.mktemp("hardened"),
                       BALANCEDBIO_API_KEYS=",".join((KEY, OTHER_KEY, UNCHECKED_KEY)),
                       BALANCEDBIO_FHIR_SERVERS=fhir_stub.base_url,
                       BALANCEDBIO_CHAT_UNCHECKED_KEY_IDS=key_id(UNCHECKED_KEY),
                       BALANCEDBIO_CDS_ALLOW_UNSIGNED="", BALANCEDBIO_CDS_JWT_ISSUERS="",
                       BALANCEDBIO_MAX_TOKENS="64")  # room for a stream to be cut mid-way
    yield srv
    srv.kill()


def gradio_call(url: str, fn: str, data: list, headers: dict | None = None, timeout: float = 120,
                client: httpx.Client | None = None) -> tuple[str, object]:
    """Call a Gradio function over its HTTP API as an attacker would: (event, payload) of the result.
    With `client`, in that client's UI session (its cookie jar); without, in a new session each call."""
    http = client or httpx
    started = http.post(f"{url}/ui/gradio_api/call/{fn}", json={"data": data}, headers=headers or {}, timeout=30)
    assert started.status_code == 200, started.text
    event_id = started.json()["event_id"]
    body = http.get(f"{url}/ui/gradio_api/call/{fn}/{event_id}", timeout=timeout).text
    event, payload = None, None
    for line in body.splitlines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            raw = line.split(":", 1)[1].strip()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = raw
    return event, payload


@contextmanager
def ui_session(url: str, key: str | None = None) -> Iterator[httpx.Client]:
    """A browser's UI session: the cookie the server issues with the page, connected with `key` if given
    (the Connect button, which has the service check the key and binds the session)."""
    with httpx.Client(timeout=60) as client:
        page = client.get(f"{url}/ui/")
        assert page.status_code == 200 and client.cookies.get("bb_ui_session"), page.headers
        if key is not None:
            event, payload = gradio_call(url, "connect", [key], client=client)
            assert event == "complete", payload
        yield client


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.5):
    """Poll `predicate` until it returns a truthy value (bounded); that value, or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None
