"""Fused-attention variants (training/export_fused.py): built by ONNX Runtime GenAI's model builder,
marked right-padded, identical to PyTorch alone and batched, recorded and served from the export."""

from __future__ import annotations

import json
import shutil

import pytest

from training.export_fused import FUSED_VARIANTS, FusedExportError, add_fused_variants, build_fused, builder_script


# (name, environment value, expected message): a missing builder says how to install it.
MISSING_BUILDER = [
    ("configured path that does not exist", "/nonexistent/builder.py", "make setup"),
    ("configured folder without the wheel", "/tmp", "BALANCEDBIO_GENAI_BUILDER"),
]


@pytest.mark.parametrize("value, message", [c[1:] for c in MISSING_BUILDER], ids=[c[0] for c in MISSING_BUILDER])
def test_a_missing_builder_says_how_to_install_it(monkeypatch, value, message):
    monkeypatch.setenv("BALANCEDBIO_GENAI_BUILDER", value)
    with pytest.raises(FusedExportError, match=message):
        builder_script()


def test_an_unknown_variant_is_refused_with_the_known_ones(tmp_path):
    with pytest.raises(FusedExportError, match="choose from fused-fp32, fused-int4"):
        build_fused(tmp_path, tmp_path / "out", "fused-int3")


@pytest.fixture(scope="module")
def export_with_fused(tmp_path_factory):
    """The embedded model's export (cached by serving) with fused-fp32 added by add_fused_variants."""
    from serving.config import ensure_base_export
    from training.models import embedded_model_dir

    base = ensure_base_export()
    out = tmp_path_factory.mktemp("export")
    shutil.copy2(base / "model_card.json", out / "model_card.json")
    (out / "fp32").symlink_to(base / "fp32", target_is_directory=True)
    report = add_fused_variants(out, embedded_model_dir(), ["fused-fp32"], n_prompts=4, max_new_tokens=24)
    return out, report


def test_fused_fp32_reproduces_pytorch_alone_and_batched(export_with_fused):
    _, report = export_with_fused
    fused = report["fused-fp32"]
    assert fused["identical"] == fused["prompts"] == 4, fused
    assert fused["batched"]["identical"] == 4, "right-padded rows decoded together differ from PyTorch"
    assert fused["passed"]


def test_the_card_serves_fused_fp32_and_the_engine_batches_it_right_padded(export_with_fused):
    from serving.engine import OnnxEngine

    out, _ = export_with_fused
    card = json.loads((out / "model_card.json").read_text())
    assert card["serve"] == "fused-fp32" and card["variants"]["fused-fp32"] == "fused-fp32/model.onnx"
    assert card["fused"]["options"]["fused-fp32"] == list(FUSED_VARIANTS["fused-fp32"])
    assert "fused-fp32/model.onnx" in card["files"]
    assert "| fused-fp32 | 4 | 4 |" in (out / "MODEL_CARD.md").read_text()
    engine = OnnxEngine(out, threads=1)
    assert engine.directory.name == "fused-fp32" and engine.cache_layout == "right"
    # the model's own tokenizer, not the builder's (which decodes byte-level tokens raw)
    assert engine.tokenizer.decode(engine.encode("Ibuprofen with warfarin?")) == "Ibuprofen with warfarin?"


def test_the_cli_refuses_a_folder_that_is_not_an_export(tmp_path, capsys):
    from training.export_fused import main

    assert main([str(tmp_path), "--run", "smollm2-135m"]) == 2
    assert "holds no model_card.json; export the model first" in capsys.readouterr().err


def test_rows_off_the_gguf_grid_are_refused():
    import numpy as np

    from training.export_fused import _matched_rows

    gguf = np.arange(12, dtype=np.float32).reshape(4, 3)
    assert _matched_rows(gguf, gguf[[2, 0, 3, 1]], "permuted").tolist() == [2, 0, 3, 1]
    trained = gguf[[2, 0, 3, 1]].copy()
    trained[1, 0] += 1e-3  # a trained adapter moves weights off the grid
    with pytest.raises(FusedExportError, match="1 of 4 weight rows are not the GGUF's blocks"):
        _matched_rows(gguf, trained, "trained")


def test_the_gguf_int4_variant_computes_the_models_own_weights(tmp_path):
    """Teacher-forced logits of the exact int4 graph (GGUF Q4_1 blocks, fp32 activations) against PyTorch."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from training.export_fused import embedded_gguf, gguf_int4
    from training.models import embedded_model_dir, load_model

    hf = embedded_model_dir()
    int4 = gguf_int4(build_fused(hf, tmp_path / "fused-fp32", "fused-fp32"), embedded_gguf(hf), tmp_path / "int4",
                     accuracy_level=1)
    model, tokenizer = load_model(str(hf))
    ids = tokenizer("Metformin lowers hepatic glucose output; in renal failure it risks", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        reference = model(torch.tensor([ids])).logits[0].numpy()
    session = ort.InferenceSession(str(int4 / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = {"input_ids": np.array([ids], np.int64), "attention_mask": np.ones((1, len(ids)), np.int64)}
    for spec in session.get_inputs():
        if spec.name.startswith("past_key_values."):
            feed[spec.name] = np.zeros((1, spec.shape[1], 0, spec.shape[3]), np.float32)
    logits = session.run(["logits"], feed)[0][0]
    assert (logits.argmax(-1) == reference.argmax(-1)).all()
    assert np.abs(logits - reference).max() < 1e-2 * np.abs(reference).max()
    assert session.get_modelmeta().custom_metadata_map["balancedbio.cache_layout"] == "right"
    assert sum(p.stat().st_size for p in int4.glob("model.onnx*")) < 0.4 * sum(
        p.stat().st_size for p in (tmp_path / "fused-fp32").glob("model.onnx*"))


def test_a_failed_build_leaves_the_variant_that_was_there(tmp_path):
    builder = tmp_path / "builder.py"
    builder.write_text("import sys\nsys.exit('the builder broke')\n")
    served = tmp_path / "export" / "fused-fp32"
    served.mkdir(parents=True)
    (served / "model.onnx").write_text("the variant being served")
    with pytest.raises(FusedExportError, match="the builder broke"):
        build_fused(tmp_path, served, "fused-fp32", builder=builder)
    assert (served / "model.onnx").read_text() == "the variant being served"
    assert not (tmp_path / "export" / "fused-fp32.building").exists()
