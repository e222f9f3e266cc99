"""A model trained here, served end to end.

`python -m training.run --preset tiny --export true` takes the random 2-layer model through the
whole pipeline (MKGSG data, SFT, reward model, capability-aware GRPO, evaluation) and exports the
aligned result to ONNX; `bentoml serve` serves that export, and a consult and its feedback make the
round trip over HTTP, down to the rows in the service's database.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
TRAIN_TIMEOUT_S = 3600  # the tiny preset with its export took 28 min on a 2-core CPU at load average 20; bounded all the same


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory) -> tuple[Path, dict]:
    runs = tmp_path_factory.mktemp("runs")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "-m", "training.run", "--preset", "tiny", "--export", "true",
                           "--runs_dir", str(runs), "--name", "tiny"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=TRAIN_TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    export = runs / "tiny" / "onnx"
    return export, json.loads((export / "model_card.json").read_text())


def test_a_tiny_run_is_exported_served_and_answers_a_consult_with_feedback(tiny_export, serve, tmp_path):
    export, card = tiny_export
    assert card["aligned"] is True  # the run's own model, not the embedded base model
    server = serve(export, tmp_path / "data")
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=300) as http:
        models = http.get("/v1/models")
        assert models.status_code == 200 and [m["id"] for m in models.json()["data"]] == [card["model_version"]]
        response = http.post("/consult", json={"question": "Is warfarin safe with aspirin?", "max_tokens": 4})
        assert response.status_code == 200, response.text
        consult = response.json()
        assert consult["model"] == card["model_version"] and consult["aligned"] is True
        ack = http.post("/feedback", json={"consult_id": consult["consult_id"], "outcome": "override",
                                           "reason": "a 2-layer random model"})
        assert ack.status_code == 200, ack.text
        assert ack.json()["consult_id"] == consult["consult_id"]
    with sqlite3.connect(server.data_dir / "balancedbio.db") as db:
        stored = db.execute("SELECT model_version, aligned FROM consults WHERE id = ?", (consult["consult_id"],)).fetchone()
        feedback = db.execute("SELECT consult_id, outcome, reason FROM feedback WHERE id = ?",
                              (ack.json()["feedback_id"],)).fetchone()
    assert stored == (card["model_version"], 1)
    assert feedback == (consult["consult_id"], "override", "a 2-layer random model")
