"""A saved base-model evaluation is adopted by a run only when it scored that run's items the same way."""

from __future__ import annotations

import json
import shutil

import pytest

from training.config import RunConfig
from training.evaluate.runner import SAMPLES
from training.layout import RunDirectory
from training.records import dump_records, load_records
from training.stages import (
    SAVED_RUN_CONFIG,
    SavedEvaluationMismatch,
    balanced,
    stage_adopt_evaluation,
)


@pytest.fixture
def run_and_saved(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(SAMPLES / "capabilities_fixture.jsonl", data / "test.jsonl")
    config = RunConfig(preset="tiny", eval_per_capability=2)
    saved = tmp_path / "saved"
    saved.mkdir()
    dump_records(balanced(load_records(data / "test.jsonl"), 2, config.seed), saved / "capability_test.jsonl")
    (saved / "report.json").write_text(json.dumps({"results": []}))
    (saved / "DONE.json").write_text(json.dumps({"scores": {"capabilities/knowledge": 0.5}, "report": "elsewhere"}))
    (saved / SAVED_RUN_CONFIG).write_text(json.dumps(config.to_dict()))
    return config, RunDirectory(tmp_path / "run"), saved, data


def test_matching_saved_evaluation_is_adopted_with_its_files(run_and_saved):
    config, run, saved, data = run_and_saved
    out = stage_adopt_evaluation(config, run, source=str(saved), data=str(data))
    assert out["scores"] == {"capabilities/knowledge": 0.5} and out["adopted_from"] == str(saved)
    assert out["report"] == str(run.eval_report("base_eval")) and run.eval_report("base_eval").is_file()
    assert run.capability_test("base_eval").read_text() == (saved / "capability_test.jsonl").read_text()


@pytest.mark.parametrize("change, message", [
    ({"eval_per_capability": 3}, "eval_per_capability"),
    ({"eval_max_new_tokens": 7}, "eval_max_new_tokens"),
    ({"seed": 1}, "seed"),
], ids=["other-item-count", "other-generation-budget", "other-seed"])
def test_saved_evaluation_with_other_settings_is_refused_and_says_which(run_and_saved, change, message):
    config, run, saved, data = run_and_saved
    other = RunConfig(**{**config.to_dict(), **change})
    with pytest.raises(SavedEvaluationMismatch, match=message):
        stage_adopt_evaluation(other, run, source=str(saved), data=str(data))
    assert not run.eval_report("base_eval").exists()


def test_saved_evaluation_of_other_items_is_refused(run_and_saved):
    config, run, saved, data = run_and_saved
    records = load_records(saved / "capability_test.jsonl")
    dump_records(records[1:] + records[:1], saved / "capability_test.jsonl")
    with pytest.raises(SavedEvaluationMismatch, match="other capability items"):
        stage_adopt_evaluation(config, run, source=str(saved), data=str(data))


def test_a_folder_without_a_saved_evaluation_says_what_it_expected(run_and_saved, tmp_path):
    config, run, _, data = run_and_saved
    with pytest.raises(FileNotFoundError, match="drop the flag"):
        stage_adopt_evaluation(config, run, source=str(tmp_path / "nothing"), data=str(data))
