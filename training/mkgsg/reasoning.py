"""MKGSG "reasoning" items: multi-hop questions along real paths of the knowledge base.

Each record names its path in a `ReasoningSpec` (the entities a sound answer walks through, in
order) and its final answer in an `AnswerSpec`; the reference walks the path in that order, and
every builder checks it with the project's verifiers before returning (see knowledge.make_record).
Paths: phenotypes -> disease (HPO), drug -> interacting drugs -> safe addition (ONC),
code -> category -> block -> chapter (ICD-10-CM), brand -> generic -> interaction partner.
"""

from __future__ import annotations

import functools
import random
import re
from typing import Any, Sequence

from training.mkgsg.base import Builder, Rejected, Seed
from training.mkgsg.knowledge import (block_of, clean, diseases_with, display, drugbank_ids, high_partners,
                                      hpo_term, is_high_pair, make_record, multiple_choice, named_in,
                                      non_interacting, option_drug, other_names, usable_brands)
from training.records import AnswerSpec, CapabilityRecord, ReasoningSpec
from training.rewards.answers import normalize

CAPABILITY = "reasoning"
_ATTEMPTS = 30  # phenotype subsets tried before a disease counts as ambiguous


def chain_spec(chain: Sequence[str], synonyms: dict[str, Sequence[str]], most: int = 6) -> ReasoningSpec:
    """The path with up to `most` synonyms a step, keeping only those that cannot stand for another
    step: a synonym found inside another step's name (or holding it) would let one mention count as two."""
    padded = functools.lru_cache(maxsize=None)(lambda text: f" {normalize(text)} ")
    names = {entity: [entity, *synonyms.get(entity, ())] for entity in chain}
    kept: dict[str, list[str]] = {}
    for entity in chain:
        others = [padded(n) for e in chain if e != entity for n in names[e]]
        good = [s for s in dict.fromkeys(synonyms.get(entity, ())) if len(s) > 3 and s.lower() != entity.lower()
                and not any(padded(s) in o or o in padded(s) for o in others)]
        if good:
            kept[entity] = good[:most]
    return ReasoningSpec(chain=list(chain), synonyms=kept)


def _listing(names: Sequence[str]) -> str:
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]


# --- phenotypes -> disease -----------------------------------------------------------------------


def _distinctive(kb: Any, disease: Any) -> list[Any]:
    """The disease's observed, most specific phenotypes, the most telling first: those HPO states
    in at least 30% of patients, then those without a stated frequency, then rarer ones; within
    each, by information content (rarity among diseases). Rarity alone picks oddities such as
    "Incisional hernia" for Marfan syndrome."""
    terms = [(p, hpo_term(p.hpo_id)) for p in kb.disease_phenotypes(disease)]
    covered = {a.index for _, t in terms for a in t.all_parents}  # an ancestor adds nothing to its child
    scored = []
    for p, t in terms:
        if t.index in covered or named_in(disease.name, p.name) or named_in(p.name, disease.name):
            continue
        share = kb.phenotype_frequency(disease, p.hpo_id)
        if share == 0.0:
            continue
        ic = getattr(t.information_content, disease.source.lower(), 0.0)
        tier = 1 if share is None else (0 if share >= 0.3 else 2)
        scored.append((tier, -ic, p.hpo_id, p, t))
    return [(p, t) for *_, p, t in sorted(scored)]


def hpo_path(seed: Seed, kb: Any, rng: random.Random) -> CapabilityRecord:
    disease = kb.disease(seed.item)
    candidates = _distinctive(kb, disease)[:10]
    if len(candidates) < 4:
        raise Rejected("too-few-phenotypes", f"{disease.id} has {len(candidates)} distinctive phenotypes, need 4")
    size = rng.choice((3, 4))
    number = int(disease.id.split(":")[1])
    chosen = None
    for _ in range(_ATTEMPTS):
        combo = rng.sample(candidates, size)
        if any(named_in(a.name, b.name) for a, _ in combo for b, _ in combo if a is not b):
            continue
        # Exactly the KB's scoring: a disease scores 1.0 when every phenotype (or a child) is annotated.
        sets = sorted((diseases_with(t, disease.source) for _, t in combo), key=len)
        if [d.id for d in sets[0].intersection(*sets[1:])] == [number]:
            chosen = [p for p, _ in combo]
            break
    if chosen is None:
        raise Rejected("ambiguous-disease", f"no {size} phenotypes of {disease.id} single it out in {_ATTEMPTS} tries")
    names = [p.name for p in chosen]
    ranking = kb.diseases_for_phenotypes([p.hpo_id for p in chosen], limit=4, sources=(disease.source,))
    if ranking[0].disease.id != disease.id or (len(ranking) > 1 and ranking[1].score >= ranking[0].score):
        raise Rejected("ambiguous-disease", f"{disease.id} does not rank strictly first for {names}")
    rivals, seen = [], {disease.name.lower()}
    for match in ranking[1:]:
        if match.score > 0 and match.disease.name.lower() not in seen:
            seen.add(match.disease.name.lower())
            rivals.append(match.disease)
    question = rng.choice([
        "A patient presents with {f}. Which disease best explains all of these findings?",
        "Reason from these HPO phenotypes to the most likely diagnosis: {f}.",
        "Clinical findings: {f}. Which rare disease is the most likely diagnosis?",
    ]).format(f=_listing(names))
    reasoning = chain_spec([*names, disease.name],
                           {p.name: hpo_term(p.hpo_id).synonym for p in chosen})
    walk = (f"The findings are {_listing(names)}. Among {disease.source} diseases in HPO, only "
            f"{disease.name} is annotated with all of them.")
    ids = {"hpo": [p.hpo_id for p in chosen], "diseases": [disease.id]}
    # Multiple choice verifies small models reliably; a free-text answer must name a subtype
    # ("Alopecia areata 1") exactly, so numbered names stay multiple choice.
    if len(rivals) >= 3 and (rng.random() < 0.8 or re.search(r"\d", disease.name)):
        prompt, answer = multiple_choice(question, disease.name, [d.name for d in rivals[:3]], rng)
        ids["diseases"] += [d.id for d in rivals[:3]]
        return make_record(CAPABILITY, seed, "phenotypes-to-disease-mc", prompt, f"{walk}\nAnswer: {answer.value}",
                           answer, reasoning, **ids)
    answer = AnswerSpec(kind="entity", value=disease.name, accepted=[disease.id])
    return make_record(CAPABILITY, seed, "phenotypes-to-disease", question, f"{walk}\nAnswer: {disease.name}",
                       answer, reasoning, **ids)


# --- drug -> interactions -> safe addition -------------------------------------------------------


def interactions_path(seed: Seed, kb: Any, rng: random.Random) -> CapabilityRecord:
    pair = seed.item
    partners = high_partners(kb)
    for anchor, other in rng.sample([(pair.drug_a, pair.drug_b), (pair.drug_b, pair.drug_a)], 2):
        more = [p for p in partners.get(anchor, ()) if p != other and option_drug(kb, p)]
        if len(more) >= 2:
            break
    else:
        raise Rejected("too-few-partners", f"neither {pair.drug_a} nor {pair.drug_b} has 3 high-priority partners")
    interacting = [other, *rng.sample(more, 2)]
    if not all(is_high_pair(kb, anchor, d) for d in interacting):
        raise Rejected("not-high-priority", f"kb.interactions does not confirm every pair with {anchor}")
    safe = non_interacting(kb, anchor, other, rng, 1, exclude=interacting)[0]
    question = rng.choice([
        "A patient takes {a}. Which of these drugs can be added without an ONC high-priority interaction with {a}?",
        "{a} is on a patient's medication list. Which one of these can be co-prescribed without triggering an ONC "
        "high-priority drug-drug interaction alert?",
        "Only one of these drugs has no ONC high-priority interaction with {a}. Which one?",
    ]).format(a=anchor)
    prompt, answer = multiple_choice(question, safe, interacting, rng)
    in_order = [d for d in answer.options.values() if d != safe]  # the order a reader walks the options
    reasoning = chain_spec([anchor, *in_order, safe],
                           {d: usable_brands(kb, kb.normalize_drug(d)) for d in (anchor, *in_order, safe)
                            if kb.normalize_drug(d) is not None})
    reference = (f"{anchor} has ONC high-priority interactions with {_listing(in_order)}. "
                 f"{safe} has no ONC-listed interaction with it, so it is the only option that passes the ONC check "
                 f"(other interactions, indications and doses still need review).\nAnswer: {answer.value}")
    return make_record(CAPABILITY, seed, "safe-addition-mc", prompt, reference, answer, reasoning,
                       drugbank=drugbank_ids(kb, [anchor, *in_order, safe]))


# --- code -> category -> block -> chapter --------------------------------------------------------


def icd10_path(seed: Seed, kb: Any, rng: random.Random) -> CapabilityRecord:
    code = seed.item.code
    ancestors = kb.icd10_ancestors(code)
    category = next((a for a in ancestors[:-1] if re.fullmatch(r"[A-Z][0-9][0-9A-Z]", a)), None)
    block = block_of(kb, code)
    chapter = kb.icd10_chapter(code)
    steps, chain, synonyms = [], [code], {}
    if category and category != code:
        steps.append("its category")
        chain.append(category)
        synonyms[category] = [clean(kb.icd10_description(category))]
    if block:
        steps.append("the block that contains it")
        chain.append(block[0])
        synonyms[block[0]] = [block[1]]
    chain.append(chapter.title)
    synonyms[chapter.title] = [f"chapter {chapter.number}", chapter.code_range]
    question = rng.choice([
        "Walk up the ICD-10-CM hierarchy from code {c}: name {s}, and finally the chapter it belongs to.",
        "Starting at ICD-10-CM code {c}, name {s}, then give its chapter.",
        "Trace ICD-10-CM code {c} upward: {s}, then the chapter. Which chapter is it?",
    ]).format(c=code, s=_listing(steps) if steps else "each level above it")
    answer = AnswerSpec(kind="entity", value=chapter.title, accepted=[f"chapter {chapter.number}", chapter.code_range])
    parts = [f"{code} belongs to category {category} ({synonyms[category][0]})" if category in synonyms else code]
    if block:
        parts.append(f"which lies in block {block[0]} ({block[1]})")
    parts.append(f"inside chapter {chapter.number}: {chapter.title}")
    reference = ", ".join(parts) + f".\nAnswer: {chapter.title}"
    try:
        return make_record(CAPABILITY, seed, "code-to-chapter", question, reference, answer, chain_spec(chain, synonyms),
                           icd10=chain[:-1])
    except Rejected:  # a description that names a later level too early: walk the codes bare
        bare = " -> ".join(chain[:-1]) + f" -> chapter {chapter.number}: {chapter.title}.\nAnswer: {chapter.title}"
        return make_record(CAPABILITY, seed, "code-to-chapter", question, bare, answer, chain_spec(chain, synonyms),
                           icd10=chain[:-1])


# --- brand -> generic -> interaction partner -----------------------------------------------------


def drugs_path(seed: Seed, kb: Any, rng: random.Random) -> CapabilityRecord:
    drug = seed.item
    names, what = other_names(kb, drug)
    if not names:
        raise Rejected("no-brand-or-alias", f"{drug.name} has no brand or alias that names it alone")
    partners = [p for p in high_partners(kb).get(drug.name, ())
                if option_drug(kb, p) and is_high_pair(kb, drug.name, p)]
    if not partners:
        raise Rejected("no-interactions", f"{drug.name} has no ONC high-priority partner")
    name, partner = display(rng.choice(names), what), rng.choice(partners)
    wrong = non_interacting(kb, drug.name, partner, rng, 3, exclude=[partner])
    question = rng.choice([
        "A patient's medication list shows {n}. Which of these drugs has an ONC high-priority interaction with it?",
        "A patient takes {n}. Adding which of these drugs should trigger a high-priority interaction alert?",
    ]).format(n=name)
    prompt, answer = multiple_choice(question, partner, wrong, rng)
    reference = (f"{name} is {'a brand' if what == 'brand' else 'another name'} of {drug.name}. ONC lists "
                 f"{drug.name} with {partner} as a high-priority interaction.\nAnswer: {answer.value}")
    return make_record(CAPABILITY, seed, f"{what}-to-interaction-mc", prompt, reference, answer,
                       chain_spec([name, drug.name, partner], {}),
                       drugbank=[drug.drugbank_id, *drugbank_ids(kb, [partner, *wrong])])


BUILDERS: dict[str, Builder] = {
    "icd10": icd10_path,
    "hpo": hpo_path,
    "interactions": interactions_path,
    "drugs": drugs_path,
}
