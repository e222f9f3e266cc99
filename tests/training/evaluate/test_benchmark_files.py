"""Benchmark readers on the real files (data tests) and on broken ones (clear errors)."""

from __future__ import annotations

import json

import pytest

from training.evaluate import benchmarks as bm
from training.evaluate.runner import BENCHMARKS, SAMPLES, default_data

FULL_FILES = [
    ("medqa", "benchmarks/medqa_us_4options_test_sample20.jsonl", 20),
    ("medmcqa", "benchmarks/medmcqa_dev.jsonl", 4183),
    ("pubmedqa", "benchmarks/ori_pqal.json", 500),  # the official test split, read from test_ground_truth.json
    ("mmlu_medical", "benchmarks/mmlu_medical_test_sample", 30),
    ("ifeval", "benchmarks/ifeval_input_data.jsonl", 541),
]


@pytest.mark.parametrize("name, relative, count", FULL_FILES, ids=[f[0] for f in FULL_FILES])
def test_published_file_reads_completely(shared_file, name, relative, count):
    items = BENCHMARKS[name].reader(shared_file(relative))
    assert len(items) == count


SAMPLE_COUNTS = {"medqa": 20, "medmcqa": 40, "pubmedqa": 20, "mmlu_medical": 30, "ifeval": 25, "capabilities": 8}


@pytest.mark.parametrize("name", sorted(SAMPLE_COUNTS))
def test_bundled_sample_reads(name):
    assert len(BENCHMARKS[name].reader(default_data(name, sample=True))) == SAMPLE_COUNTS[name]


def test_pubmedqa_sample_mixes_all_three_labels():
    labels = {item.gold_label for item in bm.read_pubmedqa(SAMPLES / "pubmedqa" / "ori_pqal.json")}
    assert labels == {"yes", "no", "maybe"}


def test_known_items_are_read_as_published(shared_file):
    medmcqa = bm.read_medmcqa(shared_file("benchmarks/medmcqa_dev.jsonl"))[0]
    assert medmcqa.question.startswith("Which of the following is not true for myelinated nerve fibers")
    assert medmcqa.gold_label == "A" and medmcqa.subject == "Physiology"  # cop 1 -> A
    medqa = bm.read_medqa(shared_file("benchmarks/medqa_us_4options_test_sample20.jsonl"))[0]
    assert medqa.gold_label == "D" and medqa.choice_texts[3] == "Ventral thalamus"
    mmlu = bm.read_mmlu(shared_file("benchmarks/mmlu_medical_test_sample/anatomy_test.csv"))[0]
    assert mmlu.subject == "anatomy" and mmlu.gold_label == "A"


BROKEN = [
    ("medmcqa-not-json", bm.read_medmcqa, "x.jsonl", "{not json\n", r"x.jsonl:1: not JSON"),
    ("medmcqa-cop-out-of-range", bm.read_medmcqa, "x.jsonl",
     json.dumps({"question": "q", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 5}) + "\n", "cop must be 1-4"),
    ("medqa-missing-options", bm.read_medqa, "x.jsonl", json.dumps({"question": "q", "answer_idx": "A"}) + "\n",
     r"missing field\(s\) \['options'\]"),
    ("medqa-answer-not-an-option", bm.read_medqa, "x.jsonl",
     json.dumps({"question": "q", "options": {"A": "a", "B": "b"}, "answer_idx": "E"}) + "\n", "not one of the options"),
    ("mmlu-wrong-columns", bm.read_mmlu, "anatomy_test.csv", "q,a,b,c\n", "expected 6 columns"),
    ("pubmedqa-bad-label", bm.read_pubmedqa, "ori_pqal.json",
     json.dumps({"1": {"QUESTION": "q", "CONTEXTS": ["c"], "final_decision": "perhaps"}}), "is not yes/no/maybe"),
]


@pytest.mark.parametrize("reader, filename, content, message", [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_file_error_names_the_problem(tmp_path, reader, filename, content, message):
    path = tmp_path / filename
    path.write_text(content)
    with pytest.raises(bm.BenchmarkFileError, match=message):
        reader(path)


def test_missing_file_says_to_pass_data(tmp_path):
    with pytest.raises(bm.BenchmarkFileError, match="pass --data"):
        bm.read_medmcqa(tmp_path / "absent.jsonl")


def test_limit_sample_is_seeded_and_keeps_order():
    items = list(range(100))
    first, again, other = bm.sample(items, 10, seed=1), bm.sample(items, 10, seed=1), bm.sample(items, 10, seed=2)
    assert first == again and first != other and first == sorted(first) and len(first) == 10
    assert bm.sample(items, None, seed=1) == items
    with pytest.raises(ValueError, match="positive"):
        bm.sample(items, 0, seed=1)


def test_hub_dataset_name_is_read_through_datasets(tmp_path, monkeypatch):
    # A local dataset folder stands in for the hub: load_dataset resolves both the same way.
    from training.evaluate.runner import from_hub

    monkeypatch.setenv("BALANCEDBIO_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "ifeval-copy"
    source.mkdir()
    (source / "train.jsonl").write_text((SAMPLES / "ifeval_input_data_sample.jsonl").read_text())
    path = from_hub("ifeval", f"{source}@train")
    assert len(BENCHMARKS["ifeval"].reader(path)) == 25


def test_hub_is_refused_for_benchmarks_whose_hub_format_differs():
    from training.evaluate.runner import from_hub

    with pytest.raises(bm.BenchmarkFileError, match="pass --data with the published file"):
        from_hub("pubmedqa", "qiaojin/PubMedQA")
