"""Paired comparison of two evaluations over the same items: the ablation's tests and
`docs/alignment/report.json`, on tiny prediction files written in the evaluator's format."""

from __future__ import annotations

import json
import math

import pytest

from training.ablation import verdict
from training.alignment import FIELDS, main as alignment_main, write_alignment_report
from training.paired import compare_evaluations, detectable_difference, item_outcomes, paired_row


def _write(folder, name, rows):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _evaluation(folder, knowledge: list[float], instruction: list[float], mc_right: list[bool], ifeval: list[bool]):
    _write(folder, "capabilities",
           [{"id": f"k{i}", "capability": "knowledge", "score": s, "completion": ""} for i, s in enumerate(knowledge)]
           + [{"id": f"i{i}", "capability": "instruction", "score": s, "completion": ""} for i, s in enumerate(instruction)])
    _write(folder, "medmcqa", [{"id": f"q{i}", "gold": "B", "loglik": "B" if ok else "A", "generated": None}
                               for i, ok in enumerate(mc_right)])
    _write(folder, "ifeval", [{"key": i, "response": "", "strict": ok, "loose": ok} for i, ok in enumerate(ifeval)])
    return folder


@pytest.fixture
def pair(tmp_path):
    # knowledge: 12 items, the aligned model gets 6 more right and none wrong that the base had right.
    base = _evaluation(tmp_path / "base", [0.0] * 12, [0.5, 0.0, 1.0, 0.5], [True, False] * 10, [False] * 8)
    aligned = _evaluation(tmp_path / "aligned", [1.0] * 6 + [0.0] * 6, [1.0, 0.5, 0.5, 0.5], [True, False] * 10,
                          [False] * 8)
    return base, aligned


def test_outcomes_are_read_per_benchmark_and_capability(pair):
    outcomes = item_outcomes(pair[0])
    assert set(outcomes) == {"capabilities", "medmcqa", "ifeval"}
    assert set(outcomes["capabilities"]) == {"knowledge", "instruction"} and len(outcomes["capabilities"]["knowledge"]) == 12
    assert sum(outcomes["medmcqa"]["acc_loglik"].values()) == 10
    assert set(outcomes["ifeval"]) == {"prompt_level_strict_acc", "prompt_level_loose_acc"}


# (name, a prediction row as the evaluator writes it, expected outcomes per metric)
MULTIPLE_CHOICE_ROWS = [
    ("letters", {"id": "m1", "subject": "x", "gold": "B", "loglik": "A", "cloze": "B", "cloze_norm": "B",
                 "circular": None, "generated_text": None, "generated": None},
     {"acc_loglik": 0.0, "acc_cloze": 1.0, "acc_cloze_norm": 1.0}),
    ("pubmedqa-words", {"id": "p1", "subject": "", "gold": "yes", "loglik": "no", "cloze": "no", "cloze_norm": "yes",
                        "circular": None, "generated_text": None, "generated": None},
     {"acc_loglik": 0.0, "acc_cloze": 0.0, "acc_cloze_norm": 1.0}),
]


@pytest.mark.parametrize("row, expected", [c[1:] for c in MULTIPLE_CHOICE_ROWS], ids=[c[0] for c in MULTIPLE_CHOICE_ROWS])
def test_every_scoring_mode_of_a_multiple_choice_item_is_paired(tmp_path, row, expected):
    _write(tmp_path, "bench", [row])
    outcomes = item_outcomes(tmp_path)["bench"]
    assert {metric: items[row["id"]] for metric, items in outcomes.items()} == expected


MCNEMAR = [
    # name, base outcomes, aligned outcomes, expected exact two-sided p
    ("six-discordant-all-one-way", [0] * 12, [1] * 6 + [0] * 6, 2 / 64),
    ("no-discordant-pairs", [1, 0, 1], [1, 0, 1], 1.0),
    ("balanced-discordance", [1, 0, 1, 0], [0, 1, 0, 1], 1.0),
    ("five-to-one", [1] + [0] * 5 + [1] * 4, [0] + [1] * 5 + [1] * 4, 2 * (1 + 6) / 64),
]


@pytest.mark.parametrize("a, b, p", [c[1:] for c in MCNEMAR], ids=[c[0] for c in MCNEMAR])
def test_paired_row_uses_exact_mcnemar_for_pass_fail_items(a, b, p):
    row = paired_row("x", "m", {str(i): float(v) for i, v in enumerate(a)}, {str(i): float(v) for i, v in enumerate(b)})
    assert row.p == pytest.approx(p)
    assert row.diff == pytest.approx((sum(b) - sum(a)) / len(a))
    assert row.ci_low <= row.diff <= row.ci_high
    assert row.discordant == pytest.approx(sum(x != y for x, y in zip(a, b)) / len(a))
    assert row.base_ci[0] <= row.base <= row.base_ci[1]


DETECTABLE = [
    # n, share of discordant items, expected smallest detectable difference ((1.96 + 0.84) * sqrt(q / n))
    (250, 0.2, 0.0792),
    (1000, 0.1, 0.0280),
    (16, 0.5, 0.4953),
]


@pytest.mark.parametrize("n, q, expected", DETECTABLE)
def test_smallest_detectable_difference_shrinks_with_n(n, q, expected):
    assert detectable_difference(n, q) == pytest.approx(expected, abs=1e-3)


def test_alignment_report_has_every_field_per_benchmark_and_capability(pair, tmp_path):
    out = tmp_path / "docs" / "alignment" / "report.json"
    report = write_alignment_report(*pair, out=out)
    assert json.loads(out.read_text()) == report
    table = out.with_suffix(".md").read_text()  # the same numbers for people, significant ones in bold
    assert "| capabilities/knowledge | 12 | 0.000 [" in table and "**+0.500**" in table
    assert "| medmcqa/acc_loglik |" in table
    assert set(report["capabilities"]) == {"knowledge", "instruction"}
    assert set(report["benchmarks"]) == {"medmcqa/acc_loglik", "ifeval/prompt_level_strict_acc",
                                         "ifeval/prompt_level_loose_acc"}
    knowledge = report["capabilities"]["knowledge"]
    assert set(FIELDS) <= set(knowledge)
    assert (knowledge["n"], knowledge["base"], knowledge["aligned"], knowledge["diff"]) == (12, 0.0, 0.5, 0.5)
    assert knowledge["p"] == pytest.approx(2 / 64, abs=1e-4) and knowledge["significant"]
    same = report["benchmarks"]["medmcqa/acc_loglik"]
    assert (same["diff"], same["ci_low"], same["ci_high"], same["p"], same["significant"]) == (0.0, 0.0, 0.0, 1.0, False)
    graded = report["capabilities"]["instruction"]  # shares of constraints met: bootstrap p, not McNemar
    assert graded["diff"] == pytest.approx(0.125) and graded["ci_low"] < 0 < graded["ci_high"] and not graded["significant"]


def test_alignment_cli_refuses_folders_without_shared_items(tmp_path, capsys):
    a = _evaluation(tmp_path / "a", [1.0], [1.0], [True], [True])
    b = tmp_path / "b"
    _write(b, "capabilities", [{"id": "other", "capability": "knowledge", "score": 1.0}])
    assert alignment_main([str(a), str(b), "--out", str(tmp_path / "r.json")]) == 2
    assert "scored different items" in capsys.readouterr().err
    assert alignment_main([str(a), str(tmp_path / "missing"), "--out", str(tmp_path / "r.json")]) == 2
    assert not (tmp_path / "r.json").exists()


def test_verdict_names_significant_differences_and_what_the_budget_could_detect(pair):
    rows = [r for r in compare_evaluations(*pair) if r.benchmark == "capabilities"]
    text = verdict(("grpo", "capability_grpo"), rows)
    assert "capability-aware GRPO scores higher than plain GRPO on knowledge" in text
    # instruction's 4 graded items cannot decide anything: the sentence says how large a difference it could see.
    assert "no difference beyond noise on instruction" in text and "could only detect a difference of about" in text
    assert not math.isnan(rows[0].detectable)


def _flags(loop: bool = False, echo: bool = False) -> dict:
    return {"repeated_ngram": loop, "echoes_prompt": echo, "reason": "test"}


def test_degenerate_generations_are_paired_apart_from_the_scores(tmp_path):
    # Four generated notes and one cloze item: the aligned model loops on two notes the base wrote cleanly.
    for name, flags in (("base", [_flags(), _flags(), _flags(), _flags(echo=True)]),
                        ("aligned", [_flags(loop=True), _flags(loop=True), _flags(), _flags(echo=True)])):
        _write(tmp_path / name, "capabilities",
               [{"id": f"n{i}", "capability": "integration", "score": 0.0, "method": "generate", "degeneration": f}
                for i, f in enumerate(flags)] + [{"id": "c", "capability": "knowledge", "score": 1.0, "method": "cloze",
                                                  "degeneration": None}])
        _write(tmp_path / name, "ifeval", [{"key": 1, "response": "", "strict": True, "loose": True, "degeneration": _flags()}])
    report = write_alignment_report(tmp_path / "base", tmp_path / "aligned", out=tmp_path / "report.json")
    notes = report["degeneration"]["capabilities"]
    assert (notes["n"], notes["base"], notes["aligned"], notes["diff"]) == (4, 0.25, 0.75, 0.5)
    assert report["degeneration"]["ifeval"]["n"] == 1
    assert "degenerate" not in report["capabilities"] and set(report["capabilities"]) == {"integration", "knowledge"}
    assert "degenerate generations: capabilities (lower is better)" in (tmp_path / "report.md").read_text()


def test_capability_predictions_without_flags_get_them_from_the_kept_records(tmp_path):
    # An evaluation written before predictions carried flags: the records file beside it holds prompt and reference.
    case = "70-year-old woman with atrial fibrillation and mitral stenosis on warfarin and digoxin since 2019."
    ask = "List every interaction the team should check before starting any new medication today."
    record = {"capability": "integration", "messages": [{"role": "user", "content": f"History: {case}\n{ask}"}],
              "reference": f"Subjective: {case} Plan: check aspirin against warfarin."}
    (tmp_path / "capability_test.jsonl").write_text("".join(json.dumps({"id": i, **record}) + "\n" for i in ("n0", "n1")))
    _write(tmp_path, "capabilities", [
        {"id": "n0", "capability": "integration", "score": 0.0, "method": "generate", "completion": f"History: {case}"},
        {"id": "n1", "capability": "integration", "score": 0.0, "method": "generate", "completion": ask}])
    # The restated case is content the reference restates too; the instruction read back is an echo.
    assert item_outcomes(tmp_path)["capabilities"]["degenerate"] == {"n0": 0.0, "n1": 1.0}
    assert "degeneration" not in (tmp_path / "capabilities.predictions.jsonl").read_text()  # the folder is left as it was
