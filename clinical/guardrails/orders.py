"""Checks of draft MedicationRequests (CDS Hooks order-select / order-sign): no model involved.

Draft orders are read leniently (the spec's own order-sign example carries an id that FHIR's id
pattern rejects); an order whose drug cannot be identified is reported, never skipped quietly.
"""

from __future__ import annotations

from clinical.fhir import PatientContext, resolve_drugs
from clinical.guardrails.models import Finding, fail_closed, unavailable
from clinical.guardrails.output_checks import _dedupe
from clinical.guardrails.patient_checks import (
    allergy_findings,
    contraindication_findings,
    dose_findings,
    interaction_findings,
)

_PER_DAY = {"d": 1.0, "h": 24.0, "min": 1440.0, "wk": 1 / 7, "mo": 1 / 30}
_MG = {"mg": 1.0, "g": 1000.0, "ug": 0.001, "mcg": 0.001}


def order_drugs(order: dict) -> tuple[str, list[str]]:
    """(label, canonical drugs) of one MedicationRequest dict."""
    concept = order.get("medicationCodeableConcept") or {}
    codings = concept.get("coding") or []
    texts = [c.get("display") for c in codings] + [concept.get("text"),
                                                    (order.get("medicationReference") or {}).get("display")]
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    label = texts[0] if texts else "unnamed medication"
    return label, resolve_drugs(*texts)


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
    """Interaction, allergy, contraindication and dose findings for draft MedicationRequests."""
    if not isinstance(draft_medications, list):
        raise TypeError("draft_medications must be a list of MedicationRequest dicts")
    findings: list[Finding] = []
    new: list[str] = []
    for order in draft_medications:
        if not isinstance(order, dict) or order.get("resourceType") != "MedicationRequest":
            continue  # NutritionOrder, ServiceRequest...: not a drug order
        label, drugs = order_drugs(order)
        if not drugs:
            findings.append(unavailable("orders:drug-identification", what="drug not recognised")
                            .model_copy(update={
                                "severity": "warning",
                                "summary": f"Drug not recognised, not checked: {label}"[:140],
                                "detail": f"'{label}' matches no drug in the knowledge base, so allergy, "
                                          f"interaction and dose checks were not done for it.",
                                "suggested_action": "Check this order manually, or code it with RxNorm."}))
            continue
        new.extend(d for d in drugs if d not in new)
        daily = _daily_mg(order)
        if daily and len(drugs) == 1:
            findings += dose_findings(drugs[0], daily[0], daily[1])
    if not new:
        return findings
    current = [d for d in (patient.medication_drugs() if patient else []) if d not in new]
    findings += interaction_findings(new, current)
    if patient is not None:
        for drug in new:
            findings += allergy_findings(drug, patient, "the order is for")
            findings += contraindication_findings(drug, patient)
    return _dedupe(findings)
