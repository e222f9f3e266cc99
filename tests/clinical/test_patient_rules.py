"""Patient-aware rules: each fires, stays quiet, and says it could not run when its data is missing."""

from __future__ import annotations

import pytest

from clinical.fhir import Allergy, Condition, Lab, PatientContext
from clinical.guardrails.patient_checks import allergy_findings
from clinical.guardrails.patient_rules import (
    age_rule,
    ckd_epi_2021,
    egfr,
    patient_rule_findings,
    potassium_rule,
    pregnancy_rule,
    renal_rule,
)


def egfr_lab(value: float) -> Lab:
    return Lab(code="33914-3", display="eGFR", value=value, unit="mL/min/1.73m2")


def creatinine(value: float) -> Lab:
    return Lab(code="38483-4", display="Creatinine", value=value, unit="mg/dL")


def potassium(value: float) -> Lab:
    return Lab(code="6298-4", display="Potassium", value=value, unit="mmol/L")


def patient(age=60, sex="male", labs=(), pregnant=None, conditions=()) -> PatientContext:
    return PatientContext(age_years=age, sex=sex, labs=list(labs), pregnant=pregnant,
                          conditions=[Condition(display=c) for c in conditions])


# (id, rule, drug, patient, expected kind or None, expected severity or None)
CASES = [
    # kidney function: metformin (label), NSAIDs (KDIGO), renally cleared drugs
    ("metformin_egfr_25", renal_rule, "metformin", patient(labs=[egfr_lab(25)]), "renal", "critical"),
    ("metformin_egfr_40", renal_rule, "metformin", patient(labs=[egfr_lab(40)]), "renal", "warning"),
    ("metformin_egfr_75", renal_rule, "metformin", patient(labs=[egfr_lab(75)]), None, None),
    ("metformin_no_lab", renal_rule, "metformin", patient(), "safety_check_unavailable", "info"),
    ("metformin_from_creatinine", renal_rule, "metformin", patient(age=80, sex="female", labs=[creatinine(2.5)]),
     "renal", "critical"),
    # a band is "below" its threshold: an eGFR of exactly 30 is in the milder band
    ("metformin_egfr_exactly_30", renal_rule, "metformin", patient(labs=[egfr_lab(30)]), "renal", "warning"),
    # CKD-EPI needs age and sex: creatinine alone cannot say the kidney function
    ("creatinine_without_sex", renal_rule, "metformin", patient(sex=None, labs=[creatinine(2.5)]),
     "safety_check_unavailable", "info"),
    ("creatinine_without_age", renal_rule, "metformin", patient(age=None, labs=[creatinine(2.5)]),
     "safety_check_unavailable", "info"),
    ("ibuprofen_egfr_50", renal_rule, "ibuprofen", patient(labs=[egfr_lab(50)]), "renal", "warning"),
    ("naproxen_egfr_20", renal_rule, "naproxen", patient(labs=[egfr_lab(20)]), "renal", "critical"),
    ("ibuprofen_egfr_90", renal_rule, "ibuprofen", patient(labs=[egfr_lab(90)]), None, None),
    ("dabigatran_egfr_25", renal_rule, "dabigatran", patient(labs=[egfr_lab(25)]), "renal", "critical"),
    ("nitrofurantoin_no_lab", renal_rule, "nitrofurantoin", patient(), "safety_check_unavailable", "info"),
    ("not_a_renal_drug", renal_rule, "amoxicillin", patient(), None, None),
    # potassium: potassium-sparing diuretic and potassium supplement (labels)
    ("spironolactone_k_5_6", potassium_rule, "spironolactone", patient(labs=[potassium(5.6)]), "electrolyte", "critical"),
    ("spironolactone_k_4_1", potassium_rule, "spironolactone", patient(labs=[potassium(4.1)]), None, None),
    ("kcl_k_5_4", potassium_rule, "potassium chloride", patient(labs=[potassium(5.4)]), "electrolyte", "critical"),
    ("kcl_no_lab", potassium_rule, "potassium chloride", patient(), "safety_check_unavailable", "info"),
    # pregnancy: teratogens
    ("isotretinoin_pregnant", pregnancy_rule, "isotretinoin", patient(30, "female", pregnant=True), "contraindication", "critical"),
    ("warfarin_pregnant", pregnancy_rule, "warfarin", patient(30, "female", pregnant=True), "contraindication", "critical"),
    ("lisinopril_pregnant", pregnancy_rule, "lisinopril", patient(30, "female", pregnant=True), "contraindication", "critical"),
    ("valproate_pregnancy_condition", pregnancy_rule, "valproic acid",
     patient(30, "female", conditions=["Normal pregnancy"]), "contraindication", "critical"),
    ("valproate_not_pregnant", pregnancy_rule, "valproic acid", patient(30, "female", pregnant=False), None, None),
    ("isotretinoin_status_unknown", pregnancy_rule, "isotretinoin", patient(25, "female"), "safety_check_unavailable", "warning"),
    ("isotretinoin_man", pregnancy_rule, "isotretinoin", patient(25, "male"), None, None),
    ("warfarin_woman_70", pregnancy_rule, "warfarin", patient(70, "female"), None, None),
    ("not_a_teratogen", pregnancy_rule, "amoxicillin", patient(30, "female", pregnant=True), None, None),
    # paediatrics: aspirin under 16 (Reye's syndrome)
    ("aspirin_child_8", age_rule, "aspirin", patient(8), "paediatric", "critical"),
    ("aspirin_adult", age_rule, "aspirin", patient(40), None, None),
    ("aspirin_kawasaki", age_rule, "aspirin", patient(4, conditions=["Kawasaki disease"]), None, None),
    ("aspirin_age_unknown", age_rule, "aspirin", patient(None), "safety_check_unavailable", "info"),
]


@pytest.mark.parametrize("rule,drug,who,kind,severity", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule(rule, drug, who, kind, severity):
    finding = rule(drug, who)
    if kind is None:
        assert finding is None
        return
    assert finding is not None and (finding.kind, finding.severity) == (kind, severity)
    assert finding.detail and finding.evidence  # a reason and where it comes from
    if kind == "safety_check_unavailable":
        assert "could not run" in finding.detail


def test_every_firing_rule_cites_its_source():
    for _id, rule, drug, who, kind, _sev in CASES:
        finding = rule(drug, who)
        if finding is not None and kind != "safety_check_unavailable":
            assert "Source:" in finding.detail, _id


@pytest.mark.parametrize("mg_dl,age,sex,expected", [
    # Worked by hand from the published CKD-EPI 2021 coefficients (kappa, alpha, 142, 0.9938, 1.012)
    (1.0, 50, "male", 92), (1.0, 50, "female", 69), (2.0, 70, "male", 35), (0.7, 30, "female", 119),
    # below kappa the alpha exponent applies: 142 x (0.5/0.7)^-0.241 x 0.9938^50 x 1.012 = 114.2,
    # 142 x (0.6/0.9)^-0.302 x 0.9938^50 = 117.6
    (0.5, 50, "female", 114), (0.6, 50, "male", 118),
])
def test_ckd_epi_2021(mg_dl, age, sex, expected):
    assert round(ckd_epi_2021(mg_dl, age, sex)) == expected


def test_reported_egfr_wins_over_creatinine():
    value, how = egfr(patient(labs=[egfr_lab(55), creatinine(3.0)]))
    assert value == 55 and "LOINC 33914-3" in how


def test_patient_rule_findings_without_patient_is_empty():
    assert patient_rule_findings("metformin", None) == []


ALLERGY = [
    # (id, allergy substance as recorded, criticality, drug ordered, expected severity)
    ("penicillin_amoxicillin", "Allergy to penicillin", "low", "amoxicillin", "critical"),
    ("penicillin_ampicillin", "Penicillin G", None, "ampicillin", "critical"),
    ("penicillin_v_salt_piperacillin", "Penicillin V Potassium", "low", "piperacillin", "critical"),
    ("penicillin_cephalosporin_caution", "Penicillin", "high", "cephalexin", "warning"),
    ("penicillin_azithromycin", "Penicillin", "high", "azithromycin", None),
]


@pytest.mark.parametrize("substance,criticality,drug,severity", [c[1:] for c in ALLERGY], ids=[c[0] for c in ALLERGY])
def test_penicillin_allergy_cross_reactivity(substance, criticality, drug, severity):
    from clinical.fhir import resolve_drugs

    who = PatientContext(allergies=[Allergy(substance=substance, drugs=resolve_drugs(substance), criticality=criticality)])
    found = allergy_findings(drug, who, "the order is for")
    assert [f.severity for f in found] == ([severity] if severity else [])



def test_an_unknown_pregnancy_status_names_the_drug_and_what_is_missing():
    finding = pregnancy_rule("isotretinoin", patient(25, "female"))
    assert finding.summary == "Not checked: pregnancy for isotretinoin (no pregnancy status on record)"
    assert finding.detail.startswith("isotretinoin is a teratogen (")


# (id, drug, conditions, expected contraindication summaries)
CONDITION_RULES = [
    ("matched_by_code", "propranolol", [Condition(display="Reactive airway disease", system="http://snomed.info/sct",
                                                  code="195967001")],
     ["Contraindication: propranolol with Reactive airway disease"]),
    ("matched_by_words", "propranolol", [Condition(display="Childhood asthma")],
     ["Contraindication: propranolol with Childhood asthma"]),
    ("unrelated_condition", "propranolol", [Condition(display="Hypertension", system="http://snomed.info/sct",
                                                      code="38341003")], []),
    ("no_conditions", "propranolol", [], []),
    ("drug_without_a_rule", "amlodipine", [Condition(display="Asthma")], []),
]


@pytest.mark.parametrize("drug,conditions,expected", [c[1:] for c in CONDITION_RULES], ids=[c[0] for c in CONDITION_RULES])
def test_condition_contraindications(drug, conditions, expected):
    from clinical.guardrails.patient_checks import contraindication_findings

    assert [f.summary for f in contraindication_findings(drug, PatientContext(conditions=conditions))] == expected


def test_a_teratogen_in_a_recorded_pregnancy_is_a_contraindication_card_and_an_unknown_status_is_not():
    from clinical.guardrails.patient_checks import contraindication_findings

    pregnant = contraindication_findings("warfarin", patient(30, "female", pregnant=True))
    assert [(f.kind, f.severity) for f in pregnant] == [("contraindication", "critical")]
    assert contraindication_findings("warfarin", patient(30, "female")) == []  # the patient rules say "not checked"


def test_the_age_limit_is_below_it_not_at_it():
    assert age_rule("aspirin", patient(16)) is None
    assert age_rule("aspirin", patient(15)).kind == "paediatric"


def test_creatinine_in_umol_is_converted_before_ckd_epi():
    in_umol = Lab(code="14682-9", display="Creatinine", value=221.0, unit="umol/L")
    value, _ = egfr(patient(age=80, sex="female", labs=[in_umol]))
    assert round(value) == round(ckd_epi_2021(221.0 / 88.42, 80, "female")) == 19
