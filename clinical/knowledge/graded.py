"""Graded interactions from every source, one record per source statement.

Sources: the ONC high-priority and non-interruptive lists (interactions.py) and the ANSM thesaurus
(ansm.py). Grades: ONC high-priority -> critical, ONC non-interruptive -> info; ANSM per GRADES in
ansm.py. Each record names its source and version and keeps the source's words, so a card can say
who says so and a reviewer can read the original.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from clinical.knowledge import ansm as _ansm
from clinical.knowledge import interactions as _onc
from clinical.knowledge.identify import identify_drug
from clinical.knowledge.models import GradedInteraction, KnowledgeError

ONC_VERSION = "dbmi-pitt/public-PDDI-analysis@8199ee66 (lists of 2012/2013)"
_RANK = {"critical": 0, "warning": 1, "info": 2}


def ingredients_of(drug: str) -> tuple[str, ...]:
    """Canonical ingredients of a name, brand, combination or RxNorm code; KnowledgeError if unknown."""
    found = identify_drug(drug)
    if not found.identified:
        raise KnowledgeError(f"Cannot check interactions for {drug!r}: {found.reason}.")  # type: ignore[union-attr]
    return found.ingredients


def _onc_records(a: str, b: str) -> list[GradedInteraction]:
    out = []
    for x in _onc.interactions([a, b]):
        high = x.severity == "high"
        drugs = (x.drug_a, x.drug_b)
        label = "high-priority" if high else "non-interruptive (low priority)"
        out.append(GradedInteraction(
            drugs=drugs, severity="critical" if high else "info", source=x.source, source_version=ONC_VERSION,
            summary=f"{x.drug_a} + {x.drug_b}: on the ONC {label} interaction list"
                    + (" (avoid the combination unless the benefit clearly outweighs the risk)." if high else "."),
            evidence=f"ONC {label} list row: {x.drug_a} ({x.evidence[0]}) + {x.drug_b} ({x.evidence[1]})"
                     + (f"; classes {x.classes[0]} / {x.classes[1]}" if x.classes else ""),
            source_grade="high priority" if high else "non-interruptive",
            matched_as=(x.classes or drugs), mechanism=None, management=None))
    return out


@functools.lru_cache(maxsize=65536)
def _pair(a: str, b: str) -> tuple[GradedInteraction, ...]:
    """Every statement on one pair of canonical ingredients (a < b), cached: order-sign asks the same pairs."""
    records = _onc_records(a, b)
    substances = _ansm.ansm_substances(a) | _ansm.ansm_substances(b)
    for entry, matched_a, matched_b in _ansm.entries_between(a, b):
        levels = entry.levels_for(substances)  # a level reserved for other named substances is left out
        records.append(GradedInteraction(
            drugs=(a, b), severity=entry.severity_for(substances), source=_ansm.SOURCE,
            source_version=_ansm.VERSION, summary=_ansm.english_summary(a, b, entry, matched_a, matched_b, levels),
            evidence=entry.description, source_grade=" / ".join(level for level, _ in levels),
            matched_as=(matched_a, matched_b), mechanism=entry.mechanism or None,
            management="; ".join(info for _, info in levels if info) or None))
    return tuple(sorted(records, key=lambda r: (_RANK[r.severity], r.source, r.matched_as)))


def interactions_between(drug_a: str, drug_b: str) -> list[GradedInteraction]:
    """All graded statements about two drugs (names, brands, combinations or RxNorm codes), strictest first.

    Combination products are checked ingredient by ingredient. KnowledgeError names a drug that
    cannot be identified: nothing is reported as "no interaction" for a drug nobody recognised.
    """
    out: list[GradedInteraction] = []
    for a in ingredients_of(drug_a):
        for b in ingredients_of(drug_b):
            if a != b:
                out.extend(_pair(*sorted((a, b))))
    return sorted(dict.fromkeys(out), key=lambda r: _RANK[r.severity])


def graded_interactions(drugs: Iterable[str]) -> list[GradedInteraction]:
    """Graded statements among all pairs of the drugs, each pair once, strictest first."""
    if isinstance(drugs, str):
        raise KnowledgeError(f"graded_interactions() takes a list of drugs, got the string {drugs!r}; wrap it in a list.")
    names = list(dict.fromkeys(drugs))
    ingredients = {name: ingredients_of(name) for name in names}
    found: dict[GradedInteraction, None] = {}
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            for a in ingredients[x]:
                for b in ingredients[y]:
                    if a != b:
                        found.update(dict.fromkeys(_pair(*sorted((a, b)))))
    return sorted(found, key=lambda r: _RANK[r.severity])
