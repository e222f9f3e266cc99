"""Seed selection, stratified across the knowledge base's sources.

Sampling uniformly over all facts would give ICD-10-CM (tens of thousands of codes, most of them
injuries and external causes) most of the data. Instead each draw first picks a source, then a
stratum inside it (an ICD-10-CM chapter; an annotation source for diseases), then a fact, so no
area dominates the mix.
"""

from __future__ import annotations

import functools
import random

from training.mkgsg.base import Seed, SeedSource


@functools.cache
def _icd10_by_chapter(kb) -> dict[str, tuple]:
    chapters = {}
    for chapter in kb.icd10_chapters():
        codes = tuple(kb.iter_icd10_codes(chapter.number, leaves_only=True))
        if codes:
            chapters[chapter.number] = codes
    return chapters


@functools.cache
def _diseases_by_source(kb) -> dict[str, tuple]:
    # DECIPHER's few hundred CNV syndromes are left out: their names are region labels, not diseases.
    return {source: tuple(sorted(kb.iter_diseases(source), key=lambda d: d.id)) for source in ("OMIM", "ORPHA")}


@functools.cache
def _drugs(kb) -> tuple:
    # Of ~12,000 dictionary entries most are research chemicals with no other name to ask about;
    # seeds are the ~1,400 established drugs with a brand or an unambiguous alias.
    from training.mkgsg.knowledge import other_names

    return tuple(sorted((d for d in kb.iter_drugs() if d.drugbank_id and other_names(kb, d)[0]), key=lambda d: d.name))


@functools.cache
def _interaction_pairs(kb) -> tuple:
    return tuple(sorted(kb.iter_interaction_pairs("high"), key=lambda i: (i.drug_a, i.drug_b)))


def draw_seed(kb, source: SeedSource, rng: random.Random) -> Seed:
    """One fact of `source`, drawn stratum first."""
    if source == "icd10":
        chapters = _icd10_by_chapter(kb)
        code = rng.choice(chapters[rng.choice(sorted(chapters))])
        return Seed("icd10", code.code, code)
    if source == "hpo":
        by_source = _diseases_by_source(kb)
        disease = rng.choice(by_source[rng.choice(sorted(by_source))])
        return Seed("hpo", disease.id, disease)
    if source == "drugs":
        drug = rng.choice(_drugs(kb))
        return Seed("drugs", drug.drugbank_id, drug)
    if source == "interactions":
        pair = rng.choice(_interaction_pairs(kb))
        return Seed("interactions", f"{pair.drug_a}+{pair.drug_b}", pair)
    raise ValueError(f"unknown seed source {source!r}; choose from icd10, hpo, drugs, interactions")

