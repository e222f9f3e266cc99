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
from clinical.guardrails.mentions import drug_mentions
from clinical.guardrails.patient_rules import patient_rule_findings

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
    """(canonical drug, start, end) for each drug the answer proposes: ConText decides what is ruled
    out ("avoid ibuprofen", "do not start clarithromycin") and what is not ("do not hesitate to start
    clarithromycin")."""
    return [(m.drug, m.start, m.end) for m in drug_mentions(answer) if m.proposed]


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
            findings += patient_rule_findings(drug, patient)
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


# An answer that agrees to go ahead: "Yes.", "It is safe", "You can give it", "Go ahead", "no interaction".
_AGREES = re.compile(r"^\W*(yes|yeah|yep|sure|correct|confirmed|ok(ay)?|go ahead|fine)\b|\b(is|are) (safe|fine|ok(ay)?)\b|"
                     r"\b(can|may) (safely )?(be )?(given|used|combined|added|take|start|give|use|add)\b|"
                     r"\bno (significant |known |relevant )?(interaction|contraindication|problem|issue)s?\b", re.I)
_WARNS = re.compile(r"\b(avoid\w*|contraindicat\w*|do not|don'?t|should not|must not|not (be )?(safe|recommended)|"
                    r"interact\w*|risk|danger\w*|caution|allerg\w*|instead)\b", re.I)


@fail_closed("output:contradiction")
def contradiction_findings(answer: str, prior: list[Finding]) -> list[Finding]:
    """A critical card for an answer that agrees with what a critical finding warns against.

    The findings raised on the question (an interaction, an allergy, a contraindication) are facts
    from the knowledge base; an answer that says "yes" without naming the danger contradicts them.
    """
    critical = [f for f in prior if f.severity == "critical" and f.kind in ("interaction", "allergy", "contraindication")]
    if not critical or not _AGREES.search(answer) or _WARNS.search(answer):
        return []
    top = critical[0]
    return [Finding(kind="contradicts_finding", severity="critical",
                    summary=f"The answer contradicts a critical finding: {top.summary}",
                    detail=f"The answer agrees to proceed without naming the danger the knowledge base found "
                           f"({top.summary}). Do not act on the answer.",
                    evidence=list(top.evidence), suggested_action=top.suggested_action)]


def check_output(answer: str, patient: PatientContext | None,
                 prior_findings: list[Finding] | None = None) -> list[Finding]:
    """Findings on a model answer: allergy, interaction, contraindication, dose, certainty, and (given the
    question's findings) an answer that contradicts a critical one."""
    if not isinstance(answer, str):
        return _drug_checks(None, patient)  # fails closed: None is not text
    findings = _drug_checks(answer, patient) + _certainty(answer, patient)
    if prior_findings:
        findings += contradiction_findings(answer, [f for f in prior_findings if isinstance(f, Finding)])
    return findings
