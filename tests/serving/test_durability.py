"""An acknowledged write survives `kill -9` of the server; the per-key rate limit answers 429."""

from __future__ import annotations

import signal
import sqlite3

import httpx
import pytest


def test_acknowledged_feedback_survives_kill_9(base_export, serve, tmp_path):
    server = serve(base_export, tmp_path / "data", BALANCEDBIO_RATE_LIMIT="4")
    try:
        consult = httpx.post(server.url + "/consult", json={"question": "What is HbA1c?", "max_tokens": 4},
                             headers=server.headers, timeout=120)
        assert consult.status_code == 200, consult.text
        consult_id = consult.json()["consult_id"]
        ack = httpx.post(server.url + "/feedback", json={"consult_id": consult_id, "outcome": "override",
                                                         "reason": "outdated guidance"},
                         headers=server.headers, timeout=60)
        assert ack.status_code == 200, ack.text
        feedback_id = ack.json()["feedback_id"]
        # The same key has now used 2 of 4 requests a minute; the 5th within the minute is refused.
        codes = [httpx.get(server.url + "/v1/models", headers=server.headers).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
    finally:
        server.kill(signal.SIGKILL)  # no shutdown hooks, no flush: only what was committed remains
    # Nothing of the server lives on: an orphaned worker would still be answering on the port.
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "/livez", timeout=5)
    with sqlite3.connect(server.data_dir / "balancedbio.db") as db:
        row = db.execute("SELECT consult_id, outcome, reason FROM feedback WHERE id = ?", (feedback_id,)).fetchone()
        assert row == (consult_id, "override", "outdated guidance")
        assert db.execute("SELECT count(*) FROM consults WHERE id = ?", (consult_id,)).fetchone()[0] == 1
