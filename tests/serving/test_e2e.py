"""End to end: a real `bentoml serve`, every endpoint over HTTP and through the official openai client."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from shared_data import SHARED_DATA, require

# A small FHIR R4 Bundle of our own: a patient on warfarin with a penicillin allergy.
PATIENT = {
    "resourceType": "Bundle", "type": "collection",
    "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1950-04-02",
                      "name": [{"family": "Doe", "given": ["Jane"]}]}},
        {"resource": {"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
                      "subject": {"reference": "Patient/p1"},
                      "medicationCodeableConcept": {"text": "Warfarin 5 MG Oral Tablet"}}},
        {"resource": {"resourceType": "AllergyIntolerance", "id": "a1", "patient": {"reference": "Patient/p1"},
                      "code": {"text": "Penicillin"}, "criticality": "high"}},
    ],
}
CHAT = {"messages": [{"role": "user", "content": "What is metformin used for?"}], "max_tokens": 6}


def post(server, path, body, headers=None, **kw):
    return httpx.post(server.url + path, json=body, headers=server.headers if headers is None else headers,
                      timeout=120, **kw)


def _samples(server, name: str) -> dict[tuple, float]:
    """{labels as sorted pairs: value} of one metric family in /metrics, parsed by prometheus-client."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(server.url + "/metrics", timeout=30).text
    return {tuple(sorted(s.labels.items())): s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name}


def test_probes_and_metrics_count_the_chat_request(server):
    assert httpx.get(server.url + "/livez").status_code == 200
    assert httpx.get(server.url + "/readyz").status_code == 200
    ok = (("endpoint", "/v1/chat/completions"), ("status", "200"))
    before = _samples(server, "balancedbio_requests_total").get(ok, 0.0)
    tokens_before = sum(_samples(server, "balancedbio_generated_tokens_total").values())
    response = post(server, "/v1/chat/completions", CHAT)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["object"] == "chat.completion" and answer["choices"][0]["message"]["role"] == "assistant"
    generated = answer["usage"]["completion_tokens"]
    assert 1 <= generated <= CHAT["max_tokens"]
    # The middleware counts a request once its response is sent, so the count may trail it briefly.
    deadline = time.monotonic() + 10
    while _samples(server, "balancedbio_requests_total").get(ok, 0.0) < before + 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _samples(server, "balancedbio_requests_total").get(ok, 0.0) == before + 1
    assert sum(_samples(server, "balancedbio_generated_tokens_total").values()) == tokens_before + generated
    assert any(value == 1 for value in _samples(server, "balancedbio_model_info").values())


@pytest.mark.parametrize("name,path,body,headers,status,error_type", [
    ("no key", "/consult", {"question": "q"}, {}, 401, "authentication_error"),
    ("not bearer", "/consult", {"question": "q"}, {"Authorization": "Basic abc"}, 401, "authentication_error"),
    ("wrong key", "/consult", {"question": "q"}, {"Authorization": "Bearer nope"}, 403, "permission_error"),
    ("empty question", "/consult", {"question": ""}, None, 422, "invalid_request_error"),
    ("unknown field", "/consult", {"question": "q", "patinet": {}}, None, 422, "invalid_request_error"),
    ("bad FHIR", "/consult", {"question": "q", "patient": {"resourceType": "Nonsense"}}, None, 422, "invalid_fhir"),
    ("max_tokens over limit", "/consult", {"question": "q", "max_tokens": 10_000}, None, 422, "invalid_request_error"),
    ("chat without messages", "/v1/chat/completions", {"messages": []}, None, 422, "invalid_request_error"),
    ("chat n=2", "/v1/chat/completions", {**CHAT, "n": 2}, None, 422, "invalid_request_error"),
    ("chat unknown model", "/v1/chat/completions", {**CHAT, "model": "gpt-4"}, None, 404, "model_not_found"),
    ("feedback unknown consult", "/feedback", {"consult_id": "nope", "outcome": "accept"}, None, 404, "not_found"),
    ("override without reason", "/feedback", {"consult_id": "x", "outcome": "override"}, None, 422,
     "invalid_request_error"),
])
def test_refusals_are_json_errors(server, name, path, body, headers, status, error_type):
    response = post(server, path, body, headers)
    assert response.status_code == status, response.text
    assert response.json()["error"]["type"] == error_type
    assert response.json()["error"]["message"]


def test_malformed_json_and_oversized_body(server):
    bad = httpx.post(server.url + "/consult", content=b'{"question": ', timeout=30,
                     headers={**server.headers, "Content-Type": "application/json"})
    assert bad.status_code == 422 and "JSON" in bad.json()["error"]["message"]
    big = httpx.post(server.url + "/consult", content=b"x" * 1_100_000, timeout=30,
                     headers={**server.headers, "Content-Type": "application/json"})
    assert big.status_code == 413 and big.json()["error"]["type"] == "payload_too_large"


def test_openai_client_models_and_chat(server):
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0, timeout=120)
    models = client.models.list().data
    assert len(models) == 1 and models[0].model_extra["aligned"] is False  # the base model is flagged
    model = models[0].id

    reply = client.chat.completions.create(model=model, messages=CHAT["messages"], max_tokens=6)
    assert reply.choices[0].message.content.strip()
    assert reply.usage.completion_tokens <= 6 and reply.model == model

    pieces = list(client.chat.completions.create(model=model, messages=CHAT["messages"], max_tokens=6, stream=True,
                                                  stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in pieces if c.choices)
    # Greedy by default, so the stream says exactly what the non-streamed call said.
    assert text == reply.choices[0].message.content
    assert pieces[-1].usage.completion_tokens == reply.usage.completion_tokens

    with pytest.raises(Exception) as refused:
        OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()
    assert getattr(refused.value, "status_code", None) == 403


def test_consult_then_feedback(server):
    response = post(server, "/consult", {"question": "Which painkiller is safe for this patient?",
                                         "patient": PATIENT, "max_tokens": 8})
    assert response.status_code == 200, response.text
    consult = response.json()
    assert consult["aligned"] is False and consult["answer"]
    assert "Jane" not in consult["patient_summary"] and "Doe" not in consult["patient_summary"]  # de-identified
    assert "warfarin" in consult["patient_summary"].lower()
    for key in ("findings", "cards", "detected_issues"):
        assert isinstance(consult[key], list)

    for outcome, extra in (("accept", {"correct": True}), ("override", {"reason": "interaction risk"}),
                           ("edit", {"edited_answer": "Paracetamol, at a reduced dose."})):
        fb = post(server, "/feedback", {"consult_id": consult["consult_id"], "outcome": outcome, **extra})
        assert fb.status_code == 200, fb.text
        assert fb.json()["consult_id"] == consult["consult_id"]


def test_consult_stream(server):
    with httpx.stream("POST", server.url + "/consult_stream", json={"question": "What is HbA1c?", "max_tokens": 6},
                      headers=server.headers, timeout=120) as response:
        assert response.status_code == 200
        events = [json.loads(line) for line in response.iter_lines() if line.strip()]
    assert events[-1]["event"] == "done"
    tokens = "".join(e["text"] for e in events if e["event"] == "token")
    assert tokens == events[-1]["consult"]["answer"]
    assert events[-1]["consult"]["consult_id"]


def test_chat_completion_id_takes_feedback(server):
    reply = post(server, "/v1/chat/completions", CHAT).json()
    fb = post(server, "/feedback", {"consult_id": reply["id"], "outcome": "accept"})
    assert fb.status_code == 200, fb.text


def _order_sign(drafts: list[str]) -> dict:
    meds = [{"resourceType": "MedicationRequest", "id": f"d{i}", "status": "draft", "intent": "order",
             "subject": {"reference": "Patient/x"}, "medicationCodeableConcept": {"text": text}}
            for i, text in enumerate(drafts)]
    active = {**meds[0], "id": "m0", "status": "active", "medicationCodeableConcept": {"text": "Simvastatin 40 MG"}}
    return {"hook": "order-sign", "hookInstance": "e2e-1",
            "context": {"userId": "Practitioner/1", "patientId": "x",
                        "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                        "entry": [{"resource": m} for m in meds]}},
            "prefetch": {"patient": {"resourceType": "Patient", "id": "x", "gender": "male", "birthDate": "1960-01-01"},
                         "medications": {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": active}]},
                         "conditions": {"resourceType": "Bundle", "type": "searchset"},
                         "allergies": {"resourceType": "Bundle", "type": "searchset"}}}


def test_cds_hooks_discovery_service_and_feedback_are_stored(server):
    from serving.store import Feedback, Store

    discovery = httpx.get(server.url + "/cds-services", timeout=30)  # the spec's path, answered without a redirect
    assert discovery.status_code == 200, discovery.text
    assert "balancedbio-order-sign" in {s["id"] for s in discovery.json()["services"]}
    response = httpx.post(server.url + "/cds-services/balancedbio-order-sign",
                          json=_order_sign(["Clarithromycin 500 MG Oral Tablet"]), timeout=120)
    assert response.status_code == 200, response.text
    [card] = [c for c in response.json()["cards"] if c["indicator"] == "critical"]
    feedback = {"feedback": [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-12-02T09:00:00Z",
                              "overrideReason": {"reason": {"code": "will-monitor", "system": "https://example.org"},
                                                 "userComment": "short course"}}]}
    stored = httpx.post(server.url + "/cds-services/balancedbio-order-sign/feedback", json=feedback, timeout=30)
    assert stored.status_code == 200, stored.text
    store = Store(f"sqlite:///{server.data_dir / 'balancedbio.db'}")
    with store._session() as s:
        [row] = [f for f in s.query(Feedback).filter(Feedback.card_uuid == card["uuid"])]
    assert (row.source, row.outcome, row.reason) == ("cds-hooks", "overridden", "will-monitor short course")
    assert row.details == {"outcome_timestamp": "2026-12-02T09:00:00Z"}


def test_synthea_bundle_consult_over_http_gives_the_right_card_and_no_identifiers(server):
    from clinical.phi import patient_phi_strings

    shared = SHARED_DATA
    path = shared / "fhir" / "synthea" / "Christopher_Abshire_028250cc-cfc0-4dee-a771-78fde1275fcb.json"
    bundle = json.loads(require(path).read_text())
    # An emergency is answered by the guardrails without the model, so the card is deterministic.
    response = post(server, "/consult", {"question": "Crushing chest pain radiating to the left arm with sweating "
                                                     "for 20 minutes: what now?", "patient": bundle, "max_tokens": 8})
    assert response.status_code == 200, response.text
    consult = response.json()
    [card] = [c for c in consult["cards"] if c["summary"].startswith("Possible emergency")]
    assert card["indicator"] == "critical"
    assert "simvastatin" in consult["patient_summary"].lower()  # the active medications reached the context
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    leaked = [s for s in patient_phi_strings(patient) if s in response.text or s in server.log()]
    assert not leaked, leaked
