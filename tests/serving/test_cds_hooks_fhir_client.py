"""serving/fhir_client.py against the local FHIR stub (real HTTP on loopback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinical.fhir import parse_patient
from serving.fhir_client import FHIRClient, FHIRServerError

from shared_data import SHARED_DATA, require

SYNTHEA = SHARED_DATA / "fhir" / "synthea"
BUNDLES = sorted(SYNTHEA.glob("*.json"))[:3] if SYNTHEA.exists() else []


@pytest.fixture(scope="module")
def stub():
    require(SYNTHEA)
    from fhir_stub import FHIRStub

    server = FHIRStub(BUNDLES).start()
    yield server
    server.stop()


def _patient_id(path: Path) -> str:
    bundle = json.loads(path.read_text())
    return next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")


@pytest.mark.parametrize("path", BUNDLES, ids=lambda p: p.name.split("_")[0])
def test_patient_bundle_matches_the_file(stub, path):
    pid = _patient_id(path)
    with FHIRClient(stub.base_url, stub.token) as client:
        fetched = parse_patient(client.patient_bundle(pid))
    direct = parse_patient(json.loads(path.read_text()))
    assert (fetched.age_years, fetched.sex) == (direct.age_years, direct.sex)
    assert [m.text for m in fetched.medications] == [m.text for m in direct.medications]
    assert [a.substance for a in fetched.allergies] == [a.substance for a in direct.allergies]


def test_search_follows_next_links(stub):
    pid = _patient_id(BUNDLES[0])
    with FHIRClient(stub.base_url, stub.token) as client:
        paged = client.get(f"Observation?patient={pid}&_count=5")
        whole = client.get(f"Observation?patient={pid}")
    expected = min(len(whole["entry"]), 5 * 10)  # max_pages=10
    assert len(paged["entry"]) == expected and not any(l["relation"] == "next" for l in paged["link"])


ERRORS = [
    ("wrong_token", "nope", "Patient/{pid}", "refused the token"),
    ("unknown_patient", None, "Patient/does-not-exist", "HTTP 404"),
    ("unsupported", None, "a/b/c/d", "HTTP 400"),
]


@pytest.mark.parametrize("token,query,message", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors_are_clear(stub, token, query, message):
    with FHIRClient(stub.base_url, token or stub.token) as client:
        with pytest.raises(FHIRServerError, match=message):
            client.get(query.format(pid=_patient_id(BUNDLES[0])))


def test_token_is_sent_only_to_its_server(stub):
    with FHIRClient(stub.base_url, stub.token) as client:
        with pytest.raises(FHIRServerError, match="another server"):
            client._get("http://127.0.0.2:9/fhir/Patient/x")


def test_unreachable_server():
    with FHIRClient("http://127.0.0.1:9/fhir", "t", timeout=1) as client:
        with pytest.raises(FHIRServerError, match="unreachable"):
            client.get("Patient/x")


def test_base_url_must_be_http():
    with pytest.raises(ValueError, match="http"):
        FHIRClient("ftp://x")
