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


CDS_FEEDBACK = [
    # name, item as sent, (outcome, reason, details)
    ("spec-shape-override", {"card": "card-1", "outcome": "overridden", "serviceId": "bb-order-check",
                             "overrideReason": {"reason": {"code": "declined", "display": "patient declined"},
                                                "userComment": "discussed"},
                             "outcomeTimestamp": "2026-12-02T10:00:00Z"},
     ("overridden", "patient declined discussed", {"outcome_timestamp": "2026-12-02T10:00:00Z"})),
    # What serving.cds_hooks_app hands over: snake_case, the reason as its code.
    ("app-shape-override", {"card": "card-2", "outcome": "overridden", "service_id": "bb-order-check",
                            "override_reason": "alt-therapy", "override_comment": "switched to paracetamol",
                            "accepted_suggestions": [], "outcome_timestamp": "2026-12-02T11:00:00Z"},
     ("overridden", "alt-therapy switched to paracetamol", {"outcome_timestamp": "2026-12-02T11:00:00Z"})),
    ("app-shape-accepted", {"card": "card-3", "outcome": "accepted", "service_id": "bb-order-check",
                            "override_reason": None, "override_comment": None,
                            "accepted_suggestions": ["sugg-1"], "outcome_timestamp": "2026-12-02T12:00:00Z"},
     ("accepted", None, {"outcome_timestamp": "2026-12-02T12:00:00Z", "accepted_suggestions": ["sugg-1"]})),
]


@pytest.mark.parametrize("item, expected", [c[1:] for c in CDS_FEEDBACK], ids=[c[0] for c in CDS_FEEDBACK])
def test_cds_hooks_feedback_is_recorded(db, item, expected):
    store = Store(db)
    fid = store.record_cds_feedback(item)
    with store._session() as s:
        from serving.store import Feedback
        row = s.get(Feedback, fid)
    assert (row.source, row.card_uuid, row.service_id) == ("cds-hooks", item["card"], "bb-order-check")
    assert (row.outcome, row.reason, row.details) == expected


def test_other_schema_version_is_refused(db):
    store = Store(db)
    with store._session.begin() as s:
        from serving.store import SchemaInfo
        s.get(SchemaInfo, "schema_version").value = "99"
    with pytest.raises(SchemaMismatch, match="99"):
        Store(db)
