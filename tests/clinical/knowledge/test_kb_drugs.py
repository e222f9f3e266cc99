"""Drug normalisation and mention finding, checked against drug_named_entity_recognition's dictionary."""

import pytest

from clinical.knowledge import get_knowledge_base


@pytest.fixture(scope="module")
def kb():
    return get_knowledge_base()


@pytest.fixture(scope="module")
def dictionary(kb):
    kb.preload(["drugs"])
    from drug_named_entity_recognition import drugs_finder

    return drugs_finder.drug_canonical_to_data


@pytest.mark.parametrize(
    "mention, name, drugbank_id",
    [
        ("Lipitor", "atorvastatin", "DB01076"),
        ("LIPITOR", "atorvastatin", "DB01076"),
        ("  atorvastatin ", "atorvastatin", "DB01076"),
        ("DB01076", "atorvastatin", "DB01076"),
        ("Zocor", "simvastatin", "DB00641"),
        ("Coumadin", "warfarin", "DB00682"),
        ("Tylenol", "acetaminophen", "DB00316"),
        ("paracetamol", "acetaminophen", "DB00316"),
        ("acetylsalicylic acid", "aspirin", "DB00945"),
    ],
    ids=["brand", "brand-upper", "padded", "drugbank-id", "zocor", "coumadin", "tylenol", "intl-name", "two-words"],
)
def test_normalize_drug(kb, dictionary, mention, name, drugbank_id):
    drug = kb.normalize_drug(mention)
    assert drug is not None
    assert (drug.name, drug.drugbank_id) == (name, drugbank_id)
    assert dictionary[name]["drugbank_id"] == drugbank_id  # the id is the package's, not our memory
    assert name in drug.synonyms


def test_lipitor_record(kb, dictionary):
    drug = kb.normalize_drug("Lipitor")
    assert "lipitor" in drug.synonyms and "lipitor" in drug.brands
    assert len(drug.synonyms) == len(set(drug.synonyms))
    assert drug.mesh_tree == tuple(dictionary["atorvastatin"]["mesh_tree"])
    assert kb.drug_by_drugbank_id("db01076") == drug


@pytest.mark.parametrize(
    "mention",
    ["xyzzy", "", "   ", "atorvastatin 20 mg", "DB99999", None],
    ids=["unknown", "empty", "blank", "with-dose", "unknown-id", "none"],
)
def test_unknown_drug_is_none(kb, mention):
    assert kb.normalize_drug(mention) is None


def test_find_drugs_in_text(kb):
    text = "Started Zocor 40 mg nightly; on warfarin. Clarithromycin prescribed; takes acetylsalicylic acid."
    mentions = kb.find_drugs(text)
    assert [(m.text, m.drug.name) for m in mentions] == [
        ("Zocor", "simvastatin"),
        ("warfarin", "warfarin"),
        ("Clarithromycin", "clarithromycin"),
        ("acetylsalicylic acid", "aspirin"),
    ]
    assert all(text[m.start : m.end] == m.text for m in mentions)


@pytest.mark.parametrize("text", ["", "no medications, feeling fine today"], ids=["empty", "no-drugs"])
def test_find_drugs_none(kb, text):
    assert kb.find_drugs(text) == []


@pytest.mark.parametrize("name", ["estradiol", "nicotine", "testosterone"])
def test_canonical_names_missing_from_the_variant_map_still_resolve(name):
    drug = get_knowledge_base().normalize_drug(name)
    assert drug is not None and drug.name == name


def test_the_unused_fuzzy_index_is_dropped_and_exact_mentions_still_resolve():
    """Matching is exact, so the package's fuzzy n-gram index (about 180 MB a process) is not kept."""
    from drug_named_entity_recognition import drugs_finder

    from clinical.knowledge.drugs import find_drugs

    mentions = find_drugs("On Coumadin, asked about ibuprofen.")
    assert [(m.text, m.drug.name) for m in mentions] == [("Coumadin", "warfarin"), ("ibuprofen", "ibuprofen")]
    assert not drugs_finder.ngram_to_variant and not drugs_finder.variant_to_ngrams
