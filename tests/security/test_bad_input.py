"""Issue 13, finding 4: an Observation with valueQuantity.value = 1 followed by 400 zeros made
/consult and /consult_stream answer 500. Numbers out of range, NaN, absurd dates and duplicate ids
now get a 4xx that says what to fix; a hypothesis fuzz over FHIR inputs finds no server error.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import KEY, bearer

pytestmark = pytest.mark.e2e
LAB = {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}


def observation(value_json: str, oid: str = "o1") -> str:
    return ('{"resourceType": "Observation", "id": "%s", "status": "final", "category": [{"coding": [%s]}], '
            '"code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}]}, '
            '"subject": {"reference": "Patient/p1"}, "valueQuantity": {"value": %s, "unit": "mg/dL"}}'
            % (oid, json.dumps(LAB), value_json))


def bundle(*resources: str) -> str:
    entries = ", ".join('{"resource": %s}' % r for r in resources)
    return '{"resourceType": "Bundle", "type": "collection", "entry": [%s]}' % entries


PATIENT = '{"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1960-01-01"}'
CASES = [
    ("huge_integer", bundle(PATIENT, observation("1" + "0" * 400)), 422),
    ("huge_float", bundle(PATIENT, observation("1e400")), 422),
    ("nan", bundle(PATIENT, observation("NaN")), 422),
    ("infinity", bundle(PATIENT, observation("-Infinity")), 422),
    ("birth_month_13", bundle('{"resourceType": "Patient", "id": "p1", "birthDate": "1960-13-45"}'), 422),
    ("birth_year_zero", bundle('{"resourceType": "Patient", "id": "p1", "birthDate": "0000"}'), 422),
    ("born_in_year_9999", bundle('{"resourceType": "Patient", "id": "p1", "birthDate": "9999-12-31"}'), 200),
    ("deceased_before_birth", bundle('{"resourceType": "Patient", "id": "p1", "birthDate": "1990-01-01", '
                                     '"deceasedDateTime": "1900-01-01T00:00:00Z"}'), 200),
    ("duplicate_ids", bundle(PATIENT, PATIENT, observation("5"), observation("6")), 200),
]


@pytest.mark.parametrize("body,status", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
@pytest.mark.parametrize("route", ["/consult", "/consult_stream"])
def test_absurd_fhir_values_never_give_a_server_error(hardened, route, body, status):
    raw = '{"question": "Is this result a concern?", "max_tokens": 1, "patient": %s}' % body
    r = httpx.post(hardened.url + route, content=raw, timeout=120,
                   headers={**bearer(KEY), "Content-Type": "application/json"})
    assert r.status_code == status, r.text[:500]
    if status == 422:
        assert r.json()["error"]["type"] in ("invalid_fhir", "invalid_request_error")
        assert "resend" in r.json()["error"]["message"] or "Fix" in r.json()["error"]["message"], r.text


# -- fuzz: FHIR-shaped payloads with hostile values ------------------------------------------------------
numbers = st.one_of(st.integers(min_value=-(10**500), max_value=10**500), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=12), st.none(), st.booleans())
dates = st.one_of(st.text(max_size=25), st.dates().map(str), st.just("0000"), st.just("9999-99-99"),
                  st.integers(min_value=-5, max_value=10**20).map(str))
ids = st.sampled_from(["p1", "p1", "o1", "", "x" * 70, "../a"])
texts = st.text(max_size=40) | st.sampled_from(["<|im_start|>system", "<|endoftext|>", "\u0000", "warfarin 5 mg"])


@st.composite
def fhir_payloads(draw):
    patient = {"resourceType": "Patient", "id": draw(ids), "birthDate": draw(dates),
               "gender": draw(st.sampled_from(["male", "female", "other", "unknown", "x"]))}
    obs = {"resourceType": "Observation", "id": draw(ids), "status": draw(st.sampled_from(["final", "amended", "?"])),
           "category": [{"coding": [LAB]}], "effectiveDateTime": draw(dates),
           "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": draw(texts)}]},
           "subject": {"reference": "Patient/p1"}, "valueQuantity": {"value": draw(numbers), "unit": draw(texts)}}
    condition = {"resourceType": "Condition", "id": draw(ids), "subject": {"reference": "Patient/p1"},
                 "code": {"text": draw(texts)}, "onsetDateTime": draw(dates)}
    med = {"resourceType": "MedicationRequest", "id": draw(ids), "status": "active", "intent": "order",
           "subject": {"reference": "Patient/p1"}, "medicationCodeableConcept": {"text": draw(texts)},
           "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": draw(numbers), "unit": "mg"}}]}]}
    resources = draw(st.lists(st.sampled_from([patient, obs, condition, med]), min_size=1, max_size=6))
    if draw(st.booleans()):
        return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    return resources[0]


def _dumps(payload) -> str:
    # allow_nan: JSON as a careless client writes it (NaN, Infinity); huge ints stay exact.
    return json.dumps({"question": "Summarise the risks.", "max_tokens": 1, "patient": payload}, allow_nan=True)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(payload=fhir_payloads())
def test_fuzzed_fhir_input_gets_no_server_error(hardened, payload):
    r = httpx.post(hardened.url + "/consult", content=_dumps(payload), timeout=120,
                   headers={**bearer(KEY), "Content-Type": "application/json"})
    assert r.status_code < 500, r.text[:500]
    assert r.status_code in (200, 422), r.text[:300]
