"""FHIR R4 in, a de-identified patient context out.

parse_patient() takes what an EHR sends (a Bundle of any type, or one resource), validates each
resource it uses with fhir.resources.R4B, and keeps only what a clinical answer needs: age (not
birth date), sex, pregnancy, active conditions, active medications resolved to canonical drugs,
allergies with criticality and recent labs. PatientContext has no field that could hold a name,
an identifier, an address or a telecom, so identity cannot leak into a prompt by accident; what
was left out is listed in `ignored`, so nothing is dropped silently.

Resource types the context does not use (Claim, Encounter, ...) are counted, not validated: a
1 MB Synthea bundle is mostly billing, and validating it would cost a quarter of a second on
every request for nothing. An unknown resourceType is still an error.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import date, datetime
from typing import Any

import pydantic
from fhir.resources.R4B import get_fhir_model_class
from pydantic import BaseModel, Field

from clinical.phi import age_in_years, safe_harbor_age

USED_TYPES = ("Patient", "Condition", "MedicationRequest", "MedicationStatement", "Medication",
              "AllergyIntolerance", "Observation")
MAX_LABS = 25  # the most recent result of at most this many tests; a prompt has a budget

# Pregnancy as Synthea and US Core record it (SNOMED CT; LOINC 82810-3 "Pregnancy status").
_PREGNANCY_CONDITIONS = {"77386006", "72892002", "47200007", "237240001"}
_PREGNANT_VALUES = {"77386006"}
_NOT_PREGNANT_VALUES = {"60001007"}
_PREGNANCY_STATUS_LOINC = "82810-3"


class FHIRInputError(ValueError):
    """A payload that is not usable FHIR R4; the message names the resource, the field and the fix."""


class Condition(BaseModel):
    system: str | None = None
    code: str | None = None
    display: str


class Medication(BaseModel):
    text: str  # as recorded (coding display or text), no dose instructions
    drugs: list[str] = Field(default_factory=list)  # canonical drug names from the knowledge base
    system: str | None = None
    code: str | None = None
    status: str | None = None
    unidentified_reason: str | None = None  # set when `drugs` is empty: why, for the "not checked" card

    @property
    def drug(self) -> str | None:
        return self.drugs[0] if self.drugs else None


class Allergy(BaseModel):
    substance: str  # the recorded text
    drugs: list[str] = Field(default_factory=list)  # canonical, when the substance is a drug
    category: list[str] = Field(default_factory=list)  # food | medication | environment | biologic
    criticality: str | None = None  # low | high | unable-to-assess
    system: str | None = None
    code: str | None = None


class Lab(BaseModel):
    code: str | None = None
    display: str
    value: float | str | None = None
    unit: str | None = None
    date: str | None = None  # the result's effective date; not an identifier of the patient
    category: str | None = None


class PatientContext(BaseModel):
    """What the model and the guardrails may know of a patient; de-identified by construction."""

    age_years: int | None = None  # capped at 90 (Safe Harbor aggregates ages over 89)
    sex: str | None = None
    pregnant: bool | None = None
    conditions: list[Condition] = Field(default_factory=list)
    medications: list[Medication] = Field(default_factory=list)
    allergies: list[Allergy] = Field(default_factory=list)
    labs: list[Lab] = Field(default_factory=list)
    ignored: list[str] = Field(default_factory=list)

    def medication_drugs(self) -> list[str]:
        return list(dict.fromkeys(d for m in self.medications for d in m.drugs))

    def to_prompt(self) -> str:
        """The patient as text for the model: every line is a field above, nothing else."""
        lines = ["Patient summary (de-identified):"]
        age = "unknown" if self.age_years is None else ("90 or older" if self.age_years >= 90 else str(self.age_years))
        lines.append(f"- Age: {age}; sex: {self.sex or 'unknown'}"
                     + ("" if self.pregnant is None else f"; pregnant: {'yes' if self.pregnant else 'no'}"))
        lines.append("- Active conditions: " + ("; ".join(_coded(c.display, c.system, c.code) for c in self.conditions) or "none recorded"))
        lines.append("- Active medications: " + ("; ".join(
            m.text + (f" [{', '.join(m.drugs)}]" if m.drugs else "") for m in self.medications) or "none recorded"))
        lines.append("- Allergies: " + ("; ".join(
            a.substance + (f" (criticality {a.criticality})" if a.criticality else "") for a in self.allergies) or "none recorded"))
        if self.labs:
            lines.append("- Recent results:")
            for lab in self.labs:
                value = "" if lab.value is None else f" {_fmt(lab.value)}{(' ' + lab.unit) if lab.unit else ''}"
                lines.append(f"  - {lab.display}:{value}" + (f" ({lab.date})" if lab.date else ""))
        return "\n".join(lines)


def _fmt(value: float | str) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _coded(display: str, system: str | None, code: str | None) -> str:
    short = {"http://snomed.info/sct": "SNOMED", "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM",
             "http://loinc.org": "LOINC", "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm"}
    return f"{display} ({short.get(system or '', system)} {code})" if code and system else display


# --- validation -----------------------------------------------------------------------------------


def _where(resource: dict, place: str | None) -> str:
    """'entry[3] MedicationRequest/m1': where a resource is, for error messages. A Patient's id is
    left out, because these messages may end up in logs."""
    rtype = resource.get("resourceType", "?")
    rid = resource.get("id") if rtype != "Patient" else None
    return f"{place + ' ' if place else ''}{rtype}" + (f"/{rid}" if rid else "")


def _validate(resource: dict, place: str | None) -> None:
    """fhir.resources.R4B validation; errors become FHIRInputError naming resource and field."""
    rtype = resource.get("resourceType")
    try:
        model = get_fhir_model_class(rtype)
    except (KeyError, ValueError):
        raise FHIRInputError(
            f"{_where(resource, place)}: unknown resourceType {rtype!r}. Send FHIR R4 resources "
            f"(e.g. Patient, Condition, MedicationRequest, Observation)."
        ) from None
    try:
        model.model_validate(resource)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"field {'.'.join(str(p) for p in err['loc']) or '(resource)'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise FHIRInputError(
            f"{_where(resource, place)} is not valid FHIR R4: {problems}. Fix these fields "
            f"(see https://hl7.org/fhir/R4/{str(rtype).lower()}.html) and resend."
        ) from None
    except KeyError as exc:  # fhir.resources raises KeyError for an unknown contained/nested type
        raise FHIRInputError(
            f"{_where(resource, place)} holds a resource of unknown type {exc}. Use FHIR R4 resource types."
        ) from None


def _entries(payload: dict, ignored: Counter, index_prefix: str = "") -> list[tuple[dict, str]]:
    """(resource, place) for every resource in a Bundle, nested Bundles (batch-response) opened."""
    out: list[tuple[dict, str]] = []
    entries = payload.get("entry") or []
    if not isinstance(entries, list):
        raise FHIRInputError("Bundle.entry must be a list of {\"resource\": {...}} objects.")
    for i, entry in enumerate(entries):
        place = f"{index_prefix}entry[{i}]"
        if not isinstance(entry, dict):
            raise FHIRInputError(f"Bundle {place} is a {type(entry).__name__}, not an object; each entry needs a 'resource'.")
        resource = entry.get("resource")
        if resource is None:
            ignored["Bundle entries without a resource (requests only)"] += 1
            continue
        if not isinstance(resource, dict) or not resource.get("resourceType"):
            raise FHIRInputError(f"Bundle {place}.resource has no resourceType; every resource needs one.")
        if resource["resourceType"] == "Bundle":
            out.extend(_entries(resource, ignored, place + ".resource."))
        else:
            out.append((resource, place))
    return out


# --- small readers over validated JSON -----------------------------------------------------------


def _first_coding(concept: dict | None) -> tuple[str | None, str | None, str | None]:
    """(system, code, display) of a CodeableConcept, display falling back to its text."""
    concept = concept or {}
    codings = concept.get("coding") or []
    first = codings[0] if codings else {}
    display = first.get("display") or concept.get("text")
    return first.get("system"), first.get("code"), display


def _codes(concept: dict | None) -> set[str]:
    return {c.get("code") for c in (concept or {}).get("coding") or [] if c.get("code")}


def _status(concept: dict | None) -> str | None:
    codes = _codes(concept)
    return next(iter(codes)) if codes else None


def _date_part(value: str | None) -> str | None:
    return value[:10] if value else None


def resolve_drugs(*texts: str | None) -> list[str]:
    """Canonical ingredient names of the first text the knowledge base identifies (names, brands,
    combinations such as "Percocet" or "amoxicillin / clavulanate", RxNorm codes); [] if none."""
    from clinical.knowledge import get_knowledge_base

    kb = get_knowledge_base()
    for text in texts:
        if text and text.strip():
            found = kb.identify_drug(text)
            if found.identified:
                return list(found.ingredients)
    return []


# --- the parser ---------------------------------------------------------------------------------


class _Builder:
    def __init__(self, as_of: date):
        self.as_of = as_of
        self.ctx = PatientContext()
        self.ignored: Counter = Counter()
        self.medication_index: dict[str, dict] = {}  # "Medication/x", fullUrl, "#x" -> Medication
        self.labs: dict[str, tuple[str, Lab]] = {}  # per test code: (sort key, latest Lab)
        self.birth_date: str | None = None  # only to keep it out of the lab dates, never stored

    def patient(self, r: dict) -> None:
        self.ctx.sex = r.get("gender")
        birth = r.get("birthDate")
        self.birth_date = birth
        if birth:
            parts = [int(p) for p in birth.split("-")]
            # A year-only birth date gives the age as of 1 July: within a year either way.
            born = date(parts[0], parts[1] if len(parts) > 1 else 7, parts[2] if len(parts) > 2 else 1)
            end = r.get("deceasedDateTime")
            on = date.fromisoformat(end[:10]) if end and len(end) >= 10 else self.as_of
            self.ctx.age_years = safe_harbor_age(max(0, age_in_years(born, on)))
        self.ignored["Patient name, identifiers, address, telecom and birth date (removed: identity is not needed)"] += 1

    def condition(self, r: dict) -> None:
        clinical, verification = _status(r.get("clinicalStatus")), _status(r.get("verificationStatus"))
        system, code, display = _first_coding(r.get("code"))
        if verification in ("refuted", "entered-in-error"):
            self.ignored[f"Condition ({verification})"] += 1
            return
        if code in _PREGNANCY_CONDITIONS and clinical in (None, "active"):
            self.ctx.pregnant = True
        if clinical not in (None, "active", "recurrence", "relapse") or r.get("abatementDateTime"):
            self.ignored[f"Condition (not active: {clinical or 'abated'})"] += 1
            return
        if not display:
            self.ignored["Condition without a code or text"] += 1
            return
        if not any(c.code == code and c.display == display for c in self.ctx.conditions):
            self.ctx.conditions.append(Condition(system=system, code=code, display=display))

    def medication(self, r: dict) -> None:
        status = r.get("status")
        active = ("active", "intended") if r["resourceType"] == "MedicationStatement" else ("active",)
        if status not in active:
            self.ignored[f"{r['resourceType']} (status {status})"] += 1
            return
        concept = r.get("medicationCodeableConcept")
        if concept is None and r.get("medicationReference"):
            ref = r["medicationReference"].get("reference", "")
            med = self.medication_index.get(ref) or next(
                (c for c in r.get("contained") or [] if ref == f"#{c.get('id')}"), None)
            concept = (med or {}).get("code") or {"text": r["medicationReference"].get("display")}
        system, code, display = _first_coding(concept)
        if not display and not code:
            self.ignored[f"{r['resourceType']} whose medication has no name or code"] += 1
            return
        from clinical.knowledge import get_knowledge_base

        # A medication given only by a code is kept (labelled by its code) and identified from it;
        # one that cannot be identified keeps the reason, so checks report it as not checked.
        found = get_knowledge_base().identify_medication(concept, (r.get("medicationReference") or {}).get("display"))
        text = display or f"{_coded('', system, code).strip(' ()') or code}"
        self.ctx.medications.append(Medication(
            text=text, drugs=list(found.ingredients), system=system, code=code, status=status,
            unidentified_reason=None if found.identified else found.reason))

    def allergy(self, r: dict) -> None:
        clinical, verification = _status(r.get("clinicalStatus")), _status(r.get("verificationStatus"))
        if clinical in ("inactive", "resolved") or verification in ("refuted", "entered-in-error"):
            self.ignored[f"AllergyIntolerance ({clinical if clinical in ('inactive', 'resolved') else verification})"] += 1
            return
        system, code, display = _first_coding(r.get("code"))
        if not display:
            self.ignored["AllergyIntolerance without a substance"] += 1
            return
        if code in ("716186003", "409137002", "428607008", "429625007"):  # SNOMED "no known ... allergy"
            self.ignored[f"AllergyIntolerance '{display}' (records no allergy)"] += 1
            return
        category = list(r.get("category") or [])
        drugs = resolve_drugs(display, (r.get("code") or {}).get("text"))
        self.ctx.allergies.append(Allergy(substance=display, drugs=drugs, category=category,
                                          criticality=r.get("criticality"), system=system, code=code))

    def observation(self, r: dict) -> None:
        if r.get("status") in ("entered-in-error", "cancelled"):
            self.ignored[f"Observation ({r.get('status')})"] += 1
            return
        system, code, display = _first_coding(r.get("code"))
        if code == _PREGNANCY_STATUS_LOINC:
            values = _codes(r.get("valueCodeableConcept"))
            if values & _PREGNANT_VALUES:
                self.ctx.pregnant = True
            elif values & _NOT_PREGNANT_VALUES and self.ctx.pregnant is None:
                self.ctx.pregnant = False
        categories = {c for cat in r.get("category") or [] for c in _codes(cat)}
        if not categories & {"laboratory", "vital-signs"}:
            self.ignored["Observation (not a laboratory result or vital sign)"] += 1
            return
        when = r.get("effectiveDateTime") or (r.get("effectivePeriod") or {}).get("start") or r.get("issued") or ""
        category = "laboratory" if "laboratory" in categories else "vital-signs"
        parts = [(code, display, r)] + [(*_first_coding(c.get("code"))[1:], c) for c in r.get("component") or []]
        for part_code, part_display, holder in parts:
            value, unit = _value(holder)
            if value is None or not part_display:
                continue
            key = part_code or part_display
            lab = Lab(code=part_code, display=part_display, value=value, unit=unit, date=_date_part(when), category=category)
            if key not in self.labs or when >= self.labs[key][0]:
                self.labs[key] = (when, lab)

    def finish(self) -> PatientContext:
        latest = sorted(self.labs.values(), key=lambda pair: pair[0], reverse=True)
        self.ctx.labs = [lab for _, lab in latest[:MAX_LABS]]
        for lab in self.ctx.labs:
            # A newborn's first results carry the birth date itself; that date is an identifier.
            if self.birth_date and lab.date and lab.date == self.birth_date[:10]:
                lab.date = "at birth"
        if len(latest) > MAX_LABS:
            self.ignored[f"older results beyond the {MAX_LABS} most recent tests"] += len(latest) - MAX_LABS
        self.ctx.ignored = [f"{what} x{n}" if n > 1 else what for what, n in sorted(self.ignored.items())]
        return self.ctx


def _value(holder: dict) -> tuple[float | str | None, str | None]:
    if "valueQuantity" in holder:
        q = holder["valueQuantity"]
        return _number(q.get("value")), q.get("unit") or q.get("code")
    if "valueCodeableConcept" in holder:
        return _first_coding(holder["valueCodeableConcept"])[2], None
    for key in ("valueInteger", "valueBoolean"):
        if key in holder:
            return str(holder[key]), None
    # valueString is free text and may name people; it is never copied.
    return None, None


def _number(v: Any) -> float | None:
    """A Quantity's value as a finite float; ValueError (made a FHIRInputError by the caller) for NaN,
    infinities and numbers a float cannot hold (JSON allows 1 followed by 400 zeros)."""
    if v is None:
        return None
    try:
        number = float(v)
    except OverflowError:
        raise ValueError("valueQuantity.value is out of range (too large for a measurement)") from None
    if not math.isfinite(number):
        raise ValueError(f"valueQuantity.value must be a finite number, got {v!r}")
    return number


def _subject_ref(r: dict) -> str | None:
    ref = (r.get("subject") or r.get("patient") or {}).get("reference")
    return ref or None


def parse_patient(payload: dict, *, as_of: date | None = None, patient_id: str | None = None) -> PatientContext:
    """A de-identified PatientContext from a FHIR R4 Bundle or a single resource.

    Bundles of any type are read (transaction, searchset, collection, batch, document, message,
    and the Bundles inside a batch-response). A Bundle that holds several patients is reduced to
    one: `patient_id`, or else the first Patient; the others are listed in `ignored`.
    as_of: the date ages are computed at (today by default).
    Raises FHIRInputError naming the resource and the field when the input is not valid FHIR R4.
    """
    if not isinstance(payload, dict):
        raise FHIRInputError(f"Expected a FHIR resource as a JSON object, got {type(payload).__name__}.")
    if not payload.get("resourceType"):
        raise FHIRInputError("The payload has no resourceType: send a FHIR R4 Bundle or resource JSON "
                             "(e.g. {\"resourceType\": \"Bundle\", \"type\": \"collection\", \"entry\": [...]}).")
    builder = _Builder(as_of or datetime.now().date())
    if payload["resourceType"] == "Bundle":
        shell = {k: v for k, v in payload.items() if k != "entry"}
        _validate(shell, None)
        resources = _entries(payload, builder.ignored)
    else:
        resources = [(payload, "resource")]

    patients = [(r, place) for r, place in resources if r["resourceType"] == "Patient"]
    chosen = next((p for p in patients if patient_id and p[0].get("id") == patient_id), patients[0] if patients else None)
    # References to the other patients (relative and by fullUrl), so their resources stay out.
    full_urls = {id(e.get("resource")): e.get("fullUrl") for e in payload.get("entry") or [] if isinstance(e, dict)}
    others: set[str] = set()
    for r, _ in patients:
        if chosen is not None and r is not chosen[0]:
            others.add(f"Patient/{r.get('id')}")
            if full_urls.get(id(r)):
                others.add(full_urls[id(r)])
    if len(patients) > 1:
        builder.ignored["Patient resources of other patients in the Bundle (one patient per context)"] += len(patients) - 1

    for r, place in resources:
        rtype = r["resourceType"]
        where = place if place.startswith("entry[") else None
        if rtype not in USED_TYPES:
            try:
                get_fhir_model_class(rtype)
            except (KeyError, ValueError):
                raise FHIRInputError(f"{_where(r, where)}: unknown resourceType {rtype!r}. Send FHIR R4 resources.") from None
            builder.ignored[f"{rtype} (resource type not used)"] += 1
            continue
        _validate(r, where)
        if rtype == "Medication":
            for key in (f"Medication/{r.get('id')}", full_urls.get(id(r))):
                if key:
                    builder.medication_index[key] = r
    for r, place in resources:
        rtype = r["resourceType"]
        if rtype not in USED_TYPES or rtype == "Medication":
            continue
        if rtype == "Patient":
            if chosen is not None and r is chosen[0]:
                _read(builder.patient, r, place)
            continue
        ref = _subject_ref(r)
        if ref and any(ref == o or ref.endswith("/" + o) for o in others):
            builder.ignored[f"{rtype} of another patient in the Bundle"] += 1
            continue
        handler = {"Condition": builder.condition, "MedicationRequest": builder.medication,
                   "MedicationStatement": builder.medication, "AllergyIntolerance": builder.allergy,
                   "Observation": builder.observation, "Patient": builder.patient}[rtype]
        _read(handler, r, place)
    return builder.finish()


def _read(handler, resource: dict, place: str) -> None:
    """Run one reader; a value valid in the schema but unusable (a date before year 1, a number out
    of a float's range, NaN) becomes a FHIRInputError naming the resource, never a crash."""
    try:
        handler(resource)
    except FHIRInputError:
        raise
    except (ValueError, OverflowError, ArithmeticError, TypeError) as exc:
        where = place if place.startswith("entry[") else None
        raise FHIRInputError(f"{_where(resource, where)} has a value this service cannot use ({exc}). "
                             "Fix the value (a real date, a finite number in range) and resend.") from None


def resources_of(payload: dict, resource_type: str) -> list[dict]:
    """Every resource of one type in a Bundle (nested Bundles opened) or the resource itself."""
    if not isinstance(payload, dict):
        return []
    if payload.get("resourceType") == "Bundle":
        return [r for r, _ in _entries(payload, Counter()) if r.get("resourceType") == resource_type]
    return [payload] if payload.get("resourceType") == resource_type else []


def merge_bundles(parts: list[Any]) -> dict:
    """One collection Bundle from several prefetch/search results (resources or Bundles)."""
    entries = []
    for part in parts:
        if isinstance(part, dict) and part.get("resourceType") == "Bundle":
            entries.extend(e for e in part.get("entry") or [] if isinstance(e, dict) and e.get("resource"))
        elif isinstance(part, dict) and part.get("resourceType"):
            entries.append({"resource": part})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}
