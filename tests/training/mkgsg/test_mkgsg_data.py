"""Data tests of a generated MKGSG set (Made-With-ML style): schema, determinism, verification,
knowledge-base agreement, disjoint splits, no benchmark overlap, checkable constraints, pairs."""

from __future__ import annotations

import json

import pytest

from training.evaluate.capabilities import verify_record
from training.mkgsg.__main__ import main as mkgsg_main
from training.mkgsg.config import MKGSGConfig
from training.mkgsg.curation import LeakageIndex, ontology_check
from training.records import Capability, load_records
from training.rewards.constraints import validate_constraint_spec

N = 80


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("mkgsg")
    assert mkgsg_main(["--n", str(N), "--seed", "7", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def records(generated):
    return {split: load_records(generated / f"{split}.jsonl") for split in ("train", "val", "test")}


def test_every_capability_is_generated_evenly(records):
    everything = [r for split in records.values() for r in split]
    assert len(everything) == N
    counts = {c: sum(r.capability is c for r in everything) for c in Capability}
    assert counts == {c: N // 4 for c in Capability}


def test_same_seed_writes_the_same_bytes(generated, tmp_path):
    again = tmp_path / "again"
    assert mkgsg_main(["--n", str(N), "--seed", "7", "--out", str(again)]) == 0
    for name in ("train.jsonl", "val.jsonl", "test.jsonl", "test_trained_anew.jsonl", "preferences_train.jsonl",
                 "preferences_val.jsonl", "stats.json", "DATA_CARD.md"):
        assert (generated / name).read_bytes() == (again / name).read_bytes(), name


def test_every_reference_passes_the_rule_verifiers(records):
    for record in (r for split in records.values() for r in split):
        verdict = verify_record(record, record.reference)
        assert verdict.score == 1.0, (record.id, {k: c.reason for k, c in verdict.checks.items()})


def test_every_record_agrees_with_the_knowledge_base(records):
    from clinical.knowledge import get_knowledge_base

    kb = get_knowledge_base()
    for record in (r for split in records.values() for r in split):
        assert ontology_check(record, kb) is None, record.id


def test_splits_share_no_record_and_no_seed_fact(records):
    ids = [r.id for split in records.values() for r in split]
    assert len(ids) == len(set(ids))
    seeds = {split: {r.provenance.seed for r in rs} for split, rs in records.items()}
    assert all(seed for split in seeds.values() for seed in split), "every record names its seed fact"
    assert not seeds["train"] & seeds["test"] and not seeds["train"] & seeds["val"] and not seeds["val"] & seeds["test"]


def test_no_record_shares_an_ngram_with_a_benchmark(records):
    index = LeakageIndex.build(MKGSGConfig().benchmark_paths(), n=10)
    assert index.files, "no benchmark file was scanned"
    leaked = [r.id for split in records.values() for r in split if index.overlap(r)]
    assert leaked == []


def test_every_constraint_spec_is_checkable(records):
    specs = [spec for split in records.values() for r in split for spec in r.verification.constraints]
    assert specs, "the generated records carry no constraint to check"
    failures = []
    for spec in specs:
        try:
            validate_constraint_spec(spec)
        except ValueError as error:
            failures.append(f"{spec.id}: {error}")
    assert failures == []


def test_preference_pairs_prefer_the_verified_answer(generated, records):
    by_id = {r.id: r for split in records.values() for r in split}
    pairs = [json.loads(line) for line in (generated / "preferences_train.jsonl").read_text().splitlines()]
    assert {p["corruption"] for p in pairs} >= {"wrong_entity", "broken_format"}
    for pair in pairs:
        record = by_id[pair["record_id"]]
        chosen = verify_record(record, pair["chosen"][0]["content"])
        rejected = verify_record(record, pair["rejected"][0]["content"])
        assert chosen.score == 1.0 and pair["rejected_reasons"], pair["id"]
        assert rejected.score < chosen.score or any(
            rejected.checks[k].score < chosen.checks[k].score for k in chosen.checks), pair["id"]
    test_ids = {r.id for r in records["test"]}
    assert not any(p["record_id"] in test_ids for p in pairs), "test records must not feed the reward model"


def test_data_card_reports_counts_rejections_leakage_and_examples(generated):
    card = (generated / "DATA_CARD.md").read_text()
    for heading in ("Records per capability", "Rejections", "Benchmark leakage", "Preference pairs", "Examples"):
        assert f"## {heading}" in card
    assert card.count("### ") == 4


BAD_CONFIGS = [
    ("n-below-capabilities", dict(n=2), "at least 4"),
    ("unknown-capability", dict(capabilities="humour"), "unknown capability"),
    ("no-training-data", dict(val_fraction=0.5, test_fraction=0.5), "leave some data"),
    ("tiny-ngram", dict(leakage_ngram=2), "use 8 to 13"),
]


@pytest.mark.parametrize("kwargs, message", [b[1:] for b in BAD_CONFIGS], ids=[b[0] for b in BAD_CONFIGS])
def test_bad_config_says_how_to_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MKGSGConfig(**kwargs)


def test_leakage_check_catches_a_benchmark_sentence(shared_file):
    from training.records import CapabilityRecord

    medmcqa = shared_file("benchmarks/medmcqa_dev.jsonl")
    question = next(q for q in (json.loads(line)["question"] for line in medmcqa.read_text().splitlines())
                    if len(q.split()) >= 15)
    fixture = load_records("tests/data/capabilities_fixture.jsonl")[1]
    leaked = CapabilityRecord.model_validate({**fixture.model_dump(), "reference": f"{question} {fixture.reference}"})
    index = LeakageIndex.build([medmcqa], n=10)
    assert index.overlap(leaked) == "medmcqa_dev.jsonl" and index.overlap(fixture) is None


def test_one_fact_drawn_twice_gives_two_ids():
    from training.mkgsg.base import Seed
    from training.mkgsg.pipeline import _stamped

    record = load_records("tests/data/capabilities_fixture.jsonl")[0]
    seed = Seed("drugs", "DB01076", None)
    reworded = record.model_copy(update={"reference": record.reference + " (brand name)"})
    assert _stamped(record, seed).id != _stamped(reworded, seed).id
    assert _stamped(record, seed).provenance.seed == "drugs:DB01076"
