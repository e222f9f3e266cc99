"""The capability record schema: the fixture is valid and every bad line is named."""

from __future__ import annotations

import json

import pytest

from training.evaluate.capabilities import verify_record
from training.records import Capability, RecordFileError, dump_records, load_records

FIXTURE = "tests/data/capabilities_fixture.jsonl"


def test_fixture_covers_every_capability_twice():
    records = load_records(FIXTURE)
    counts = {c: sum(r.capability is c for r in records) for c in Capability}
    assert counts == {c: 2 for c in Capability}


@pytest.mark.parametrize("record", load_records(FIXTURE), ids=lambda r: r.id)
def test_fixture_reference_passes_its_own_checks(record):
    verdict = verify_record(record, record.reference)
    failed = {k: c.reason for k, c in verdict.checks.items() if not c.passed}
    assert verdict.score == 1.0, failed


def test_dump_then_load_is_byte_stable(tmp_path):
    records = load_records(FIXTURE)
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    dump_records(records, first)
    dump_records(load_records(first), second)
    assert first.read_bytes() == second.read_bytes()
    assert load_records(second) == records


def _valid() -> dict:
    return json.loads(open(FIXTURE).readline())


def _without(path: str) -> dict:
    row = _valid()
    *parents, leaf = path.split(".")
    node = row
    for key in parents:
        node = node[key]
    node[leaf] = None if leaf in ("answer",) else node[leaf]
    if leaf != "answer":
        del node[leaf]
    return row


BAD_LINES = [
    ("unknown-capability", lambda: {**_valid(), "capability": "humour"}, "capability"),
    ("knowledge-without-answer", lambda: _without("verification.answer"), "needs verification.answer"),
    ("answer-not-an-option", lambda: {**_valid(), "verification": {"answer": {"kind": "option", "value": "E",
                                      "options": {"A": "x", "B": "y"}}}}, "not one of the options"),
    ("last-turn-not-user", lambda: {**_valid(), "messages": [{"role": "assistant", "content": "hi"}]}, "user's turn"),
    ("extra-field", lambda: {**_valid(), "patient_name": "x"}, "patient_name"),
    ("missing-provenance", lambda: _without("provenance"), "provenance"),
    ("bad-constraint-id", lambda: {**_valid(), "capability": "instruction", "verification": {
        "constraints": [{"id": "no comma"}]}}, "verification.constraints.0.id"),
]


@pytest.mark.parametrize("make_row, expected", [(m, e) for _, m, e in BAD_LINES], ids=[n for n, _, _ in BAD_LINES])
def test_bad_line_is_named_with_its_line_and_field(tmp_path, make_row, expected):
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(_valid()) + "\n" + json.dumps(make_row()) + "\n")
    with pytest.raises(RecordFileError, match=r"records.jsonl:2: .*") as error:
        load_records(path)
    assert expected in str(error.value)


def test_duplicate_ids_are_refused(tmp_path):
    path = tmp_path / "dup.jsonl"
    path.write_text((json.dumps(_valid()) + "\n") * 2)
    with pytest.raises(RecordFileError, match="dup.jsonl:2: duplicate id"):
        load_records(path)
