"""Drug names from `drug_named_entity_recognition` (DrugBank, MeSH, NHS and MedlinePlus names, offline).

The package's dictionary maps every lowercase variant (generic, brand, salt, foreign spelling) to
one canonical name. We read that dictionary directly for exact normalisation, and use the
package's own `find_drugs` for mentions inside free text. Its network features (PubChem, OMOP,
structure download) are never switched on: knowledge must not depend on the network.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

from clinical.knowledge.loading import LazySource
from clinical.knowledge.models import Drug, DrugMention, KnowledgeError

_DRUGBANK_ID = re.compile(r"^DB\d{5}$")
# Words as the package expects them (it matches one or two tokens at a time); keeps hyphenated
# and dotted names whole ("co-trimoxazole") and the character offsets of each token.
_TOKEN = re.compile(r"\w+(?:[-'.]\w+)*")


@dataclass(frozen=True)
class _DrugIndex:
    finder: ModuleType  # drug_named_entity_recognition.drugs_finder, for find_drugs
    variant_to_canonical: dict[str, str]
    canonical_to_data: dict[str, dict]
    variant_data: dict[str, dict]
    drugbank_to_canonical: dict[str, str]


def _load() -> _DrugIndex:
    # Importing the finder unpickles the dictionary and builds its fuzzy n-gram index (~2.5 s).
    from drug_named_entity_recognition import drugs_finder

    # We only ever match exactly (find_drugs(is_fuzzy_match=False) below), so the fuzzy index, half
    # of the 356 MB the import adds to a process, is dropped: 176 MB stay. Fuzzy matching would now
    # find nothing, which is why it stays off.
    drugs_finder.ngram_to_variant.clear()
    drugs_finder.variant_to_ngrams.clear()

    # Every variant maps to exactly one canonical name in 2.0.9; take the first should that change.
    variant_to_canonical = {v: c[0] for v, c in drugs_finder.drug_variant_to_canonical.items() if c}
    canonical_to_data = drugs_finder.drug_canonical_to_data
    drugbank_to_canonical: dict[str, str] = {}
    for canonical, data in canonical_to_data.items():
        # The package's variant map leaves out ~760 canonical names themselves ("estradiol",
        # "nicotine"), so a drug's own generic name must resolve to it explicitly.
        variant_to_canonical.setdefault(canonical, canonical)
        drugbank_id = data.get("drugbank_id")
        if drugbank_id:
            drugbank_to_canonical.setdefault(drugbank_id, canonical)
    return _DrugIndex(
        finder=drugs_finder,
        variant_to_canonical=variant_to_canonical,
        canonical_to_data=canonical_to_data,
        variant_data=drugs_finder.drug_variant_to_variant_data,
        drugbank_to_canonical=drugbank_to_canonical,
    )


DRUGS = LazySource("drugs", _load)


def _normalise_text(mention: str) -> str:
    return " ".join(mention.lower().split())


def _unique(items: list[str]) -> tuple[str, ...]:
    # The dictionary's synonym lists repeat entries; dict keeps first-seen order.
    return tuple(dict.fromkeys(items))


def _drug(canonical: str) -> Drug:
    index = DRUGS.get()
    data = index.canonical_to_data.get(canonical, {})
    synonyms = _unique([canonical] + [s.lower() for s in data.get("synonyms", [])])
    brands = tuple(s for s in synonyms if index.variant_data.get(s, {}).get("is_brand"))
    return Drug(
        name=canonical,
        drugbank_id=data.get("drugbank_id"),
        synonyms=synonyms,
        brands=brands,
        mesh_id=data.get("mesh_id"),
        mesh_tree=tuple(data.get("mesh_tree", ())),
    )


def normalize_drug(mention: str) -> Drug | None:
    """The canonical drug for a name, brand, synonym or DrugBank id; None if the dictionary lacks it.

    Matching is exact after lowercasing and collapsing whitespace ("Lipitor" and "LIPITOR" both
    give atorvastatin). A phrase with dose or form ("atorvastatin 20 mg") is not a drug name:
    use find_drugs() for text.
    """
    if not isinstance(mention, str) or not mention.strip():
        return None
    index = DRUGS.get()
    key = _normalise_text(mention)
    canonical = index.variant_to_canonical.get(key)
    if canonical is None and _DRUGBANK_ID.match(key.upper()):
        canonical = index.drugbank_to_canonical.get(key.upper())
    return _drug(canonical) if canonical is not None else None


def drug_by_drugbank_id(drugbank_id: str) -> Drug | None:
    """The drug the dictionary files under a DrugBank id ("DB01076"), or None."""
    if not isinstance(drugbank_id, str):
        return None
    canonical = DRUGS.get().drugbank_to_canonical.get(drugbank_id.strip().upper())
    return _drug(canonical) if canonical is not None else None


def find_drugs(text: str) -> list[DrugMention]:
    """Drug mentions in free text, in order of appearance, with character offsets.

    Exact dictionary matches of one or two words (the package's own matcher), case-insensitive.
    """
    if not isinstance(text, str):
        raise KnowledgeError(f"find_drugs() takes text, got {type(text).__name__}: {text!r}.")
    index = DRUGS.get()
    tokens = list(_TOKEN.finditer(text))
    if not tokens:
        return []
    matches = index.finder.find_drugs(
        [t.group() for t in tokens],
        is_fuzzy_match=False,
        is_ignore_case=True,
        is_include_structure=False,
        is_use_omop_api=False,
        use_pub_chem_api=False,
    )
    mentions = []
    for _data, first, last in matches:
        start, end = tokens[first].start(), tokens[last - 1].end()
        surface = text[start:end]
        # Re-resolve from the surface form, so a mention carries the same Drug as normalize_drug.
        canonical = index.variant_to_canonical.get(_normalise_text(surface))
        if canonical is not None:
            mentions.append(DrugMention(text=surface, start=start, end=end, drug=_drug(canonical)))
    return sorted(mentions, key=lambda m: m.start)


def iter_drugs(with_drugbank_id: bool = True) -> Iterator[Drug]:
    """Every canonical drug, in the dictionary's (alphabetical) order."""
    index = DRUGS.get()
    for canonical, data in index.canonical_to_data.items():
        if with_drugbank_id and not data.get("drugbank_id"):
            continue
        yield _drug(canonical)
