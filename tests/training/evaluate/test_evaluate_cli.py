"""`python -m training.evaluate` as a user runs it (the main job `training.run` is tested in tests/training)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from training.evaluate.__main__ import main as evaluate_main
from training.evaluate.runner import BENCHMARKS, SAMPLES


def test_help_lists_every_benchmark():
    done = subprocess.run([sys.executable, "-m", "training.evaluate", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    for name in BENCHMARKS:
        assert name in done.stdout


def test_limited_evaluation_writes_report_table_chart_and_predictions(tmp_path, capsys):
    out = tmp_path / "eval"
    code = evaluate_main(["--benchmark", "medmcqa", "--data", str(SAMPLES / "medmcqa_dev_sample.jsonl"),
                          "--limit", "6", "--seed", "3", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    [result] = report["results"]
    assert result["n"] == 6 and 0.0 <= result["metrics"]["acc_loglik"] <= 1.0
    assert 0.0 <= result["metrics"]["unparseable_rate"] <= 1.0
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 6 and all(p["loglik"] in "ABCD" for p in predictions)
    # The reported accuracy is the share of correct predictions written beside it.
    assert result["metrics"]["acc_loglik"] == pytest.approx(sum(p["loglik"] == p["gold"] for p in predictions) / 6)
    assert (out / "chart.png").read_bytes().startswith(b"\x89PNG")
    assert "acc_loglik" in (out / "report.md").read_text() and "acc_loglik" in capsys.readouterr().out


def test_compare_puts_reports_side_by_side_and_pairs_two(tmp_path, capsys):
    # The same 6 items twice: by letter and by cloze, so the paired difference is real, not zero by construction.
    for name, modes in (("letter", "loglik,cloze"), ("again", "loglik,cloze")):
        assert evaluate_main(["--benchmark", "mmlu_medical", "--sample", "--limit", "6", "--seed", "1",
                              "--modes", modes, "--out", str(tmp_path / name)]) == 0
    capsys.readouterr()
    assert evaluate_main(["--compare", str(tmp_path / "letter"), str(tmp_path / "again"), "--out", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out
    table = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "mmlu_medical: acc_loglik" in table and "(letter)" in table and "(again)" in table
    assert "| mmlu_medical | acc_cloze | 6 |" in printed and "95% paired-bootstrap" in printed
    assert (tmp_path / "cmp" / "comparison.png").is_file()
    result = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    rows = {r["metric"]: r for r in result["comparisons"]}
    assert set(rows) == {"acc_loglik", "acc_cloze", "acc_cloze_norm"}
    # One model twice, greedy and deterministic: no difference, p = 1, nothing significant.
    assert all(r["diff"] == 0 and r["p"] == 1 and not r["significant"] and r["n"] == 6 for r in rows.values())


def test_compare_refuses_reports_of_different_items(tmp_path, capsys):
    for seed in (1, 2):
        assert evaluate_main(["--benchmark", "mmlu_medical", "--sample", "--limit", "4", "--seed", str(seed),
                              "--modes", "loglik", "--out", str(tmp_path / f"r{seed}")]) == 0
    capsys.readouterr()
    assert evaluate_main(["--compare", str(tmp_path / "r1"), str(tmp_path / "r2")]) == 2
    assert "different items" in capsys.readouterr().err


BAD_ARGS = [
    ("unknown-benchmark", ["--benchmark", "medqa2"], "invalid choice"),
    ("no-benchmark", [], "--benchmark is required"),
    ("bad-mode", ["--benchmark", "medqa", "--modes", "vibes"], "--modes takes"),
    ("zero-limit", ["--benchmark", "medqa", "--limit", "0"], "--limit must be a positive"),
]


@pytest.mark.parametrize("args, message", [b[1:] for b in BAD_ARGS], ids=[b[0] for b in BAD_ARGS])
def test_bad_arguments_exit_with_a_usage_error(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        evaluate_main(args)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_missing_data_file_exits_2_with_the_path(tmp_path, capsys):
    assert evaluate_main(["--benchmark", "medqa", "--data", str(tmp_path / "nope.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "nope.jsonl" in err and "pass --data" in err


def test_capability_scores_of_a_real_model_come_with_reasons(embedded_lm):
    from training.evaluate.capabilities import score_capabilities, verify_record
    from training.records import load_records

    records = load_records(SAMPLES / "capabilities_fixture.jsonl")
    metrics, verdicts = score_capabilities(embedded_lm, records, max_new_tokens=24)
    # Each capability's score is the mean of its records' verdicts, over the fixture's records of
    # that capability (counted from the file here), and each verdict is the verifier's on the text
    # the model wrote: re-verifying the completion gives the same score.
    by_capability = {}
    for record, verdict in zip(records, verdicts):
        assert verdict.id == record.id and verdict.completion
        assert verify_record(record, verdict.completion).score == verdict.score
        by_capability.setdefault(verdict.capability, []).append(verdict.score)
    assert {"knowledge", "reasoning", "instruction", "integration"} <= set(by_capability)
    for capability, scores in by_capability.items():
        assert metrics[f"{capability}_n"] == len(scores)
        assert metrics[capability] == pytest.approx(sum(scores) / len(scores))
    assert all(check.reason for v in verdicts for check in v.checks.values())
    # The scale has a meaningful floor: an empty answer passes no answer or reasoning check.
    empty = [verify_record(r, "") for r in records if r.verification.answer]
    assert empty and all(v.checks["answer"].score == 0.0 for v in empty)


@pytest.mark.slow
def test_fifty_medmcqa_items_print_accuracy(shared_file, tmp_path, capsys):
    data = shared_file("benchmarks/medmcqa_dev.jsonl")
    assert evaluate_main(["--benchmark", "medmcqa", "--data", str(data), "--limit", "50", "--out", str(tmp_path)]) == 0
    assert "| medmcqa | acc_loglik | 50 |" in capsys.readouterr().out
