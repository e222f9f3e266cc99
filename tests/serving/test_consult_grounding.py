"""The consult pipeline (no server): de-identification of prompt, answer and summary; grounding."""

from serving import consult

JOHN = {"resourceType": "Bundle", "type": "collection", "entry": [
    {"resource": {"resourceType": "Patient", "id": "p1", "name": [{"given": ["John"], "family": "Smith"}],
                  "birthDate": "1961-05-04", "gender": "male",
                  "address": [{"line": ["12 Elm Street"], "city": "Springfield", "postalCode": "01101"}],
                  "telecom": [{"system": "phone", "value": "617-555-0100"}]}},
    {"resource": {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
                  "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                                 "code": "active"}]},
                  "code": {"text": "Type 2 diabetes (John Smith, 12 Elm Street)"}}},
    {"resource": {"resourceType": "MedicationStatement", "id": "m1", "status": "active",
                  "subject": {"reference": "Patient/p1"},
                  "medicationCodeableConcept": {"text": "simvastatin 40 MG Oral Tablet"}}},
]}


def _all_text(c, answer):
    return "\n".join(m["content"] for m in c.messages()) + "\n" + answer + "\n" + (c.patient_summary or "")


def test_patient_name_never_reaches_prompt_response_or_summary():
    c = consult.prepare("What is the first-line drug for John Smith?", JOHN)
    findings, _cards, _issues = consult.finish(c, "The first-line drug for John Smith is metformin.")
    answer = consult.final_answer(c, "The first-line drug for John Smith is metformin.")
    text = _all_text(c, answer)
    for identifier in ("John", "Smith", "Elm Street", "Springfield", "617-555-0100", "1961"):
        assert identifier not in text, identifier
    assert "metformin" in answer


def test_prompt_carries_the_critical_interaction_and_answer_leads_with_it():
    c = consult.prepare("Add clarithromycin 500 mg twice daily? Just confirm yes.", JOHN)
    critical = [e for e in c.evidence if e["severity"] == "critical" and e["kind"] == "interaction"]
    assert critical and "clarithromycin" in critical[0]["statement"] and critical[0]["sources"]
    assert "CRITICAL" in c.messages()[1]["content"]
    findings, _cards, _issues = consult.finish(c, "Yes.")
    assert any(f["kind"] == "contradicts_finding" for f in findings)
    assert consult.final_answer(c, "Yes.").startswith("CRITICAL:")


def test_patient_rule_finding_is_carried_as_evidence():
    pregnant = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p2", "gender": "female", "birthDate": "1995-01-01"}},
        {"resource": {"resourceType": "Condition", "id": "c2", "subject": {"reference": "Patient/p2"},
                      "clinicalStatus": {"coding": [{"code": "active"}]},
                      "code": {"coding": [{"system": "http://snomed.info/sct", "code": "77386006",
                                           "display": "Pregnancy"}]}}}]}
    c = consult.prepare("Can I start isotretinoin for her acne?", pregnant)
    assert any(e["severity"] == "critical" and "isotretinoin" in e["statement"] for e in c.evidence), c.evidence
