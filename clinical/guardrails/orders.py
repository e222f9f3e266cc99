"""Checks of draft MedicationRequests (CDS Hooks order-select / order-sign): no model involved.

Draft orders are read leniently (the spec's own order-sign example carries an id that FHIR's id
pattern rejects); an order whose drug cannot be identified is reported, never skipped quietly.
"""

from __future__ import annotations

from clinical.fhir import PatientContext
from clinical.guardrails.models import Finding, fail_closed
from clinical.guardrails.output_checks import _dedupe
from clinical.guardrails.patient_checks import (
    allergy_findings,
    contraindication_findings,
    dose_findings,
    interaction_findings,
    unidentified_findings,
    unidentified_medication_findings,
)
from clinical.guardrails.patient_rules import patient_rule_findings
from clinical.knowledge import DrugIdentity, Unidentified, get_knowledge_base

_PER_DAY = {"d": 1.0, "h": 24.0, "min": 1440.0, "wk": 1 / 7, "mo": 1 / 30}
_MG = {"mg": 1.0, "g": 1000.0, "ug": 0.001, "mcg": 0.001}


def order_identity(order: dict) -> tuple[str, DrugIdentity | Unidentified]:
    """(label, what the drug is) of one MedicationRequest dict: RxNorm codes, displays, text, reference."""
    concept = order.get("medicationCodeableConcept")
    reference = (order.get("medicationReference") or {}).get("display")
    codings = (concept or {}).get("coding") or [] if isinstance(concept, dict) else []
    texts = [c.get("display") for c in codings if isinstance(c, dict)] + [(concept or {}).get("text"), reference]
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    codes = [f"code {c.get('code')}" for c in codings if isinstance(c, dict) and c.get("code")]
    label = (texts or codes or ["unnamed medication"])[0]
    return label, get_knowledge_base().identify_medication(concept, reference)


def order_drugs(order: dict) -> tuple[str, list[str]]:
    """(label, canonical ingredients) of one MedicationRequest dict; [] when it cannot be identified."""
    label, found = order_identity(order)
    return label, list(found.ingredients)


def _daily_mg(order: dict) -> tuple[float, str] | None:
    """mg/day from the first structured dosage (doseQuantity x frequency / period)."""
    for dosage in order.get("dosageInstruction") or []:
        quantity = dosage.get("doseQuantity")
        for dr in dosage.get("doseAndRate") or []:
            quantity = quantity or dr.get("doseQuantity")
        repeat = (dosage.get("timing") or {}).get("repeat") or {}
        if not quantity or quantity.get("value") is None:
            continue
        unit = (quantity.get("code") or quantity.get("unit") or "").lower()
        if unit not in _MG:
            continue  # mL, tablets: strength is not structured here, so no dose check
        per = _PER_DAY.get(repeat.get("periodUnit", "d"))
        frequency, period = repeat.get("frequency", 1), repeat.get("period", 1) or 1
        if per is None:
            continue
        mg = float(quantity["value"]) * _MG[unit] * frequency / period * per
        return mg, f"{quantity['value']} {unit} x{frequency} per {period} {repeat.get('periodUnit', 'd')}"
    return None


@fail_closed("orders")
def check_orders(draft_medications: list[dict], patient: PatientContext | None) -> list[Finding]:
    """Interaction, allergy, contraindication, patient-rule and dose findings for draft MedicationRequests.

    Every order and active medication that cannot be identified gets a "not checked" finding.
    """
    if not isinstance(draft_medications, list):
        raise TypeError("draft_medications must be a list of MedicationRequest dicts")
    findings: list[Finding] = []
    new: list[str] = []
    for order in draft_medications:
        if not isinstance(order, dict) or order.get("resourceType") != "MedicationRequest":
            continue  # NutritionOrder, ServiceRequest...: not a drug order
        label, found = order_identity(order)
        if not found.identified:
            findings += unidentified_findings([(label, found.reason)], "The ordered drug")
            continue
        drugs = list(found.ingredients)
        new.extend(d for d in drugs if d not in new)
        daily = _daily_mg(order)
        if daily and len(drugs) == 1:
            findings += dose_findings(drugs[0], daily[0], daily[1])
    # Active medications nobody could identify: their interactions with the order were not checked.
    findings += unidentified_medication_findings(patient)
    if not new:
        return _dedupe(findings)
    current = [d for d in (patient.medication_drugs() if patient else []) if d not in new]
    findings += interaction_findings(new, current)
    if patient is not None:
        for drug in new:
            findings += allergy_findings(drug, patient, "the order is for")
            findings += contraindication_findings(drug, patient)
            findings += patient_rule_findings(drug, patient)
    return _dedupe(findings)
