"""The trained-facts-asked-anew test set: train facts, new frames, distractor sets no training record used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.mkgsg.anew import FRAMES, askable, asked_anew, distractors_of, fact_type, stem_of
from training.records import load_records


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A real MKGSG run, small: the data stage's own files."""
    from training.mkgsg.__main__ import main as mkgsg_main

    out = tmp_path_factory.mktemp("mkgsg")
    assert mkgsg_main(["--n", "160", "--seed", "3", "--out", str(out)]) == 0
    return out


def test_the_data_stage_writes_the_asked_anew_set_and_counts_it(generated: Path):
    train = load_records(generated / "train.jsonl")
    anew = load_records(generated / "test_trained_anew.jsonl")
    stats = json.loads((generated / "stats.json").read_text())
    assert stats["test_trained_anew"]["asked"] == len(anew) > 0
    # One per askable train record, except those counted as skipped.
    assert len(anew) + sum(stats["test_trained_anew"]["skipped"].values()) == sum(askable(r) for r in train)


def test_no_asked_anew_record_reuses_a_training_template_or_distractor_set(generated: Path):
    train = load_records(generated / "train.jsonl")
    anew = load_records(generated / "test_trained_anew.jsonl")
    used = {(fact_type(r), r.provenance.template, distractors_of(r)) for r in train if askable(r)}
    train_sets = {(fact_type(r), distractors_of(r)) for r in train if askable(r)}
    by_id = {r.id: r for r in train}
    for record in anew:
        assert record.provenance.template in FRAMES
        assert (fact_type(record), record.provenance.template, distractors_of(record)) not in used
        assert (fact_type(record), distractors_of(record)) not in train_sets
        source = by_id[record.id.removesuffix("-anew")]
        # The same fact: its question stem and right answer, with none of its old distractors.
        assert stem_of(source) in record.messages[-1].content
        old, new = source.verification.answer, record.verification.answer
        assert new.options[new.value] == old.options[old.value]
        assert not distractors_of(record) & distractors_of(source)
        assert record.capability == source.capability and record.capability.value in ("knowledge", "reasoning")


def test_asked_anew_is_reproducible(generated: Path):
    train = load_records(generated / "train.jsonl")
    pool = train + load_records(generated / "test.jsonl")
    assert asked_anew(train, pool, seed=3) == asked_anew(train, pool, seed=3)


def test_asked_anew_references_pass_the_rule_verifiers(generated: Path):
    from training.evaluate.capabilities import verify_record

    for record in load_records(generated / "test_trained_anew.jsonl"):
        verdict = verify_record(record, record.reference)
        assert verdict.score == 1.0, (record.id, {k: c.reason for k, c in verdict.checks.items()})
