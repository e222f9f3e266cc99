"""Checks of candidate drugs against a patient: allergy and cross-reactivity, interactions with
active medications, contraindications with active conditions, and doses above a known maximum.

Shared by check_output (drugs the model mentions) and check_orders (drugs a clinician orders).
"""

from __future__ import annotations

import csv
import functools

from clinical.fhir import PatientContext
from clinical.guardrails.models import Finding
from clinical.guardrails.rules import (
    BETA_LACTAM_NEIGHBOURS,
    BETA_LACTAM_SOURCE,
    CONTRAINDICATIONS,
    MAX_DAILY_DOSE,
    MESH_CLASSES,
    ONC_CROSS_REACTIVE_CLASSES,
    SULFONAMIDE_NODE,
    SULFONAMIDE_STEM,
)
from clinical.knowledge import get_knowledge_base
from clinical.knowledge.interactions import DATA_DIR


@functools.cache
def _onc_classes() -> dict[str, frozenset[str]]:
    """Drug -> cross-reactive ONC class labels, read from the ONC non-interruptive list."""
    members: dict[str, set[str]] = {}
    with (DATA_DIR / "onc_non_interruptive.csv").open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            for side in ("1", "2"):
                label = ONC_CROSS_REACTIVE_CLASSES.get(row[f"drug{side}_class"].strip())
                if label:
                    drug = get_knowledge_base().normalize_drug(row[f"drug{side}_name"].strip())
                    name = drug.name if drug else row[f"drug{side}_name"].strip().lower()
                    members.setdefault(name, set()).add(label)
    return {k: frozenset(v) for k, v in members.items()}


@functools.cache
def drug_classes(name: str) -> frozenset[str]:
    """Cross-reactivity classes of a canonical drug (or of a class name such as 'penicillins')."""
    drug = get_knowledge_base().normalize_drug(name)
    trees = drug.mesh_tree if drug else ()
    found = {cls for cls, (node, _) in MESH_CLASSES.items() if any(t == node or t.startswith(node + ".") for t in trees)}
    canonical = drug.name if drug else name.lower()
    if canonical.startswith(SULFONAMIDE_STEM) and any(t.startswith(SULFONAMIDE_NODE) for t in trees):
        found.add("sulfonamide antibiotics")
    if canonical in ("sulfonamides", "sulfa drugs", "sulfonamide"):
        found.add("sulfonamide antibiotics")
    found |= _onc_classes().get(canonical, frozenset())
    if canonical in ("nsaid", "nsaids", "anti-inflammatory agents, non-steroidal"):
        found.add("NSAIDs")
    return frozenset(found)


def _class_evidence(cls: str) -> str:
    if cls in MESH_CLASSES:
        return f"MeSH:{MESH_CLASSES[cls][0]}({MESH_CLASSES[cls][1]})"
    if cls == "sulfonamide antibiotics":
        return f"MeSH:{SULFONAMIDE_NODE}+INN-stem:sulfa"
    return f"ONC-non-interruptive-class:{cls}"


def allergy_findings(drug: str, patient: PatientContext, verb: str) -> list[Finding]:
    out = []
    classes = drug_classes(drug)
    for allergy in patient.allergies:
        allergens = allergy.drugs or ([allergy.substance.lower()] if allergy.substance else [])
        critical = allergy.criticality == "high"
        for allergen in allergens:
            if allergen == drug:
                out.append(Finding(
                    kind="allergy", severity="critical",
                    summary=f"Allergy: patient is allergic to {drug}; {verb} {drug}",
                    detail=f"The record lists an allergy to {allergy.substance}"
                           f" (criticality {allergy.criticality or 'not recorded'}).",
                    evidence=[f"FHIR:AllergyIntolerance:{allergen}"],
                    suggested_action=f"Do not give {drug}; choose an agent outside its class.",
                ))
                break
            shared = classes & drug_classes(allergen)
            if shared:
                cls = sorted(shared)[0]
                out.append(Finding(
                    kind="allergy", severity="critical" if critical else "warning",
                    summary=f"Cross-reactivity: {drug} and allergy to {allergen} ({cls})",
                    detail=f"{drug} belongs to the same class ({cls}) as {allergy.substance}, to which the "
                           f"patient is allergic (criticality {allergy.criticality or 'not recorded'}).",
                    evidence=[f"FHIR:AllergyIntolerance:{allergen}", _class_evidence(cls)],
                    suggested_action="Avoid unless an allergist confirms tolerance; pick another class.",
                ))
                break
            neighbours = [(a, b) for a in drug_classes(allergen) for b in classes if (a, b) in BETA_LACTAM_NEIGHBOURS]
            if neighbours:
                a, b = neighbours[0]
                out.append(Finding(
                    kind="allergy", severity="warning",
                    summary=f"Possible cross-reactivity: {drug} ({b}) with {allergen} allergy ({a})",
                    detail=f"Cross-reactivity between {a} and {b} is low but documented.",
                    evidence=[f"FHIR:AllergyIntolerance:{allergen}", _class_evidence(a), _class_evidence(b),
                              BETA_LACTAM_SOURCE],
                    suggested_action="Check the allergy history (reaction type); consider a graded challenge.",
                ))
                break
    return out


def interaction_findings(new_drugs: list[str], current: list[str]) -> list[Finding]:
    """ONC-listed interactions between each new drug and the current ones (and among new ones)."""
    out = []
    everything = list(dict.fromkeys(current + new_drugs))
    # strict: an unknown name must not pass silently (raises -> fail_closed makes it critical).
    for x in get_knowledge_base().interactions(everything, strict=True):
        if x.drug_a not in new_drugs and x.drug_b not in new_drugs:
            continue  # an interaction the patient already lives with is not this answer's doing
        high = x.severity == "high"
        list_id = "ONC-high-priority" if high else "ONC-non-interruptive"
        out.append(Finding(
            kind="interaction", severity="critical" if high else "info",
            summary=f"{'High-priority' if high else 'Low-priority'} interaction: {x.drug_a} + {x.drug_b}",
            detail=f"{x.drug_a} and {x.drug_b} are on the {x.source} list"
                   + (f" (classes: {x.classes[0]} / {x.classes[1]})." if x.classes else "."),
            evidence=[f"{list_id}:{x.drug_a}+{x.drug_b}", f"DrugBank:{x.evidence[0]}", f"DrugBank:{x.evidence[1]}"],
            suggested_action="Avoid the combination or monitor closely; consider an alternative." if high
            else "Usually no action; be aware of the interaction.",
        ))
    return out


def contraindication_findings(drug: str, patient: PatientContext) -> list[Finding]:
    out = []
    for rule in CONTRAINDICATIONS:
        if drug not in rule.drugs:
            continue
        hit = None
        if rule.pregnancy and patient.pregnant:
            hit = "pregnancy"
        for condition in patient.conditions:
            text = condition.display.lower()
            if condition.code in rule.condition_codes or any(t in text for t in rule.condition_terms):
                hit = condition.display
                break
        if hit:
            out.append(Finding(
                kind="contraindication", severity="critical",
                summary=f"Contraindication: {drug} with {hit}"[:140],
                detail=f"{rule.summary}. Source: {rule.source}.",
                evidence=[f"label:{rule.source}", f"FHIR:Condition:{hit}"],
                suggested_action=f"Do not use {drug}; choose an alternative suitable for {hit}.",
            ))
    return out


def dose_findings(drug: str, mg_per_day: float, how: str) -> list[Finding]:
    limit = MAX_DAILY_DOSE.get(drug)
    if limit is None or mg_per_day <= limit.mg_per_day:
        return []
    return [Finding(
        kind="dose", severity="critical",
        summary=f"Dose above maximum: {drug} {mg_per_day:g} mg/day > {limit.mg_per_day:g} mg/day",
        detail=f"{how} gives {mg_per_day:g} mg per day; the labelled adult maximum is "
               f"{limit.mg_per_day:g} mg/day ({limit.source}).",
        evidence=[f"label:{drug}:max {limit.mg_per_day:g} mg/day"],
        suggested_action=f"Reduce the {drug} dose to at most {limit.mg_per_day:g} mg per day.",
    )]
