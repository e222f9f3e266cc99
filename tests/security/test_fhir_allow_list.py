"""Issue 13, finding 1 (server-side request forgery): which FHIR URLs `BALANCEDBIO_FHIR_SERVERS` lets
the service call. Exact scheme, host and port; the base path or below it; nothing that a URL
parser and a server could read differently (dot segments, encoded slashes, credentials)."""

from __future__ import annotations

import pytest

from serving.config import SettingsError, fhir_server_allowed, fhir_servers

ALLOWED = ("https://fhir.example.org/r4", "http://127.0.0.1:8080/fhir")
CASES = [
    ("base", "https://fhir.example.org/r4", True),
    ("base_slash", "https://fhir.example.org/r4/", True),
    ("below_base", "https://fhir.example.org/r4/Patient/1", True),
    ("local_with_port", "http://127.0.0.1:8080/fhir", True),
    ("host_case", "https://FHIR.example.org/r4", True),
    ("other_scheme", "http://fhir.example.org/r4", False),
    ("other_port", "https://fhir.example.org:8443/r4", False),
    ("default_port_spelled", "http://127.0.0.1/fhir", False),
    ("prefix_host", "https://fhir.example.org.evil.example/r4", False),
    ("prefix_path", "https://fhir.example.org/r4evil", False),
    ("parent_path", "https://fhir.example.org/", False),
    ("dot_segments", "https://fhir.example.org/r4/../admin", False),
    ("encoded_dots", "https://fhir.example.org/r4/%2e%2e/admin", False),
    ("encoded_slash", "https://fhir.example.org/r4%2f..%2fadmin", False),
    ("credentials", "https://user:pw@fhir.example.org/r4", False),
    ("at_trick", "https://fhir.example.org@evil.example/r4", False),
    ("query", "https://fhir.example.org/r4?x=1", False),
    ("fragment_trick", "http://127.0.0.1:3000/#http://127.0.0.1:8080/fhir", False),
    ("bad_port", "https://fhir.example.org:99999/r4", False),
    ("file", "file:///etc/passwd", False),
    ("empty", "", False),
]


@pytest.mark.parametrize("url,allowed", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_fhir_allow_list_matches_exact_origin_and_base_path(url, allowed):
    assert fhir_server_allowed(url, ALLOWED) is allowed


@pytest.mark.parametrize("value", ["ftp://x/r4", "https://x/r4?q=1", "https://u:p@x/r4", "not a url"])
def test_a_bad_allow_list_entry_refuses_to_start(monkeypatch, value):
    monkeypatch.setenv("BALANCEDBIO_FHIR_SERVERS", value)
    with pytest.raises(SettingsError, match="BALANCEDBIO_FHIR_SERVERS"):
        fhir_servers()
