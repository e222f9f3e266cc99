"""The /consult pipeline around the model: FHIR context in, guardrail findings out.

    patient JSON --clinical.fhir.parse_patient--> PatientContext (de-identified)
    question, patient --clinical.guardrails.check_input--> findings, escalation?
        escalation set: answer with it, the model is not called
        else: model(system prompt + patient.to_prompt() + redacted question)
    answer, patient --clinical.guardrails.check_output--> findings
    findings --clinical.cds_hooks--> CDS cards and FHIR DetectedIssues

clinical/ owns every clinical judgement; this module only orders the calls and turns their
failures into HTTP-shaped ones (a bad FHIR payload is a 422 naming the fault). If the guardrails
cannot be imported the consult still answers, but with a critical `safety_check_unavailable`
finding: an unchecked answer must never look like a checked one without warnings.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from serving.auth import ApiError

log = logging.getLogger("balancedbio.consult")

SYSTEM_PROMPT = (
    "You are a clinical decision-support assistant answering a clinician. Answer briefly and factually. "
    "Use the patient summary when one is given; say when information is missing. Do not invent patient data."
)
_SEVERITY_TO_FHIR = {"critical": "high", "warning": "moderate", "info": "low"}
_SEVERITY_TO_INDICATOR = {"critical": "critical", "warning": "warning", "info": "info"}


def _unavailable(what: str, exc: BaseException) -> dict:
    log.error("guardrail step %s unavailable: %s", what, type(exc).__name__)
    return {"kind": "safety_check_unavailable", "severity": "critical",
            "summary": f"Safety check unavailable ({what}); review this answer without automated checks",
            "detail": f"{what} could not run ({type(exc).__name__}).", "evidence": [],
            "suggested_action": "Do not rely on the absence of warnings; report this to the service operator."}


def _as_dict(finding: Any) -> dict:
    return finding.model_dump(mode="json") if hasattr(finding, "model_dump") else dict(finding)


@dataclass
class Consultation:
    question: str
    patient_json: dict | None
    patient: Any = None  # clinical.fhir.PatientContext
    patient_summary: str | None = None
    findings: list = field(default_factory=list)  # Finding objects or fallback dicts
    escalation: str | None = None
    model_question: str = ""
    consult_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def messages(self) -> list[dict]:
        user = self.model_question
        if self.patient_summary:
            user = f"{self.patient_summary}\n\nQuestion: {self.model_question}"
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def prepare(question: str, patient_json: dict | None) -> Consultation:
    """Parse the patient and run the input checks; raises ApiError(422) for an unusable FHIR payload."""
    c = Consultation(question=question, patient_json=patient_json, model_question=question)
    if patient_json is not None:
        from clinical.fhir import FHIRInputError, parse_patient

        try:
            c.patient = parse_patient(patient_json)
        except FHIRInputError as e:
            raise ApiError(422, "invalid_fhir", f"patient: {e}") from None
        except (KeyError, TypeError, ValueError) as e:  # fhir.resources raises KeyError on unknown types
            raise ApiError(422, "invalid_fhir", f"patient is not a usable FHIR R4 resource or Bundle "
                           f"({type(e).__name__}: {str(e)[:200]}); send a Bundle or a Patient resource") from None
        c.patient_summary = c.patient.to_prompt()
    try:
        from clinical.guardrails import check_input

        check = check_input(question, c.patient)
        c.findings.extend(check.findings)
        c.escalation = check.escalation
        if check.redacted_question:
            c.model_question = check.redacted_question
    except Exception as e:  # ImportError included: no guardrails means unchecked, and we say so
        c.findings.append(_unavailable("input checks", e))
    return c


def finish(c: Consultation, answer: str) -> tuple[list[dict], list[dict], list[dict]]:
    """Output checks on the answer; returns (findings, cards, detected_issues) as JSON-ready dicts."""
    if c.escalation is None:
        try:
            from clinical.guardrails import check_output

            c.findings.extend(check_output(answer, c.patient))
        except Exception as e:
            c.findings.append(_unavailable("output checks", e))
    findings = [_as_dict(f) for f in c.findings]
    return findings, _cards(c.findings), _detected_issues(c.findings)


def _cards(findings: list) -> list[dict]:
    try:
        from clinical.cds_hooks import finding_to_card

        return [finding_to_card(f).model_dump(mode="json", exclude_none=True) for f in findings if not isinstance(f, dict)] \
            + [_fallback_card(f) for f in findings if isinstance(f, dict)]
    except ImportError:
        return [_fallback_card(_as_dict(f)) for f in findings]


def _fallback_card(f: dict) -> dict:
    # The CDS Hooks card fields (spec: summary < 140 chars, indicator, source.label), used until
    # clinical.cds_hooks is installed.
    return {"uuid": str(uuid.uuid4()), "summary": f["summary"][:139], "detail": f.get("detail", ""),
            "indicator": _SEVERITY_TO_INDICATOR.get(f["severity"], "info"), "source": {"label": "BalancedBio guardrails"}}


def _detected_issues(findings: list) -> list[dict]:
    try:
        from clinical.cds_hooks import finding_to_detected_issue

        return [finding_to_detected_issue(f) if not isinstance(f, dict) else _fallback_issue(f) for f in findings]
    except ImportError:
        return [_fallback_issue(_as_dict(f)) for f in findings]


def _fallback_issue(f: dict) -> dict:
    return {"resourceType": "DetectedIssue", "status": "preliminary",
            "severity": _SEVERITY_TO_FHIR.get(f["severity"], "low"), "code": {"text": f["kind"]}, "detail": f["summary"]}
