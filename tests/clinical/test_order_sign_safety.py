"""order-sign on cases the rules were not written from: 20 serious pairs, 20 safe pairs, unidentified drugs.

The serious pairs are a held-out check: none of them was added to any data file by hand; they must
come from the ONC lists and the ANSM thesaurus through class expansion and name mapping.
The first nine are the issue's; the other eleven are well-known serious interactions, each with
where it is documented (a citation-like note, not a data source for the check).
"""

from __future__ import annotations

import pytest

from clinical.fhir import Medication, PatientContext, parse_patient
from clinical.guardrails import check_orders
from clinical.knowledge.rxnorm_table import RXNORM_SYSTEM

SERIOUS = [
    # (id, active medication, ordered drug, note)
    ("warfarin_fluconazole", "warfarin", "fluconazole", "CYP2C9 inhibition, INR rise (issue 12)"),
    ("methotrexate_trimethoprim", "methotrexate", "trimethoprim", "antifolate marrow toxicity (issue 12)"),
    ("lithium_ibuprofen", "lithium", "ibuprofen", "NSAIDs raise lithium levels (issue 12)"),
    ("sildenafil_nitroglycerin", "sildenafil", "nitroglycerin", "severe hypotension (issue 12)"),
    ("sertraline_linezolid", "sertraline", "linezolid", "serotonin syndrome (issue 12)"),
    ("cyclosporine_simvastatin", "cyclosporine", "simvastatin", "rhabdomyolysis (issue 12)"),
    ("warfarin_amiodarone", "warfarin", "amiodarone", "CYP2C9 inhibition, bleeding (issue 12)"),
    ("spironolactone_potassium", "spironolactone", "potassium chloride", "hyperkalaemia (issue 12)"),
    ("colchicine_clarithromycin", "colchicine", "clarithromycin", "colchicine toxicity, CYP3A4/P-gp (issue 12)"),
    ("simvastatin_itraconazole", "simvastatin", "itraconazole", "Zocor label: contraindicated with strong CYP3A4 inhibitors"),
    ("tizanidine_ciprofloxacin", "tizanidine", "ciprofloxacin", "Zanaflex label: contraindicated with ciprofloxacin"),
    ("phenelzine_fluoxetine", "phenelzine", "fluoxetine", "Prozac label: contraindicated with MAOIs"),
    ("digoxin_amiodarone", "digoxin", "amiodarone", "Lanoxin label: halve digoxin when starting amiodarone"),
    ("pimozide_clarithromycin", "pimozide", "clarithromycin", "Orap label: contraindicated with macrolides (QT)"),
    ("azathioprine_allopurinol", "azathioprine", "allopurinol", "Imuran label: reduce dose to 1/3-1/4 with allopurinol"),
    ("ergotamine_clarithromycin", "ergotamine", "clarithromycin", "Cafergot boxed warning: CYP3A4 inhibitors, ergotism"),
    ("theophylline_ciprofloxacin", "theophylline", "ciprofloxacin", "Cipro label: serious theophylline toxicity"),
    ("warfarin_metronidazole", "warfarin", "metronidazole", "Flagyl label: potentiates warfarin"),
    ("warfarin_aspirin", "warfarin", "aspirin", "Coumadin label: antiplatelet agents raise bleeding risk"),
    ("lithium_lisinopril", "lithium", "lisinopril", "Lithium label: ACE inhibitors raise lithium levels"),
]
# A gap in both sources, found by this held-out check and left visible rather than patched by hand:
# neither the ONC lists nor ANSM 2020-10 has a warfarin (or vitamin K antagonist) + metronidazole entry.
KNOWN_GAPS = {"warfarin_metronidazole"}

SAFE = [
    ("acetaminophen_amoxicillin", "acetaminophen", "amoxicillin"),
    ("loratadine_omeprazole", "loratadine", "omeprazole"),
    ("atorvastatin_metformin", "atorvastatin", "metformin"),
    ("amlodipine_lisinopril", "amlodipine", "lisinopril"),
    ("sertraline_acetaminophen", "sertraline", "acetaminophen"),
    ("metformin_sitagliptin", "metformin", "sitagliptin"),
    ("albuterol_fluticasone", "albuterol", "fluticasone"),
    ("omeprazole_amoxicillin", "omeprazole", "amoxicillin"),
    ("hydrochlorothiazide_amlodipine", "hydrochlorothiazide", "amlodipine"),
    ("montelukast_fluticasone", "montelukast", "fluticasone"),
    ("atorvastatin_acetaminophen", "atorvastatin", "acetaminophen"),
    ("levothyroxine_lisinopril", "levothyroxine", "lisinopril"),
    ("metoprolol_pantoprazole", "metoprolol", "pantoprazole"),
    ("gabapentin_acetaminophen", "gabapentin", "acetaminophen"),
    ("famotidine_cetirizine", "famotidine", "cetirizine"),
    ("amlodipine_metformin", "amlodipine", "metformin"),
    ("cetirizine_amoxicillin", "cetirizine", "amoxicillin"),
    ("metoprolol_atorvastatin", "metoprolol", "atorvastatin"),
    ("omeprazole_acetaminophen", "omeprazole", "acetaminophen"),
    ("lisinopril_atorvastatin", "lisinopril", "atorvastatin"),
]

# An adult man with normal kidney function and potassium: only the pair itself can raise a card.
ADULT = dict(age_years=50, sex="male")


def _patient(*active: str, **extra) -> PatientContext:
    from clinical.fhir import Lab

    labs = [Lab(code="33914-3", display="eGFR", value=90.0, unit="mL/min/1.73m2"),
            Lab(code="6298-4", display="Potassium", value=4.2, unit="mmol/L")]
    meds = [Medication(text=f"{d} 10 MG Oral Tablet", drugs=[d]) for d in active]
    return PatientContext(**{**ADULT, **extra}, medications=meds, labs=labs)


def _order(text: str | None = None, coding: list | None = None) -> dict:
    concept = {k: v for k, v in (("text", text), ("coding", coding)) if v}
    return {"resourceType": "MedicationRequest", "status": "draft", "intent": "order",
            "medicationCodeableConcept": concept}


SERIOUS_PARAMS = [
    pytest.param(active, ordered, id=case_id,
                 marks=[pytest.mark.xfail(strict=True, reason="in neither ONC nor ANSM 2020-10")] if case_id in KNOWN_GAPS else [])
    for case_id, active, ordered, _note in SERIOUS
]


@pytest.mark.parametrize("active,ordered", SERIOUS_PARAMS)
def test_serious_pair_is_flagged_at_order_sign(active, ordered):
    findings = check_orders([_order(f"{ordered.title()} 100 MG Oral Tablet")], _patient(active))
    hits = [f for f in findings if f.kind == "interaction" and f.severity in ("warning", "critical")]
    assert hits, findings
    assert any(e.startswith(("ANSM", "ONC")) for e in hits[0].evidence)  # names its source


@pytest.mark.parametrize("active,ordered", [c[1:] for c in SAFE], ids=[c[0] for c in SAFE])
def test_safe_pair_raises_nothing_above_info(active, ordered):
    findings = check_orders([_order(f"{ordered.title()} 10 MG Oral Tablet")], _patient(active))
    assert all(f.severity == "info" for f in findings), findings


# --- never silent about a drug nobody identified --------------------------------------------------

def _bundle(*meds: dict) -> dict:
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-01-01"}
    entries = [{"resource": patient}] + [{"resource": {
        "resourceType": "MedicationRequest", "id": f"m{i}", "status": "active", "intent": "order",
        "subject": {"reference": "Patient/p1"}, "medicationCodeableConcept": m}} for i, m in enumerate(meds)]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def test_active_medication_given_only_by_rxnorm_code_is_kept_and_identified():
    patient = parse_patient(_bundle({"coding": [{"system": RXNORM_SYSTEM, "code": "855332"}]}))
    assert patient.medications and patient.medications[0].drugs == ["warfarin"]
    findings = check_orders([_order("Fluconazole 150 MG Oral Capsule")], patient)
    assert any(f.kind == "interaction" for f in findings)


def test_active_imdur_is_identified_and_checked():
    patient = parse_patient(_bundle({"text": "Imdur 30 MG"}))
    assert patient.medications[0].drugs == ["isosorbide mononitrate"]
    findings = check_orders([_order("Sildenafil 50 MG Oral Tablet")], patient)
    assert any(f.kind == "interaction" and f.severity == "critical" for f in findings), findings


def test_unidentifiable_active_medication_yields_a_not_checked_card():
    patient = parse_patient(_bundle({"coding": [{"system": RXNORM_SYSTEM, "code": "999999999"}]}))
    assert patient.medications[0].drugs == [] and patient.medications[0].unidentified_reason
    findings = check_orders([_order("Amoxicillin 500 MG")], patient)
    not_checked = [f for f in findings if f.summary.startswith("Drug not recognised, not checked")]
    assert not_checked and "999999999" in not_checked[0].summary + not_checked[0].detail


@pytest.mark.parametrize("order", [
    pytest.param(_order("Zzyzxol 5 MG"), id="unknown_name"),
    pytest.param(_order(coding=[{"system": RXNORM_SYSTEM, "code": "999999999"}]), id="unknown_code_only"),
    pytest.param({"resourceType": "MedicationRequest", "status": "draft", "intent": "order"}, id="no_medication"),
])
def test_unidentifiable_order_yields_a_not_checked_card(order):
    findings = check_orders([order], _patient("warfarin"))
    assert any(f.kind == "safety_check_unavailable" and "not checked" in f.summary for f in findings), findings


@pytest.mark.parametrize("brand", ["Imdur", "Augmentin", "Keflex", "Trexall", "Percocet", "Norco", "Jantoven"])
def test_brand_orders_are_checked_not_reported_unknown(brand):
    findings = check_orders([_order(f"{brand} Oral Tablet")], _patient("warfarin"))
    assert not any("not recognised" in f.summary for f in findings), findings


def test_patient_view_reports_unidentifiable_active_medication():
    from clinical.cds_hooks import review_patient

    patient = parse_patient(_bundle({"coding": [{"system": RXNORM_SYSTEM, "code": "999999999"}]}, {"text": "Imdur"}))
    summaries = [f.summary for f in review_patient(patient)]
    assert any("not checked" in s and "999999999" in s for s in summaries), summaries
    assert not any("Imdur" in s for s in summaries), summaries  # identified, so not reported unknown
