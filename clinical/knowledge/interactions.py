"""Drug-drug interactions from the ONC lists vendored in `data/` (see data/ATTRIBUTION.md).

- high: the ONC high-priority list (Phansalkar et al. 2012), interactions that warrant an
  interruptive alert. Every listed pair is high priority by construction.
- low: the ONC non-interruptive list (Phansalkar et al. 2013), real but low-priority pairs.

Absence from both lists does not mean two drugs are safe together: the lists are short
(1,150 + ~1,900 pairs) and were chosen for alerting policy, not completeness.

Each ONC drug is keyed by the DrugBank id the list gives it. A query drug matches it by DrugBank
id or, failing that, by name, because the drug dictionary and the ONC lists do not always agree
on ids (verapamil is DB00661 in ONC and DB14063 in the dictionary).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from clinical.knowledge.drugs import DRUGS, drug_by_drugbank_id, normalize_drug
from clinical.knowledge.loading import LazySource
from clinical.knowledge.models import Interaction, KnowledgeError

HIGH_PRIORITY_SOURCE = "ONC high-priority (Phansalkar 2012)"
NON_INTERRUPTIVE_SOURCE = "ONC non-interruptive (Phansalkar 2013)"
DATA_DIR = Path(__file__).parent / "data"

# The non-interruptive list maps its "Salicylates" class to methacholine and niclosamide, which are
# not salicylates: those 20 rows pair ACE inhibitors and clopidogrel with drugs ONC never listed.
_MISMAPPED_CLASSES = frozenset({"Salicylates"})
_SEVERITY_ORDER = {"high": 0, "low": 1}


@dataclass(frozen=True)
class _InteractionIndex:
    pairs: dict[frozenset[str], Interaction]  # keyed by the two ONC DrugBank ids
    name_to_id: dict[str, str]  # lowercase ONC drug name -> its ONC DrugBank id
    drugbank_ids: frozenset[str]  # every DrugBank id either list uses


def _read_csv(filename: str) -> list[dict[str, str]]:
    path = DATA_DIR / filename
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; it ships with the package (see data/ATTRIBUTION.md).")
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _canonical_label(drugbank_id: str, name: str) -> str:
    """The name normalize_drug would give this ONC drug, so answers and queries agree."""
    drug = drug_by_drugbank_id(drugbank_id) or normalize_drug(name)
    return drug.name if drug is not None else " ".join(name.lower().split())


def _record(
    side_1: tuple[str, str], side_2: tuple[str, str], severity: str, source: str, classes: tuple[str, str] | None
) -> Interaction:
    """An Interaction with its two sides in alphabetical order of canonical name."""
    (label_1, id_1), (label_2, id_2) = side_1, side_2
    if (label_2, id_2) < (label_1, id_1):
        label_1, id_1, label_2, id_2 = label_2, id_2, label_1, id_1
        classes = (classes[1], classes[0]) if classes else None
    return Interaction(label_1, label_2, severity, source, (id_1, id_2), classes)  # type: ignore[arg-type]


def _load() -> _InteractionIndex:
    pairs: dict[frozenset[str], Interaction] = {}
    name_to_id: dict[str, str] = {}
    labels: dict[str, str] = {}

    def side(drugbank_id: str, name: str) -> tuple[str, str]:
        drugbank_id, name = drugbank_id.strip(), name.strip()  # some names carry trailing spaces
        name_to_id.setdefault(name.lower(), drugbank_id)
        if drugbank_id not in labels:
            labels[drugbank_id] = _canonical_label(drugbank_id, name)
        return labels[drugbank_id], drugbank_id

    for row in _read_csv("onc_high_priority.csv"):
        a, b = side(row["drug1_drugbank_id"], row["drug1_name"]), side(row["drug2_drugbank_id"], row["drug2_name"])
        key = frozenset((a[1], b[1]))
        if len(key) == 2 and key not in pairs:  # rows list most pairs in both orders
            pairs[key] = _record(a, b, "high", HIGH_PRIORITY_SOURCE, None)

    for row in _read_csv("onc_non_interruptive.csv"):
        classes = (row["drug1_class"].strip(), row["drug2_class"].strip())
        if _MISMAPPED_CLASSES & set(classes):
            continue
        a, b = side(row["drug1_drugbank_id"], row["drug1_name"]), side(row["drug2_drugbank_id"], row["drug2_name"])
        key = frozenset((a[1], b[1]))
        if len(key) == 2 and key not in pairs:  # a pair on both lists stays high priority
            pairs[key] = _record(a, b, "low", NON_INTERRUPTIVE_SOURCE, classes)

    return _InteractionIndex(pairs=pairs, name_to_id=name_to_id, drugbank_ids=frozenset(labels))


INTERACTIONS = LazySource("interactions", _load, depends_on=(DRUGS,))


def _resolve(mention: str, index: _InteractionIndex) -> tuple[str, set[str]] | None:
    """(identity of the drug, the ONC ids it matches), or None when no source knows the mention."""
    text = " ".join(str(mention).lower().split())
    drug = normalize_drug(mention)
    candidate_ids = {text.upper()}  # the mention may itself be an ONC DrugBank id
    if drug is not None and drug.drugbank_id:
        candidate_ids.add(drug.drugbank_id)
    onc_ids = candidate_ids & index.drugbank_ids
    for name in (text, drug.name if drug else text):
        if name in index.name_to_id:
            onc_ids.add(index.name_to_id[name])
    if drug is None and not onc_ids:
        return None
    return (drug.name if drug else text), onc_ids


def interactions(drugs: Iterable[str], *, strict: bool = False) -> list[Interaction]:
    """Every ONC-listed interaction among the given drug mentions (names, brands or DrugBank ids).

    Order does not matter and each pair is reported once, high priority first. A drug given twice
    under two names ("Lipitor", "atorvastatin") is not paired with itself. Mentions nobody knows
    are skipped, unless strict=True, which raises KnowledgeError naming them: a safety check that
    must not pass silently on a misspelt drug should use strict.
    """
    if isinstance(drugs, str):
        raise KnowledgeError(
            f"interactions() takes a list of drug names, got the single string {drugs!r}; wrap it in a list."
        )
    index = INTERACTIONS.get()
    resolved: list[tuple[str, set[str]]] = []
    unknown: list[str] = []
    for mention in drugs:
        hit = _resolve(mention, index)
        if hit is None:
            unknown.append(mention)
        else:
            resolved.append(hit)
    if strict and unknown:
        raise KnowledgeError(
            f"Unknown drug name(s) {unknown!r}: not in the drug dictionary or the ONC lists. "
            f"Check the spelling, or pass a generic name, brand or DrugBank id "
            f"(e.g. 'atorvastatin', 'Lipitor', 'DB01076')."
        )
    found: dict[frozenset[str], Interaction] = {}
    for i, (identity_i, ids_i) in enumerate(resolved):
        for identity_j, ids_j in resolved[i + 1 :]:
            if identity_i == identity_j:
                continue
            for a in ids_i:
                for b in ids_j:
                    key = frozenset((a, b))
                    if len(key) == 2 and key in index.pairs:
                        found[key] = index.pairs[key]
    return sorted(found.values(), key=lambda x: (_SEVERITY_ORDER[x.severity], x.drug_a, x.drug_b))


def iter_interaction_pairs(severity: str | None = None) -> Iterator[Interaction]:
    """Every listed pair once, in file order; severity "high" or "low" to take one list."""
    if severity not in (None, "high", "low"):  # checked now, not at the first next()
        raise KnowledgeError(f"Unknown severity {severity!r}; use 'high', 'low' or None for both.")
    pairs = INTERACTIONS.get().pairs.values()
    return (p for p in pairs if severity is None or p.severity == severity)
