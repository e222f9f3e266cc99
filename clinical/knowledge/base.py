"""One object in front of all the sources, so callers need not know which package holds a fact.

The sources themselves are process-wide (see loading.py): constructing a KnowledgeBase loads
nothing, and two KnowledgeBase objects share whatever has been loaded.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator

# Module aliases keep them apart from the parameters called `drugs` and `phenotypes` below.
from clinical.knowledge import ansm as _ansm
from clinical.knowledge import drugs as _drugs
from clinical.knowledge import graded as _graded
from clinical.knowledge import icd10 as _icd10
from clinical.knowledge import identify as _identify
from clinical.knowledge import interactions as _interactions
from clinical.knowledge import phenotype_matching as _matching
from clinical.knowledge import phenotypes as _phenotypes
from clinical.knowledge.loading import all_load_stats
from clinical.knowledge.models import (
    Disease,
    DiseaseMatch,
    Drug,
    DrugIdentity,
    DrugMention,
    GradedInteraction,
    Icd10Chapter,
    Icd10Code,
    Interaction,
    KnowledgeError,
    LoadStats,
    Phenotype,
    Unidentified,
)

_SOURCES = {
    "icd10": _icd10.ICD10,
    "hpo": _phenotypes.HPO,
    "drugs": _drugs.DRUGS,
    "interactions": _interactions.INTERACTIONS,
    "ansm": _ansm.ANSM,
}


class KnowledgeBase:
    """ICD-10-CM, HPO phenotypes and diseases, drug names and ONC drug interactions."""

    # --- drugs ---------------------------------------------------------------------------------

    def normalize_drug(self, mention: str) -> Drug | None:
        """Generic, brand, synonym or DrugBank id -> canonical drug; None if unknown ("Lipitor" -> atorvastatin)."""
        return _drugs.normalize_drug(mention)

    def find_drugs(self, text: str) -> list[DrugMention]:
        """Drug mentions in free text, with character offsets."""
        return _drugs.find_drugs(text)

    def identify_drug(self, text_or_code: str) -> DrugIdentity | Unidentified:
        """Name, brand, combination ("amoxicillin / clavulanate") or RxNorm code ("314076") -> ingredients.

        Never guesses: what it cannot identify comes back as Unidentified(query, reason), which
        every check must report as "not checked".
        """
        return _identify.identify_drug(text_or_code)

    def identify_medication(self, concept: dict | None, text: str | None = None) -> DrugIdentity | Unidentified:
        """A FHIR CodeableConcept (RxNorm codings, displays, text) -> ingredients, or Unidentified."""
        return _identify.identify_medication(concept, text)

    def drug_by_drugbank_id(self, drugbank_id: str) -> Drug | None:
        return _drugs.drug_by_drugbank_id(drugbank_id)

    def iter_drugs(self, with_drugbank_id: bool = True) -> Iterator[Drug]:
        return _drugs.iter_drugs(with_drugbank_id)

    # --- ICD-10-CM -----------------------------------------------------------------------------

    def is_valid_icd10(self, code: str) -> bool:
        return _icd10.is_valid_icd10(code)

    def normalize_icd10(self, code: str) -> str:
        """'e119' -> 'E11.9'; KnowledgeError if not a valid code."""
        return _icd10.normalize_icd10(code)

    def icd10_description(self, code: str) -> str:
        return _icd10.icd10_description(code)

    def icd10_ancestors(self, code: str) -> list[str]:
        """Nearest first, ending with the chapter number: 'E11.9' -> ['E11', 'E08-E13', '4']."""
        return _icd10.icd10_ancestors(code)

    def icd10_chapter(self, code: str) -> Icd10Chapter:
        return _icd10.icd10_chapter(code)

    def icd10_chapters(self) -> list[Icd10Chapter]:
        return _icd10.icd10_chapters()

    def icd10_code(self, code: str) -> Icd10Code:
        return _icd10.icd10_code(code)

    def iter_icd10_codes(self, chapter: int | str | None = None, leaves_only: bool = False) -> Iterator[Icd10Code]:
        return _icd10.iter_icd10_codes(chapter, leaves_only)

    # --- phenotypes and diseases ---------------------------------------------------------------

    def phenotype(self, query: str) -> Phenotype:
        """HPO id, name or synonym -> term ('Arachnodactyly' -> HP:0001166)."""
        return _phenotypes.phenotype(query)

    def disease(self, query: str | Disease) -> Disease:
        """'OMIM:154700', 'ORPHA:558' or an exact name -> disease."""
        return _phenotypes.disease(query)

    def disease_phenotypes(self, disease: str | Disease, include_modifiers: bool = False) -> list[Phenotype]:
        return _phenotypes.disease_phenotypes(disease, include_modifiers)

    def phenotype_frequency(self, disease: str | Disease, phenotype: str) -> float | None:
        return _phenotypes.phenotype_frequency(disease, phenotype)

    def diseases_for_phenotypes(
        self, phenotypes: Iterable[str], limit: int = 10, sources: Iterable[str] = ("OMIM", "ORPHA")
    ) -> list[DiseaseMatch]:
        """Diseases ranked by the fraction of the phenotypes they are annotated with, as (disease, score)."""
        return _matching.diseases_for_phenotypes(phenotypes, limit, sources)

    def matched_phenotypes(self, disease: str | Disease, phenotypes: Iterable[str]) -> list[Phenotype]:
        return _matching.matched_phenotypes(disease, phenotypes)

    def iter_diseases(self, source: str | None = None) -> Iterator[Disease]:
        return _phenotypes.iter_diseases(source)

    # --- interactions --------------------------------------------------------------------------

    def interactions(self, drugs: Iterable[str], *, strict: bool = False) -> list[Interaction]:
        """ONC-listed interactions among the drugs, each pair once; strict=True raises on unknown names."""
        return _interactions.interactions(drugs, strict=strict)

    def iter_interaction_pairs(self, severity: str | None = None) -> Iterator[Interaction]:
        return _interactions.iter_interaction_pairs(severity)

    def interactions_between(self, drug_a: str, drug_b: str) -> list[GradedInteraction]:
        """Graded statements (ONC and ANSM) on two drugs, strictest first; each names source and version.

        Names, brands, combinations and RxNorm codes are accepted; a combination is checked per
        ingredient. KnowledgeError if either drug cannot be identified (never an empty "no interaction").
        """
        return _graded.interactions_between(drug_a, drug_b)

    def graded_interactions(self, drugs: Iterable[str]) -> list[GradedInteraction]:
        """interactions_between over every pair of the drugs, each statement once, strictest first."""
        return _graded.graded_interactions(drugs)

    # --- loading -------------------------------------------------------------------------------

    def load_stats(self) -> dict[str, LoadStats]:
        """Seconds and resident-memory delta of each source loaded so far, by source name."""
        return all_load_stats()

    def preload(self, sources: Iterable[str] | None = None) -> dict[str, LoadStats]:
        """Load sources now rather than on first use (a server's startup, a benchmark).

        sources: any of "icd10", "hpo", "drugs", "interactions", "ansm"; all of them by default.
        """
        names = list(sources) if sources is not None else list(_SOURCES)
        unknown = [n for n in names if n not in _SOURCES]
        if unknown:
            raise KnowledgeError(f"Unknown knowledge source(s) {unknown}; choose from {sorted(_SOURCES)}.")
        for name in names:
            _SOURCES[name].get()
        return self.load_stats()


@functools.cache
def get_knowledge_base() -> KnowledgeBase:
    """The process-wide KnowledgeBase."""
    return KnowledgeBase()
