"""Doses read from structured orders and from answer text, and how an order's drug is labelled."""

from __future__ import annotations

import pytest

from clinical.guardrails import check_output
from clinical.guardrails.models import Finding
from clinical.guardrails.orders import _daily_mg, order_identity


def dosage(value=None, unit="mg", where="doseAndRate", **repeat) -> dict:
    quantity = {"value": value, "code": unit}
    entry = {"timing": {"repeat": repeat}} if repeat else {}
    return entry | ({"doseQuantity": quantity} if where == "dose" else {"doseAndRate": [{"doseQuantity": quantity}]})


def order(*dosages) -> dict:
    return {"resourceType": "MedicationRequest", "dosageInstruction": list(dosages)}


# (id, order, expected (mg/day, how it was read) or None)
STRUCTURED = [
    ("frequency_per_day", order(dosage(800, frequency=5, period=1, periodUnit="d")), (4000.0, "800 mg x5 per 1 d")),
    ("dose_quantity_on_the_dosage_itself", order(dosage(800, where="dose", frequency=4, periodUnit="d")),
     (3200.0, "800 mg x4 per 1 d")),
    ("period_of_two_days_halves_it", order(dosage(4000, frequency=1, period=2, periodUnit="d")),
     (2000.0, "4000 mg x1 per 2 d")),
    ("every_six_hours", order(dosage(500, frequency=1, period=6, periodUnit="h")), (2000.0, "500 mg x1 per 6 h")),
    ("no_timing_is_once_a_day", order(dosage(1, unit="g")), (1000.0, "1 g x1 per 1 d")),
    ("first_dosage_without_a_quantity_is_skipped", order({"text": "as directed"}, dosage(600, frequency=3, periodUnit="d")),
     (1800.0, "600 mg x3 per 1 d")),
    ("first_dosage_in_tablets_is_skipped", order(dosage(2, unit="TAB"), dosage(200, frequency=2, periodUnit="d")),
     (400.0, "200 mg x2 per 1 d")),
    ("unit_instead_of_code", order({"doseAndRate": [{"doseQuantity": {"value": 800, "unit": "mg"}}]}),
     (800.0, "800 mg x1 per 1 d")),
    ("unknown_period_unit_is_skipped", order(dosage(200, frequency=2, periodUnit="a")), None),
    ("no_dosage", order(), None),
]


@pytest.mark.parametrize("medication_request,expected", [c[1:] for c in STRUCTURED], ids=[c[0] for c in STRUCTURED])
def test_structured_daily_dose(medication_request, expected):
    assert _daily_mg(medication_request) == expected


RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"

# (id, MedicationRequest fields, label on the card)
LABELS = [
    ("coding_display_first", {"medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "197361",
                                                                         "display": "Amlodipine 5 MG Oral Tablet"}],
                                                              "text": "amlodipine"}}, "Amlodipine 5 MG Oral Tablet"),
    ("text_when_the_coding_has_no_display", {"medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "197361"}],
                                                                           "text": "Amlodipine tablets"}}, "Amlodipine tablets"),
    ("code_when_there_is_no_name", {"medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "99999999"}]}},
     "code 99999999"),
    ("reference_display", {"medicationReference": {"reference": "Medication/1", "display": "Metformin 500 MG"}},
     "Metformin 500 MG"),
    ("nothing_at_all", {}, "unnamed medication"),
]


@pytest.mark.parametrize("fields,label", [c[1:] for c in LABELS], ids=[c[0] for c in LABELS])
def test_an_orders_card_names_the_drug_as_the_order_does(fields, label):
    assert order_identity({"resourceType": "MedicationRequest", **fields})[0] == label


# (id, answer, dose phrase quoted on the card, mg/day)
ANSWER_DOSES = [
    ("per_day", "Give ibuprofen 4000 mg per day for the pain.", "'4000 mg per day'", 4000),
    ("times_a_day", "Give ibuprofen 1000 mg four times a day.", "'1000 mg four times'", 4000),
    ("every_n_hours", "Give acetaminophen 1000 mg every 4 hours.", "'1000 mg every 4 hours'", 6000),
    ("every_hour", "Give ibuprofen 200 mg every 1 hour.", "'200 mg every 1 hour'", 4800),
    ("grams", "Give acetaminophen 1 g every 4 hours.", "'1 g every 4 hours'", 6000),
    # doses a day are whole: every 5 hours is 4 doses, not 4.8
    ("every_five_hours", "Give ibuprofen 900 mg every 5 hours.", "'900 mg every 5 hours'", 3600),
]


@pytest.mark.parametrize("answer,phrase,mg", [c[1:] for c in ANSWER_DOSES], ids=[c[0] for c in ANSWER_DOSES])
def test_a_dose_in_the_answer_is_read_and_quoted(answer, phrase, mg):
    [finding] = [f for f in check_output(answer, None) if f.kind == "dose"]
    assert finding.detail.startswith(f"{phrase} gives {mg:g} mg per day;"), finding.detail


def test_every_zero_hours_is_not_a_dose_and_not_an_error():
    kinds = {f.kind for f in check_output("Give ibuprofen 200 mg every 0 hours.", None)}
    assert not kinds & {"dose", "safety_check_unavailable"}


def test_an_agreeing_answer_keeps_its_own_findings_beside_the_contradiction():
    prior = [Finding(kind="allergy", severity="critical", summary="Allergy: patient is allergic to ibuprofen",
                     evidence=["FHIR:AllergyIntolerance:ibuprofen"])]
    findings = check_output("Yes, ibuprofen 1200 mg four times a day is fine.", None, prior)
    assert {"dose", "contradicts_finding"} <= {f.kind for f in findings}
