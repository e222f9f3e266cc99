"""CDS Hooks 2.0 objects as pydantic models, findings as cards and DetectedIssues, and the hook
handlers, all free of HTTP (serving/cds_hooks_app.py is the transport).

Field rules cite the specification, https://cds-hooks.hl7.org/2.0/ (HL7 CDS Hooks 2.0, "spec"
below), sections Discovery, Calling a CDS Service, CDS Service Response and Feedback.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from clinical.fhir import FHIRInputError, PatientContext, merge_bundles, parse_patient, resources_of
from clinical.guardrails import Finding, check_orders
from clinical.guardrails.models import fail_closed, unavailable
from clinical.guardrails.patient_checks import (
    allergy_findings,
    interaction_findings,
    unidentified_medication_findings,
)

SPEC = "https://cds-hooks.hl7.org/2.0/"
SOURCE_LABEL = "BalancedBio clinical safety checks"


class _Spec(BaseModel):
    # The spec allows an `extension` object on most objects and says clients must ignore what
    # they do not understand, so unknown members are kept rather than rejected.
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Coding(_Spec):
    """spec 'Coding': code and system REQUIRED; display REQUIRED for override reasons."""

    code: str
    system: str
    display: str | None = None


class Source(_Spec):
    """spec 'Source': label REQUIRED; url, icon, topic OPTIONAL."""

    label: str
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None


class Action(_Spec):
    """spec 'Action': type create|update|delete; description REQUIRED (in a suggestion)."""

    type: Literal["create", "update", "delete"]
    description: str | None = None
    resource: dict[str, Any] | None = None
    resourceId: str | None = None


class Suggestion(_Spec):
    """spec 'Suggestion': label REQUIRED; uuid OPTIONAL (needed for feedback); isRecommended."""

    label: str
    uuid: str | None = None
    isRecommended: bool | None = None
    actions: list[Action] = Field(default_factory=list)


class Link(_Spec):
    """spec 'Link': label, url, type (absolute|smart) REQUIRED."""

    label: str
    url: str
    type: Literal["absolute", "smart"]
    appContext: str | None = None
    autolaunchable: bool | None = None


class Card(_Spec):
    """spec 'Card': summary (<140 characters), indicator and source REQUIRED; selectionBehavior
    CONDITIONAL: required when suggestions are present, `at-most-one` or `any`."""

    uuid: str | None = None
    summary: str = Field(max_length=139)
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = None
    links: list[Link] | None = None

    @model_validator(mode="after")
    def _selection_behavior(self) -> "Card":
        if self.suggestions and self.selectionBehavior is None:
            raise ValueError("selectionBehavior is required when a card has suggestions "
                             "(spec: 'at-most-one' or 'any')")
        return self


class CDSResponse(_Spec):
    """spec 'CDS Service Response': cards REQUIRED (may be empty); systemActions OPTIONAL."""

    cards: list[Card]
    systemActions: list[Action] | None = None


class ServiceDefinition(_Spec):
    """spec 'Discovery': hook, description, id REQUIRED; title, prefetch, usageRequirements OPTIONAL."""

    hook: str
    title: str | None = None
    description: str
    id: str
    prefetch: dict[str, str] | None = None
    usageRequirements: str | None = None


class DiscoveryResponse(_Spec):
    services: list[ServiceDefinition]


class FhirAuthorization(_Spec):
    """spec 'fhirAuthorization': all five members REQUIRED; token_type fixed 'Bearer'."""

    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str
    subject: str
    patient: str | None = None


class HookRequest(_Spec):
    """spec 'HTTP Request': hook, hookInstance, context REQUIRED; fhirServer CONDITIONAL
    (required with fhirAuthorization)."""

    hook: str
    hookInstance: str
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _server_with_authorization(self) -> "HookRequest":
        if self.fhirAuthorization is not None and not self.fhirServer:
            raise ValueError("fhirServer is required when fhirAuthorization is given (spec: CONDITIONAL)")
        return self


class OverrideReasonFeedback(_Spec):
    reason: Coding | None = None
    userComment: str | None = None


class AcceptedSuggestion(_Spec):
    id: str


class FeedbackItem(_Spec):
    """spec 'Feedback': card, outcome (accepted|overridden), outcomeTimestamp REQUIRED."""

    card: str
    outcome: Literal["accepted", "overridden"]
    outcomeTimestamp: str
    acceptedSuggestions: list[AcceptedSuggestion] | None = None
    overrideReason: OverrideReasonFeedback | None = None


class FeedbackRequest(_Spec):
    feedback: list[FeedbackItem]


# --- findings as cards and DetectedIssues ---------------------------------------------------------

OVERRIDE_SYSTEM = "https://balancedbio.example.org/cds/override-reason"
OVERRIDE_REASONS = [
    Coding(system=OVERRIDE_SYSTEM, code="benefit-outweighs-risk", display="Benefit outweighs risk"),
    Coding(system=OVERRIDE_SYSTEM, code="patient-tolerated-before", display="Patient has tolerated it before"),
    Coding(system=OVERRIDE_SYSTEM, code="will-monitor", display="Will monitor the patient"),
    Coding(system=OVERRIDE_SYSTEM, code="not-applicable", display="Alert does not apply to this patient"),
]


def finding_to_card(f: Finding, remove_order: str | None = None) -> Card:
    """A CDS Hooks card for a finding; remove_order ("MedicationRequest/x") adds a delete suggestion."""
    detail = f.detail
    if f.suggested_action:
        detail += f"\n\n**Suggested action:** {f.suggested_action}"
    if f.evidence:
        detail += "\n\n**Evidence:** " + ", ".join(f"`{e}`" for e in f.evidence)
    suggestions = None
    if remove_order and f.severity == "critical" and f.kind != "safety_check_unavailable":
        suggestions = [Suggestion(label=f"Remove this order ({f.kind})", uuid=str(uuidlib.uuid4()), isRecommended=True,
                                  actions=[Action(type="delete", description=f.suggested_action or "Remove the order",
                                                  resourceId=remove_order)])]
    summary = f.summary if len(f.summary) < 140 else f.summary[:138] + "…"
    return Card(
        uuid=str(uuidlib.uuid4()), summary=summary, detail=detail, indicator=f.severity,
        source=Source(label=SOURCE_LABEL, topic=Coding(system="https://balancedbio.example.org/finding-kind",
                                                       code=f.kind, display=f.kind.replace("_", " "))),
        suggestions=suggestions, selectionBehavior="at-most-one" if suggestions else None,
        overrideReasons=OVERRIDE_REASONS if f.severity != "info" else None,
    )


# v3-ActCode detected-issue codes (terminology.hl7.org/CodeSystem/v3-ActCode).
_ACT_CODES = {
    "allergy": ("ALGY", "Allergy Alert"),
    "interaction": ("DRG", "Drug Interaction Alert"),
    "contraindication": ("COND", "Condition Alert"),
    "dose": ("DOSEH", "High Dose Alert"),
}
_DI_SEVERITY = {"critical": "high", "warning": "moderate", "info": "low"}


def finding_to_detected_issue(f: Finding, patient_reference: str | None = None) -> dict:
    """FHIR R4 DetectedIssue JSON for a finding, validated with fhir.resources.R4B."""
    from fhir.resources.R4B.detectedissue import DetectedIssue

    code = {"text": f.kind.replace("_", " ")}
    if f.kind in _ACT_CODES:
        act, display = _ACT_CODES[f.kind]
        code["coding"] = [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": act, "display": display}]
    resource: dict[str, Any] = {
        "resourceType": "DetectedIssue",
        "id": str(uuidlib.uuid4()),
        "status": "preliminary",  # machine-generated, not yet reviewed by a clinician
        "code": code,
        "severity": _DI_SEVERITY[f.severity],
        "detail": f"{f.summary}. {f.detail}".strip(),
        "evidence": [{"detail": [{"display": e}]} for e in f.evidence],
    }
    if f.suggested_action:
        resource["mitigation"] = [{"action": {"text": f.suggested_action}}]
    if patient_reference:
        resource["patient"] = {"reference": patient_reference}
    DetectedIssue.model_validate(resource)  # raises if we ever build an invalid one
    return resource


# --- the services ---------------------------------------------------------------------------------

_PATIENT_PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}&clinical-status=active",
    "medications": "MedicationRequest?patient={{context.patientId}}&status=active",
    "allergies": "AllergyIntolerance?patient={{context.patientId}}",
}
SERVICES = [
    ServiceDefinition(hook="patient-view", id="balancedbio-patient-view", title="BalancedBio patient safety summary",
                      description="A de-identified summary of the patient and safety findings among active "
                                  "medications and allergies.",
                      prefetch={**_PATIENT_PREFETCH,
                                "labs": "Observation?patient={{context.patientId}}&category=laboratory&_count=50"}),
    ServiceDefinition(hook="order-select", id="balancedbio-order-select", title="BalancedBio medication order check",
                      description="Checks selected draft MedicationRequests for ONC high-priority interactions, "
                                  "allergies, contraindications and doses. No language model is called.",
                      prefetch=_PATIENT_PREFETCH),
    ServiceDefinition(hook="order-sign", id="balancedbio-order-sign", title="BalancedBio order-sign safety check",
                      description="Checks draft MedicationRequests before signing for ONC high-priority "
                                  "interactions, allergies, contraindications and doses. No language model is called.",
                      prefetch=_PATIENT_PREFETCH),
]
SERVICES_BY_ID = {s.id: s for s in SERVICES}


def discovery_document() -> dict:
    """The discovery response (spec 'Discovery') as JSON, for a host app that serves it itself."""
    return DiscoveryResponse(services=SERVICES).model_dump(exclude_none=True)


class HookInputError(ValueError):
    """A request this service cannot act on; the message says what to send instead."""


def render_prefetch(template: str, context: dict[str, Any]) -> str:
    """Fill {{context.x}} tokens (spec 'Prefetch tokens'); an unknown token is an error."""

    def value(m: re.Match) -> str:
        key = m.group(1).strip()
        if not key.startswith("context.") or key[8:] not in context or not isinstance(context[key[8:]], str):
            raise HookInputError(f"prefetch token {{{{{key}}}}} has no string value in the request context")
        return context[key[8:]]

    return re.sub(r"\{\{([^}]+)\}\}", value, template)


Fetch = Callable[[str], dict]  # a FHIR query relative to fhirServer -> JSON


def gather_patient(service: ServiceDefinition, request: HookRequest, fetch: Fetch | None) -> tuple[PatientContext | None, list[Finding]]:
    """The patient from prefetch, fetching what is missing (spec: the service MAY query the FHIR
    server itself when prefetch is absent). Missing data fails closed with a finding."""
    parts, problems = [], []
    prefetch = request.prefetch or {}
    for key, template in (service.prefetch or {}).items():
        data = prefetch.get(key)
        if data is None:
            if "patientId" not in request.context:
                continue
            if fetch is None:
                problems.append(key)
                continue
            try:
                data = fetch(render_prefetch(template, request.context))
            except HookInputError:
                raise
            except Exception:
                problems.append(key)
                continue
        parts.append(data)
    findings = []
    if problems:
        findings.append(unavailable("patient-data", what=f"could not obtain {', '.join(problems)}")
                        .model_copy(update={"summary": f"Safety check incomplete: no {', '.join(problems)} data"[:140],
                                            "detail": f"The patient's {', '.join(problems)} could be neither "
                                                      f"prefetched nor read from the FHIR server, so checks that "
                                                      f"need them were not done."}))
    if not parts:
        return None, findings
    try:
        return parse_patient(merge_bundles(parts), patient_id=request.context.get("patientId")), findings
    except FHIRInputError as exc:
        raise HookInputError(f"prefetch data is not valid FHIR R4: {exc}") from None


@fail_closed("patient-view")
def review_patient(patient: PatientContext) -> list[Finding]:
    """Findings among what the patient already takes: interactions and allergy conflicts."""
    drugs = patient.medication_drugs()
    findings = interaction_findings(drugs, []) if len(drugs) > 1 else []
    findings += unidentified_medication_findings(patient)  # never silent about what was not checked
    for drug in drugs:
        findings += allergy_findings(drug, patient, "an active medication is")
    return findings


def _draft_medications(request: HookRequest, selected_only: bool) -> list[dict]:
    bundle = request.context.get("draftOrders")
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise HookInputError("context.draftOrders must be a FHIR Bundle of draft orders (spec: order-sign/order-select)")
    orders = resources_of(bundle, "MedicationRequest")
    selections = request.context.get("selections")
    if selected_only and selections:  # spec: the orders just selected; without the list, check them all
        orders = [o for o in orders if f"MedicationRequest/{o.get('id')}" in set(selections)]
    return orders


def handle_hook(service_id: str, request: HookRequest, fetch: Fetch | None = None) -> tuple[CDSResponse, list[Finding]]:
    """Run one CDS service; returns the response and the findings behind its cards."""
    service = SERVICES_BY_ID.get(service_id)
    if service is None:
        raise HookInputError(f"unknown CDS service {service_id!r}; GET the discovery endpoint for {sorted(SERVICES_BY_ID)}")
    if request.hook != service.hook:
        raise HookInputError(f"service {service_id!r} answers the {service.hook!r} hook, not {request.hook!r}")
    patient, findings = gather_patient(service, request, fetch)
    cards: list[Card] = []
    if service.hook == "patient-view":
        if patient is not None:
            findings += review_patient(patient)
            cards.append(Card(uuid=str(uuidlib.uuid4()), indicator="info", source=Source(label=SOURCE_LABEL),
                              summary=f"Patient summary: {len(patient.conditions)} active conditions, "
                                      f"{len(patient.medications)} medications, {len(patient.allergies)} allergies",
                              detail="```\n" + patient.to_prompt() + "\n```"))
        cards += [finding_to_card(f) for f in findings]
        return CDSResponse(cards=cards), findings
    if patient is None and not findings:
        findings.append(unavailable("patient-data", what="no patient in context or prefetch").model_copy(update={
            "summary": "Safety check incomplete: no patient data",
            "detail": "The request named no patient and prefetched none, so allergies, active medications "
                      "and conditions were not checked; only the draft orders among themselves were."}))
    selected = service.hook == "order-select"
    orders = _draft_medications(request, selected_only=selected)
    if selected:  # the other drafts on the same order sheet count as current medications
        others = [o for o in _draft_medications(request, False) if o not in orders]
        patient = _with_drafts(patient, others)
    order_findings = check_orders(orders, patient)
    findings += order_findings
    remove = f"MedicationRequest/{orders[0].get('id')}" if len(orders) == 1 and orders[0].get("id") else None
    cards += [finding_to_card(f, remove_order=remove) for f in findings]
    return CDSResponse(cards=cards), findings


def _with_drafts(patient: PatientContext | None, drafts: list[dict]) -> PatientContext | None:
    if not drafts:
        return patient
    from clinical.fhir import Medication
    from clinical.guardrails.orders import order_drugs

    base = patient or PatientContext()
    extra = [Medication(text=label, drugs=drugs, status="draft") for label, drugs in map(order_drugs, drafts) if drugs]
    return base.model_copy(update={"medications": base.medications + extra})
