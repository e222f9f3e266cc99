"""Patient-aware drug rules: kidney function, potassium, pregnancy and age, each with its source.

Each rule is a small pure function `(drug, patient) -> Finding | None` over the FHIR-derived
PatientContext (labs by LOINC code, age, sex, pregnancy status, conditions). A rule that applies to
the drug but lacks the data it needs returns a finding saying the check could not run, never None:
absence of a lab is not a normal lab. The tables (which drugs, which thresholds, which source) are
in rules.py; this file holds only the logic.
"""

from __future__ import annotations

from collections.abc import Callable

from clinical.fhir import Lab, PatientContext
from clinical.guardrails.models import Finding, Severity
from clinical.guardrails.rules import (
    AGE_RULES,
    CKD_EPI_2021_SOURCE,
    CREATININE_MG_DL_LOINC,
    CREATININE_UMOL_L_LOINC,
    EGFR_LOINC,
    POTASSIUM_LIMITS,
    POTASSIUM_LOINC,
    RENAL_RULES,
    TERATOGENS,
    ChildbearingAge,
)

Rule = Callable[[str, PatientContext], "Finding | None"]


def _latest(patient: PatientContext, codes: frozenset[str]) -> Lab | None:
    """The most recent numeric result among these LOINC codes (PatientContext keeps the latest per test)."""
    for lab in patient.labs:  # newest first
        if lab.code in codes and isinstance(lab.value, float):
            return lab
    return None


def ckd_epi_2021(creatinine_mg_dl: float, age: int, sex: str) -> float:
    """eGFR (mL/min/1.73 m2) by the race-free CKD-EPI 2021 creatinine equation (Inker et al., NEJM 2021)."""
    female = sex == "female"
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    ratio = creatinine_mg_dl / kappa
    return 142 * min(ratio, 1) ** alpha * max(ratio, 1) ** -1.200 * 0.9938 ** age * (1.012 if female else 1.0)


def egfr(patient: PatientContext) -> tuple[float, str] | None:
    """(eGFR, how it was obtained): a reported eGFR, else CKD-EPI 2021 from creatinine, age and sex."""
    lab = _latest(patient, EGFR_LOINC)
    if lab is not None:
        return float(lab.value), f"eGFR {lab.value:g} {lab.unit or 'mL/min/1.73m2'} (LOINC {lab.code}" + \
            (f", {lab.date})" if lab.date else ")")
    creatinine = _latest(patient, CREATININE_MG_DL_LOINC | CREATININE_UMOL_L_LOINC)
    if creatinine is None or patient.age_years is None or patient.sex not in ("male", "female"):
        return None
    mg_dl = float(creatinine.value) / (88.42 if creatinine.code in CREATININE_UMOL_L_LOINC else 1.0)
    value = ckd_epi_2021(mg_dl, patient.age_years, patient.sex)
    return value, (f"eGFR {value:.0f} mL/min/1.73m2 computed from creatinine {creatinine.value:g} "
                   f"{creatinine.unit or ''} (LOINC {creatinine.code}) by {CKD_EPI_2021_SOURCE}")


def not_run(drug: str, check: str, missing: str, why: str, severity: Severity = "info") -> Finding:
    """The finding for a rule that applies but lacks its data: says what is missing and why it matters.

    Info by default: a card that is shown but does not interrupt, because a missing recent lab is
    common and an interrupting card on every such order would teach clinicians to ignore cards.
    Pregnancy status of a woman of childbearing age before a teratogen is the exception (warning).
    """
    return Finding(
        kind="safety_check_unavailable", severity=severity,
        summary=f"Not checked: {check} for {drug} (no {missing} on record)",
        detail=f"{why} The patient data holds no {missing}, so this check could not run; its result is "
               f"unknown, not normal.",
        evidence=[f"guardrail:patient-rule:{check}"],
        suggested_action=f"Obtain or review the {missing} before giving {drug}.")


def renal_rule(drug: str, patient: PatientContext) -> Finding | None:
    """Kidney function against the drug's labelled/guideline eGFR thresholds (metformin, NSAIDs, ...)."""
    rule = RENAL_RULES.get(drug)
    if rule is None:
        return None
    measured = egfr(patient)
    if measured is None:
        return not_run(drug, "kidney function", "eGFR or creatinine", f"{drug}: {rule.why}.")
    value, how = measured
    for threshold, severity, advice in rule.bands:  # strictest band first
        if value < threshold:
            return Finding(
                kind="renal", severity=severity,
                summary=f"Kidney function: {drug} with eGFR {value:.0f} (< {threshold:g})",
                detail=f"{how}. {rule.why}. {advice} Source: {rule.source}.",
                evidence=[f"label:{rule.source}", f"LOINC-rule:eGFR<{threshold:g}"],
                suggested_action=advice)
    return None


def potassium_rule(drug: str, patient: PatientContext) -> Finding | None:
    """Serum potassium before a potassium-sparing diuretic or a potassium supplement."""
    limit = POTASSIUM_LIMITS.get(drug)
    if limit is None:
        return None
    lab = _latest(patient, POTASSIUM_LOINC)
    if lab is None:
        return not_run(drug, "potassium", "serum potassium", f"{drug} raises potassium ({limit.source}).")
    if float(lab.value) <= limit.max_mmol_l:
        return None
    return Finding(
        kind="electrolyte", severity="critical",
        summary=f"Hyperkalaemia: {drug} with potassium {lab.value:g} mmol/L (> {limit.max_mmol_l:g})",
        detail=f"Latest potassium {lab.value:g} {lab.unit or 'mmol/L'} (LOINC {lab.code}). {limit.why} "
               f"Source: {limit.source}.",
        evidence=[f"label:{limit.source}", f"LOINC-rule:K>{limit.max_mmol_l:g}"],
        suggested_action=f"Do not start {drug} while potassium is above {limit.max_mmol_l:g} mmol/L; recheck it.")


def _pregnant(patient: PatientContext) -> bool | None:
    if patient.pregnant is not None:
        return patient.pregnant
    if any("pregnan" in c.display.lower() for c in patient.conditions):
        return True
    return None


def pregnancy_rule(drug: str, patient: PatientContext) -> Finding | None:
    """A teratogen in pregnancy (critical), or in a woman of childbearing age whose status is unknown."""
    teratogen = TERATOGENS.get(drug)
    if teratogen is None:
        return None
    pregnant = _pregnant(patient)
    if pregnant:
        return Finding(
            kind="contraindication", severity="critical",
            summary=f"Pregnancy: {drug} is a teratogen ({teratogen.risk})",
            detail=f"The record shows an active pregnancy. {teratogen.statement} Source: {teratogen.source}.",
            evidence=[f"label:{teratogen.source}", "FHIR:pregnancy-status"],
            suggested_action=f"Do not give {drug} in pregnancy; choose a safer alternative.")
    if pregnant is not None or patient.sex == "male":
        return None
    known_woman = patient.sex == "female" and patient.age_years is not None
    if known_woman and not ChildbearingAge.LOW <= patient.age_years <= ChildbearingAge.HIGH:  # type: ignore[operator]
        return None
    # A woman of childbearing age: warning. Sex or age not recorded: we cannot tell, so say so (info).
    return not_run(drug, "pregnancy", "pregnancy status", f"{drug} is a teratogen ({teratogen.risk}); "
                   f"{teratogen.source}.", severity="warning" if known_woman else "info")


def age_rule(drug: str, patient: PatientContext) -> Finding | None:
    """Drugs with an age limit in children (aspirin: Reye's syndrome)."""
    rule = AGE_RULES.get(drug)
    if rule is None:
        return None
    if patient.age_years is None:
        return not_run(drug, "age limit", "age (birth date)", f"{drug} is not for children under {rule.min_age}.")
    if patient.age_years >= rule.min_age:
        return None
    exempt = [c.display for c in patient.conditions if any(t in c.display.lower() for t in rule.exempt_terms)]
    if exempt:
        return None  # a recognised indication in children (Kawasaki disease for aspirin)
    return Finding(
        kind="paediatric", severity=rule.severity,
        summary=f"Age: {drug} in a child aged {patient.age_years} (< {rule.min_age})",
        detail=f"{rule.why} Source: {rule.source}.",
        evidence=[f"label:{rule.source}", f"rule:age<{rule.min_age}"],
        suggested_action=rule.advice)


PATIENT_RULES: dict[str, Rule] = {
    "renal": renal_rule,
    "potassium": potassium_rule,
    "pregnancy": pregnancy_rule,
    "age": age_rule,
}


def patient_rule_findings(drug: str, patient: PatientContext | None) -> list[Finding]:
    """Every patient-aware rule for one canonical drug; no patient means no patient to check against."""
    if patient is None:
        return []
    return [f for rule in PATIENT_RULES.values() if (f := rule(drug, patient)) is not None]
