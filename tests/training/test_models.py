"""Model sources: the embedded GGUF converted once, hub names offline, random architectures."""

from __future__ import annotations

import subprocess
import sys

import pytest

from training.models import ModelUnavailableError, embedded_model_dir, load_model, random_model, resolve_model


def test_embedded_model_is_converted_once_and_reused():
    first = embedded_model_dir("smollm2-135m")
    weights = first / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert embedded_model_dir("smollm2-135m") == first
    assert weights.stat().st_mtime_ns == stamp, "a second call converted the GGUF again"
    assert not (first / "tokenizer.model").exists(), "the 98 MB GGUF copy should not be kept"


def test_embedded_tokenizer_has_chatml_special_tokens(embedded_lm):
    tokenizer = embedded_lm.tokenizer
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token not in (None, tokenizer.eos_token)
    encoded = tokenizer("Hello world")
    assert "token_type_ids" not in encoded
    assert encoded["input_ids"][0] != tokenizer.bos_token_id, "plain text must not get a BOS token"
    prompt = embedded_lm.chat_prompt([{"role": "user", "content": "hi"}])
    assert prompt.count("<|im_start|>") == 3  # system, user, assistant: no doubled BOS


def test_embedded_generation_stops_at_end_of_turn(embedded_lm):
    [answer] = embedded_lm.generate([embedded_lm.chat_prompt([{"role": "user", "content": "Say hello."}])], 200)
    assert answer and "<|im_end|>" not in answer and "<|im_start|>" not in answer
    assert len(embedded_lm.tokenizer(answer)["input_ids"]) < 200, "generation ran to the budget: eos is wrong"


@pytest.mark.parametrize("reference, message", [
    ("Qwen/Qwen2.5-0.5B-Instruct", "not on disk and the hub is unreachable"),
    ("no-such-model", "neither an embedded model"),
], ids=["hub-name-offline", "not-a-model-reference"])
def test_unavailable_model_fails_with_one_clear_line(reference, message):
    with pytest.raises(ModelUnavailableError, match=message) as error:
        load_model(reference)
    assert "\n" not in str(error.value) and ("--model PATH" in str(error.value) or "hub name" in str(error.value))


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ModelUnavailableError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_evaluate_cli_prints_one_line_for_an_unavailable_model():
    done = subprocess.run([sys.executable, "-m", "training.evaluate", "--model", "Qwen/Qwen2.5-0.5B-Instruct",
                           "--benchmark", "medqa", "--sample"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: cannot load 'Qwen/Qwen2.5-0.5B-Instruct'")
    assert "Traceback" not in done.stderr


def test_random_qwen_architecture_matches_the_published_config():
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from training.models import ARCHITECTURES

    small = random_model("qwen2.5-0.5b", num_hidden_layers=1)
    c = small.config
    assert (c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.intermediate_size, c.vocab_size) == (
        896, 14, 2, 4864, 151936)
    assert c.tie_word_embeddings and small.lm_head.weight is small.model.embed_tokens.weight
    with torch.device("meta"):  # the full 24 layers, counted without allocating 2 GB
        full = AutoModelForCausalLM.from_config(AutoConfig.for_model(**ARCHITECTURES["qwen2.5-0.5b"]))
    assert sum(p.numel() for p in full.parameters()) == 494_032_768  # Qwen2.5-0.5B's published size
    with pytest.raises(ModelUnavailableError, match="known:"):
        random_model("gpt-7")
