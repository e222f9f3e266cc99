"""The model component of the hybrid reward (hybrid.ModelReward) on a small random reward model.

The reward model is a 2-layer random Llama sequence classifier with the embedded model's tokenizer,
saved to a temporary folder: what the tests check is the plumbing around it (the chat text it
scores, batching, truncation and the squash to (0, 1)), each against the model run by hand.
"""

from __future__ import annotations

import math

import pytest
import torch

from training.rewards.hybrid import MODEL_COMPONENT, ModelReward


@pytest.fixture(scope="module")
def reward_model_dir(tmp_path_factory):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from training.models import resolve_model

    folder = tmp_path_factory.mktemp("reward_model")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m"))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    LlamaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def reward(reward_model_dir):
    return ModelReward(str(reward_model_dir), max_length=48, batch_size=2)


def _alone(reward: ModelReward, text: str) -> float:
    """The model's logit for one text, tokenised and run without any batch or padding."""
    ids = reward.tokenizer(text, return_tensors="pt", truncation=True, max_length=reward.max_length,
                           return_token_type_ids=False)
    with torch.inference_mode():
        return float(reward.model(**ids).logits[0, 0])


PROMPTS = ["Is warfarin safe with aspirin?",
           [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Dose of metformin?"}],
           "Name one sign of sepsis."]
COMPLETIONS = ["No: the bleeding risk rises.", [{"role": "assistant", "content": "500 mg twice daily."}],
               "Fever " * 40]  # longer than max_length: truncated


def test_texts_are_the_chat_with_the_completion_as_the_assistant_turn(reward):
    texts = reward.texts(PROMPTS, COMPLETIONS)
    expected = [
        [{"role": "user", "content": PROMPTS[0]}, {"role": "assistant", "content": COMPLETIONS[0]}],
        [*PROMPTS[1], {"role": "assistant", "content": "500 mg twice daily."}],
        [{"role": "user", "content": PROMPTS[2]}, {"role": "assistant", "content": COMPLETIONS[2]}],
    ]
    assert texts == [reward.tokenizer.apply_chat_template(m, tokenize=False) for m in expected]
    assert "Answer briefly." in texts[1] and "500 mg twice daily." in texts[1]


def test_scores_are_the_sigmoid_of_each_texts_own_logit_whatever_the_batch(reward):
    texts = reward.texts(PROMPTS, COMPLETIONS)
    alone = [_alone(reward, t) for t in texts]
    assert len(reward.tokenizer(texts[2])["input_ids"]) > reward.max_length  # the truncation is exercised
    assert reward.logits(texts) == pytest.approx(alone, abs=1e-4)  # batches of 2, then 1, padded
    scores = reward(PROMPTS, COMPLETIONS)
    assert scores == pytest.approx([1 / (1 + math.exp(-x)) for x in alone], abs=1e-4)
    assert all(0.0 < s < 1.0 for s in scores) and len(set(round(s, 6) for s in scores)) == 3


def test_named_for_trl_logs(reward):
    assert reward.__name__ == MODEL_COMPONENT == "model"
    assert reward.max_length == 48 and reward.batch_size == 2 and not reward.model.training
