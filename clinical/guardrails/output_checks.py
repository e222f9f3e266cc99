"""Checks on the model's answer against the patient and the knowledge base."""

from __future__ import annotations

import re

from clinical.fhir import PatientContext
from clinical.guardrails.models import Finding, fail_closed
from clinical.guardrails.patient_checks import (
    allergy_findings,
    contraindication_findings,
    dose_findings,
    interaction_findings,
)
from clinical.knowledge import get_knowledge_base

# A drug named only to be ruled out ("avoid ibuprofen", "instead of warfarin") is not a recommendation.
_NEGATION = re.compile(r"\b(avoid\w*|not|never|don'?t|do not|stop\w*|discontinu\w*|instead of|rather than|"
                       r"contraindicated|hold|withh[oe]ld\w*|allergic to|allergy to|no)\b[^.;:]*$", re.I)
_NEGATION_WINDOW = 60

_AMOUNT = r"(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>mg|g|mcg|µg)\b"
_DAILY = re.compile(_AMOUNT + r"\s*(?:/\s*day|per day|a day|daily|/24\s*h|every 24 hours)", re.I)
_TIMES = {"once": 1, "twice": 2, "three times": 3, "four times": 4, "bid": 2, "tid": 3, "qid": 4}
_REPEATED = re.compile(_AMOUNT + r"[^.;]{0,20}?\b(?P<times>once|twice|three times|four times|bid|tid|qid)\b", re.I)
_EVERY = re.compile(_AMOUNT + r"[^.;]{0,20}?\bevery (?P<hours>\d+) ?(?:h|hours?)\b", re.I)
_UNIT_MG = {"mg": 1.0, "g": 1000.0, "mcg": 0.001, "µg": 0.001}

_CERTAIN = re.compile(
    r"\b(the patient|this patient|you|he|she|they) (definitely |clearly |certainly )?(has|have|is suffering from) "
    r"(?!no\b|not\b)\w+|\b(the|your|final) diagnosis is\b|\bthis is (definitely|clearly|certainly)\b|"
    r"\b(confirms|confirmed|definitive(ly)?) (the )?(diagnosis|that)\b|\bit is (definitely|certainly)\b", re.I)
_HEDGE = re.compile(
    r"\b(likely|possibl\w*|probabl\w*|may|might|could|suggest\w*|consider\w*|differential|suspect\w*|"
    r"consistent with|cannot be (certain|confirmed)|uncertain|rule out|further (testing|evaluation|workup)|"
    r"confirm with|appears|seems)\b", re.I)


def _recommended(answer: str) -> list[tuple[str, int, int]]:
    """(canonical drug, start, end) for each drug mentioned and not negated."""
    out = []
    for m in get_knowledge_base().find_drugs(answer):
        before = answer[max(0, m.start - _NEGATION_WINDOW): m.start]
        if _NEGATION.search(before):
            continue
        out.append((m.drug.name, m.start, m.end))
    return out


def _daily_mg(text: str) -> tuple[float, str] | None:
    m = _DAILY.match(text)
    if m:
        return float(m["amount"]) * _UNIT_MG[m["unit"].lower()], m.group(0)
    m = _REPEATED.match(text)
    if m:
        return float(m["amount"]) * _UNIT_MG[m["unit"].lower()] * _TIMES[m["times"].lower()], m.group(0)
    m = _EVERY.match(text)
    if m and int(m["hours"]) > 0:
        return float(m["amount"]) * _UNIT_MG[m["unit"].lower()] * (24 // int(m["hours"])), m.group(0)
    return None


@fail_closed("output:drugs")
def _drug_checks(answer: str, patient: PatientContext | None) -> list[Finding]:
    mentions = _recommended(answer)
    findings: list[Finding] = []
    for drug, _start, end in mentions:
        # A dose written right after the drug name: "ibuprofen 800 mg four times a day".
        tail = answer[end: end + 60].lstrip(" :,(")
        daily = _daily_mg(tail)
        if daily:
            findings += dose_findings(drug, daily[0], f"'{daily[1]}'")
    drugs = list(dict.fromkeys(d for d, _, _ in mentions))
    if patient is not None and drugs:
        current = [d for d in patient.medication_drugs() if d not in drugs]
        findings += interaction_findings(drugs, current)
        for drug in drugs:
            findings += allergy_findings(drug, patient, "the answer suggests")
            findings += contraindication_findings(drug, patient)
    return _dedupe(findings)


@fail_closed("output:diagnostic_certainty")
def _certainty(answer: str, patient: PatientContext | None) -> list[Finding]:
    for sentence in re.split(r"(?<=[.!?])\s+", answer):
        if _CERTAIN.search(sentence) and not _HEDGE.search(sentence):
            return [Finding(kind="diagnostic_certainty", severity="warning",
                            summary="Diagnosis stated without uncertainty",
                            detail=f"The answer states a diagnosis as fact: \"{sentence.strip()[:160]}\".",
                            evidence=["pattern:unhedged-diagnosis"],
                            suggested_action="Treat as a hypothesis; confirm with examination and tests.")]
    return []


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen, out = set(), []
    for f in findings:
        key = (f.kind, f.summary)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def check_output(answer: str, patient: PatientContext | None) -> list[Finding]:
    """Findings on a model answer: allergy, interaction, contraindication, dose, certainty."""
    if not isinstance(answer, str):
        return _drug_checks(None, patient)  # fails closed: None is not text
    return _drug_checks(answer, patient) + _certainty(answer, patient)
