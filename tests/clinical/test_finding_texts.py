"""What each card says: a clinician acts on a finding's summary, detail and suggested action, so
their words, severity and evidence are behaviour, not decoration.

The expected texts are written out here from the rule they state (not read back from the code), so
a changed word, grade or source in a card is a failing test to look at, not a silent change.
"""

from __future__ import annotations

import pytest

from clinical.fhir import Allergy, Lab, Medication, PatientContext
from clinical.guardrails.patient_checks import (
    allergy_findings,
    dose_findings,
    interaction_finding,
    unidentified_findings,
    unidentified_medication_findings,
)
from clinical.guardrails.patient_rules import age_rule, potassium_rule, pregnancy_rule
from clinical.guardrails.rules import BETA_LACTAM_SOURCE, TERATOGENS
from clinical.knowledge import get_knowledge_base
from clinical.knowledge.ansm import SOURCE as ANSM_SOURCE


def allergic_to(substance: str, drugs: list[str], criticality: str | None) -> PatientContext:
    return PatientContext(allergies=[Allergy(substance=substance, drugs=drugs, criticality=criticality)])


# (id, ordered drug, allergy substance, allergy drugs, criticality, severity, summary, detail)
CROSS_REACTIVITY = [
    ("same_class_high_criticality_is_critical", "naproxen", "Ibuprofen", ["ibuprofen"], "high", "critical",
     "Cross-reactivity: naproxen and allergy to ibuprofen (NSAIDs)",
     "naproxen belongs to the same class (NSAIDs) as Ibuprofen, to which the patient is allergic (criticality high)."),
    ("same_class_low_criticality_is_a_warning", "naproxen", "Ibuprofen", ["ibuprofen"], "low", "warning",
     "Cross-reactivity: naproxen and allergy to ibuprofen (NSAIDs)",
     "naproxen belongs to the same class (NSAIDs) as Ibuprofen, to which the patient is allergic (criticality low)."),
    ("criticality_not_recorded_is_said", "naproxen", "Ibuprofen", ["ibuprofen"], None, "warning",
     "Cross-reactivity: naproxen and allergy to ibuprofen (NSAIDs)",
     "naproxen belongs to the same class (NSAIDs) as Ibuprofen, to which the patient is allergic "
     "(criticality not recorded)."),
    ("penicillin_class_is_critical_whatever_the_criticality", "amoxicillin", "Penicillin", ["penicillins"], "low",
     "critical", "Cross-reactivity: amoxicillin and allergy to penicillins (penicillins)",
     "amoxicillin belongs to the same class (penicillins) as Penicillin, to which the patient is allergic "
     "(criticality low)."),
]


@pytest.mark.parametrize("drug,substance,drugs,criticality,severity,summary,detail",
                         [c[1:] for c in CROSS_REACTIVITY], ids=[c[0] for c in CROSS_REACTIVITY])
def test_cross_reactivity_card(drug, substance, drugs, criticality, severity, summary, detail):
    [finding] = allergy_findings(drug, allergic_to(substance, drugs, criticality), "the order is for")
    assert (finding.kind, finding.severity, finding.summary, finding.detail) == ("allergy", severity, summary, detail)
    assert finding.suggested_action == "Avoid unless an allergist confirms tolerance; pick another class."
    assert finding.evidence[0] == f"FHIR:AllergyIntolerance:{drugs[0]}"
    # The beta-lactam practice parameter is cited exactly where it makes the card critical.
    assert (BETA_LACTAM_SOURCE in finding.evidence) == (drugs == ["penicillins"])


def test_penicillin_allergy_and_a_cephalosporin_is_a_low_risk_warning_with_its_source():
    [finding] = allergy_findings("cephalexin", allergic_to("Penicillin", ["penicillins"], "high"), "the order is for")
    assert (finding.kind, finding.severity) == ("allergy", "warning")
    assert finding.summary == "Possible cross-reactivity: cephalexin (cephalosporins) with penicillins allergy (penicillins)"
    assert finding.detail == "Cross-reactivity between penicillins and cephalosporins is low but documented."
    assert finding.suggested_action == "Check the allergy history (reaction type); consider a graded challenge."
    assert finding.evidence[0] == "FHIR:AllergyIntolerance:penicillins" and finding.evidence[-1] == BETA_LACTAM_SOURCE


ACTIONS = {
    "critical": "Avoid the combination; if it cannot be avoided, document why and monitor as the source says.",
    "warning": "The combination needs a precaution (dose change or monitoring): see the source text.",
}


@pytest.mark.parametrize("pair,severity", [(("simvastatin", "clarithromycin"), "critical"),
                                           (("warfarin", "fluconazole"), "warning")],
                         ids=["contraindicated_pair", "precaution_pair"])
def test_interaction_card_quotes_every_statement_and_says_what_to_do(pair, severity):
    statements = get_knowledge_base().interactions_between(*pair)
    finding = interaction_finding(*pair, statements)
    assert (finding.kind, finding.severity) == ("interaction", severity)
    assert finding.summary.startswith(f"{'Serious' if severity == 'critical' else 'Precaution'} interaction: "
                                      f"{' + '.join(sorted(pair))} (")
    assert finding.suggested_action == ACTIONS[severity]
    parts = []
    for x in statements:
        part = f"[{x.citation}; grade {x.source_grade} -> {x.severity}] {x.summary}"
        if x.source == ANSM_SOURCE:  # the French source text, whitespace collapsed, as evidence a reader can check
            part += f" Source text: \"{' '.join(x.evidence.split())[:400]}\""
        parts.append(part)
    assert finding.detail == " ".join(parts)
    assert any(x.source == ANSM_SOURCE for x in statements) and "Source text: \"" in finding.detail


def test_a_long_unrecognised_drug_name_is_cut_to_the_card_limit_without_an_ellipsis():
    label = "Compounded cream " + "x" * 200
    [finding] = unidentified_findings([(label, "not in the drug dictionary")], "The ordered drug")
    assert finding.summary == f"Drug not recognised, not checked: {label}"[:140]
    assert finding.detail.startswith(f"The ordered drug '{label}' could not be identified (not in the drug dictionary)")


def test_an_unidentified_active_medication_without_a_reason_says_no_name_matched():
    patient = PatientContext(medications=[Medication(text="Zzyzxol 5 MG", drugs=[])])
    [finding] = unidentified_medication_findings(patient)
    assert finding.detail == ("The active medication 'Zzyzxol 5 MG' could not be identified (no drug name matched), "
                              "so allergy, interaction and patient checks were not done for it.")


def test_a_dose_card_says_how_far_to_reduce():
    [finding] = dose_findings("ibuprofen", 4000, "'1000 mg four times a day'")
    assert finding.summary == "Dose above maximum: ibuprofen 4000 mg/day > 3200 mg/day"
    assert finding.suggested_action == "Reduce the ibuprofen dose to at most 3200 mg per day."
    assert finding.detail.startswith("'1000 mg four times a day' gives 4000 mg per day;")


def test_a_teratogen_in_pregnancy_names_its_risk_and_the_pregnancy_record():
    finding = pregnancy_rule("isotretinoin", PatientContext(age_years=30, sex="female", pregnant=True))
    teratogen = TERATOGENS["isotretinoin"]
    assert finding.summary == f"Pregnancy: isotretinoin is a teratogen ({teratogen.risk})"
    assert finding.evidence == [f"label:{teratogen.source}", "FHIR:pregnancy-status"]


# (id, rule, drug, patient, summary): a rule that could not run says which check and which data
NOT_RUN = [
    ("age_unknown", age_rule, "aspirin", PatientContext(),
     "Not checked: age limit for aspirin (no age (birth date) on record)"),
    ("potassium_unknown", potassium_rule, "spironolactone", PatientContext(age_years=70),
     "Not checked: potassium for spironolactone (no serum potassium on record)"),
]


@pytest.mark.parametrize("rule,drug,patient,summary", [c[1:] for c in NOT_RUN], ids=[c[0] for c in NOT_RUN])
def test_a_rule_without_its_data_names_the_check_and_the_missing_data(rule, drug, patient, summary):
    finding = rule(drug, patient)
    assert (finding.kind, finding.summary) == ("safety_check_unavailable", summary)


def test_a_potassium_above_the_limit_is_named_with_its_value():
    lab = Lab(code="6298-4", display="Potassium", value=5.9, unit="mmol/L")
    finding = potassium_rule("spironolactone", PatientContext(labs=[lab]))
    assert finding.summary.startswith("Hyperkalaemia: spironolactone with potassium 5.9 mmol/L (> ")
