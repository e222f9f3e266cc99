"""Issue 13, finding 1: the Gradio functions answered without a key, read any server file, fetched any
URL with the caller's token, and the UI sent typed keys to the host the Host header named.

Each attack is replayed against a real `bentoml serve` through Gradio's own HTTP API (what an
attacker on the network would call), not through the browser.
"""

from __future__ import annotations

import json
import shutil

import httpx
import pytest

from conftest import KERMIT, KEY, bearer, gradio_call

pytestmark = pytest.mark.e2e
SAMPLE = "synthea_multiple_allergies"
NO_KEY_CALLS = [
    ("load_sample", lambda stub: [SAMPLE, ""]),
    ("load_upload", lambda stub: [{"path": str(KERMIT), "meta": {"_type": "gradio.FileData"}}, ""]),
    ("load_fhir", lambda stub: [stub.base_url, "1f456f0a-acb1-4728-82af-01ca57083c7b", "test-token", ""]),
    ("load_sample", lambda stub: [SAMPLE, "a-wrong-key"]),
]


@pytest.mark.parametrize("fn,data", NO_KEY_CALLS, ids=["sample_no_key", "upload_no_key", "fhir_no_key", "sample_wrong_key"])
def test_gradio_function_without_a_valid_key_answers_an_error_and_does_nothing(hardened, fhir_stub, fn, data):
    before = len(fhir_stub.requests)
    event, payload = gradio_call(hardened.url, fn, data(fhir_stub))
    assert "Patient summary" not in json.dumps(payload) and str(KERMIT.parent) not in json.dumps(payload), payload
    if fn == "load_upload":  # Gradio refuses a file it did not receive before the function runs
        assert event == "error" and payload == {"error": None}, payload
    else:
        assert event == "complete", payload
        patient, summary, status = payload
        assert patient is None and "Problem" in status and ("API key" in status or "40" in status), status
    assert len(fhir_stub.requests) == before, "the FHIR server was called without a valid key"


def test_upload_of_a_server_path_is_refused_without_echoing_it(hardened, tmp_path):
    """The original attack: FileData naming any .json on the server returned its patient summary."""
    planted = tmp_path / "planted.json"
    shutil.copyfile(KERMIT, planted)
    for path in (str(planted), str(planted.parent / "missing.json"), "/etc/hostname", "../../etc/passwd"):
        event, payload = gradio_call(hardened.url, "load_upload", [{"path": path, "meta": {"_type": "gradio.FileData"}}, KEY])
        text = json.dumps(payload)
        assert "Patient summary" not in text, path
        assert path not in text and str(tmp_path) not in text and "Errno" not in text, text


def test_a_file_uploaded_through_gradio_is_loaded_with_the_key(hardened):
    with open(KERMIT, "rb") as f:
        uploaded = httpx.post(hardened.url + "/ui/gradio_api/upload", files={"files": ("bundle.json", f)}, timeout=60)
    assert uploaded.status_code == 200, uploaded.text
    [path] = uploaded.json()
    event, payload = gradio_call(hardened.url, "load_upload", [{"path": path, "meta": {"_type": "gradio.FileData"}}, KEY])
    assert event == "complete" and "Patient summary (de-identified)" in payload[1], payload


def test_upload_route_is_rate_limited(hardened):
    """Gradio's upload route cannot carry an API key: it is bounded per client address instead."""
    responses = [httpx.post(hardened.url + "/ui/gradio_api/upload", files={"files": ("x.json", b"{}")}, timeout=30)
                 for _ in range(40)]  # bounded: the limit is 30 a minute (bursts of 30) per client address
    statuses = [r.status_code for r in responses]
    assert 429 in statuses and statuses.count(200) < 40, statuses
    refused = next(r for r in responses if r.status_code == 429)
    assert "Retry-After" in refused.headers and "rate limit" in refused.json()["error"]["message"]


@pytest.mark.parametrize("target", ["http://127.0.0.1:{port}/", "http://127.0.0.1:{port}/../v1/models#",
                                    "http://169.254.169.254/latest/meta-data", "{stub}/../../admin"],
                         ids=["own_service", "own_service_traversal", "metadata_ip", "stub_traversal"])
def test_fhir_fetch_outside_the_allow_list_is_refused(hardened, fhir_stub, target):
    """Server-side request forgery: the UI fetched any URL and forwarded the token."""
    port = hardened.url.rsplit(":", 1)[1]
    url = target.format(port=port, stub=fhir_stub.base_url)
    before = len(fhir_stub.requests)
    api = httpx.post(hardened.url + "/v1/fhir/patient", json={"fhir_server": url, "patient_id": "x", "token": "t"},
                     headers=bearer(KEY), timeout=30)
    assert api.status_code == 403 and "not allowed" in api.json()["error"]["message"], api.text
    event, payload = gradio_call(hardened.url, "load_fhir", [url, "x", "secret-token", KEY])
    assert payload[0] is None and "not allowed" in payload[2], payload
    assert len(fhir_stub.requests) == before


def test_fhir_fetch_from_the_allowed_server_works_through_the_service(hardened, fhir_stub):
    event, payload = gradio_call(hardened.url, "load_fhir",
                                 [fhir_stub.base_url, "1f456f0a-acb1-4728-82af-01ca57083c7b", "test-token", KEY])
    assert event == "complete" and "Patient summary (de-identified)" in payload[1], payload
    assert fhir_stub.requests and all(ok for _, ok in fhir_stub.requests[-6:])  # the token reached the stub only


def test_ui_ignores_the_host_header(hardened):
    """A typed key went to whatever host the request's Host header named; now the UI calls the
    address the server accepted the request on, so a forged Host changes nothing."""
    event, payload = gradio_call(hardened.url, "connect", [KEY], headers={"Host": "attacker.example:9"})
    assert event == "complete" and "Connected" in payload[1], payload


def test_ui_source_does_not_import_serving():
    """DESIGN: the UI reaches patient data and the model only through the service's HTTP API."""
    import ast
    from pathlib import Path

    imported = set()
    for path in (Path(__file__).resolve().parents[2] / "ui").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {(path.name, a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add((path.name, node.module))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("serving."):
                imported.add((path.name, node.value))  # importlib.import_module("serving....")
    assert [i for i in imported if i[1].split(".")[0] == "serving"] == []
