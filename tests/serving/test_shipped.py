"""A shipped adapter in models/ is served without training: merged and exported once, cached by its hash,
labelled aligned with its card; a folder that breaks the convention fails saying how to fix it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from serving.config import Settings, resolve_model
from serving.shipped import ShippedModelError, adapter_cache, find_shipped_adapter, load_adapter


@pytest.fixture
def env(shipped, monkeypatch):
    monkeypatch.setenv("BALANCEDBIO_CACHE", str(shipped.cache))
    monkeypatch.delenv("BALANCEDBIO_MODEL", raising=False)
    monkeypatch.delenv("BALANCEDBIO_ADAPTER", raising=False)
    return monkeypatch


def test_the_adapter_is_preferred_to_training_and_cached_by_its_hash(shipped, env, tmp_path):
    def train():
        pytest.fail("training ran although an aligned adapter is shipped")

    served = resolve_model(Settings.from_env(), runs_dir=tmp_path / "runs", models=shipped.models_dir, train=train)
    adapter = find_shipped_adapter(shipped.models_dir)
    assert served.directory == shipped.export_dir == adapter_cache(adapter) / "onnx"
    assert adapter.digest()[:16] == served.directory.parent.name and "shipped in" in served.why


def test_the_export_is_labelled_aligned_with_the_adapters_card(shipped):
    card = json.loads((shipped.export_dir / "model_card.json").read_text())
    shipped_card = json.loads((shipped.adapter_dir / "model_card.json").read_text())
    assert card["aligned"] is True and card["model_version"].startswith("tiny-aligned-")
    assert card["shipped_adapter"]["card"] == shipped_card
    assert card["parity"]["fp32"]["passed"]


def test_an_unchanged_adapter_is_never_merged_or_exported_again(shipped, env, monkeypatch):
    import serving.shipped
    import training.export

    def refuse(*args, **kwargs):
        pytest.fail("merged or exported again")
    monkeypatch.setattr(training.export, "export_model", refuse)
    monkeypatch.setattr(serving.shipped, "merge_adapter", refuse)
    before = (shipped.export_dir / "model_card.json").stat().st_mtime_ns
    assert resolve_model(Settings.from_env(), models=shipped.models_dir).directory == shipped.export_dir
    assert (shipped.export_dir / "model_card.json").stat().st_mtime_ns == before


def test_a_changed_adapter_gets_a_new_cache_key(shipped, tmp_path):
    copy = tmp_path / "models" / "tiny-aligned"
    shutil.copytree(shipped.adapter_dir, copy)
    card = json.loads((copy / "model_card.json").read_text())
    (copy / "model_card.json").write_text(json.dumps({**card, "data_seed": 1}))
    assert load_adapter(copy).digest() != load_adapter(shipped.adapter_dir).digest()


def test_the_engine_serves_the_merged_adapter_not_the_base(shipped):
    import torch
    from peft import PeftModel

    from serving.engine import OnnxEngine
    from training.evaluate.decoding import DecodingConfig
    from training.models import load_model

    off = DecodingConfig(repetition_penalty=1.0, no_repeat_ngram_size=0)
    engine = OnnxEngine(shipped.export_dir, threads=1, prefer_gpu=False, decoding=off)
    assert engine.aligned is True
    ids = engine.encode(engine.chat_prompt([{"role": "user", "content": "Name a statin."}]))
    base, tokenizer = load_model(str(shipped.base_dir))

    def greedy(model):
        with torch.inference_mode():
            out = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, temperature=None, top_p=None,
                                 top_k=None, pad_token_id=tokenizer.pad_token_id, **off.generate_kwargs())
        return out[0, len(ids):].tolist()
    base_tokens = greedy(base)
    aligned_tokens = greedy(PeftModel.from_pretrained(base, str(shipped.adapter_dir)))
    assert engine.greedy_tokens(ids, 12) == aligned_tokens != base_tokens


def _without(name: str):
    return lambda d: (d / name).unlink()


def _oversize(d: Path) -> None:
    with open(d / "adapter_model.safetensors", "r+b") as f:
        f.truncate(26 * 1024 * 1024)


def _card(value) -> callable:
    return lambda d: (d / "model_card.json").write_text(value)


@pytest.mark.parametrize("name,break_it,message", [
    ("no card", _without("model_card.json"), "lacks model_card.json"),
    ("no weights", _without("adapter_model.safetensors"), "lacks adapter_model.safetensors"),
    ("over 25 MB", _oversize, "over the 25 MB limit; lower the LoRA rank"),
    ("card is not JSON", _card("{not json"), "is not JSON"),
    ("card names no base model", _card('{"name": "x"}'), "must name its base_model"),
])
def test_a_folder_that_breaks_the_convention_is_refused(shipped, tmp_path, name, break_it, message):
    copy = tmp_path / "models" / "broken"
    shutil.copytree(shipped.adapter_dir, copy)
    break_it(copy)
    with pytest.raises(ShippedModelError, match=message):
        load_adapter(copy)


def test_two_adapters_need_a_choice(shipped, tmp_path, monkeypatch):
    monkeypatch.delenv("BALANCEDBIO_ADAPTER", raising=False)
    for name in ("a", "b"):
        shutil.copytree(shipped.adapter_dir, tmp_path / name)
    with pytest.raises(ShippedModelError, match="ships 2 adapters .*set BALANCEDBIO_ADAPTER"):
        find_shipped_adapter(tmp_path)
    monkeypatch.setenv("BALANCEDBIO_ADAPTER", "b")
    assert find_shipped_adapter(tmp_path).name == "b"


def test_an_empty_models_folder_ships_nothing(tmp_path):
    (tmp_path / "README.md").write_text("empty until the standard run lands")
    assert find_shipped_adapter(tmp_path) is None


def test_the_repositorys_models_folder_follows_the_convention():
    # models/ ships at most one adapter, and every adapter in it loads (README explains the rest).
    from serving.shipped import models_dir

    assert (models_dir() / "README.md").is_file()
    find_shipped_adapter(models_dir())
