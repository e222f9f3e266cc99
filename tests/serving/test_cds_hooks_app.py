"""The CDS Hooks app end to end: discovery, services, prefetch and FHIR fetch, feedback, spec replays."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from clinical.cds_hooks import CDSResponse, DiscoveryResponse, FeedbackRequest, HookRequest
from serving.cds_hooks_app import create_cds_app
from serving.fhir_client import FHIRClient

from shared_data import SHARED_DATA, require

SHARED = SHARED_DATA
CDS = SHARED / "cds_hooks"
SYNTHEA = SHARED / "fhir" / "synthea"
KERMIT = SYNTHEA / "Kermit_Trantow_f1a650a5-737e-4fd7-828e-03c3348b9524.json"  # allergies + active meds
needs_data = pytest.mark.skipif(not SHARED.is_dir(), reason=f"no shared data at {SHARED} (BALANCEDBIO_ALLOW_MISSING_DATA=1)")


@pytest.fixture(scope="module")
def stub():
    from fhir_stub import FHIRStub

    server = FHIRStub([require(KERMIT)]).start()
    yield server
    server.stop()


@pytest.fixture
def feedback_log():
    return []


@pytest.fixture
def client(request, feedback_log):
    # These tests are about the hooks, not about trust: the development switch is set explicitly
    # (tests/security/ is about running without it). Only the tests that ask for the FHIR stub
    # (Synthea data) get it: the others need no data.
    if "stub" in request.fixturenames:
        stub = request.getfixturevalue("stub")
        factory = lambda base, token: FHIRClient(stub.base_url, token)  # every fhirServer -> the local stub
    else:
        factory = lambda base, token: pytest.fail(f"this test asked for no FHIR server but the app fetched {base}")
    return TestClient(create_cds_app(record_feedback=feedback_log.append, fhir_client_factory=factory,
                                     allow_unsigned=True))


def _med(rid, text):
    return {"resourceType": "MedicationRequest", "id": rid, "status": "draft", "intent": "order",
            "subject": {"reference": "Patient/x"}, "medicationCodeableConcept": {"text": text}}


def _order_sign(drafts, prefetch=None, patient_id="x", fhir_server=None):
    body = {"hook": "order-sign", "hookInstance": "h1", "context": {
        "userId": "Practitioner/1", "patientId": patient_id,
        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": d} for d in drafts]}}}
    if prefetch is not None:
        body["prefetch"] = prefetch
    if fhir_server:
        body["fhirServer"] = fhir_server
        body["fhirAuthorization"] = {"access_token": "test-token", "token_type": "Bearer", "expires_in": 300,
                                     "scope": "user/*.read", "subject": "balancedbio"}
    return body


ON_SIMVASTATIN = {"patient": {"resourceType": "Patient", "id": "x", "gender": "male", "birthDate": "1960-01-01"},
                  "medications": {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {
                      **_med("m0", "Simvastatin 40 MG Oral Tablet"), "status": "active"}}]},
                  "conditions": {"resourceType": "Bundle", "type": "searchset"},
                  "allergies": {"resourceType": "Bundle", "type": "searchset"}}


def test_discovery_lists_three_hooks(client):
    body = client.get("/").json()
    DiscoveryResponse.model_validate(body)
    assert {s["hook"] for s in body["services"]} == {"patient-view", "order-select", "order-sign"}


def test_order_sign_high_priority_interaction_gives_critical_card(client):
    r = client.post("/balancedbio-order-sign", json=_order_sign([_med("d1", "Clarithromycin 500 MG")], ON_SIMVASTATIN))
    assert r.status_code == 200
    cards = CDSResponse.model_validate(r.json()).cards
    hit = [c for c in cards if "clarithromycin + simvastatin" in c.summary]
    assert hit and hit[0].indicator == "critical"
    assert hit[0].suggestions[0].actions[0].resourceId == "MedicationRequest/d1"
    assert hit[0].selectionBehavior == "at-most-one"


def test_order_sign_fetches_missing_prefetch_from_fhir_server(client, stub):
    bundle = json.loads(KERMIT.read_text())
    pid = next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    before = len(stub.requests)
    r = client.post("/balancedbio-order-sign", json=_order_sign([_med("d1", "Amoxicillin 500 MG")], patient_id=pid,
                                                                fhir_server="https://ehr.example.org/fhir"))
    assert r.status_code == 200
    assert len(stub.requests) > before and all(ok for _, ok in stub.requests[before:])
    assert not any(c["indicator"] == "critical" and "unavailable" in c["summary"] for c in r.json()["cards"])


def test_missing_prefetch_without_fhir_server_fails_closed(client):
    r = client.post("/balancedbio-order-sign", json=_order_sign([_med("d1", "Amoxicillin 500 MG")]))
    cards = r.json()["cards"]
    assert any(c["summary"].startswith("Safety check incomplete") and c["indicator"] == "critical" for c in cards)


BAD = [
    ("not_json", "{", 400, "not JSON"),
    ("missing_context", json.dumps({"hook": "order-sign", "hookInstance": "h"}), 400, "context"),
    ("wrong_hook", json.dumps({"hook": "patient-view", "hookInstance": "h", "context": {}}), 400, "answers the 'order-sign'"),
    ("no_draft_orders", json.dumps({"hook": "order-sign", "hookInstance": "h", "context": {}}), 400, "draftOrders"),
    ("auth_without_server", json.dumps({"hook": "order-sign", "hookInstance": "h", "context": {}, "fhirAuthorization": {
        "access_token": "t", "token_type": "Bearer", "expires_in": 1, "scope": "s", "subject": "s"}}), 400, "fhirServer"),
]


@pytest.mark.parametrize("body,status,message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_requests_are_client_errors(client, body, status, message):
    r = client.post("/balancedbio-order-sign", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status and message in r.json()["error"]


def test_unknown_service_is_404(client):
    assert client.post("/nope", json={}).status_code == 404


# --- replay of the specification's examples --------------------------------------------------------

def _examples(prefix):
    return sorted(CDS.glob(prefix)) if CDS.exists() else []


@needs_data
@pytest.mark.parametrize("path", _examples("*feedback*.json"), ids=lambda p: p.name)
def test_replay_feedback_examples_are_recorded(client, feedback_log, path):
    r = client.post("/balancedbio-order-sign/feedback", content=path.read_bytes(), headers={"content-type": "application/json"})
    assert r.status_code == 200
    sent = FeedbackRequest.model_validate_json(path.read_bytes()).feedback
    assert [f["card"] for f in feedback_log] == [f.card for f in sent]
    assert feedback_log[0]["outcome"] in ("accepted", "overridden")


REQUEST_REPLAYS = [
    ("patient-view_request_example.json", "balancedbio-patient-view"),
    ("request_with_extension_example.json", "balancedbio-patient-view"),
    ("hl7_order-sign_request_with_paginated_prefetch.json", "balancedbio-order-sign"),
]


@needs_data
@pytest.mark.parametrize("name,service", REQUEST_REPLAYS, ids=[r[0] for r in REQUEST_REPLAYS])
def test_replay_full_requests(client, stub, name, service):
    r = client.post(f"/{service}", content=(CDS / name).read_bytes(), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    CDSResponse.model_validate(r.json())


CONTEXT_REPLAYS = [
    ("order-sign_context_R4.json", "order-sign"), ("order-sign_context_STU3.json", "order-sign"),
    ("order-select_context_R4.json", "order-select"), ("order-select_context_STU3.json", "order-select"),
    ("order-select_context_prefetch_token_example.json", "order-select"),
    ("patient-view_context_example1.json", "patient-view"), ("patient-view_context_example2.json", "patient-view"),
]


@needs_data
@pytest.mark.parametrize("name,hook", CONTEXT_REPLAYS, ids=[r[0] for r in CONTEXT_REPLAYS])
def test_replay_hook_contexts(client, name, hook):
    """The hook pages give only `context`; wrapped in a request envelope, each gets a valid response."""
    context = json.loads((CDS / name).read_text())["context"]
    body = {"hook": hook, "hookInstance": "replay", "context": context, "prefetch": {
        "patient": {"resourceType": "Patient", "id": "1288992", "gender": "female", "birthDate": "1970-01-01"}}}
    r = client.post(f"/balancedbio-{hook}", json=body)
    assert r.status_code == 200, r.text
    cards = CDSResponse.model_validate(r.json()).cards
    if hook.startswith("order") and "617993" in json.dumps(context):
        # amoxicillin/clavulanate is recognised, so no "drug not recognised" card
        assert not any("not recognised" in c.summary for c in cards)


FEEDBACK = {"feedback": [{"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z",
                          "overrideReason": {"reason": {"code": "will-monitor", "system": "s"}, "userComment": "ok"}}]}


def test_feedback_record_and_acceptance_count(client, feedback_log):
    assert client.post("/balancedbio-order-sign/feedback", json=FEEDBACK).status_code == 200
    assert feedback_log == [{"service_id": "balancedbio-order-sign", "card": "c1", "outcome": "overridden", "client": "unsigned",
                             "override_reason": "will-monitor", "override_comment": "ok", "accepted_suggestions": [],
                             "outcome_timestamp": "2026-01-01T00:00:00Z"}]
    assert client.app.state.stats["feedback:overridden"] == 1


def test_feedback_store_failure_is_503_not_500():
    def broken(item):
        raise OSError("disk full")

    client = TestClient(create_cds_app(record_feedback=broken, allow_unsigned=True))
    r = client.post("/balancedbio-order-sign/feedback", json=FEEDBACK)
    assert r.status_code == 503 and "again" in r.json()["error"]


@pytest.mark.parametrize("body,message", [
    ({"feedback": [{"card": "c1", "outcome": "maybe", "outcomeTimestamp": "t"}]}, "outcome"),
    ({"feedback": [{"outcome": "accepted", "outcomeTimestamp": "t"}]}, "card"),
], ids=["bad_outcome", "no_card"])
def test_bad_feedback_is_400(client, body, message):
    r = client.post("/balancedbio-order-sign/feedback", json=body)
    assert r.status_code == 400 and message in r.json()["error"]


def test_a_crash_inside_a_service_returns_a_fail_closed_card(client, monkeypatch):
    import clinical.cds_hooks as ch

    def boom(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(ch, "gather_patient", boom)
    r = client.post("/balancedbio-order-sign", json=_order_sign([_med("d1", "Amoxicillin 500 MG")], ON_SIMVASTATIN))
    assert r.status_code == 200
    card = r.json()["cards"][0]
    assert card["indicator"] == "critical" and card["summary"].startswith("Safety check unavailable")


def test_patient_view_from_fhir_server(client, stub):
    bundle = json.loads(KERMIT.read_text())
    pid = next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    body = {"hook": "patient-view", "hookInstance": "h", "fhirServer": "https://ehr.example.org/fhir",
            "fhirAuthorization": {"access_token": "test-token", "token_type": "Bearer", "expires_in": 300,
                                  "scope": "user/*.read", "subject": "balancedbio"},
            "context": {"userId": "Practitioner/1", "patientId": pid}}
    cards = client.post("/balancedbio-patient-view", json=body).json()["cards"]
    assert cards[0]["summary"].startswith("Patient summary: 1 active conditions, 3 medications, 3 allergies")
    assert "Hydrochlorothiazide" in cards[0]["detail"]


def test_order_sign_without_any_patient_data_says_so(client):
    body = _order_sign([_med("d1", "Amoxicillin 500 MG")])
    del body["context"]["patientId"]
    cards = client.post("/balancedbio-order-sign", json=body).json()["cards"]
    assert [c["summary"] for c in cards] == ["Safety check incomplete: no patient data"]
    assert cards[0]["indicator"] == "critical"
