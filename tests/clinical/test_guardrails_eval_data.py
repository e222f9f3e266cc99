"""Data checks of the labelled sets: sizes the issue asks for, no duplicates, a held-out half."""

import json
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "clinical" / "guardrails_eval" / "data"


def _rows(name):
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


def test_emergency_set_size_balance_and_split():
    rows = _rows("emergency_questions.jsonl")
    assert len(rows) >= 150 and len({r["text"] for r in rows}) == len(rows)
    heldout = [r for r in rows if r["split"] == "heldout"]
    assert 0.4 <= len(heldout) / len(rows) <= 0.6
    assert {True, False} <= {r["emergency"] for r in heldout}


def test_deid_set_spans_are_in_their_sentences():
    rows = _rows("deid_sentences.jsonl")
    assert len(rows) >= 100
    for r in rows:
        assert all(i["text"] in r["text"] for i in r["identifiers"]), r["id"]


def test_labelled_evaluation_has_300_cases():
    cases = _rows("interaction_rule_cases.jsonl")
    heldout = [r for r in _rows("emergency_questions.jsonl") if r["split"] == "heldout"]
    assert len(cases) + len(heldout) + len(_rows("deid_sentences.jsonl")) >= 300
    assert all(c["source"] for c in cases)
