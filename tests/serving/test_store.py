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


def test_version_1_database_is_migrated(db, tmp_path):
    """A database written before issue 13 (no finish_reason, no dedupe key, no cds_cards) is upgraded."""
    import sqlite3

    from pathlib import Path

    path = Path(db.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as con:
        con.executescript("""
            CREATE TABLE schema_info (key VARCHAR(64) PRIMARY KEY, value VARCHAR(256));
            INSERT INTO schema_info VALUES ('schema_version', '1');
            CREATE TABLE consults (id VARCHAR(36) PRIMARY KEY, created_at DATETIME, endpoint VARCHAR(64),
                model_version VARCHAR(256), aligned BOOLEAN, api_key_id VARCHAR(16), input_sha256 VARCHAR(64),
                answer_sha256 VARCHAR(64), escalated BOOLEAN, findings JSON, prompt_tokens INTEGER,
                completion_tokens INTEGER, latency_seconds FLOAT, raw_input TEXT, raw_answer TEXT);
            CREATE TABLE feedback (id VARCHAR(36) PRIMARY KEY, consult_id VARCHAR(36) REFERENCES consults(id),
                created_at DATETIME, source VARCHAR(32), outcome VARCHAR(32), reason TEXT, correct BOOLEAN,
                edited_answer_sha256 VARCHAR(64), edited_answer TEXT, card_uuid VARCHAR(64), service_id VARCHAR(128),
                details JSON);
        """)
    store = Store(db)
    assert store.schema_version() == SCHEMA_VERSION == 2
    cid = store.add_consult(endpoint="/consult", model_version="m", aligned=False, api_key_id="k", question="q",
                            patient=None, answer="a", escalated=False, findings=[], finish_reason="disconnected")
    assert store.get_consult(cid).finish_reason == "disconnected"


@pytest.mark.parametrize("first,second,same", [
    ({"outcome": "accept"}, {"outcome": "accept"}, True),
    ({"outcome": "accept"}, {"outcome": "override", "reason": "r"}, False),
], ids=["repeat_is_the_same_row", "other_outcome_is_a_new_row"])
def test_feedback_dedupe_key(db, first, second, same):
    store = Store(db)
    cid = store.add_consult(endpoint="/consult", model_version="m", aligned=False, api_key_id="k", question="q",
                            patient=None, answer="a", escalated=False, findings=[])
    a = store.add_feedback(consult_id=cid, dedupe_key=f"api:{cid}:{first['outcome']}", **first)
    b = store.add_feedback(consult_id=cid, dedupe_key=f"api:{cid}:{second['outcome']}", **second)
    assert (a == b) is same and len(store.feedback_for(cid)) == (1 if same else 2)


@pytest.mark.parametrize("client,ok", [("https://ehr.example", True), ("https://other.example", False)],
                         ids=["the_receiving_ehr", "another_ehr"])
def test_cds_feedback_only_from_the_client_that_received_the_card(db, client, ok):
    from serving.store import UnknownCard

    store = Store(db)
    store.record_cds_cards("bb-order-check", "https://ehr.example", ["card-9"])
    item = {"card": "card-9", "outcome": "accepted", "service_id": "bb-order-check", "client": client}
    if ok:
        assert store.record_cds_feedback(item) == store.record_cds_feedback(item)  # idempotent
    else:
        with pytest.raises(UnknownCard):
            store.record_cds_feedback(item)
