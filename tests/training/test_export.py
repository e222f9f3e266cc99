"""ONNX export of the embedded model: fp32 parity with PyTorch, int8/int4 reports, model card, source lookup."""

from __future__ import annotations

import json
import os
import time

import pytest

from training.export import (CARD_JSON, CARD_MD, EXPORT_FORMAT, _copy_companions, choose_variant, export_model,
                             find_source, main, newest_run, sha256)
from training.models import ModelUnavailableError


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    result = export_model("smollm2-135m", out, int8=True, int4=True, n_prompts=2, max_new_tokens=8,
                          capability_tokens=16)
    return result


def test_fp32_reproduces_pytorch_greedy_tokens(exported):
    fp32 = exported.card["parity"]["fp32"]
    assert fp32["passed"] and fp32["identical"] == fp32["prompts"] == 2


N_PROMPTS, PARITY_TOKENS = 2, 8  # the export fixture's n_prompts and max_new_tokens


@pytest.mark.parametrize("variant", ["int8", "int4"])
def test_quantised_agreement_and_capability_change_are_reported(exported, variant):
    parity = exported.card["parity"]
    agreement = parity[variant]
    assert agreement["prompts"] == N_PROMPTS and agreement["identical_rate"] == agreement["identical"] / N_PROMPTS
    # A working quantisation keeps at least the first greedy token of one prompt (a confident token
    # right after the chat template); a broken one (wrong scales, wrong layout) emits noise, which
    # matches a token by chance about once in the 49,152-token vocabulary. So the floor is one token
    # in the 2 x 8 compared; the exact numbers are not asserted (they depend on the CPU's kernels).
    assert agreement["mean_prefix_agreement"] >= 1 / (N_PROMPTS * PARITY_TOKENS)
    # Identical continuations agree over their whole length, so the prefix agreement can't be lower.
    assert agreement["mean_prefix_agreement"] >= agreement["identical_rate"]
    caps = parity["capabilities"]
    assert caps["n"] == 8 and set(caps[variant]) == set(caps["fp32"])
    assert caps["delta"][variant] == pytest.approx({k: caps[variant][k] - v for k, v in caps["fp32"].items()})
    # The fixture screens; only training.quantization's paired evidence may serve a variant.
    assert exported.card["serve"] == "fp32" and "training.quantization" in exported.card["serve_reason"]
    assert f"| {variant} change |" in (exported.out_dir / CARD_MD).read_text()


def test_int4_variant_is_weight_only_matmulnbits(exported):
    import onnx

    graph = onnx.load(str(exported.out_dir / "int4" / "model_int4.onnx")).graph
    nbits = [n for n in graph.node if n.op_type == "MatMulNBits"]
    assert nbits and not [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in
                          {i.name for i in graph.initializer}]  # every weight MatMul became 4-bit
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nbits[0].attribute}
    assert attrs["bits"] == 4 and attrs["block_size"] == 32 and attrs["accuracy_level"] == 4
    assert len(nbits[0].input) < 4 or not nbits[0].input[3]  # symmetric: no zero points
    assert exported.card["quantization"]["int4"]["block_size"] == 32


def test_card_names_source_and_hashes_every_file(exported):
    card = json.loads((exported.out_dir / CARD_JSON).read_text())
    assert card["aligned"] is False and card["source"]["reference"] == "smollm2-135m"
    assert {"fp32/model.onnx", "int8/model_quantized.onnx", "int4/model_int4.onnx", "int4/tokenizer.json",
            "fp32/tokenizer.json"} <= set(card["files"])
    assert card["files"]["fp32/tokenizer.json"] == sha256(exported.out_dir / "fp32" / "tokenizer.json")
    assert "Parity with PyTorch" in (exported.out_dir / CARD_MD).read_text()
    assert os.fspath(exported) == str(exported.out_dir)


def test_serving_engine_loads_the_export(exported):
    from serving.engine import OnnxEngine

    engine = OnnxEngine(exported.out_dir, threads=1)
    assert engine.name == exported.card["model_version"] and engine.aligned is False
    assert engine.directory.name == exported.card["serve"]
    # Every variant's head takes logits_to_keep (the rewrite precedes quantisation), so the engine
    # computes the last position's logits only while it generates; the card says which format it is.
    assert engine.keeps_logits and exported.card["format"] == EXPORT_FORMAT
    assert OnnxEngine(exported.out_dir / "int8", threads=1).keeps_logits
    int4 = OnnxEngine(exported.out_dir / "int4", threads=1)  # whichever is served, int4 must run in the engine
    prompt = int4.encode(int4.chat_prompt([{"role": "user", "content": "What does HbA1c measure?"}]))
    tokens = int4.greedy_tokens(prompt, 4)
    # Four tokens, or fewer when the model ended its answer: then the last one is an end-of-sequence id.
    assert len(tokens) == 4 or (1 <= len(tokens) < 4 and tokens[-1] in int4.eos_ids)
    assert not set(tokens[:-1]) & int4.eos_ids and all(0 <= t < len(int4.tokenizer) for t in tokens)
    assert int4.keeps_logits


OK, LOSES = {"knowledge": -0.02, "integration": 0.1}, {"knowledge": -0.5, "integration": 0.0}


@pytest.mark.parametrize("name,requested,delta,serve,reason", [
    ("fp32 asked", [], None, "fp32", "no quantised variant"),
    ("int8, no capability records", ["int8"], None, "int8", "no capability records"),
    ("int8 within tolerance", ["int8"], {"int8": OK}, "int8", "int8 within tolerance"),
    ("int8 loses knowledge", ["int8"], {"int8": LOSES}, "fp32", "int8 drops knowledge by 0.500"),
    ("int4 preferred when both pass", ["int8", "int4"], {"int8": OK, "int4": OK}, "int4", "int4 within"),
    ("int4 fails, int8 passes", ["int8", "int4"], {"int8": OK, "int4": LOSES}, "int8", "int4 drops knowledge"),
    ("both fail", ["int8", "int4"], {"int8": LOSES, "int4": LOSES}, "fp32", "int8 drops knowledge"),
    ("int4 unscored is not served", ["int4"], {"int8": OK}, "fp32", "int4 has no capability scores"),
    ("a drop exactly at the tolerance passes", ["int4"], {"int4": {"reasoning": -0.05}}, "int4", "int4 within"),
])
def test_quantised_variant_served_only_within_tolerance(name, requested, delta, serve, reason):
    report = {"capabilities": {"delta": delta}} if delta else {}
    chosen, why = choose_variant(requested, report, tolerance=0.05)
    assert chosen == serve and reason in why


def test_asymmetric_int4_stores_a_zero_point_per_block_and_decodes(exported, tmp_path):
    """The GGUF's Q4_1 layout (a scale and an offset per 32 weights), which the symmetric int4 lacks."""
    import onnx

    from serving.engine import OnnxEngine
    from training.export import _quantize_int4

    _quantize_int4(exported.out_dir / "fp32", tmp_path / "int4", symmetric=False)
    graph = onnx.load(str(tmp_path / "int4" / "model_int4.onnx")).graph
    nbits = [n for n in graph.node if n.op_type == "MatMulNBits"]
    assert nbits and all(len(n.input) >= 4 and n.input[3] for n in nbits)  # every block has its zero point
    engine = OnnxEngine(tmp_path / "int4", threads=1)
    prompt = engine.encode(engine.chat_prompt([{"role": "user", "content": "What does HbA1c measure?"}]))
    tokens = engine.greedy_tokens(prompt, 4)
    assert tokens and all(0 <= t < len(engine.tokenizer) for t in tokens)


def test_quantised_folders_get_tokenizer_and_config_but_no_fp32_weights(tmp_path):
    fp32, out = tmp_path / "fp32", tmp_path / "int4"
    fp32.mkdir(), out.mkdir()
    for name in ("model.onnx", "model.onnx_data", "tokenizer.json", "config.json"):
        (fp32 / name).write_text(name)
    (out / "config.json").write_text("the quantiser's own")
    _copy_companions(fp32, out)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "tokenizer.json"]
    assert (out / "config.json").read_text() == "the quantiser's own"


def test_sources(tmp_path):
    # A real run's folder is tested in tests/training/test_run_pipeline.py, on a real tiny run.
    loose = tmp_path / "models" / "m1"
    loose.mkdir(parents=True)
    (loose / "config.json").write_text("{}")
    assert find_source(str(loose)).run_dir is None and not find_source(str(loose)).aligned
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
