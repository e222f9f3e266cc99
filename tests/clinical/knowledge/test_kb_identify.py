"""Drug identification: brands, combinations, RxNorm codes and FHIR codings -> ingredients; never a guess."""

from __future__ import annotations

import csv

import pytest

from clinical.knowledge import DrugIdentity, Unidentified, get_knowledge_base
from clinical.knowledge.identify import BRAND_FILE, DATA_DIR
from clinical.knowledge.rxnorm_table import CURATED_FILE, FHIR_CODES_FILE, RXNORM_SYSTEM, harvest


@pytest.fixture(scope="module")
def kb():
    return get_knowledge_base()


CASES = [
    # the seven brands the issue found unrecognised
    ("brand_imdur", "Imdur", ("isosorbide mononitrate",)),
    ("brand_augmentin", "Augmentin", ("amoxicillin", "clavulanic acid")),
    ("brand_keflex", "Keflex", ("cephalexin",)),
    ("brand_trexall", "Trexall", ("methotrexate",)),
    ("brand_percocet", "Percocet", ("oxycodone", "acetaminophen")),
    ("brand_norco", "Norco", ("hydrocodone", "acetaminophen")),
    ("brand_jantoven", "Jantoven", ("warfarin",)),
    # combinations, spelled the ways orders and notes spell them
    ("combination_spaced_slash", "amoxicillin / clavulanate", ("amoxicillin", "clavulanic acid")),
    ("combination_slash", "trimethoprim/sulfamethoxazole", ("trimethoprim", "sulfamethoxazole")),
    ("combination_rxnorm_name", "Acetaminophen 325 MG / Oxycodone Hydrochloride 5 MG", ("acetaminophen", "oxycodone")),
    ("combination_with_brand", "Acetaminophen 300 MG / HYDROcodone Bitartrate 5 MG [Vicodin]", ("acetaminophen", "hydrocodone")),
    ("combination_plus", "sulfamethoxazole + trimethoprim", ("sulfamethoxazole", "trimethoprim")),
    # RxNorm-style names with strength and form
    ("strength_unit_slash", "3 ML Amiodarone hydrocholoride 50 MG/ML Prefilled Syringe", ("amiodarone",)),
    ("leading_duration", "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet", ("metformin",)),
    ("salt", "Warfarin Sodium 5 MG Oral Tablet", ("warfarin",)),
    ("bracket_brand", "Carbamazepine[Tegretol]", ("carbamazepine",)),
    # RxNorm codes: a Synthea clinical drug, a curated one, an ingredient code via the ANSM mapping
    ("rxnorm_scd_synthea", "855332", ("warfarin",)),
    ("rxnorm_scd_curated", "314076", ("lisinopril",)),
    ("rxnorm_combination", "1049221", ("acetaminophen", "oxycodone")),
    ("rxnorm_ingredient", "11289", ("warfarin",)),
]


@pytest.mark.parametrize("query,ingredients", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_identify_drug(kb, query, ingredients):
    found = kb.identify_drug(query)
    assert isinstance(found, DrugIdentity), found
    assert found.ingredients == ingredients
    assert found.source


UNKNOWN = [
    ("made_up_name", "Zzyzxol 5 MG", "Zzyzxol"),
    ("unknown_code", "999999999", "999999999"),
    ("empty", "  ", "empty"),
]


@pytest.mark.parametrize("query,named", [c[1:] for c in UNKNOWN], ids=[c[0] for c in UNKNOWN])
def test_unidentified_says_why(kb, query, named):
    found = kb.identify_drug(query)
    assert isinstance(found, Unidentified) and not found.identified
    assert named in found.query + found.reason and found.ingredients == ()


def test_every_code_in_the_rxnorm_table_is_identified(kb):
    for name in (FHIR_CODES_FILE, CURATED_FILE):
        with (DATA_DIR / name).open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert rows and all(r["source"] for r in rows)
        missed = [r for r in rows if not kb.identify_drug(r["rxcui"]).identified]
        assert not missed, missed


def test_brand_table_lines_name_their_source_and_resolve(kb):
    with (DATA_DIR / BRAND_FILE).open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            assert row["source"].strip(), row
            assert all(kb.normalize_drug(i) for i in row["ingredients"].split(";")), row


def test_harvested_table_matches_the_shared_fhir_files(shared_file):
    fhir = shared_file("fhir")
    with (DATA_DIR / FHIR_CODES_FILE).open(encoding="utf-8", newline="") as fh:
        shipped = {(r["rxcui"], r["display"]) for r in csv.DictReader(fh)}
    assert {(code, display) for code, display, _ in harvest(fhir)} == shipped


CONCEPTS = [
    ("code_only", {"coding": [{"system": RXNORM_SYSTEM, "code": "314076"}]}, None, ("lisinopril",)),
    ("unknown_code_with_display", {"coding": [{"system": RXNORM_SYSTEM, "code": "1", "display": "Imdur 30 MG"}]}, None,
     ("isosorbide mononitrate",)),
    ("text_only", {"text": "Augmentin 875 MG"}, None, ("amoxicillin", "clavulanic acid")),
    ("reference_display", None, "Keflex", ("cephalexin",)),
]


@pytest.mark.parametrize("concept,text,ingredients", [c[1:] for c in CONCEPTS], ids=[c[0] for c in CONCEPTS])
def test_identify_medication(kb, concept, text, ingredients):
    assert kb.identify_medication(concept, text).ingredients == ingredients


def test_identify_medication_unknown_code_without_name(kb):
    found = kb.identify_medication({"coding": [{"system": RXNORM_SYSTEM, "code": "999999999"}]})
    assert isinstance(found, Unidentified) and "999999999" in found.reason
