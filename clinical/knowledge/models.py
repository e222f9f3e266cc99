"""Typed records the knowledge base hands out.

Frozen dataclasses, not dicts: the synthetic-data generator, the reward verifiers and the
guardrails all read these, and a typo in a field name should fail loudly, not return None.
Collections are tuples so every record is hashable and can be used as a set member or dict key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple


class KnowledgeError(ValueError):
    """A query the knowledge base cannot answer (unknown code, id or name).

    A ValueError so callers that validate user input can catch it with the usual except clause.
    """


class KnowledgeSourceError(RuntimeError):
    """A source failed to load: a broken install, not a bad query."""


@dataclass(frozen=True)
class LoadStats:
    """How much one source cost to load: measured once, at first use."""

    source: str
    seconds: float
    rss_delta_mb: float | None  # None where the platform cannot report resident memory
    load_count: int = 1


# --- ICD-10-CM ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Icd10Chapter:
    number: str  # "4", as numbered in the ICD-10-CM tabular list
    title: str  # "Endocrine, nutritional and metabolic diseases"
    code_range: str  # "E00-E89"


@dataclass(frozen=True)
class Icd10Code:
    code: str  # dotted form, "E11.9"
    description: str
    chapter: str  # chapter number, see Icd10Chapter
    is_leaf: bool  # no subdivisions; in ICD-10-CM the leaf codes are the billable ones


# --- Drugs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drug:
    """A canonical drug from the drug-named-entity-recognition dictionary."""

    name: str  # lowercase generic name, "atorvastatin"
    drugbank_id: str | None  # "DB01076"; None for the dictionary entries without one
    synonyms: tuple[str, ...] = ()  # lowercase, includes brands and the name itself
    brands: tuple[str, ...] = ()  # the synonyms the dictionary flags as brands (incomplete)
    # The dictionary's MeSH descriptor is often a pharmacological-action class rather than the
    # drug itself (atorvastatin -> D019161, HMG-CoA reductase inhibitors); the tree numbers are
    # the drug's own. Kept as given so nothing here claims more than the source does.
    mesh_id: str | None = None
    mesh_tree: tuple[str, ...] = ()


@dataclass(frozen=True)
class DrugMention:
    """A drug found in free text; start/end are character offsets into that text."""

    text: str
    start: int
    end: int
    drug: Drug


@dataclass(frozen=True)
class Interaction:
    """An unordered drug pair listed by ONC; drug_a sorts before drug_b."""

    drug_a: str
    drug_b: str
    severity: Literal["high", "low"]
    source: str
    evidence: tuple[str, str]  # the DrugBank ids the ONC list gives drug_a and drug_b
    classes: tuple[str, str] | None = None  # ONC class labels, where the list has them


# --- Phenotypes and diseases -------------------------------------------------------------------


@dataclass(frozen=True)
class Phenotype:
    hpo_id: str  # "HP:0001166"
    name: str  # "Arachnodactyly"


@dataclass(frozen=True)
class Disease:
    id: str  # "OMIM:154700", "ORPHA:558", "DECIPHER:1"
    name: str
    source: Literal["OMIM", "ORPHA", "DECIPHER"]


class DiseaseMatch(NamedTuple):
    """A ranked disease; a tuple so `for disease, score in ...` works."""

    disease: Disease
    score: float  # fraction of the query phenotypes the disease is annotated with, 0..1


# --- Graded interactions (ONC + ANSM) and drug identification ----------------------------------

Grade = Literal["critical", "warning", "info"]


@dataclass(frozen=True)
class GradedInteraction:
    """One source's statement that two drugs interact, with a project grade and the source's words.

    Several sources (or several ANSM entries, e.g. a substance entry and a class entry) may speak
    about the same pair; each is its own record so that none of their evidence is merged away.
    """

    drugs: tuple[str, str]  # canonical English names, alphabetical
    severity: Grade  # the project's grade (see docs/guardrails.md for the mapping)
    source: str  # "ANSM Thésaurus des interactions médicamenteuses", "ONC high-priority (Phansalkar 2012)"
    source_version: str  # "2020-10" for the ANSM thesaurus; the dataset snapshot for ONC
    summary: str  # English, built from the structured fields (grade, the entries matched, management)
    evidence: str  # the source's own text, verbatim (French for ANSM)
    source_grade: str  # the source's level(s) as written: "CONTRE-INDICATION", "high priority"
    matched_as: tuple[str, str]  # the source entries that matched drugs[0] / drugs[1] ("ANTIVITAMINES K")
    mechanism: str | None = None  # source text, where the source gives one
    management: str | None = None  # source text ("what to do"), where the source gives one

    @property
    def citation(self) -> str:
        return f"{self.source}, version {self.source_version}"


@dataclass(frozen=True)
class DrugIdentity:
    """What a drug mention, FHIR coding or RxNorm code is, as the ingredients the checks look up."""

    query: str  # what was asked about, as given
    ingredients: tuple[str, ...]  # canonical English names, one per active ingredient
    method: str  # dictionary | combination | brand-table | rxnorm-table | rxnorm-display | text-mentions
    source: str  # where the identification comes from (a source name, with a line or version)
    rxnorm: str | None = None  # the RxNorm code that was resolved, if any

    @property
    def identified(self) -> bool:
        return True


@dataclass(frozen=True)
class Unidentified:
    """A drug the knowledge base could not identify: checks must report it as not checked."""

    query: str
    reason: str  # says what was tried, so the card can tell the clinician what to do

    @property
    def identified(self) -> bool:
        return False

    @property
    def ingredients(self) -> tuple[str, ...]:
        return ()
