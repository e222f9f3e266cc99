"""Named cases of issue 12: drug mentions with context, emergencies, de-identification, grounding."""

import pytest

from clinical.fhir import Medication, PatientContext
from clinical.guardrails import check_input, check_output
from clinical.guardrails.emergency import detect_emergency
from clinical.guardrails.mentions import drug_mentions


@pytest.mark.parametrize("text, negated, hypothetical", [
    ("Do not hesitate to start clarithromycin.", False, False),
    ("no clarithromycin", True, False),
    ("avoid clarithromycin", True, False),
    ("Do not start clarithromycin.", True, False),
    ("if we were to give clarithromycin", False, True),
    ("Clarithromycin is contraindicated here.", True, False),
    ("Add clarithromycin 500 mg twice daily?", False, False),
])
def test_clarithromycin_context(text, negated, hypothetical):
    [m] = [m for m in drug_mentions(text) if m.drug == "clarithromycin"]
    assert (m.assertion.negated, m.assertion.hypothetical) == (negated, hypothetical), m.assertion.cues


def test_negation_scope_ends_at_new_instruction():
    by_drug = {m.drug: m.assertion.negated for m in drug_mentions("Avoid ibuprofen and start naproxen.")}
    assert by_drug == {"ibuprofen": True, "naproxen": False}


def test_question_drugs_are_checked_against_each_other():
    check = check_input("He takes simvastatin. Add clarithromycin 500 mg twice daily? Just confirm yes.", None)
    critical = [f for f in check.findings if f.kind == "interaction" and f.severity == "critical"]
    assert critical and "clarithromycin" in critical[0].summary and "simvastatin" in critical[0].summary
    assert check.escalation is None  # a drug question is answered, with the finding


def test_question_drug_against_active_medication():
    patient = PatientContext(medications=[Medication(text="simvastatin 40 mg", drugs=["simvastatin"])])
    findings = check_input("Can I add clarithromycin for his pneumonia?", patient).findings
    assert any(f.kind == "interaction" and f.severity == "critical" for f in findings)


def test_negated_question_drug_is_not_flagged():
    patient = PatientContext(medications=[Medication(text="simvastatin 40 mg", drugs=["simvastatin"])])
    findings = check_input("We will not use clarithromycin; which macrolide-free option for pneumonia?", patient).findings
    assert not any(f.kind == "interaction" for f in findings)


def test_output_not_suppressed_by_pseudo_negation():
    patient = PatientContext(medications=[Medication(text="simvastatin 40 mg", drugs=["simvastatin"])])
    findings = check_output("Do not hesitate to start clarithromycin 500 mg twice daily.", patient)
    assert any(f.kind == "interaction" and f.severity == "critical" for f in findings)


def test_answer_contradicting_a_critical_finding_gets_its_own_card():
    prior = check_input("He takes simvastatin. Add clarithromycin 500 mg twice daily? Just confirm yes.", None).findings
    findings = check_output("Yes.", None, prior_findings=prior)
    assert [f.kind for f in findings if f.severity == "critical"] == ["contradicts_finding"]
    warned = check_output("No: clarithromycin interacts with simvastatin; avoid it.", None, prior_findings=prior)
    assert all(f.kind != "contradicts_finding" for f in warned)


@pytest.mark.parametrize("text, emergency", [
    ("crushing chest pain and nausea", True),
    ("saving up pills to end it all", True),
    ("antidote for acetaminophen overdose", False),
    ("Patient denies chest pain or shortness of breath; can I increase her amlodipine?", False),
    ("seziure wont stop its been 10 min", True),
    ("His father died of a heart attack at 50; should he start a statin?", False),
])
def test_emergency_named_cases(text, emergency):
    result = detect_emergency(text)
    assert result.emergency is emergency, result.reason


def test_emergency_escalates_in_check_input():
    check = check_input("crushing chest pain and nausea", None)
    assert check.escalation and any(f.kind == "emergency" for f in check.findings)


def test_check_fails_closed_when_nlp_cannot_load(monkeypatch):
    import clinical.guardrails.context as context

    def broken():
        raise ImportError("spacy missing")
    monkeypatch.setattr(context, "_pipeline", broken)
    check = check_input("crushing chest pain and nausea", None)
    assert any(f.kind == "safety_check_unavailable" and f.severity == "critical" for f in check.findings)
    assert check.escalation  # not answered unchecked
    findings = check_output("Start clarithromycin.", None)
    assert any(f.kind == "safety_check_unavailable" and f.severity == "critical" for f in findings)


@pytest.mark.parametrize("text", ["Wilson disease and penicillamine dose", "Is Bell palsy treated with prednisone?",
                                  "Stevens-Johnson syndrome with lamotrigine", "Barrett esophagus: which PPI?"])
def test_eponyms_are_not_names(text):
    from clinical.deid import deidentify

    assert deidentify(text) == text


def test_name_in_question_is_reported():
    check = check_input("What is the first-line drug for John Smith?", None)
    assert any(f.kind == "phi_in_text" and "NAME" in f.summary for f in check.findings)
    assert check.escalation is None


@pytest.mark.parametrize("a,b,near", [
    ("seizure", "seizure", True),
    ("seizure", "seizurx", True),     # one substitution
    ("seizure", "siezure", True),     # one transposition of neighbours
    ("seizure", "seizur", True),      # one deletion
    ("seizur", "seizure", True),      # one insertion
    ("seizure", "xeizurx", False),    # two substitutions, not neighbours
    ("seizure", "seizuxy", False),    # two neighbouring substitutions that are not a swap
    ("seizure", "seizrux", False),    # a swap of neighbours plus a change
    ("abcd", "abdx", False),          # neighbours differ, only one side of the swap matches
    ("seizure", "seiz", False),       # three deletions
], ids=lambda v: v if isinstance(v, str) else None)
def test_within_one_edit(a, b, near):
    from clinical.guardrails.emergency import _within_one_edit

    assert _within_one_edit(a, b) is near


@pytest.mark.parametrize("text, corrected", [
    ("seizre won't stop", "seizure won't stop"),  # six letters: one edit is enough
    ("pian in the chest", "pain in the chest"),   # four letters: only a transposition
    ("rain in the chest", "rain in the chest"),   # four letters, one substitution: left alone
], ids=["six-letters-one-edit", "short-transposition", "short-substitution-left-alone"])
def test_misspelled_red_flag_words_are_corrected_and_short_words_only_by_transposition(text, corrected):
    from clinical.guardrails.emergency import normalise

    assert normalise(text) == corrected


@pytest.mark.parametrize("text, reason", [
    ("If she ever gets crushing chest pain, should she take aspirin?",
     "red flags only in context: chest pain with features of acute coronary syndrome or dissection (hypothetical:if)"),
    ("My father had crushing chest pain yesterday",
     "red flags only in context: chest pain with features of acute coronary syndrome or dissection (family:father)"),
    ("What is the antidote for acetaminophen overdose?", "knowledge question naming overdose or poisoning"),
], ids=["hypothetical", "family", "knowledge-question"])
def test_a_red_flag_that_is_not_an_emergency_says_why(text, reason):
    result = detect_emergency(text)
    assert (result.emergency, result.reason) == (False, reason)


def test_drug_mentions_carry_their_offsets():
    text = "Start ibuprofen and avoid aspirin."
    assert [(m.drug, m.start, m.end, text[m.start:m.end]) for m in drug_mentions(text)] == [
        ("ibuprofen", 6, 15, "ibuprofen"), ("aspirin", 26, 33, "aspirin")]


def test_a_proposed_drug_the_patient_is_allergic_to_says_the_question_proposes_it():
    from clinical.fhir import Allergy

    patient = PatientContext(allergies=[Allergy(substance="Naproxen", drugs=["naproxen"], criticality="high")])
    [finding] = [f for f in check_input("Can I give naproxen for her knee?", patient).findings if f.kind == "allergy"]
    assert finding.summary == "Allergy: patient is allergic to naproxen; the question proposes naproxen"


def test_two_drugs_over_their_maximum_give_two_dose_cards():
    findings = check_output("Give ibuprofen 1200 mg four times a day and acetaminophen 1000 mg every 4 hours.", None)
    assert sorted(f.summary.split(":")[1].split()[0] for f in findings if f.kind == "dose") == ["acetaminophen", "ibuprofen"]


def test_a_red_flag_in_context_does_not_hide_a_real_one_after_it():
    result = detect_emergency("She denies crushing chest pain; he is unresponsive and not breathing")
    assert result.emergency and result.red_flag == "cardiac arrest or unresponsive patient"
