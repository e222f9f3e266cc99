"""ONNX export of the embedded model: fp32 parity with PyTorch, int8 report, model card, source lookup."""

from __future__ import annotations

import json
import os
import time

import pytest

from training.export import (CARD_JSON, CARD_MD, choose_variant, export_model, find_source, main, newest_run,
                             sha256)
from training.models import ModelUnavailableError


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    result = export_model("smollm2-135m", out, int8=True, n_prompts=2, max_new_tokens=8, capability_tokens=16)
    return result


def test_fp32_reproduces_pytorch_greedy_tokens(exported):
    fp32 = exported.card["parity"]["fp32"]
    assert fp32["passed"] and fp32["identical"] == fp32["prompts"] == 2


def test_int8_agreement_and_capability_change_are_reported(exported):
    parity = exported.card["parity"]
    assert 0.0 <= parity["int8"]["identical_rate"] <= 1.0
    assert 0.0 <= parity["int8"]["mean_prefix_agreement"] <= 1.0
    caps = parity["capabilities"]
    assert caps["n"] == 8 and set(caps["delta"]) == set(caps["fp32"])
    assert exported.card["serve"] == choose_variant(True, parity, 0.05)[0]


def test_card_names_source_and_hashes_every_file(exported):
    card = json.loads((exported.out_dir / CARD_JSON).read_text())
    assert card["aligned"] is False and card["source"]["reference"] == "smollm2-135m"
    assert {"fp32/model.onnx", "int8/model_quantized.onnx", "fp32/tokenizer.json"} <= set(card["files"])
    assert card["files"]["fp32/tokenizer.json"] == sha256(exported.out_dir / "fp32" / "tokenizer.json")
    assert "Parity with PyTorch" in (exported.out_dir / CARD_MD).read_text()
    assert os.fspath(exported) == str(exported.out_dir)


def test_serving_engine_loads_the_export(exported):
    from serving.engine import OnnxEngine

    engine = OnnxEngine(exported.out_dir, threads=1)
    assert engine.name == exported.card["model_version"] and engine.aligned is False
    assert engine.directory.name == exported.card["serve"]


@pytest.mark.parametrize("name,int8,delta,serve", [
    ("fp32 asked", False, None, "fp32"),
    ("int8, no capability records", True, None, "int8"),
    ("int8 within tolerance", True, {"knowledge": -0.02, "integration": 0.1}, "int8"),
    ("int8 loses knowledge", True, {"knowledge": -0.5, "integration": 0.0}, "fp32"),
])
def test_int8_served_only_within_tolerance(name, int8, delta, serve):
    report = {"capabilities": {"delta": delta}} if delta else {}
    chosen, why = choose_variant(int8, report, tolerance=0.05)
    assert chosen == serve and why


def test_sources(tmp_path):
    run = tmp_path / "runs" / "r1"
    (run / "final").mkdir(parents=True)
    (run / "final" / "config.json").write_text("{}")
    (run / "run_config.json").write_text("{}")
    assert find_source(str(run)).aligned and find_source(str(run)).model_dir == run / "final"
    assert find_source(str(run / "final")).run_dir == run
    assert find_source("smollm2-135m").aligned is False
    for bad in (tmp_path / "missing", tmp_path / "runs"):
        with pytest.raises(ModelUnavailableError):
            find_source(str(bad))


def test_newest_run_is_the_latest_final(tmp_path):
    for i, name in enumerate(("old", "new")):
        (tmp_path / name / "final").mkdir(parents=True)
        cfg = tmp_path / name / "final" / "config.json"
        cfg.write_text("{}")
        os.utime(cfg, (time.time() - 100 + i * 50,) * 2)
    (tmp_path / "untrained").mkdir()
    assert newest_run(tmp_path) == tmp_path / "new"
    assert newest_run(tmp_path / "none") is None


def test_cli_error_says_what_to_pass(tmp_path, capsys):
    assert main(["--run", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "run directory" in capsys.readouterr().err
