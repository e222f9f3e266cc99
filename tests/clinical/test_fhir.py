"""FHIR input: every shared example parses (or fails with a clear error), and the context is right."""

from __future__ import annotations

import json
from datetime import date

import pytest

from clinical.fhir import FHIRInputError, parse_patient
from tests_paths import FHIR_FILES, SYNTHEA_FILES


# --- what each shared file says, read from its raw JSON (not through the parser under test) --------
# FHIR R4's own rules: a Condition is current unless its clinicalStatus says otherwise or it has
# abated; a MedicationRequest is current when "active" (a MedicationStatement also when "intended");
# an AllergyIntolerance is current unless inactive or resolved; a record whose verificationStatus is
# refuted or entered-in-error records nothing; SNOMED's "no known ... allergy" codes record no allergy.
CURRENT_CONDITION = {None, "active", "recurrence", "relapse"}
NOT_RECORDED = {"refuted", "entered-in-error"}
NO_KNOWN_ALLERGY = {"716186003", "409137002", "428607008", "429625007"}


def _raw_resources(node: dict, full_url: str | None = None):
    """(resource, its entry's fullUrl) for every resource, Bundles (also nested ones) opened."""
    if node.get("resourceType") != "Bundle":
        yield node, full_url
        return
    for entry in node.get("entry") or []:
        if isinstance(entry.get("resource"), dict):
            yield from _raw_resources(entry["resource"], entry.get("fullUrl"))


def _name(concept: dict | None) -> str | None:
    concept = concept or {}
    return ((concept.get("coding") or [{}])[0].get("display")) or concept.get("text")


def _status_code(concept: dict | None) -> str | None:
    return next((c.get("code") for c in (concept or {}).get("coding") or [] if c.get("code")), None)


def expected_content(payload: dict) -> dict[str, list[str]]:
    """Names of the current conditions, medications and allergies of the bundle's first patient."""
    resources = list(_raw_resources(payload))
    patients = [(r, url) for r, url in resources if r["resourceType"] == "Patient"]
    others = {ref for r, url in patients[1:] for ref in (f"Patient/{r.get('id')}", url) if ref}
    medications = {key: r for r, url in resources if r["resourceType"] == "Medication"
                   for key in (f"Medication/{r.get('id')}", url) if key}
    out: dict[str, list[str]] = {"conditions": [], "medications": [], "allergies": []}
    for r, _ in resources:
        ref = (r.get("subject") or r.get("patient") or {}).get("reference") or ""
        if ref and any(ref == o or ref.endswith("/" + o) for o in others):
            continue
        kind, verification = r["resourceType"], _status_code(r.get("verificationStatus"))
        clinical = _status_code(r.get("clinicalStatus"))
        if kind == "Condition" and verification not in NOT_RECORDED and clinical in CURRENT_CONDITION \
                and not r.get("abatementDateTime") and _name(r.get("code")):
            if _name(r.get("code")) not in out["conditions"]:
                out["conditions"].append(_name(r.get("code")))
        elif kind in ("MedicationRequest", "MedicationStatement") and r.get("status") in (
                ("active", "intended") if kind == "MedicationStatement" else ("active",)):
            concept = r.get("medicationCodeableConcept")
            if concept is None and r.get("medicationReference"):
                target = r["medicationReference"].get("reference", "")
                contained = {f"#{c.get('id')}": c for c in r.get("contained") or []}
                medication = medications.get(target) or contained.get(target) or {}
                concept = medication.get("code") or {"text": r["medicationReference"].get("display")}
            if _name(concept):
                out["medications"].append(_name(concept))
        elif kind == "AllergyIntolerance" and clinical not in ("inactive", "resolved") \
                and verification not in NOT_RECORDED and _name(r.get("code")) \
                and _status_code(r.get("code")) not in NO_KNOWN_ALLERGY:
            out["allergies"].append(_name(r.get("code")))
    return out


@pytest.mark.parametrize("path", FHIR_FILES, ids=[p.name for p in FHIR_FILES])
def test_every_shared_fhir_file_gives_its_conditions_medications_and_allergies(path):
    payload = json.loads(path.read_text())
    if "resourceType" not in payload:  # package.json of the HL7 examples: not FHIR
        with pytest.raises(FHIRInputError, match="no resourceType"):
            parse_patient(payload)
        return
    context = parse_patient(payload, as_of=date(2026, 1, 1))
    expected = expected_content(payload)
    assert sorted(c.display for c in context.conditions) == sorted(expected["conditions"])
    assert sorted(m.text for m in context.medications) == sorted(expected["medications"])
    assert sorted(a.substance for a in context.allergies) == sorted(expected["allergies"])
    prompt = context.to_prompt()
    assert all(name in prompt for names in expected.values() for name in names)


@pytest.mark.parametrize("path", SYNTHEA_FILES, ids=[p.name.split("_")[0] for p in SYNTHEA_FILES])
def test_synthea_context_has_demographics_and_reports_ignored(path):
    context = parse_patient(json.loads(path.read_text()), as_of=date(2020, 1, 1))
    assert context.sex in ("male", "female")
    assert context.age_years is not None and 0 <= context.age_years <= 90
    assert any("Claim" in item for item in context.ignored)
    assert any("birth date" in item for item in context.ignored)


def _bundle(*resources, btype="collection"):
    return {"resourceType": "Bundle", "type": btype, "entry": [{"resource": r} for r in resources]}


PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1990-06-15",
           "name": [{"family": "Doe", "given": ["Jane"]}]}
PREGNANT = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "72892002", "display": "Normal pregnancy"}]}}
RESOLVED = {**PREGNANT, "id": "c2", "clinicalStatus": {"coding": [{"code": "resolved"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "444814009", "display": "Viral sinusitis"}]}}
ACTIVE_MED = {"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
              "subject": {"reference": "Patient/p1"}, "medicationCodeableConcept": {"text": "Zocor 20 MG Oral Tablet"}}
STOPPED_MED = {**ACTIVE_MED, "id": "m2", "status": "stopped"}
ALLERGY = {"resourceType": "AllergyIntolerance", "id": "a1", "patient": {"reference": "Patient/p1"},
           "criticality": "high", "code": {"text": "Penicillin"}}
LAB = {"resourceType": "Observation", "id": "o1", "status": "final", "subject": {"reference": "Patient/p1"},
       "category": [{"coding": [{"code": "laboratory"}]}], "effectiveDateTime": "2025-03-01T10:00:00Z",
       "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0", "display": "Creatinine"}]},
       "valueQuantity": {"value": 1.1, "unit": "mg/dL"}}

CASES = [
    ("age_not_birthdate", _bundle(PATIENT), lambda c: c.age_years == 35 and "1990-06-15" not in c.to_prompt()),
    ("pregnancy_from_condition", _bundle(PATIENT, PREGNANT), lambda c: c.pregnant is True),
    ("resolved_condition_left_out", _bundle(PATIENT, RESOLVED), lambda c: not c.conditions
     and any("resolved" in i for i in c.ignored)),
    ("brand_to_canonical", _bundle(PATIENT, ACTIVE_MED), lambda c: c.medications[0].drugs == ["simvastatin"]),
    ("stopped_med_left_out", _bundle(PATIENT, STOPPED_MED), lambda c: not c.medications),
    ("allergy_with_criticality", _bundle(PATIENT, ALLERGY), lambda c: c.allergies[0].criticality == "high"
     and c.allergies[0].drugs),
    ("lab_value_unit_date", _bundle(PATIENT, LAB), lambda c: (c.labs[0].value, c.labs[0].unit, c.labs[0].date)
     == (1.1, "mg/dL", "2025-03-01")),
    ("searchset_bundle", _bundle(PATIENT, ACTIVE_MED, btype="searchset"), lambda c: len(c.medications) == 1),
    ("single_resource", ACTIVE_MED, lambda c: c.medications[0].drugs == ["simvastatin"] and c.age_years is None),
    ("other_patient_left_out", _bundle(PATIENT, {**PATIENT, "id": "p2"},
                                       {**ACTIVE_MED, "subject": {"reference": "Patient/p2"}}),
     lambda c: not c.medications and any("another patient" in i for i in c.ignored)),
    ("no_name_in_prompt", _bundle(PATIENT, ACTIVE_MED), lambda c: "Doe" not in c.to_prompt() and "Jane" not in c.to_prompt()),
]


@pytest.mark.parametrize("payload,check", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_context_cases(payload, check):
    assert check(parse_patient(payload, as_of=date(2026, 1, 1)))


ERRORS = [
    ("unknown_resource_type", _bundle({"resourceType": "Bogus", "id": "x"}), r"entry\[0\] Bogus/x: unknown resourceType"),
    ("invalid_field", _bundle(PATIENT, {**ACTIVE_MED, "status": 42}), r"entry\[1\] MedicationRequest/m1 is not valid FHIR R4: field status"),
    ("missing_required", _bundle({"resourceType": "MedicationRequest", "id": "m9", "status": "active", "intent": "order"}),
     r"MedicationRequest/m9 .*field subject"),
    ("not_an_object", [1, 2], "JSON object"),
    ("no_resource_type", {"entry": []}, "no resourceType"),
    ("entry_not_list", {"resourceType": "Bundle", "type": "collection", "entry": {"resource": {}}}, "must be a list"),
    ("unknown_nested_type", _bundle({"resourceType": "MedicationRequest", "id": "m3", "status": "active", "intent": "order",
                                     "subject": {"reference": "Patient/p1"}, "medicationCodeableConcept": {"text": "x"},
                                     "contained": [{"resourceType": "Bogus"}]}), "MedicationRequest/m3"),
]


@pytest.mark.parametrize("payload,message", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_invalid_input_names_resource_and_field(payload, message):
    with pytest.raises(FHIRInputError, match=message):
        parse_patient(payload)


def test_nested_bundle_error_names_the_nested_entry():
    inner = _bundle(PATIENT, {**ACTIVE_MED, "status": 42}, btype="searchset")
    with pytest.raises(FHIRInputError, match=r"entry\[0\]\.resource\.entry\[1\] MedicationRequest/m1"):
        parse_patient(_bundle(inner, btype="batch-response"))


def test_patient_id_not_in_error_messages():
    with pytest.raises(FHIRInputError) as err:
        parse_patient({**PATIENT, "id": "secret-id-123", "gender": 7})
    assert "secret-id-123" not in str(err.value) and "field gender" in str(err.value)
