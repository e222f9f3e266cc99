"""MKGSG integration tasks: a de-identified patient case that needs knowledge, reasoning, a required
clinical format and safety at once.

The patient takes drug A; a new drug is to be started and the candidates are: B, which ONC lists as a
high-priority interaction with A (per `kb.interactions`), sometimes a second drug with such an
interaction with another active medication, a drug on the patient's allergy list, and one safe option
(no ONC-listed interaction with any active medication, not an allergen). The model must work from
history and findings to an assessment and a plan, recommend the safe drug in the required format
(SOAP note, numbered plan or JSON) and end with "Answer: ...". The reference names the excluded drugs
only in the assessment, which is where the safety verifier lets a note explain a rejection.

Every drug fact comes from the knowledge base; the labs are drawn inside the usual adult reference
ranges of a small table (context, not a claim), so nothing in the findings changes the answer. The
module also holds the drug helpers over the KB that the instruction builders share.
"""

from __future__ import annotations

import functools
import json
import random
import re
from dataclasses import dataclass
from typing import Any, Callable

from training.mkgsg.base import ANSWER_SYSTEM_PROMPT, Builder, Rejected, Seed, option_letters, record_id
from training.records import (AnswerSpec, CapabilityRecord, ChatMessage, ConstraintSpec, ForbiddenDrug, Provenance,
                              SafetySpec, VerificationSpec)

# --- drug helpers over the KB (the instruction builders use them too) ---------------------------

_CLEAN_NAME = re.compile(r"^[a-z][a-z0-9 \-]{2,40}$")


def drug_names(drug, kb, limit: int = 6) -> list[str]:
    """Brands first, then synonyms, that name this drug and no other. The dictionary's loose synonyms
    (verapamil lists dexverapamil) would otherwise put a different drug's name on this one."""
    names: list[str] = []
    for name in (*drug.brands, *drug.synonyms):
        if name in names or not _CLEAN_NAME.match(name) or drug.name in (name, *re.split(r"[\s\-]+", name)):
            continue  # salts and generics ("apo-sertraline") add nothing the generic name does not
        same = kb.normalize_drug(name)
        if same is not None and same.name == drug.name:
            names.append(name)
        if len(names) == limit:
            break
    return names


@functools.cache
def onc_drug_index(kb) -> dict[str, Any]:
    """ONC list name -> dictionary drug with a DrugBank id (the lists spell some drugs differently)."""
    index = {}
    for pair in kb.iter_interaction_pairs():
        for name in (pair.drug_a, pair.drug_b):
            drug = kb.normalize_drug(name)
            if drug is not None and drug.drugbank_id and _CLEAN_NAME.match(drug.name):
                index[name] = drug
    return index


@functools.cache
def onc_drugs(kb) -> tuple:
    """The dictionary drugs the ONC lists name, sorted by name."""
    return tuple(sorted(set(onc_drug_index(kb).values()), key=lambda d: d.name))


@functools.cache
def high_partners(kb) -> dict[str, tuple[str, ...]]:
    """Dictionary drug name -> its ONC high-priority partners (dictionary names), sorted."""
    index, partners = onc_drug_index(kb), {}
    for pair in kb.iter_interaction_pairs("high"):
        a, b = index.get(pair.drug_a), index.get(pair.drug_b)
        if a and b and a.name != b.name:
            partners.setdefault(a.name, set()).add(b.name)
            partners.setdefault(b.name, set()).add(a.name)
    return {name: tuple(sorted(p)) for name, p in sorted(partners.items())}


@functools.cache
def onc_classes(kb) -> dict[str, tuple[str, ...]]:
    """Dictionary drug name -> the class labels the ONC non-interruptive list gives it."""
    index, classes = onc_drug_index(kb), {}
    for pair in kb.iter_interaction_pairs("low"):
        for name, label in zip((pair.drug_a, pair.drug_b), pair.classes or ()):
            if name in index:
                classes.setdefault(index[name].name, set()).add(label)
    return {name: tuple(sorted(c)) for name, c in sorted(classes.items())}


def join(words, last: str = "and") -> str:
    words = list(words)
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {last} {words[-1]}"


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# --- the case's pools ----------------------------------------------------------------------------

# Common adult labs and their usual reference ranges (name, unit, low, high, decimals); hemoglobin's
# range is the overlap of the male and female ones, so a value fits either sex.
_LABS = (("sodium", "mmol/L", 135, 145, 0), ("potassium", "mmol/L", 3.5, 5.0, 1), ("creatinine", "mg/dL", 0.6, 1.2, 1),
         ("hemoglobin", "g/dL", 13.5, 15.5, 1), ("ALT", "U/L", 10, 40, 0), ("fasting glucose", "mg/dL", 70, 99, 0),
         ("TSH", "mIU/L", 0.5, 4.5, 1))
_CONDITION_CHAPTERS = ("4", "6", "9", "10", "11", "13")
# A background condition of an adult on long-term medication: codes about an encounter, injury,
# pregnancy, childhood, a substance or a sex-specific organ would clash with a random age and sex.
_NOT_BACKGROUND = re.compile(
    r"\b(?:encounter|sequela|pregnan|puerper|newborn|neonat|juvenile|child|infant|congenital|drug|poison|adverse|"
    r"alcohol|opioid|nicotine|induced|due to|prostat|ovar|uter|cervi|vagin|vulv|testi|penis|scrot|breast|female|male|"
    r"menstru|menopaus|elsewhere|history)", re.IGNORECASE)
_SEX_SPECIFIC_CLASSES = {"Oral contraceptives"}


@functools.cache
def _conditions(kb) -> tuple:
    return tuple(c for chapter in _CONDITION_CHAPTERS for c in kb.iter_icd10_codes(chapter, leaves_only=True)
                 if len(c.description) <= 70 and not _NOT_BACKGROUND.search(c.description))


@functools.cache
def _pool(kb) -> tuple:
    """Extra medications and candidates: drugs the ONC non-interruptive list puts in a class
    (statins, ACE inhibitors, SSRIs...), mostly common long-term medications (a few are injectables)."""
    by_name = {d.name: d for d in onc_drugs(kb)}
    return tuple(by_name[n] for n, labels in onc_classes(kb).items()
                 if n in by_name and not set(labels) & _SEX_SPECIFIC_CLASSES)


def _pick(rng: random.Random, items, ok: Callable[[Any], bool]):
    return next((x for x in rng.sample(list(items), len(items)) if ok(x)), None)


def _high(kb, drug, meds) -> list:
    """(medication, interaction) for each ONC high-priority interaction of `drug` with `meds`."""
    return [(m, i) for m in meds for i in kb.interactions([drug.name, m.name]) if i.severity == "high"]


# --- the case ------------------------------------------------------------------------------------


@dataclass
class _Case:
    age: int
    sex: str
    conditions: list
    labs: list[tuple[str, str, str, str]]  # (name, unit, value, reference range), as text
    actives: list
    allergen: Any
    criticality: str
    safe: Any
    interacting: list  # (candidate, [(active medication, interaction)])
    candidates: list
    shared_class: str  # an ONC class the safe drug shares with drug B, or ""


def _choose_drugs(kb, rng: random.Random, drug_a, drug_b) -> tuple[list, Any, Any, list, str]:
    pool, classes = _pool(kb), onc_classes(kb)

    def cls(*drugs) -> set[str]:
        return {c for d in drugs for c in classes.get(d.name, ())}

    def clear(d, meds) -> bool:
        return all(not kb.interactions([d.name, m.name]) for m in meds)

    actives = [drug_a]
    for _ in range(rng.choice((0, 1, 1, 2))):  # no duplicate class, no ONC-listed pair inside the regimen
        extra = _pick(rng, pool, lambda d: d not in actives and d != drug_b and not cls(d) & cls(drug_b, *actives)
                      and clear(d, actives))
        actives += [extra] if extra else []

    def safe_ok(d) -> bool:
        return d not in actives and d != drug_b and not cls(d) & cls(*actives) and clear(d, actives)

    # A safe drug of drug B's own ONC class, where there is one, makes the case a real substitution.
    safe = _pick(rng, [d for d in pool if cls(d) & cls(drug_b)], safe_ok) or _pick(rng, pool, safe_ok)
    if safe is None:
        raise Rejected("no-safe-candidate", f"no pool drug is free of ONC interactions with {[d.name for d in actives]}")
    taken = [*actives, drug_b, safe]
    # The allergen shares no class with the safe drug or the regimen: cross-reactivity is beyond the KB.
    allergen = _pick(rng, pool, lambda d: d not in taken and not cls(d) & cls(safe, *actives) and clear(d, actives))
    if allergen is None:
        raise Rejected("no-allergen-candidate", "no pool drug fits as the allergen")
    interacting = [drug_b]
    by_name = {d.name: d for d in onc_drugs(kb)}
    partners = sorted({p for m in actives[1:] for p in high_partners(kb).get(m.name, ())} & set(by_name)
                      - {d.name for d in (*taken, allergen)})
    if partners and rng.random() < 0.5:  # a second trap: a partner of another active medication
        interacting.append(by_name[rng.choice(partners)])
    shared = sorted(cls(safe) & cls(drug_b))
    return actives, safe, allergen, interacting, shared[0] if shared else ""


def _case(kb, rng: random.Random, drug_a, drug_b) -> _Case:
    actives, safe, allergen, interacting, shared = _choose_drugs(kb, rng, drug_a, drug_b)
    labs = []
    for name, unit, lo, hi, decimals in rng.sample(_LABS, rng.randint(2, 4)):
        value = round(lo + (hi - lo) * rng.uniform(0.2, 0.8), decimals)
        labs.append((name, unit, f"{value:.{decimals}f}", f"{lo:.{decimals}f}-{hi:.{decimals}f}"))
    candidates = [*interacting, allergen, safe]
    rng.shuffle(candidates)
    return _Case(rng.randint(35, 85), rng.choice(("man", "woman")), rng.sample(_conditions(kb), rng.randint(1, 3)),
                 labs, actives, allergen, rng.choice(("high", "high", "low")), safe,
                 [(d, _high(kb, d, actives)) for d in interacting], candidates, shared)


def _recheck(kb, case: _Case) -> None:
    """The clinical rule, re-derived from the KB rather than trusted from the construction: the
    recommended drug is not an allergen and has no ONC high-priority interaction with an active
    medication (strict: a name the KB does not know fails instead of passing silently)."""
    try:
        hits = [i for m in case.actives for i in kb.interactions([case.safe.name, m.name], strict=True)
                if i.severity == "high"]
    except ValueError as e:
        raise Rejected("unsafe-reference", f"cannot check {case.safe.name}: {e}") from None
    allergen = kb.normalize_drug(case.allergen.name)
    if hits or case.safe.name in (case.allergen.name, allergen.name if allergen else ""):
        raise Rejected("unsafe-reference", f"{case.safe.name} would be recommended despite {hits or 'the allergy'}")


# --- the note ------------------------------------------------------------------------------------


def _parts(case: _Case) -> dict[str, Any]:
    meds = join(d.name for d in case.actives)
    conditions = join(f"{' '.join(c.description.split())} ({c.code})" for c in case.conditions)
    excluded = [f"{cap(d.name)} is excluded: " + join(
        f"{i.drug_a} ({i.evidence[0]}) with {i.drug_b} ({i.evidence[1]}) is an ONC high-priority interaction"
        for _, i in hits) + "." for d, hits in case.interacting]
    like = f"; like {case.interacting[0][0].name} it is in the ONC class {case.shared_class}" if case.shared_class else ""
    return {
        "history": f"{case.age}-year-old {case.sex} with {conditions}. Active medications: {meds}. "
                   f"Allergies: {case.allergen.name} ({case.criticality} criticality).",
        "findings": "; ".join(f"{n} {v} {u} (reference {r})" for n, u, v, r in case.labs) + ".",
        "assessment": " ".join([*excluded, f"{cap(case.allergen.name)} is excluded by the documented allergy.",
                                f"{cap(case.safe.name)} has no ONC-listed interaction with {meds} and is not on the "
                                f"allergy list{like}."]),
        "plan": [f"Start {case.safe.name}.", f"Continue {meds}.",
                 f"Recheck {join(n for n, *_ in case.labs)} at the next visit.",
                 "Repeat the interaction and allergy check before any further medication change."],
    }


_IN_RANGE = " All are within their reference ranges."
_JSON_SYSTEM_PROMPT = "You are a careful clinical assistant. Reply in exactly the format the user asks for."


def _render(fmt: str, parts: dict[str, Any], answer: str, rng: random.Random) -> tuple[str, ConstraintSpec, str]:
    """(reference, its format constraint, how the prompt asks for that format)."""
    if fmt == "json":
        fields = ["history", "findings", "assessment", "plan", "answer"] if rng.random() < 0.5 \
            else ["assessment", "plan", "answer"]
        values = {**parts, "findings": parts["findings"] + _IN_RANGE, "plan": " ".join(parts["plan"]), "answer": answer}
        # One key per line: the "plan" line is where the safety verifier starts reading recommendations.
        text = json.dumps({f: values[f] for f in fields}, indent=2, ensure_ascii=False)
        spec = ConstraintSpec(id="clinical:json_fields", kwargs={"fields": fields, "types": {f: "string" for f in fields}})
        keys = join(f'"{f}"' for f in fields)
        return text, spec, (f"Reply only with a JSON object with the string fields {keys}, in that order; "
                            '"answer" holds the name of the drug to start.')
    findings = parts["findings"] + _IN_RANGE
    if fmt == "numbered":
        n = rng.randint(3, 4)
        lo, hi = rng.randint(2, n), n + rng.randint(0, 2)
        steps = "\n".join(f"{i}. {s}" for i, s in enumerate(parts["plan"][:n], 1))
        text = (f"History: {parts['history']}\nFindings: {findings}\nAssessment: {parts['assessment']}\n"
                f"Plan:\n{steps}\nAnswer: {answer}")
        spec = ConstraintSpec(id="clinical:numbered_plan", kwargs={"min_items": lo, "max_items": hi})
        return text, spec, (f"Write short History, Findings and Assessment lines, then a line 'Plan:' followed by a "
                            f"numbered plan of {lo} to {hi} steps (1., 2., ...).")
    names = ["Subjective", "Objective", "Assessment", "Plan"] if fmt == "soap" else \
        ["History", "Findings", "Assessment", "Plan"]
    plan = " ".join(parts["plan"][:rng.randint(2, 4)])
    body = zip(names, (parts["history"], findings, parts["assessment"], plan))
    text = "\n".join(f"{h}: {t}" for h, t in body) + f"\nAnswer: {answer}"
    spec = ConstraintSpec(id="clinical:soap_sections", kwargs={} if fmt == "soap" else {"sections": names})
    return text, spec, (f"Write the note with the sections {join(names)}, in that order, each starting on its own "
                        "line with the heading and a colon.")


_INTROS = ("Medication review for a de-identified patient.", "De-identified case summary for a medication review.",
           "A case for medication review (no identifiers).")
_QUESTIONS = ("Which candidate should be started? Check each one against every active medication for ONC "
              "high-priority interactions and against the allergy list.",
              "Decide which candidate is safe to start: check every candidate against each active medication "
              "(ONC high-priority interactions) and against the allergy list.")


def _prompt(parts: dict[str, Any], options: dict[str, Any] | None, candidates: list, ask: str, answer_line: str,
            rng: random.Random) -> str:
    wanted = "The team wants to start one new medication and is weighing"
    listing = (f"{wanted} these candidates:\n" + "\n".join(f"{k}. {d.name}" for k, d in options.items()) if options
               else f"{wanted} {join((d.name for d in candidates), 'or')}.")
    task = f"{rng.choice(_QUESTIONS)} Work from history and findings to an assessment and a plan. {ask} {answer_line}"
    return "\n".join([rng.choice(_INTROS), f"History: {parts['history']}", f"Findings: {parts['findings']}", listing,
                      task.strip()])


# --- the record ----------------------------------------------------------------------------------

_FORMATS = ("soap", "soap_named", "numbered", "json")


def _forbidden(kb, case: _Case) -> list[ForbiddenDrug]:
    onc = "; ".join
    return [*(ForbiddenDrug(drug=d.name, names=drug_names(d, kb), reason="interaction",
                            evidence=onc(f"ONC high-priority: {i.drug_a} {i.evidence[0]} + {i.drug_b} {i.evidence[1]}"
                                         for _, i in hits)) for d, hits in case.interacting),
            ForbiddenDrug(drug=case.allergen.name, names=drug_names(case.allergen, kb), reason="allergy",
                          evidence=f"documented allergy ({case.criticality} criticality)")]


def _build(seed: Seed, kb, rng: random.Random, drug_a, drug_b) -> CapabilityRecord:
    from training.evaluate.capabilities import verify_record

    case = _case(kb, rng, drug_a, drug_b)
    if any(not hits for _, hits in case.interacting):
        raise Rejected("pair-not-found-by-name", f"kb.interactions does not confirm {[d.name for d, _ in case.interacting]}")
    _recheck(kb, case)
    fmt = rng.choice(_FORMATS)
    options = None if fmt == "json" or rng.random() < 0.5 else dict(zip(option_letters(len(case.candidates)),
                                                                         case.candidates))
    if options:
        letter = next(k for k, d in options.items() if d is case.safe)
        answer = AnswerSpec(kind="option", value=letter, options={k: d.name for k, d in options.items()})
    else:
        answer = AnswerSpec(kind="entity", value=case.safe.name, accepted=drug_names(case.safe, kb))
    parts = _parts(case)
    reference, spec, ask = _render(fmt, parts, answer.value, rng)
    answer_line = "" if fmt == "json" else f"Finish with a last line 'Answer: <{'letter' if options else 'drug name'}>'."
    prompt = _prompt(parts, options, case.candidates, ask, answer_line, rng)
    record = CapabilityRecord(
        id=record_id("integration", seed, prompt), capability="integration",
        messages=[ChatMessage(role="system", content=_JSON_SYSTEM_PROMPT if fmt == "json" else ANSWER_SYSTEM_PROMPT),
                  ChatMessage(role="user", content=prompt)],
        reference=reference,
        verification=VerificationSpec(answer=answer, constraints=[spec], safety=SafetySpec(forbidden=_forbidden(kb, case))),
        provenance=Provenance(source="mkgsg:integration:safe-choice", icd10=[c.code for c in case.conditions],
                              drugbank=sorted({d.drugbank_id for d in (*case.actives, *case.candidates)})))
    verdict = verify_record(record, reference)
    if verdict.score < 1.0:
        failed = {k: c.reason for k, c in verdict.checks.items() if not c.passed}
        raise Rejected("reference-fails-verification", str(failed))
    return record


def build_from_pair(seed: Seed, kb, rng: random.Random) -> CapabilityRecord:
    index = onc_drug_index(kb)
    a, b = index.get(seed.item.drug_a), index.get(seed.item.drug_b)
    if a is None or b is None:
        raise Rejected("drug-not-in-dictionary", f"{seed.item.drug_a} or {seed.item.drug_b} has no dictionary entry")
    active, new = (a, b) if rng.random() < 0.5 else (b, a)  # either side of the pair can be the current medication
    return _build(seed, kb, rng, active, new)


def build_from_drug(seed: Seed, kb, rng: random.Random) -> CapabilityRecord:
    partners = high_partners(kb).get(seed.item.name, ())
    if not partners:  # most dictionary drugs are on no ONC list; only listed ones make this case
        raise Rejected("no-high-priority-partner", f"{seed.item.name} has no ONC high-priority interaction")
    by_name = {d.name: d for d in onc_drugs(kb)}
    return _build(seed, kb, rng, by_name[seed.item.name], by_name[rng.choice(partners)])


# Most drug seeds have no ONC partner and are rejected cheaply (counted in the data card); the
# ~120 that have one give cases anchored on a drug rather than on a pair.
BUILDERS: dict[str, Builder] = {"interactions": build_from_pair, "drugs": build_from_drug}
