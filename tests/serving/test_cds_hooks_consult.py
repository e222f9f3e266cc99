"""The issue's "done when" at the module level: a Synthea bundle through the /consult pipeline
(serving/consult.py, no model: the answer is given) and through patient-view come back with the
right cards, and the prompt holds no identifier of the patient."""

from __future__ import annotations

import json

import pytest

from clinical.cds_hooks import HookRequest, handle_hook
from clinical.phi import patient_phi_strings

from shared_data import SHARED_DATA, require

SYNTHEA = SHARED_DATA / "fhir" / "synthea"
# On verapamil and simvastatin (an ONC high-priority pair) among other active medications.
ABSHIRE = SYNTHEA / "Christopher_Abshire_028250cc-cfc0-4dee-a771-78fde1275fcb.json"


@pytest.fixture(scope="module")
def bundle():
    return json.loads(require(ABSHIRE).read_text())


ANSWERS = [
    ("new_interacting_drug", "Start fluconazole 200 mg daily.", "fluconazole + simvastatin", "critical", "DRG"),
    ("dose_above_label", "Acetaminophen 1000 mg every 4 hours.", "Dose above maximum: acetaminophen", "critical", "DOSEH"),
    ("unhedged_diagnosis", "The patient has heart failure.", "Diagnosis stated without uncertainty", "warning", None),
]


@pytest.mark.parametrize("answer,summary,indicator,act_code", [a[1:] for a in ANSWERS], ids=[a[0] for a in ANSWERS])
def test_consult_pipeline_cards(bundle, answer, summary, indicator, act_code):
    from serving import consult
    c = consult.prepare("What should I change in this patient's treatment?", bundle)
    assert c.escalation is None
    findings, cards, issues = consult.finish(c, answer)
    hit = [card for card in cards if summary in card["summary"]]
    assert hit and hit[0]["indicator"] == indicator, [card["summary"] for card in cards]
    if act_code:
        assert any(i["code"].get("coding", [{}])[0].get("code") == act_code for i in issues)
    prompt = json.dumps(c.messages())
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    assert not [s for s in patient_phi_strings(patient) if s in prompt]


def test_patient_view_flags_the_interaction_the_patient_already_has(bundle):
    response, _ = handle_hook("balancedbio-patient-view", HookRequest(
        hook="patient-view", hookInstance="h", context={"patientId": "p"}, prefetch={"patient": bundle}))
    summaries = [c.summary for c in response.cards]
    assert summaries[0].startswith("Patient summary:")
    assert any(s.startswith("Serious interaction: simvastatin + verapamil") for s in summaries), summaries
