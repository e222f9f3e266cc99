"""What an instruction-following question is about: one knowledge-base fact as a `Topic`.

A topic holds the KB facts of its seed (an ICD-10-CM code, a disease's HPO features, a drug's
names and listings, an ONC interaction pair) as sentences, sections and a JSON object, which the
instruction builder then lays out under verifiable constraints.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

# The drug helpers over the KB live with the integration builders, which lean on them most.
from training.mkgsg.base import Rejected
from training.mkgsg.integration import cap as _cap
from training.mkgsg.integration import drug_names, high_partners, join, onc_classes, onc_drug_index, onc_drugs


def _clean(text: str) -> str:
    # Characters that the layouts give meaning to (highlights, titles, placeholders) stay out of KB text.
    return " ".join(re.sub(r"[*<>\[\]\"]", "", text).split()).rstrip(".")


# --- topics: what a question is about, as KB facts ----------------------------------------------


@dataclass(frozen=True)
class Topic:
    kind: str
    questions: tuple[str, ...]
    title: str
    facts: tuple[str, ...]  # sentences; the first names the subject
    sections: tuple[tuple[str, str], ...]  # (heading, text)
    fields: dict[str, Any]  # a JSON object of KB fields, in order
    highlights: tuple[str, ...]  # phrases of the facts worth highlighting
    note: str  # where the facts come from (a postscript's content)
    provenance: dict[str, list[str]] = field(default_factory=dict)
    yes_no: tuple | None = None  # (question, "yes" | "no", one-sentence explanation[, extra DrugBank ids])


def _icd10_topic(code, kb, rng: random.Random) -> Topic:
    c, desc = code.code, _clean(code.description)
    groups, chapter = kb.icd10_ancestors(c)[:-1], kb.icd10_chapter(c)
    category = next((g for g in groups if len(g) == 3 and "-" not in g), None)
    block = next((g for g in groups if "-" in g), None)
    facts = [f"ICD-10-CM code {c} stands for {desc}."]
    hierarchy = []
    if groups and groups[0] not in (category, block):
        hierarchy.append(f"Its parent code is {groups[0]} ({_clean(kb.icd10_description(groups[0]))}).")
    if category:
        hierarchy.append(f"It belongs to category {category}: {_clean(kb.icd10_description(category))}.")
    if block:
        hierarchy.append(f"That falls in the block {_clean(kb.icd10_description(block))}.")
    chapter_fact = f"The code is in chapter {chapter.number}: {_clean(chapter.title)} ({chapter.code_range})."
    facts += [*hierarchy, chapter_fact]
    if code.is_leaf:
        facts.append(f"{c} has no further subdivisions in ICD-10-CM.")
    other = rng.choice([ch for ch in kb.icd10_chapters() if ch.number != chapter.number])
    asked = chapter if rng.random() < 0.5 else other
    yes_no = (f"Does ICD-10-CM code {c} belong to chapter {asked.number} ({_clean(asked.title)})?",
              "yes" if asked is chapter else "no", chapter_fact)
    return Topic(
        "icd10-describe",
        (f"What does the ICD-10-CM code {c} describe, and where does it sit in the classification?",
         f"Explain the ICD-10-CM code {c} for a new clinical coder.",
         f"Describe the diagnosis code {c}: what it means and which groups of the code set hold it.",
         f"Give an overview of ICD-10-CM code {c}."),
        f"ICD-10-CM {c}", tuple(facts),
        tuple((h, t) for h, t in (("Meaning", facts[0]), ("Hierarchy", " ".join(hierarchy)), ("Chapter", chapter_fact)) if t),
        {"code": c, "description": desc, **({"category": category} if category else {}),
         "chapter": chapter.number, "chapter_title": chapter.title, "is_leaf": code.is_leaf, "ancestors": groups},
        tuple(x for x in (c, category, f"chapter {chapter.number}") if x),
        "These facts come from the ICD-10-CM code set.",
        {"icd10": [c, *groups]}, yes_no)


_FEATURE = ("{p} ({i}) is one of its annotated features", "It is annotated with {p} ({i})", "HPO lists {p} ({i}) for it")


def _disease_topic(disease, kb, rng: random.Random) -> Topic:
    phenotypes = sorted(kb.disease_phenotypes(disease), key=lambda p: p.hpo_id)  # a fixed order to sample from
    if len(phenotypes) < 3:
        raise Rejected("too-few-phenotypes", f"{disease.id} has {len(phenotypes)} HPO features; 3 are needed")
    name = _clean(disease.name)
    chosen = sorted(rng.sample(phenotypes, rng.randint(3, min(6, len(phenotypes)))), key=lambda p: p.hpo_id)
    facts = [f"{name} ({disease.id}) has {len(phenotypes)} phenotypic features annotated in the Human Phenotype Ontology."]
    for p in chosen:
        frequency = kb.phenotype_frequency(disease, p.hpo_id)
        share = f", with an annotated frequency of {frequency:.0%}" if frequency else ""
        facts.append(rng.choice(_FEATURE).format(p=_clean(p.name), i=p.hpo_id) + share + ".")
    names = [_clean(p.name) for p in chosen]
    return Topic(
        "hpo-features",
        (f"List clinical features of {name}.",
         f"Which phenotypic features does the Human Phenotype Ontology annotate to {name} ({disease.id})?",
         f"Describe the clinical picture of {name} using its HPO phenotype terms."),
        f"Features of {name}", tuple(facts),
        (("Disease", facts[0]), ("Features", "; ".join(names) + "."),
         ("Source", f"The features come from the HPO disease annotations for {disease.id}.")),
        {"disease": name, "id": disease.id, "features": names, "hpo_ids": [p.hpo_id for p in chosen],
         "feature_count": len(phenotypes)},
        tuple(names[:3]), "The features come from the Human Phenotype Ontology annotations.",
        {"hpo": [p.hpo_id for p in chosen], "diseases": [disease.id]})


def _drug_topic(drug, kb, rng: random.Random) -> Topic:
    names = drug_names(drug, kb)
    brands = [n for n in names if n in drug.brands]
    others = [n for n in names if n not in brands][:4]
    identity = f"{_cap(drug.name)} is listed in DrugBank as {drug.drugbank_id}."
    naming = " ".join(([f"Brand names in the drug dictionary include {join(brands)}."] if brands else [])
                      + ([f"Other names for it include {join(others)}."] if others else []))
    classes, partners = onc_classes(kb).get(drug.name, ()), high_partners(kb).get(drug.name, ())
    grouping = " ".join(([f"The ONC interaction lists place it in the class {join(classes)}."] if classes else [])
                        + ([f"Its MeSH tree number is {drug.mesh_tree[0]}."] if drug.mesh_tree else []))
    alerts = (f"The ONC high-priority list pairs it with {len(partners)} drug(s), among them {join(partners[:3])}."
              if partners else "")
    facts = [identity, *(s for s in re.split(r"(?<=\.) ", f"{naming} {grouping} {alerts}".strip()) if s)]
    if len(facts) < 2:
        raise Rejected("too-few-drug-facts", f"{drug.name} has no names, class or interactions besides its id")
    what = "brand names" if brands else "other names"
    return Topic(
        "drug-card",
        (f"What is {drug.name}? Give its DrugBank identifier and the names it is known under.",
         f"Write a short identification card for the drug {drug.name}.",
         f"Explain what the drug {drug.name} is and list its {what}."),
        f"Drug card: {drug.name}", tuple(facts),
        tuple((h, t) for h, t in (("Drug", identity), ("Names", naming), ("Classification", grouping),
                                  ("Interactions", alerts)) if t),
        {k: v for k, v in (("drug", drug.name), ("drugbank_id", drug.drugbank_id), ("brand_names", brands),
                           ("other_names", others), ("onc_classes", list(classes)),
                           ("high_priority_partners", list(partners[:5])), ("mesh_tree", list(drug.mesh_tree))) if v},
        tuple(x for x in (drug.name, drug.drugbank_id, *brands[:1]) if x),
        "The names and identifiers come from the drug dictionary.", {"drugbank": [drug.drugbank_id]})


def _pair_topic(pair, kb, rng: random.Random) -> Topic:
    index = onc_drug_index(kb)
    da, db = index.get(pair.drug_a), index.get(pair.drug_b)
    if da is None or db is None:
        raise Rejected("drug-not-in-dictionary", f"{pair.drug_a} or {pair.drug_b} has no dictionary entry")
    a, b, partners = da.name, db.name, high_partners(kb)
    listing = f"{_cap(a)} and {b} are listed as a high-priority drug-drug interaction (source: {pair.source})."
    ids = f"The ONC list cites DrugBank {pair.evidence[0]} for {a} and {pair.evidence[1]} for {b}."
    counts = (f"On the same list {a} has {len(partners.get(a, ()))} high-priority partner(s) "
              f"and {b} has {len(partners.get(b, ()))}.")
    aliases = [f"{_cap(d.name)} is also known as {join(n[:3])}." for d in (da, db) if (n := drug_names(d, kb))]
    yes_no = (f"Is the combination of {a} and {b} on the ONC high-priority interaction list?", "yes", listing)
    if rng.random() < 0.5:  # a "no": a drug the lists never pair with `a` (a fact about the lists, not about safety)
        for other in rng.sample(onc_drugs(kb), 8):
            if other.name not in (a, b) and not kb.interactions([a, other.name]):
                yes_no = (f"Is the combination of {a} and {other.name} on the ONC high-priority interaction list?",
                          "no", f"The ONC interaction lists do not include the pair {a} and {other.name}.",
                          (other.drugbank_id,))
                break
    return Topic(
        "interaction-pair",
        (f"Describe the drug interaction pair {a} and {b}.",
         f"What does the ONC interaction list say about combining {a} with {b}?",
         f"Summarise what the ONC lists record about the pair {a} + {b}."),
        f"{a} + {b}", (listing, ids, counts, *aliases),
        (("Pair", listing), ("Identifiers", ids), ("Partners", counts)),
        {"drug_a": a, "drug_b": b, "severity": pair.severity, "source": pair.source,
         "drugbank_ids": list(pair.evidence), "partners_a": len(partners.get(a, ())), "partners_b": len(partners.get(b, ()))},
        (a, b, "high-priority"), "The pair comes from the ONC high-priority interaction list.",
        {"drugbank": [da.drugbank_id, db.drugbank_id]}, yes_no)


TOPICS = {"icd10": _icd10_topic, "hpo": _disease_topic, "drugs": _drug_topic, "interactions": _pair_topic}
