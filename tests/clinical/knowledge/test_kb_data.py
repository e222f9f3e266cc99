"""The vendored ONC files: schema, counts, and identity with the upstream snapshot."""

import csv
import re

import pytest

from clinical.knowledge.interactions import DATA_DIR

from shared_data import SHARED_DATA

# ../shared/data/ddi next to the project, where the upstream snapshot was taken from (SOURCE.txt).
UPSTREAM = SHARED_DATA / "ddi"
DRUGBANK_ID = re.compile(r"^DB\d{5}$")

FILES = {
    "onc_high_priority.csv": (
        ["drug1_name", "drug1_drugbank_id", "drug2_name", "drug2_drugbank_id"],
        1930,
        ("drug1_drugbank_id", "drug2_drugbank_id"),
    ),
    "onc_non_interruptive.csv": (
        ["class_pair_id", "drug1_class", "drug1_name", "drug1_drugbank_id", "drug1_drugbank_uri", "drug1_bio2rdf_uri",
         "drug2_class", "drug2_name", "drug2_drugbank_id", "drug2_drugbank_uri", "drug2_bio2rdf_uri"],
        1961,
        ("drug1_drugbank_id", "drug2_drugbank_id"),
    ),
}


def _read(name):
    with (DATA_DIR / name).open(encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))


@pytest.mark.parametrize("name", list(FILES), ids=["high-priority", "non-interruptive"])
def test_schema_and_counts(name):
    header, count, id_columns = FILES[name]
    rows = _read(name)
    assert rows[0] == header
    assert len(rows) - 1 == count
    assert all(len(r) == len(header) for r in rows[1:])
    for column in id_columns:
        index = header.index(column)
        assert all(DRUGBANK_ID.match(r[index]) for r in rows[1:])


def test_attribution_present():
    text = (DATA_DIR / "ATTRIBUTION.md").read_text(encoding="utf-8")
    for needle in (
        "dbmi-pitt/public-PDDI-analysis",
        "8199ee66b60bcb337f777889a210dd0d72a96e8f",
        "19(5):735",
        "20(3):489",
        "55:206",
        "No license is stated",
    ):
        assert needle in text


def _upstream_high():
    with (UPSTREAM / "onc_high_priority_mapped.csv").open(encoding="utf-8-sig", newline="") as fh:
        return [line.split("$")[:4] for line in fh.read().split("\r\n") if line]


def _upstream_non_interruptive():
    with (UPSTREAM / "onc_non_interruptive_classes.csv").open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.reader(fh))


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"no shared data at {SHARED_DATA} (BALANCEDBIO_ALLOW_MISSING_DATA=1)")
@pytest.mark.parametrize(
    "name, upstream",
    [("onc_high_priority.csv", _upstream_high), ("onc_non_interruptive.csv", _upstream_non_interruptive)],
    ids=["high-priority", "non-interruptive"],
)
def test_values_identical_to_upstream(name, upstream):
    assert _read(name)[1:] == upstream()
