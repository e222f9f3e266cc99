"""`python -m training.run` settings: presets, the flags that override them, and usage errors."""

from __future__ import annotations

import pytest

from training.run import resolve_config

RESOLVED = [
    # name, argv, expected fields
    ("default-is-the-cpu-budget", [], {"preset": "default", "lora": True, "gradient_checkpointing": False,
                                       "grpo_steps": 4, "grpo_learning_rate": 1e-4}),
    ("preset-fills-the-budget", ["--preset", "tiny"], {"model": "tiny", "lora": False, "sft_steps": 2, "export": False}),
    ("explicit-flag-wins", ["--preset", "tiny", "--sft_steps", "5"], {"sft_steps": 5, "rm_steps": 2}),
    ("negated-flag-wins", ["--preset", "paper-0.5b", "--no_lora"], {"lora": False, "gradient_checkpointing": True,
                                                                     "grpo_learning_rate": 2e-5}),
    ("standard-preset-is-early-stopped-and-budgeted", ["--preset", "standard"],
     {"model": "smollm2-135m", "lora": True, "mkgsg_n": 4000, "mkgsg_test_fraction": 0.3, "sft_eval_steps": 25, "grpo_budget_minutes": 40,
      "sft_passes": "knowledge=3,reasoning=2,integration=0.5", "eval_per_capability": 250}),
    ("standard-budget-from-the-command-line", ["--preset", "standard", "--grpo_budget_minutes", "90"],
     {"grpo_budget_minutes": 90, "sft_budget_minutes": 100}),
    ("paper-preset-keeps-a-given-model", ["--preset", "paper-0.5b", "--model", "/models/qwen"],
     {"model": "/models/qwen", "lora": True, "grpo_steps": 500}),
]


@pytest.mark.parametrize("argv, expected", [c[1:] for c in RESOLVED], ids=[c[0] for c in RESOLVED])
def test_presets_and_flags_resolve(argv, expected, tmp_path):
    config, run_dir = resolve_config([*argv, "--runs_dir", str(tmp_path)])
    assert {k: getattr(config, k) for k in expected} == expected
    assert run_dir.parent == tmp_path


USAGE_ERRORS = [
    ("unknown-preset", ["--preset", "huge"], "unknown --preset 'huge'"),
    ("unknown-weights", ["--weights", "adaptive"], "use static or dynamic"),
    ("one-generation", ["--num_generations", "1"], "at least 2"),
    ("saved-base-without-eval-base", ["--base_eval_from", "docs/baseline/standard"], "add --eval_base"),
    ("ablation-source-without-ablation", ["--ablation_from", "runs/standard"], "add --ablation"),
    ("benchmark-without-limit", ["--eval_benchmarks", "medmcqa"], "needs a limit"),
    ("unknown-benchmark", ["--eval_benchmarks", "medqa2:5"], "is not valid"),
    ("negative-budget", ["--grpo_budget_minutes", "-5"], "must be 0 (off) or positive"),
    ("sft-passes-unknown-capability", ["--sft_passes", "knowlege=3"], "is not valid"),
    ("sft-passes-not-a-number", ["--sft_passes", "knowledge=many"], "is not valid"),
    ("sft-passes-no-records", ["--sft_passes", "knowledge=0,reasoning=0,instruction=0,integration=0"], "leaves SFT no records"),
    ("early-stopping-without-records", ["--sft_eval_steps", "10", "--sft_eval_records", "0"], "needs validation records"),
]


@pytest.mark.parametrize("argv, message", [c[1:] for c in USAGE_ERRORS], ids=[c[0] for c in USAGE_ERRORS])
def test_bad_settings_exit_with_a_message_that_says_how_to_fix(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        resolve_config(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_resume_of_a_folder_without_config_says_what_to_pass(tmp_path):
    with pytest.raises(SystemExit, match="no config.json there"):
        resolve_config(["--resume", str(tmp_path)])


def test_distributed_launch_needs_a_run_name(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit, match="pass --name"):
        resolve_config([])
