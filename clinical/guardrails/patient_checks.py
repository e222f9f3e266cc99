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
    CRITICAL_CLASS_ALLERGIES,
    MAX_DAILY_DOSE,
    MESH_CLASSES,
    ONC_CROSS_REACTIVE_CLASSES,
    SULFONAMIDE_NODE,
    SULFONAMIDE_STEM,
)
from clinical.guardrails.patient_rules import pregnancy_rule
from clinical.knowledge import GradedInteraction, get_knowledge_base
from clinical.knowledge.ansm import SOURCE as ANSM_SOURCE
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
                # A penicillin allergy label means avoid every penicillin until an allergist removes it
                # (AAAAI/ACAAI 2022 practice parameter), whatever criticality the record gives.
                always = cls in CRITICAL_CLASS_ALLERGIES
                out.append(Finding(
                    kind="allergy", severity="critical" if critical or always else "warning",
                    summary=f"Cross-reactivity: {drug} and allergy to {allergen} ({cls})",
                    detail=f"{drug} belongs to the same class ({cls}) as {allergy.substance}, to which the "
                           f"patient is allergic (criticality {allergy.criticality or 'not recorded'}).",
                    evidence=[f"FHIR:AllergyIntolerance:{allergen}", _class_evidence(cls)]
                    + ([BETA_LACTAM_SOURCE] if always else []),
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


_GRADE_WORD = {"critical": "Serious", "warning": "Precaution", "info": "Minor"}
_ACTION = {
    "critical": "Avoid the combination; if it cannot be avoided, document why and monitor as the source says.",
    "warning": "The combination needs a precaution (dose change or monitoring): see the source text.",
    "info": "Usually no action; be aware of the interaction.",
}


def _short_source(x: GradedInteraction) -> str:
    return f"ANSM {x.source_version}" if x.source == ANSM_SOURCE else x.source.split(" (")[0]


def interaction_finding(a: str, b: str, statements: list[GradedInteraction]) -> Finding:
    """One finding per drug pair, at the strictest grade any source gives, every statement as evidence."""
    a, b = sorted((a, b))  # alphabetical, as the ONC records and earlier cards name pairs
    top = statements[0]  # interactions_between sorts strictest first
    sources = list(dict.fromkeys(_short_source(x) for x in statements))
    detail = " ".join(
        f"[{x.citation}; grade {x.source_grade} -> {x.severity}] {x.summary}"
        + (f" Source text: \"{' '.join(x.evidence.split())[:400]}\"" if x.source == ANSM_SOURCE else "")
        for x in statements)
    evidence = [f"{_short_source(x)}:{x.source_grade}:{x.matched_as[0]}+{x.matched_as[1]}" for x in statements]
    return Finding(
        kind="interaction", severity=top.severity,
        summary=f"{_GRADE_WORD[top.severity]} interaction: {a} + {b} ({', '.join(sources)})",
        detail=detail, evidence=evidence, suggested_action=_ACTION[top.severity])


def interaction_findings(new_drugs: list[str], current: list[str]) -> list[Finding]:
    """Graded interactions (ONC and ANSM) between each new drug and the current ones, and among new ones.

    A drug that cannot be identified raises KnowledgeError, which fail_closed turns into a critical
    finding: an unknown name must not pass as "no interaction".
    """
    kb = get_knowledge_base()
    by_pair: dict[tuple[str, str], list[GradedInteraction]] = {}
    everything = list(dict.fromkeys(current + new_drugs))
    for i, x in enumerate(everything):
        for y in everything[i + 1:]:
            if x not in new_drugs and y not in new_drugs:
                continue  # an interaction the patient already lives with is not this order's doing
            statements = kb.interactions_between(x, y)
            if statements:
                by_pair[(x, y)] = statements
    return [interaction_finding(a, b, st) for (a, b), st in by_pair.items()]


def unidentified_findings(labels_and_reasons: list[tuple[str, str]], where: str) -> list[Finding]:
    """A 'not checked' finding for each drug nobody could identify: never silence (DESIGN, security rules)."""
    return [Finding(
        kind="safety_check_unavailable", severity="warning",
        summary=f"Drug not recognised, not checked: {label}"[:140],
        detail=f"{where} '{label}' could not be identified ({reason}), so allergy, interaction and "
               f"patient checks were not done for it.",
        evidence=[f"guardrail:drug-identification:{where}"],
        suggested_action="Check this drug by hand, or record it with an RxNorm code or generic name.")
        for label, reason in labels_and_reasons]


def unidentified_medication_findings(patient: PatientContext | None) -> list[Finding]:
    """Active medications the parser could not identify (e.g. given only by an unknown code)."""
    if patient is None:
        return []
    return unidentified_findings(
        [(m.text, m.unidentified_reason or "no drug name matched") for m in patient.medications if not m.drugs],
        "The active medication")


def contraindication_findings(drug: str, patient: PatientContext) -> list[Finding]:
    """Label contraindications with active conditions, and a teratogen in a recorded pregnancy."""
    pregnancy = pregnancy_rule(drug, patient)
    out = [pregnancy] if pregnancy is not None and pregnancy.severity == "critical" else []
    for rule in CONTRAINDICATIONS:
        if drug not in rule.drugs:
            continue
        hit = None
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
