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
    evidence: list[dict] = field(default_factory=list)  # knowledge-base facts for this case (schemas.Evidence)

    def messages(self) -> list[dict]:
        parts = [self.patient_summary] if self.patient_summary else []
        facts = facts_block(self.evidence)
        if facts:
            parts.append(facts)
        parts.append(f"Question: {self.model_question}" if parts else self.model_question)
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n\n".join(parts)}]


# --- grounding: the knowledge base's facts for this case ---------------------------------------------
_FACT_KINDS = ("interaction", "allergy", "contraindication", "dose", "renal", "electrolyte", "paediatric")


def case_evidence(findings: list, patient: Any) -> list[dict]:
    """Structured facts the prompt carries and the response returns: each finding the knowledge base
    raised (grade, summary, sources), the recorded allergies, and the descriptions of the codes."""
    out = []
    for f in findings:
        f = _as_dict(f)
        if f["kind"] in _FACT_KINDS:
            out.append({"kind": f["kind"], "severity": f["severity"], "statement": f["summary"],
                        "sources": list(f.get("evidence") or [])})
    if patient is not None:
        for a in patient.allergies:
            out.append({"kind": "allergy_record", "severity": "info",
                        "statement": f"Recorded allergy: {a.substance}"
                                     + (f" (criticality {a.criticality})" if a.criticality else ""),
                        "sources": ["FHIR:AllergyIntolerance"]})
        out += _code_descriptions(patient)
    return out


def _code_descriptions(patient: Any) -> list[dict]:
    try:
        from clinical.knowledge import get_knowledge_base

        kb = get_knowledge_base()
    except Exception:
        return []
    out = []
    for c in patient.conditions:
        if c.code and (c.system or "").endswith("icd-10-cm"):
            try:
                out.append({"kind": "code", "severity": "info",
                            "statement": f"ICD-10-CM {c.code}: {kb.icd10_description(c.code)}",
                            "sources": ["ICD-10-CM (simple-icd-10-cm)"]})
            except Exception:
                continue
    return out


def facts_block(evidence: list[dict]) -> str:
    if not evidence:
        return ""
    lines = ["Facts from the knowledge base for this case (use them; do not contradict them):"]
    for e in evidence:
        src = f" [source: {', '.join(e['sources'][:2])}]" if e.get("sources") else ""
        lines.append(f"- {e['severity'].upper()}: {e['statement']}{src}")
    if any(e["severity"] == "critical" for e in evidence):
        lines.append("A CRITICAL fact is listed: begin the answer by stating it.")
    return "\n".join(lines)


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
    _deidentify(c)
    c.evidence = case_evidence(c.findings, c.patient)
    return c


def _deidentify(c: Consultation) -> None:
    """The patient's own identifiers and other people's, out of every text the model or the response
    will see: the question, and the summary (conditions' code.text included), whose dates become relative.
    If de-identification cannot run, nothing free-text is sent: fail closed."""
    try:
        from clinical.deid import deidentify, relative_dates

        c.model_question = deidentify(c.model_question, c.patient_json)
        if c.patient_summary:
            c.patient_summary = deidentify(relative_dates(c.patient_summary), c.patient_json)
    except Exception as e:
        c.findings.append(_unavailable("de-identification", e))
        c.escalation = c.escalation or ("De-identification could not run, so this question was not sent to the "
                                        "model. Try again later.")
        c.model_question, c.patient_summary = "", None


def finish(c: Consultation, answer: str) -> tuple[list[dict], list[dict], list[dict]]:
    """Output checks on the answer; returns (findings, cards, detected_issues) as JSON-ready dicts."""
    if c.escalation is None:
        try:
            from clinical.guardrails import check_output

            prior = [f for f in c.findings if not isinstance(f, dict)]
            c.findings.extend(check_output(answer, c.patient, prior_findings=prior))
        except Exception as e:
            c.findings.append(_unavailable("output checks", e))
    findings = [_as_dict(f) for f in c.findings]
    return findings, _cards(c.findings), _detected_issues(c.findings)


def final_answer(c: Consultation, answer: str) -> str:
    """The answer as returned: led by the critical finding when one exists (a clinician reading only
    the first line must see it), with identifiers removed (the model may echo them)."""
    if c.escalation is not None:
        return answer
    critical = [_as_dict(f) for f in c.findings]
    critical = [f for f in critical if f["severity"] == "critical" and f["kind"] != "emergency"]
    lead = ""
    if critical:
        lead = "CRITICAL: " + "; ".join(f["summary"] for f in critical[:2]) + "."
        answer = f"{lead}\n\n{answer}"
    try:
        from clinical.deid import deidentify

        return deidentify(answer, c.patient_json)
    except Exception as e:
        c.findings.append(_unavailable("de-identification of the answer", e))
        return "The answer was withheld because de-identification could not run. " + lead


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
