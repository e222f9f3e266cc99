"""Checks on the clinician's question before any model call.

Emergencies, prompt injection and off-topic requests are answered with an escalation text and
never reach the model; identifiers typed into the question are reported and redacted.
"""

from __future__ import annotations

import re

from clinical.fhir import PatientContext
from clinical.guardrails.models import Finding, InputCheck, _notify, unavailable
from clinical.guardrails.emergency import detect_emergency
from clinical.guardrails.mentions import drug_mentions
from clinical.guardrails.patient_checks import allergy_findings, contraindication_findings, interaction_findings
from clinical.guardrails.patient_rules import patient_rule_findings
from clinical.phi import find_phi, scrub_text

ESCALATION = ("This may be a medical emergency ({why}). Do not wait for this assistant: call your local "
              "emergency number (911 in the US, 112 in the EU) or activate your rapid-response team now.")

_INJECTION = re.compile(
    r"\b(ignore|disregard|forget|override|bypass)\b.{0,40}\b(instructions?|rules?|guardrails?|prompts?|polic(y|ies)|safety)\b"
    r"|\b(system|developer|hidden) prompt\b|\byou are now\b|\bdeveloper mode\b|\bjailbreak\w*|\bDAN\b"
    r"|\bpretend (you are|to be)\b.{0,40}\b(unrestricted|without (rules|limits))|\breveal your (instructions|prompt)",
    re.I | re.S)
INJECTION_REPLY = ("I can't follow instructions that try to change how this assistant works. "
                   "Ask the clinical question on its own and I will answer it.")

# Off-topic requests: clearly non-clinical tasks, and no clinical vocabulary anywhere in the text.
_OFF_TOPIC = re.compile(
    r"\b(poem|song lyrics|stock|bitcoin|crypto\w*|weather|recipe|football|soccer|movie|novel|essay about|"
    r"write (a|some) (python|java|code|program)|javascript|sql query|homework|travel|hotel|election|lottery)\b", re.I)
_CLINICAL = re.compile(
    r"\b(patient|dose|dosing|mg|drug|medication|symptom|diagnos\w*|treat\w*|disease|syndrome|pain|fever|infection|"
    r"allerg\w*|pregnan\w*|lab|blood|renal|hepatic|cardiac|heart|lung|therapy|prescri\w*|clinical|icd|contraindicat\w*|"
    r"side effect|adverse|vaccin\w*|surgery|cancer|diabet\w*|hypertension|nutrition|diet)\b", re.I)
OFF_TOPIC_REPLY = "This assistant answers clinical questions only; please ask about a patient, a drug or a condition."


def _emergency(question: str) -> list[Finding]:
    result = detect_emergency(question)
    if not result.emergency:
        return []
    why = result.red_flag
    return [Finding(kind="emergency", severity="critical", summary=f"Possible emergency: {why}",
                    detail="The question describes an emergency red flag; the model was not consulted.",
                    evidence=[f"red-flag:{why}"], suggested_action="Escalate to emergency care now.")]


def question_drug_findings(question: str, patient: PatientContext | None) -> list[Finding]:
    """Drugs the question proposes (not negated, not someone else's), checked against each other and
    against the patient's active medications and allergies: "He takes simvastatin. Add
    clarithromycin?" must raise the interaction before the model says "yes"."""
    mentions = [m for m in drug_mentions(question) if m.proposed]
    drugs = list(dict.fromkeys(m.drug for m in mentions))
    if not drugs:
        return []
    current = [d for d in (patient.medication_drugs() if patient else []) if d not in drugs]
    # Every drug named is "new" to the answer: a pair named in the question is the question's concern.
    findings = interaction_findings(drugs, current)
    if patient is not None:
        for drug in drugs:
            findings += allergy_findings(drug, patient, "the question proposes")
            findings += contraindication_findings(drug, patient)
            findings += patient_rule_findings(drug, patient)
    hypothetical = [m.drug for m in mentions if m.assertion.hypothetical]
    if hypothetical:
        findings = [f.model_copy(update={"detail": f.detail + f" (The question raises {', '.join(hypothetical)} "
                                                              "as a possibility; checked all the same.)"})
                    for f in findings]
    return findings


def _injection(question: str) -> list[Finding]:
    if _INJECTION.search(question):
        return [Finding(kind="prompt_injection", severity="warning", summary="Prompt injection attempt blocked",
                        detail="The text tries to change the assistant's instructions; the model was not consulted.",
                        evidence=["pattern:instruction-override"], suggested_action="Rephrase as a clinical question.")]
    return []


def _off_topic(question: str) -> list[Finding]:
    from clinical.knowledge import get_knowledge_base

    if _OFF_TOPIC.search(question) and not _CLINICAL.search(question) and not get_knowledge_base().find_drugs(question):
        return [Finding(kind="out_of_scope", severity="info", summary="Question is outside clinical scope",
                        detail="No clinical content found; the model was not consulted.",
                        evidence=["pattern:off-topic"], suggested_action="Ask a clinical question.")]
    return []


def _phi(question: str) -> list[Finding]:
    from clinical.deid import PLACEHOLDER, find_identifiers

    # Patterns (clinical.phi) and Presidio (clinical.deid: names, addresses, written dates).
    kinds = sorted({m.kind for m in find_phi(question)}
                   | {PLACEHOLDER.get(e, f"[{e}]").strip("[]") for e, _, _ in find_identifiers(question)})
    if not kinds:
        return []
    return [Finding(kind="phi_in_text", severity="warning", summary=f"Identifiers in the question: {', '.join(kinds)}",
                    detail="The question holds text that looks like patient identifiers; it was redacted before "
                           "reaching the model and is not logged.",
                    evidence=[f"phi-pattern:{k}" for k in kinds],
                    suggested_action="Leave names, numbers and dates of birth out of questions.")]


def check_input(question: str, patient: PatientContext | None) -> InputCheck:
    """Findings on the question; `escalation` set means answer with it and do not call the model."""
    if not isinstance(question, str) or not question.strip():
        finding = Finding(kind="out_of_scope", severity="info", summary="Empty question",
                          detail="No question text was given.", evidence=[], suggested_action="Type a question.")
        _notify([finding])
        return InputCheck(findings=[finding], escalation="Please type a clinical question.", redacted_question="")
    findings: list[Finding] = []
    escalation = None
    for name, check, reply in (("emergency", _emergency, None), ("prompt_injection", _injection, INJECTION_REPLY),
                               ("out_of_scope", _off_topic, OFF_TOPIC_REPLY), ("phi_in_text", _phi, None)):
        try:
            found = check(question)
        except Exception as exc:
            found = [unavailable(f"input:{name}", exc)]
            escalation = escalation or "The safety checks could not run, so this question was not answered. Try again later."
        if found and escalation is None:
            if name == "emergency":
                escalation = ESCALATION.format(why=found[0].summary.split(": ", 1)[-1])
            elif reply:
                escalation = reply
        findings.extend(found)
    if escalation is None:
        # Drug checks need the patient, so they are not in the table above; an escalated question is
        # not answered, so its drugs need no card.
        try:
            findings.extend(question_drug_findings(question, patient))
        except Exception as exc:
            findings.append(unavailable("input:drugs", exc))
    _notify(findings)
    return InputCheck(findings=findings, escalation=escalation, redacted_question=scrub_text(question))
