"""Decoding settings: transformers' repetition controls, their precedence (defaults < the model's
generation_config.json < an explicit setting), and the PyTorch path applying them."""

from __future__ import annotations

import pytest
from transformers import GenerationConfig

from training.evaluate.decoding import (DEFAULT_NO_REPEAT_NGRAM_SIZE, DEFAULT_REPETITION_PENALTY, DecodingConfig,
                                        DecodingConfigError, eos_ids, explicit_from_env)

DEFAULTS = (DEFAULT_REPETITION_PENALTY, DEFAULT_NO_REPEAT_NGRAM_SIZE)


@pytest.mark.parametrize("name,model_states,env,expected", [
    ("nothing stated: the measured defaults", {}, {}, DEFAULTS),
    ("the model states a penalty", {"repetition_penalty": 1.15}, {}, (1.15, DEFAULT_NO_REPEAT_NGRAM_SIZE)),
    ("the model states an n-gram size", {"no_repeat_ngram_size": 5}, {}, (DEFAULT_REPETITION_PENALTY, 5)),
    ("the environment beats the model", {"repetition_penalty": 1.15},
     {"BALANCEDBIO_REPETITION_PENALTY": "1.05", "BALANCEDBIO_NO_REPEAT_NGRAM_SIZE": "0"}, (1.05, 0)),
    ("the environment alone", {}, {"BALANCEDBIO_NO_REPEAT_NGRAM_SIZE": "6"}, (DEFAULT_REPETITION_PENALTY, 6)),
])
def test_precedence(monkeypatch, name, model_states, env, expected):
    for variable in ("BALANCEDBIO_REPETITION_PENALTY", "BALANCEDBIO_NO_REPEAT_NGRAM_SIZE"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    resolved = DecodingConfig().for_model(GenerationConfig(**model_states), explicit_from_env())
    assert (resolved.repetition_penalty, resolved.no_repeat_ngram_size) == expected


@pytest.mark.parametrize("variable,value,message", [
    ("BALANCEDBIO_REPETITION_PENALTY", "strong", "BALANCEDBIO_REPETITION_PENALTY='strong' is not a number"),
    ("BALANCEDBIO_REPETITION_PENALTY", "-1", "repetition_penalty=-1.0 must be > 0"),
    ("BALANCEDBIO_NO_REPEAT_NGRAM_SIZE", "2.5", "BALANCEDBIO_NO_REPEAT_NGRAM_SIZE='2.5' is not a number"),
    ("BALANCEDBIO_NO_REPEAT_NGRAM_SIZE", "-3", "no_repeat_ngram_size=-3 must be a whole number >= 0"),
])
def test_a_bad_environment_value_names_the_variable_and_the_range(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(DecodingConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        explicit_from_env()


@pytest.mark.parametrize("name,settings,kinds", [
    ("off", DecodingConfig(1.0, 0), []),
    ("penalty", DecodingConfig(1.2, 0), ["RepetitionPenaltyLogitsProcessor"]),
    ("n-gram", DecodingConfig(1.0, 3), ["NoRepeatNGramLogitsProcessor"]),
    ("both, in generate()'s order", DecodingConfig(1.2, 3), ["RepetitionPenaltyLogitsProcessor",
                                                             "NoRepeatNGramLogitsProcessor"]),
])
def test_the_processors_are_transformers_own(name, settings, kinds):
    assert [type(p).__name__ for p in settings.logits_processors()] == kinds


@pytest.mark.parametrize("stated,fallback,expected", [(2, 0, {2}), ([2, 7], 0, {2, 7}), (None, 5, {5})])
def test_eos_ids_from_the_generation_config(stated, fallback, expected):
    assert eos_ids(GenerationConfig(eos_token_id=stated), fallback) == expected


@pytest.fixture(scope="module")
def tiny_lm():
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from training.models import embedded_model_dir

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir(), local_files_only=True)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval(), tokenizer


@pytest.mark.parametrize("name,settings", [("penalty 1.5", DecodingConfig(1.5, 0)), ("no repeated 2-gram", DecodingConfig(1.0, 2))])
def test_the_pytorch_path_decodes_with_the_settings(tiny_lm, name, settings):
    import torch

    from training.evaluate.lm import TorchLM

    model, tokenizer = tiny_lm
    prompt = "Name a drug for hypertension."
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]

    def reference(decoding: DecodingConfig) -> str:
        with torch.inference_mode():
            out = model.generate(ids, max_new_tokens=24, do_sample=False, temperature=None, top_p=None, top_k=None,
                                 pad_token_id=tokenizer.pad_token_id, **decoding.generate_kwargs())
        return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()

    ours = TorchLM(model, tokenizer, name="tiny", progress=False, decoding=settings).generate([prompt], 24)[0]
    assert ours == reference(settings) != reference(DecodingConfig(1.0, 0))
