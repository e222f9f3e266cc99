"""An evaluation stopped part-way continues from the next benchmark: what finished is kept, and a kept
result counts only for exactly what it scored."""

from __future__ import annotations

import json
import shutil

import pytest

from training.config import RunConfig
from training.evaluate.runner import SAMPLES
from training.layout import RunDirectory
from training.stages import stage_base, stage_evaluate


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A tiny model scored on the capability fixture and 4 MedMCQA items, as the tiny preset does."""
    root = tmp_path_factory.mktemp("eval_resume")
    data = root / "data"
    data.mkdir()
    shutil.copy(SAMPLES / "capabilities_fixture.jsonl", data / "test.jsonl")
    config = RunConfig(preset="tiny", eval_per_capability=2, eval_benchmarks="medmcqa:4", eval_engine="torch")
    run = RunDirectory(root / "run")
    model = stage_base(config, run)["model"]
    first = stage_evaluate(config, run, model=model, data=str(data))
    return config, run, model, data, first


def _mtimes(run: RunDirectory) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in run.stage("eval").glob("*.predictions.jsonl")}


def test_each_finished_benchmark_is_kept_with_what_it_scored(evaluated):
    _, run, model, _, _ = evaluated
    kept = {p.stem: json.loads(p.read_text()) for p in run.finished_benchmark("medmcqa").parent.glob("*.json")}
    assert set(kept) == {"capabilities", "medmcqa"}
    assert all(k["key"]["model"] == model and k["key"]["engine"] == "torch" for k in kept.values())
    assert kept["medmcqa"]["key"]["limit"] == 4 and kept["medmcqa"]["result"]["n"] == 4


def test_a_stopped_evaluation_scores_only_what_had_not_finished(evaluated):
    config, run, model, data, first = evaluated
    # Stopped while scoring MedMCQA: the capability set had finished, MedMCQA had not.
    run.finished_benchmark("medmcqa").unlink()
    run.eval_report().unlink()
    before = _mtimes(run)
    again = stage_evaluate(config, run, model=model, data=str(data))
    after = _mtimes(run)
    assert after["capabilities.predictions.jsonl"] == before["capabilities.predictions.jsonl"]  # not scored again
    assert after["medmcqa.predictions.jsonl"] > before["medmcqa.predictions.jsonl"]  # scored again
    assert again["scores"] == first["scores"] and run.eval_report().is_file()


@pytest.mark.parametrize("change", [{"eval_max_new_tokens": 5}, {"seed": 3}], ids=["other-budget", "other-seed"])
def test_a_kept_result_for_other_settings_is_scored_again(evaluated, change):
    config, run, model, data, _ = evaluated
    before = _mtimes(run)
    other = RunConfig(**{**config.to_dict(), **change})
    stage_evaluate(other, run, model=model, data=str(data))
    after = _mtimes(run)
    assert all(after[name] > before[name] for name in before)


def test_a_second_evaluator_scores_from_the_other_end(evaluated, monkeypatch):
    """BALANCEDBIO_EVAL_ORDER=reverse: a second process on the same stage folder starts with the last
    benchmark, so two evaluators meet in the middle and each skips what the other finished."""
    config, run, model, data, first = evaluated
    for name in ("capabilities", "medmcqa"):
        run.finished_benchmark(name).unlink(missing_ok=True)
    monkeypatch.setenv("BALANCEDBIO_EVAL_ORDER", "reverse")
    again = stage_evaluate(config, run, model=model, data=str(data))
    after = _mtimes(run)
    assert after["medmcqa.predictions.jsonl"] < after["capabilities.predictions.jsonl"], "not scored last to first"
    assert again["scores"] == first["scores"]
