"""The UI's parts that need no running service: rendering, the API client's checks, patient loading."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from ui import patients
from ui.client import ApiError, ServiceClient, _error_of
from ui.render import banner_html, findings_html, history_rows

FINDING = {"kind": "interaction", "severity": "critical", "summary": "Warfarin + ibuprofen: bleeding risk",
           "detail": "High-priority interaction (ONC list).", "evidence": ["onc:warfarin-nsaids"],
           "suggested_action": "Choose acetaminophen."}


def test_findings_are_cards_most_severe_first():
    html = findings_html([{**FINDING, "severity": "info", "kind": "dose"}, FINDING,
                          {**FINDING, "severity": "warning", "kind": "phi_in_text"}])
    kinds = [part.split('"')[0] for part in html.split('data-kind="')[1:]]
    assert kinds == ["interaction", "phi_in_text", "dose"]
    assert "onc:warfarin-nsaids" in html and "Choose acetaminophen." in html


@pytest.mark.parametrize("field", ["summary", "detail", "suggested_action", "kind"])
def test_finding_text_is_escaped(field):
    html = findings_html([{**FINDING, field: "<script>alert(1)</script>"}])
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_no_findings_and_escalation_are_said_explicitly():
    assert "No guardrail findings" in findings_html([])
    assert "Escalated" in findings_html([FINDING], escalated=True)


@pytest.mark.parametrize("models, expected", [
    ([{"id": "base-smollm2", "aligned": False}], "aligned: false"),
    ([{"id": "run-1", "aligned": True}], "aligned: true"),
    ([], "No model reported"),
], ids=["base", "aligned", "none"])
def test_banner(models, expected):
    assert expected in banner_html(models)


def test_history_rows_cut_long_questions():
    rows = history_rows([{"time": "10:00:00", "question": "x" * 200, "model": "m", "findings": 2, "feedback": None}])
    assert len(rows[0][1]) == 80 and rows[0][3] == "2" and rows[0][4] == "—"


@pytest.mark.parametrize("url, key, message", [
    ("127.0.0.1:3000", "k", "must start with http"),
    ("http://127.0.0.1:3000", "  ", "API key"),
], ids=["no-scheme", "no-key"])
def test_client_rejects_bad_configuration(url, key, message):
    with pytest.raises(ApiError, match=message):
        ServiceClient(url, key)


@pytest.mark.parametrize("outcome, kwargs, message", [
    ("maybe", {}, "outcome must be one of"),
    ("override", {}, "needs a reason"),
    ("edit", {}, "needs the edited answer"),
], ids=["unknown-outcome", "override-without-reason", "edit-without-text"])
def test_feedback_is_checked_before_sending(outcome, kwargs, message):
    client = ServiceClient("http://127.0.0.1:9", "key")  # nothing listens there; nothing is sent
    with pytest.raises(ApiError, match=message):
        client.feedback("c1", outcome, **kwargs)


def test_an_unreachable_service_is_a_clear_error():
    with pytest.raises(ApiError, match="cannot reach"):
        ServiceClient("http://127.0.0.1:9", "key").models()


@pytest.mark.parametrize("status, body, expected", [
    (401, {"error": {"type": "unauthorized", "message": "invalid API key"}}, "401 unauthorized: invalid API key (check the API key)"),
    (422, {"error": {"type": "validation_error", "message": "question is empty"}}, "422 validation_error: question is empty"),
    (500, "<html>boom</html>", "500 Internal Server Error: <html>boom</html>"),
], ids=["401", "422", "not-json"])
def test_service_errors_are_read_from_the_contract(status, body, expected):
    content = json.dumps(body).encode() if isinstance(body, dict) else body.encode()
    response = httpx.Response(status, content=content, request=httpx.Request("GET", "http://x/v1/models"))
    assert str(_error_of(response)) == expected


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not JSON"),
    ('{"hello": 1}', "not a FHIR resource"),
], ids=["not-json", "not-fhir"])
def test_bad_uploads_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "upload.json"
    path.write_text(content)
    with pytest.raises(patients.PatientLoadError, match=message):
        patients.load_upload(path, tmp_path)


def test_an_uploaded_synthea_bundle_is_summarised_without_identity(shared_file, tmp_path):
    folder = shared_file("fhir/synthea")
    bundle_path = sorted(folder.glob("*.json"))[0]
    bundle = patients.load_upload(bundle_path, folder)
    summary = patients.summarize(bundle)
    assert "de-identified" in summary
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    for name in patient["name"]:
        for part in name.get("given", []) + [name.get("family", "")]:
            assert part not in summary, f"the name part {part!r} reached the summary"
    assert patient["id"] not in summary


def test_unknown_sample_is_a_clear_error():
    with pytest.raises(patients.PatientLoadError):
        patients.load_sample("no-such-patient")


def test_build_ui_is_ready_to_mount():
    from ui.app import build_ui

    blocks = build_ui("http://127.0.0.1:9")
    # What bentoml.gradio.mount_gradio_app does not set and Gradio 6 needs to serve the page.
    assert blocks.theme is not None and blocks.theme_css and blocks.config
    ids = {c.get("props", {}).get("elem_id") for c in blocks.config["components"]}
    assert {"api-key", "connect", "question", "ask", "answer", "findings", "accept", "override",
            "save-edit", "history", "banner", "patient-summary"} <= ids


def test_running_alone_needs_an_api_url():
    result = subprocess.run([sys.executable, "-m", "ui"], capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and "--api-url" in result.stderr


@pytest.mark.parametrize("where", ["outside", "symlink_out", "folder", "missing", "traversal"])
def test_upload_outside_the_upload_folder_is_refused_without_its_path(tmp_path, where):
    root, outside = tmp_path / "uploads", tmp_path / "secret.json"
    root.mkdir()
    outside.write_text('{"resourceType": "Patient", "id": "p"}')
    (root / "link.json").symlink_to(outside)
    path = {"outside": outside, "symlink_out": root / "link.json", "folder": root, "missing": root / "gone.json",
            "traversal": root / ".." / "secret.json"}[where]
    with pytest.raises(patients.PatientLoadError) as refused:
        patients.load_upload(path, root)
    assert str(tmp_path) not in str(refused.value) and "secret" not in str(refused.value)


def test_old_uploads_are_cleaned_and_new_ones_kept(tmp_path):
    import os

    old, new = tmp_path / "a" / "old.json", tmp_path / "b" / "new.json"
    for f in (old, new):
        f.parent.mkdir()
        f.write_text("{}")
    os.utime(old, (1_000, 1_000))
    assert patients.clean_uploads(tmp_path, max_age_s=3600) == 1
    assert not old.exists() and not old.parent.exists() and new.exists()


@pytest.mark.parametrize("server,expected", [(("127.0.0.1", 3100), "http://127.0.0.1:3100"),
                                             (("0.0.0.0", 3000), "http://127.0.0.1:3000"),
                                             (("::1", 3000), "http://[::1]:3000")],
                         ids=["loopback", "any_address", "ipv6"])
def test_mounted_ui_calls_the_socket_address_never_the_host_header(monkeypatch, server, expected):
    from types import SimpleNamespace

    from ui.app import _base_url

    monkeypatch.delenv("BALANCEDBIO_API_URL", raising=False)
    request = SimpleNamespace(request=SimpleNamespace(scope={"server": server}),
                              headers={"host": "attacker.example:1"})
    assert _base_url(None, request) == expected
