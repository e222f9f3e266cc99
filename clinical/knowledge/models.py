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
