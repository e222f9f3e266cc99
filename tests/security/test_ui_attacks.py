"""Issue 13, finding 1: the Gradio functions answered without a key, read any server file, fetched any
URL with the caller's token, and the UI sent typed keys to the host the Host header named; then
(closing note) Gradio's upload route took files from anyone, and a file in the upload folder was
accepted from any session that named its path.

Each attack is replayed against a real `bentoml serve` through Gradio's own HTTP API (what an
attacker on the network would call), not through the browser.
"""

from __future__ import annotations

import contextlib
import json
import shutil

import httpx
import pytest

from conftest import KERMIT, KEY, bearer, gradio_call, ui_session

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


def upload(client: httpx.Client | None, url: str, content: bytes | None = None, name: str = "bundle.json"):
    """POST a file to Gradio's upload route, in `client`'s UI session (None: no cookie at all)."""
    files = {"files": (name, content if content is not None else KERMIT.read_bytes())}
    return (client or httpx).post(url + "/ui/gradio_api/upload", files=files, timeout=60)


def file_data(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def test_a_file_uploaded_through_gradio_is_loaded_with_the_key(hardened):
    with ui_session(hardened.url, KEY) as session:
        uploaded = upload(session, hardened.url)
        assert uploaded.status_code == 200, uploaded.text
        [path] = uploaded.json()
        event, payload = gradio_call(hardened.url, "load_upload", [file_data(path), KEY], client=session)
    assert event == "complete" and "Patient summary (de-identified)" in payload[1], payload


@pytest.mark.parametrize("who", ["no_cookie", "forged_cookie", "session_never_connected", "session_with_wrong_key"])
def test_upload_without_a_connected_session_is_refused(hardened, who):
    """Gradio's upload route sees no API key: it takes files only in a session whose key the service
    accepted (the UI's Connect, or any UI function called with a valid key)."""
    with contextlib.ExitStack() as stack:
        client = {"no_cookie": lambda: None,
                  "forged_cookie": lambda: httpx.Client(cookies={"bb_ui_session": "made-up.0123456789abcdef"}),
                  "session_never_connected": lambda: ui_session(hardened.url),
                  "session_with_wrong_key": lambda: ui_session(hardened.url, "a-wrong-key")}[who]()
        if client is not None:
            client = stack.enter_context(client)
        refused = upload(client, hardened.url)
    assert refused.status_code == 401, refused.text
    error = refused.json()["error"]
    assert error["type"] == "authentication_error" and "API key" in error["message"] and "Connect" in error["message"]
    assert "/tmp" not in refused.text and "bundle.json" not in refused.text  # nothing was stored, no path named


def test_a_file_uploaded_in_one_session_is_not_readable_from_another(hardened):
    """Session A uploads a patient's Bundle; session B, even with a valid key, cannot load it by its path."""
    with ui_session(hardened.url, KEY) as a, ui_session(hardened.url, KEY) as b:
        [path] = upload(a, hardened.url).json()
        for caller in (b, None):  # another browser, and a caller with no session at all
            event, payload = gradio_call(hardened.url, "load_upload", [file_data(path), KEY], client=caller)
            assert event == "complete", payload
            patient, summary, status = payload
            assert patient is None and "Patient summary" not in json.dumps(payload), payload
            assert "only a file uploaded in this session" in status and path not in status, status
        event, payload = gradio_call(hardened.url, "load_upload", [file_data(path), KEY], client=a)
        assert event == "complete" and "Patient summary (de-identified)" in payload[1], payload


def test_an_uploaded_path_is_not_usable_across_sessions(hardened):
    """The path the upload route returns names the file on the server; Gradio's file route serves it
    only to the session that uploaded it, and the deep-link route (a snapshot of any session by its
    hash) is off."""
    content = KERMIT.read_bytes()
    with ui_session(hardened.url, KEY) as a, ui_session(hardened.url, KEY) as b:
        [path] = upload(a, hardened.url).json()
        for route in (f"/ui/gradio_api/file={path}", f"/ui/gradio_api/file/{path}"):
            for caller in (b, httpx):
                stolen = caller.get(hardened.url + route, timeout=30)
                assert stolen.status_code == 404 and stolen.content != content, (route, stolen.status_code)
        own = a.get(f"{hardened.url}/ui/gradio_api/file={path}", timeout=30)
        assert own.status_code == 200 and own.content == content
        assert b.get(hardened.url + "/ui/gradio_api/deep_link", params={"session_hash": "x"}).status_code == 404
        # Uploads are named by a hash of their content: B sending the same bytes gets the same path, and
        # may then use it, because B holds that content; naming the path alone is never enough.
        assert upload(b, hardened.url, content).json() == [path]
        assert b.get(f"{hardened.url}/ui/gradio_api/file={path}", timeout=30).status_code == 200


def test_upload_route_is_rate_limited(hardened):
    """Even in a connected session, the upload route is bounded per client address (30 a minute,
    bursts of 30): the same small file over and over is refused once the bucket is empty."""
    with ui_session(hardened.url, KEY) as session:
        responses = [upload(session, hardened.url, b"{}", "x.json") for _ in range(40)]
    statuses = [r.status_code for r in responses]
    assert 200 in statuses and 429 in statuses, statuses
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
