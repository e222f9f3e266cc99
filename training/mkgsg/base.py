"""What every MKGSG construction stage shares: seeds, rejections, ids and the answer convention.

A *seed* is one fact of the knowledge base (an ICD-10-CM code, an HPO-annotated disease, a drug,
an ONC interaction pair); a *builder* turns one seed into one capability record whose reference
answer and verification spec are derived from the knowledge base, or raises `Rejected` with a
short reason slug that the data card counts.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any, Callable, Literal

from training.records import CapabilityRecord

SeedSource = Literal["icd10", "hpo", "drugs", "interactions"]
SOURCES: tuple[SeedSource, ...] = ("icd10", "hpo", "drugs", "interactions")

# Every generated prompt asks for the answer on a last "Answer:" line, which the rule verifiers
# read (training.rewards.answers.final_answer_text); instruction-only records do not need it.
ANSWER_SYSTEM_PROMPT = (
    "You are a careful clinical assistant. Think briefly, then state your final answer on a last line "
    "starting with 'Answer:'."
)


@dataclass(frozen=True)
class Seed:
    """One knowledge-base fact to build from.

    `item` is the knowledge base's own record: an `Icd10Code` (source "icd10"), a `Disease`
    ("hpo"), a `Drug` ("drugs") or an `Interaction` ("interactions"); `key` is its stable id
    (code, disease id, DrugBank id, "drug_a+drug_b").
    """

    source: SeedSource
    key: str
    item: Any


class Rejected(Exception):
    """A seed that cannot give a valid record; `reason` is a short slug counted in the data card."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# A builder: (seed, knowledge base, rng) -> record, or raise Rejected.
Builder = Callable[[Seed, Any, random.Random], CapabilityRecord]


def record_id(capability: str, seed: Seed, variant: str = "") -> str:
    """Stable id from what the record is about, so the same seed gives the same id in every run."""
    digest = hashlib.sha1(f"{capability}|{seed.source}|{seed.key}|{variant}".encode()).hexdigest()[:12]
    return f"{capability}-{seed.source}-{digest}"


def option_letters(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]
