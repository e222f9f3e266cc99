"""ONC drug-drug interactions, checked against the vendored CSV rows."""

import csv
import itertools

import pytest

from clinical.knowledge import KnowledgeError, get_knowledge_base
from clinical.knowledge.interactions import DATA_DIR, HIGH_PRIORITY_SOURCE, NON_INTERRUPTIVE_SOURCE


@pytest.fixture(scope="module")
def kb():
    return get_knowledge_base()


def _rows(filename):
    with (DATA_DIR / filename).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def high_rows():
    columns = ("drug1_name", "drug1_drugbank_id", "drug2_name", "drug2_drugbank_id")
    return {tuple(r[c] for c in columns) for r in _rows("onc_high_priority.csv")}


def test_listed_rows_are_in_the_file(high_rows):
    # Rows read from the CSV (lines 2 and 480) that the cases below rely on.
    assert ("Sparfloxacin", "DB01208", "Erythromycin", "DB00199") in high_rows
    assert ("Simvastatin", "DB00641", "Clarithromycin", "DB01211") in high_rows


@pytest.mark.parametrize(
    "drugs, expected",
    [
        (["sparfloxacin", "erythromycin"], ("erythromycin", "sparfloxacin", "high", ("DB00199", "DB01208"))),
        (["Erythromycin", "Sparfloxacin"], ("erythromycin", "sparfloxacin", "high", ("DB00199", "DB01208"))),
        (["Zocor", "Biaxin"], ("clarithromycin", "simvastatin", "high", ("DB01211", "DB00641"))),
        # The dictionary files verapamil under DB14063, ONC under DB00661: matched by name.
        (["verapamil", "simvastatin"], ("simvastatin", "verapamil", "high", ("DB00641", "DB00661"))),
        (["DB00661", "simvastatin"], ("simvastatin", "verapamil", "high", ("DB00641", "DB00661"))),
        (["metoprolol", "ibuprofen"], ("ibuprofen", "metoprolol", "low", ("DB01050", "DB00264"))),
        # On both lists: reported once, as high.
        (["sotalol", "citalopram"], ("citalopram", "sotalol", "high", ("DB00215", "DB00489"))),
    ],
    ids=["listed-order", "reversed", "brands", "name-fallback", "onc-id", "low-priority", "high-wins"],
)
def test_listed_pair(kb, drugs, expected):
    [found] = kb.interactions(drugs)
    assert (found.drug_a, found.drug_b, found.severity, found.evidence) == expected
    assert found.source == (HIGH_PRIORITY_SOURCE if found.severity == "high" else NON_INTERRUPTIVE_SOURCE)


def test_low_priority_carries_classes(kb):
    [found] = kb.interactions(["metoprolol", "ibuprofen"])
    assert found.classes == ("NSAIDS", "ß-Adrenergic blockers")


@pytest.mark.parametrize(
    "drugs",
    [
        ["metformin", "acetaminophen"],
        ["sparfloxacin", "acetaminophen"],
        ["Lipitor", "atorvastatin"],
        ["sparfloxacin"],
        [],
        ["benazepril", "methacholine"],  # ONC's mis-mapped "Salicylates" class, skipped on load
        ["xyzzy", "erythromycin"],
    ],
    ids=["unrelated", "one-listed-drug", "same-drug-twice", "single", "empty", "mismapped-class", "unknown-skipped"],
)
def test_no_interaction(kb, drugs):
    assert kb.interactions(drugs) == []


def test_order_does_not_matter_and_no_duplicates(kb):
    drugs = ["simvastatin", "clarithromycin", "erythromycin", "Zocor"]
    results = {tuple(kb.interactions(list(p))) for p in itertools.permutations(drugs)}
    assert len(results) == 1
    [found] = results
    pairs = [(i.drug_a, i.drug_b) for i in found]
    assert pairs == [
        ("clarithromycin", "erythromycin"),
        ("clarithromycin", "simvastatin"),
        ("erythromycin", "simvastatin"),
    ]


def test_strict_names_unknown_drugs(kb):
    with pytest.raises(KnowledgeError, match="xyzzy"):
        kb.interactions(["warfarin", "xyzzy"], strict=True)


def test_single_string_is_rejected(kb):
    with pytest.raises(KnowledgeError, match="list"):
        kb.interactions("warfarin")


def test_every_listed_pair_is_found_both_ways(kb):
    pairs = list(kb.iter_interaction_pairs())
    for pair in pairs:
        assert pair.drug_a < pair.drug_b
        assert pair in kb.interactions([pair.drug_a, pair.drug_b])
        assert pair in kb.interactions([pair.drug_b, pair.drug_a])


def test_pair_counts(kb):
    high = list(kb.iter_interaction_pairs("high"))
    low = list(kb.iter_interaction_pairs("low"))
    assert len(high) == 1150  # 1,930 rows = 1,150 unordered pairs (SOURCE.txt)
    # 1,961 rows, less 20 mis-mapped "Salicylates" rows and 2 pairs already high priority
    assert len(low) == 1961 - 20 - 2
    assert len({frozenset(p.evidence) for p in high + low}) == len(high) + len(low)
    with pytest.raises(KnowledgeError, match="severity"):
        kb.iter_interaction_pairs("medium")
