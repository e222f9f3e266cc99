"""Issue 13, finding 6: a streamed chat or consult whose client disconnected after the first chunk
was never audited (its chatcmpl- id got 404 from /feedback); feedback could be repeated without
limit and from any key.
"""

from __future__ import annotations

import json
import sqlite3

import httpx
import pytest

from conftest import KEY, OTHER_KEY, bearer, wait_for

pytestmark = pytest.mark.e2e
LONG = "Explain in detail how metformin works, its side effects and its contraindications."


def consult_row(server, consult_id: str):
    with sqlite3.connect(server.data_dir / "balancedbio.db") as db:
        return db.execute("SELECT endpoint, api_key_id, finish_reason FROM consults WHERE id = ?", (consult_id,)).fetchone()


def test_chat_stream_cut_after_the_first_chunk_is_audited(hardened):
    with httpx.stream("POST", hardened.url + "/v1/chat/completions", headers=bearer(KEY), timeout=120,
                      json={"messages": [{"role": "user", "content": LONG}], "max_tokens": 64, "stream": True}) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                chat_id = json.loads(line[6:])["id"]
                break  # leave: the response is closed with the connection
    consult_id = chat_id.removeprefix("chatcmpl-")
    row = wait_for(lambda: consult_row(hardened, consult_id), timeout=60)
    assert row is not None, f"{chat_id} was sent to the client but is not in the audit trail"
    assert row[0] == "/v1/chat/completions" and row[2] in ("disconnected", "length", "stop")
    fb = httpx.post(hardened.url + "/feedback", json={"consult_id": chat_id, "outcome": "accept"}, headers=bearer(KEY), timeout=30)
    assert fb.status_code == 200, fb.text


def test_consult_stream_cut_mid_answer_is_audited_as_disconnected(hardened):
    def count() -> int:
        with sqlite3.connect(hardened.data_dir / "balancedbio.db") as db:
            return db.execute("SELECT COUNT(*) FROM consults WHERE endpoint = '/consult' AND finish_reason = 'disconnected'"
                              ).fetchone()[0]
    before = count()
    with httpx.stream("POST", hardened.url + "/consult_stream", headers=bearer(KEY), timeout=120,
                      json={"question": LONG, "max_tokens": 64}) as r:
        for line in r.iter_lines():
            if json.loads(line).get("event") == "token":
                break
    assert wait_for(lambda: count() > before, timeout=60), "a consult stream cut by its client was not audited"


def test_feedback_is_once_per_outcome_and_only_from_the_consults_key(hardened):
    consult = httpx.post(hardened.url + "/consult", json={"question": "What is HbA1c?", "max_tokens": 2},
                         headers=bearer(KEY), timeout=120).json()
    cid = consult["consult_id"]
    stolen = httpx.post(hardened.url + "/feedback", json={"consult_id": cid, "outcome": "accept"}, headers=bearer(OTHER_KEY),
                        timeout=30)
    assert stolen.status_code == 404, stolen.text
    ids = [httpx.post(hardened.url + "/feedback", json={"consult_id": cid, "outcome": "accept"}, headers=bearer(KEY),
                      timeout=30).json()["feedback_id"] for _ in range(3)]
    assert len(set(ids)) == 1
    override = httpx.post(hardened.url + "/feedback", json={"consult_id": cid, "outcome": "override", "reason": "no"},
                          headers=bearer(KEY), timeout=30).json()["feedback_id"]
    edit = httpx.post(hardened.url + "/feedback", json={"consult_id": cid, "outcome": "edit", "edited_answer": "A."},
                      headers=bearer(KEY), timeout=30).json()["feedback_id"]
    with sqlite3.connect(hardened.data_dir / "balancedbio.db") as db:
        rows = db.execute("SELECT id, outcome FROM feedback WHERE consult_id = ? ORDER BY outcome", (cid,)).fetchall()
    assert sorted(rows) == sorted([(ids[0], "accept"), (override, "override"), (edit, "edit")])
