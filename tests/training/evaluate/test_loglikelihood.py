"""The batched log-likelihood path must score exactly what a naive one-at-a-time loop scores."""

from __future__ import annotations

import pytest

from training.evaluate import benchmarks as bm
from training.evaluate.multiple_choice import cloze_context, loglik_context, score_multiple_choice
from training.evaluate.runner import SAMPLES


@pytest.fixture(scope="module")
def mixed_items():
    # Short MedMCQA questions and long PubMedQA abstracts in one batch stress the left padding.
    return bm.read_medmcqa(SAMPLES / "medmcqa_dev_sample.jsonl")[:5] + bm.read_pubmedqa(SAMPLES / "pubmedqa" / "ori_pqal.json")[:2]


def test_batched_loglikelihood_matches_naive_loop(embedded_lm, mixed_items):
    requests = [(loglik_context(item), " " + label) for item in mixed_items for label in item.choices]
    # Cloze: each option's own text after the bare question (multi-token continuations, one pass each).
    requests += [(cloze_context(item), " " + text) for item in mixed_items for text in item.choice_texts]
    requests += [("Aspirin irreversibly inhibits", " cyclooxygenase"), ("Metformin is", " a biguanide used in diabetes")]
    batched = embedded_lm.loglikelihood(requests)
    naive = embedded_lm.loglikelihood_naive(requests)
    assert batched == pytest.approx(naive, abs=2e-4)

    def picks(scores):
        out, it = [], iter(scores)
        for item in mixed_items:
            per = [next(it) for _ in item.choices]
            out.append(per.index(max(per)))
        return out

    # Accuracy is computed from the picks, so equal picks mean exactly equal accuracy.
    assert picks(batched) == picks(naive)


def test_cloze_options_share_batches_and_single_token_options_share_a_pass(embedded_lm, mixed_items):
    """Multi-token option texts are one row each, batched together; PubMedQA's one-token answer words
    (" yes", " no", " maybe") after the same context share one forward pass."""
    requests = [(cloze_context(item), " " + text) for item in mixed_items for text in item.choice_texts]
    plan = embedded_lm._plan(requests)
    pubmedqa = [item for item in mixed_items if item.id.startswith("pubmedqa")]
    assert pubmedqa and len(plan) <= len(requests) - sum(len(item.choices) - 1 for item in pubmedqa)
    assert len(plan) > len(requests) / 2  # multi-token options are not merged
    assert len(embedded_lm._batches(plan, lambda s: len(s.inputs))) < len(plan) / 2


def test_one_forward_pass_serves_all_single_token_options(embedded_lm, mixed_items):
    requests = [(loglik_context(item), " " + label) for item in mixed_items for label in item.choices]
    assert len(embedded_lm._plan(requests)) == len(mixed_items)


def test_accuracy_is_invariant_to_batch_size(embedded_lm, mixed_items):
    wide, _ = score_multiple_choice(embedded_lm, mixed_items, modes=("loglik",))
    old = embedded_lm.max_batch_tokens
    embedded_lm.max_batch_tokens = 64  # forces one item per batch
    try:
        narrow, _ = score_multiple_choice(embedded_lm, mixed_items, modes=("loglik",))
    finally:
        embedded_lm.max_batch_tokens = old
    assert wide["acc_loglik"] == narrow["acc_loglik"]
