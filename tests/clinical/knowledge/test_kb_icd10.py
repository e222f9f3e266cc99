"""ICD-10-CM facts, checked against simple_icd_10_cm's own tables."""

import pytest

from clinical.knowledge import KnowledgeError, get_knowledge_base


@pytest.fixture(scope="module")
def kb():
    return get_knowledge_base()


@pytest.fixture(scope="module")
def cm(kb):
    kb.preload(["icd10"])  # imports the package once, quietly
    import simple_icd_10_cm

    return simple_icd_10_cm


@pytest.mark.parametrize(
    "code, description",
    [
        ("E11.9", "Type 2 diabetes mellitus without complications"),
        ("E119", "Type 2 diabetes mellitus without complications"),
        (" e11.9 ", "Type 2 diabetes mellitus without complications"),
        ("I10", "Essential (primary) hypertension"),
        ("J45.909", "Unspecified asthma, uncomplicated"),
        ("E08-E13", "Diabetes mellitus (E08-E13)"),
    ],
    ids=["dotted", "undotted", "lowercase-padded", "category", "asthma", "block"],
)
def test_description(kb, cm, code, description):
    assert kb.icd10_description(code) == description
    assert cm.get_description(code.strip().upper()) == description  # the source agrees


@pytest.mark.parametrize(
    "code, ancestors",
    [
        ("E11.9", ["E11", "E08-E13", "4"]),
        ("E119", ["E11", "E08-E13", "4"]),
        ("S52.521A", ["S52.521", "S52.52", "S52.5", "S52", "S50-S59", "19"]),
        # C7A is both a block and its only category; the library lists it twice.
        ("C7A.0", ["C7A", "2"]),
    ],
    ids=["diabetes", "diabetes-undotted", "7th-character", "single-category-block"],
)
def test_ancestors_nearest_first_up_to_chapter(kb, code, ancestors):
    assert kb.icd10_ancestors(code) == ancestors


@pytest.mark.parametrize(
    "code, number, title, code_range",
    [
        ("E11.9", "4", "Endocrine, nutritional and metabolic diseases", "E00-E89"),
        ("I10", "9", "Diseases of the circulatory system", "I00-I99"),
        ("U07.1", "22", "Codes for special purposes", "U00-U85"),
    ],
    ids=["endocrine", "circulatory", "special-purposes"],
)
def test_chapter(kb, code, number, title, code_range):
    chapter = kb.icd10_chapter(code)
    assert (chapter.number, chapter.title, chapter.code_range) == (number, title, code_range)
    assert kb.icd10_ancestors(code)[-1] == number


@pytest.mark.parametrize(
    "code, valid",
    [
        ("E11.9", True),
        ("E119", True),
        ("E11", True),
        ("E11.99", False),
        ("E08-E13", False),
        ("4", False),
        ("", False),
        ("not a code", False),
        (None, False),
    ],
    ids=["subcategory", "undotted", "category", "nonexistent", "block", "chapter", "empty", "text", "none"],
)
def test_is_valid(kb, code, valid):
    assert kb.is_valid_icd10(code) is valid


def test_normalize_and_record(kb):
    assert kb.normalize_icd10("e119") == "E11.9"
    record = kb.icd10_code("E119")
    assert (record.code, record.chapter, record.is_leaf) == ("E11.9", "4", True)


@pytest.mark.parametrize("code", ["E11.99", "XYZ", "E08-E14"], ids=["too-deep", "garbage", "bad-block"])
def test_unknown_code_error_names_code_and_remedy(kb, code):
    with pytest.raises(KnowledgeError, match="is_valid_icd10") as excinfo:
        kb.icd10_description(code)
    assert repr(code) in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


def test_iter_codes_of_one_chapter(kb):
    codes = list(kb.iter_icd10_codes(chapter=4))
    assert any(c.code == "E11.9" for c in codes)
    assert all(c.chapter == "4" and "E00" <= c.code[:3] <= "E89" for c in codes)
    assert len({c.code for c in codes}) == len(codes)
    assert [c.code for c in kb.iter_icd10_codes("E00-E89")] == [c.code for c in codes]


def test_iter_leaves_only(kb):
    leaves = list(kb.iter_icd10_codes(chapter="4", leaves_only=True))
    assert leaves and all(c.is_leaf for c in leaves)
    assert "E11" not in {c.code for c in leaves}


def test_unknown_chapter(kb):
    with pytest.raises(KnowledgeError, match="chapter number 1-22"):
        kb.iter_icd10_codes(chapter=23)


def test_chapters(kb):
    chapters = kb.icd10_chapters()
    assert [c.number for c in chapters] == [str(n) for n in range(1, 23)]
    assert all(c.code_range for c in chapters)
