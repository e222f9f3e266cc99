"""The audit store on a real SQLite file: WAL, schema version, no raw PHI unless configured."""

from __future__ import annotations

import sqlite3

import pytest

from serving.store import SCHEMA_VERSION, SchemaMismatch, Store, input_hash, sha256_text

PATIENT = {"resourceType": "Patient", "name": [{"family": "Doe"}]}


def add(store: Store, **kw) -> str:
    args = dict(endpoint="/consult", model_version="m-fp32", aligned=False, api_key_id="abc", question="Q?",
                patient=PATIENT, answer="A.", escalated=False, findings=[{"kind": "allergy", "severity": "critical"}])
    return store.add_consult(**{**args, **kw})


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path / 'sub' / 'audit.db'}"


def test_sqlite_file_is_in_wal_mode_with_a_schema_version(db, tmp_path):
    store = Store(db)
    assert store.schema_version() == SCHEMA_VERSION
    add(store)
    with sqlite3.connect(tmp_path / "sub" / "audit.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("store_raw,expect_raw", [("default", False), ("configured", True)])
def test_raw_text_only_when_configured(db, store_raw, expect_raw):
    store = Store(db, store_raw=expect_raw)
    row = store.get_consult(add(store))
    assert row.input_sha256 == input_hash("Q?", PATIENT) and row.answer_sha256 == sha256_text("A.")
    assert (row.raw_input is not None) is expect_raw and (row.raw_answer is not None) is expect_raw
    assert row.findings == [{"kind": "allergy", "severity": "critical"}]


def test_input_hash_ignores_key_order():
    assert input_hash("q", {"a": 1, "b": 2}) == input_hash("q", {"b": 2, "a": 1})


def test_feedback_links_to_its_consult_and_survives_reopening(db):
    store = Store(db)
    consult_id = add(store)
    store.add_feedback(consult_id=consult_id, outcome="edit", edited_answer="B.", correct=False)
    reopened = Store(db)
    [fb] = reopened.feedback_for(consult_id)
    assert (fb.outcome, fb.correct, fb.edited_answer, fb.edited_answer_sha256) == ("edit", False, None, sha256_text("B."))


def test_cds_hooks_feedback_is_recorded(db):
    store = Store(db)
    fid = store.record_cds_feedback({"card": "card-1", "outcome": "overridden", "service_id": "bb-order-check",
                                     "overrideReason": {"reason": {"display": "patient declined"}}})
    with store._session() as s:
        from serving.store import Feedback
        row = s.get(Feedback, fid)
    assert (row.source, row.card_uuid, row.outcome, row.reason) == ("cds-hooks", "card-1", "overridden",
                                                                     "patient declined")


def test_other_schema_version_is_refused(db):
    store = Store(db)
    with store._session.begin() as s:
        from serving.store import SchemaInfo
        s.get(SchemaInfo, "schema_version").value = "99"
    with pytest.raises(SchemaMismatch, match="99"):
        Store(db)
