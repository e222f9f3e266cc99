"""Capability scoring: option records by cloze (per-character log-likelihood of each option's text),
the rest by generation with parse rate and degeneration beside the score, every score with its interval."""

from __future__ import annotations

import pytest

from training.evaluate.capabilities import cloze_question, clozeable, score_capabilities
from training.evaluate.runner import SAMPLES
from training.records import load_records

RECORDS = load_records(SAMPLES / "capabilities_fixture.jsonl")


class KnowsGold:
    """Finds the gold option's text likeliest after a cloze question; generates a fixed looping text."""

    name = "knows-gold"

    def __init__(self, answer_text: str = "I am not sure. I am not sure. I am not sure."):
        self.answer_text = answer_text
        self.gold = {cloze_question(r): r.verification.answer.options[r.verification.answer.value]
                     for r in RECORDS if clozeable(r)}

    def chat_prompt(self, messages):
        return messages[-1]["content"]

    def loglikelihood(self, requests):
        return [0.0 if self.gold.get(ctx) == cont[1:] else -3.0 * len(cont) for ctx, cont in requests]

    def generate(self, prompts, max_new_tokens):
        return [self.answer_text for _ in prompts]


def test_option_records_are_scored_by_cloze_and_the_rest_by_generation():
    metrics, verdicts = score_capabilities(KnowsGold(), RECORDS)
    by_id = {v.id: v for v in verdicts}
    for record in RECORDS:
        assert by_id[record.id].method == ("cloze" if clozeable(record) else "generate")
    cloze = [v for v in verdicts if v.method == "cloze"]
    assert cloze and all(v.score == 1.0 for v in cloze)
    # Every generation loops, and the degeneration metric says so.
    generated = [v for v in verdicts if v.method == "generate"]
    assert metrics["degeneration"]["n"] == len(generated)
    assert metrics["degeneration"]["repeated_ngram"]["value"] == 1.0


def test_cloze_question_drops_the_listed_options():
    record = next(r for r in RECORDS if clozeable(r))
    question = cloze_question(record)
    assert question.endswith("\nAnswer:")
    assert not any(f"{k}. {v}" in question for k, v in record.verification.answer.options.items())


def test_every_capability_score_has_n_and_interval_and_parse_rate_where_answers_are_generated():
    metrics, _ = score_capabilities(KnowsGold("Answer: atorvastatin"), RECORDS)
    for capability, entry in metrics["intervals"].items():
        assert entry["n"] == metrics[f"{capability}_n"]
        assert entry["ci_low"] <= metrics[capability] <= entry["ci_high"]
    answered = [r for r in RECORDS if r.verification.answer and not clozeable(r)]
    assert answered, "the fixture should hold a generated record with an answer"
    rates = {c: metrics[f"{c}_parse_rate"]["value"] for c in metrics["intervals"] if f"{c}_parse_rate" in metrics}
    assert rates and all(v == 1.0 for v in rates.values())


@pytest.mark.parametrize("cloze", [True, False])
def test_cloze_can_be_turned_off(cloze):
    _, verdicts = score_capabilities(KnowsGold(), RECORDS, cloze=cloze)
    assert any(v.method == "cloze" for v in verdicts) is cloze
