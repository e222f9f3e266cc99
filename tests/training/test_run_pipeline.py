"""`python -m training.run` end to end on the tiny preset: a real MKGSG -> SFT -> reward model ->
capability-aware GRPO -> evaluation run, killed with SIGKILL mid-GRPO and resumed, then the same
pipeline under `accelerate launch` with two processes (DDP over gloo on the CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = ["--preset", "tiny", "--grpo_steps", "3", "--eval_benchmarks", "medmcqa:4"]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _wait_for(path: Path, proc: subprocess.Popen, deadline_s: float) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and proc.poll() is None:
        if path.exists():
            return True
        time.sleep(0.2)
    return path.exists()


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    run_dir = runs / "tiny"
    cmd = [sys.executable, "-m", "training.run", *TINY, "--runs_dir", str(runs), "--name", "tiny"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        # Generous: each stage starts its own Python (torch, transformers) and the knowledge base loads
        # in the data stage; on the shared 2-core machine at load average 20 that took 9 minutes alone.
        reached = _wait_for(run_dir / "grpo" / "checkpoint-1" / "trainer_state.json", proc, deadline_s=1800)
        time.sleep(0.5)  # let the checkpoint's last files land
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        output = proc.communicate(timeout=60)[0].decode(errors="replace")
    assert reached, f"the run never wrote a GRPO checkpoint:\n{output[-3000:]}"
    assert not (run_dir / "grpo" / "DONE.json").exists(), "killed too late: GRPO had already finished"
    sft_done = (run_dir / "sft" / "DONE.json").stat().st_mtime
    resumed = subprocess.run([sys.executable, "-m", "training.run", "--resume", str(run_dir)], cwd=REPO,
                             env=_env(), capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    return run_dir, sft_done, resumed.stdout


def test_resume_skips_finished_stages_and_continues_grpo_from_its_checkpoint(resumed_run):
    run_dir, sft_done, _ = resumed_run
    assert (run_dir / "sft" / "DONE.json").stat().st_mtime == sft_done
    grpo_steps = [r["step"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
                  if r["stage"] == "grpo" and "loss" in r]
    # Steps 1 (and maybe 2) before the kill, the rest after: never restarted from step 1.
    assert grpo_steps[-1] == 3 and grpo_steps.count(1) == 1, grpo_steps


def test_run_directory_holds_config_metrics_plots_checkpoints_and_evaluation(resumed_run):
    run_dir, _, stdout = resumed_run
    for stage in ("data", "sft", "reward_model", "grpo", "eval"):
        assert (run_dir / stage / "DONE.json").exists(), stage
    assert json.loads((run_dir / "config.json").read_text())["preset"] == "tiny"
    assert (run_dir / "final" / "config.json").exists()
    assert list((run_dir / "grpo").glob("checkpoint-*/capability_state.json"))
    for plot in ("reward_components.png", "weights.png", "gradient_cosines.png", "scores.png"):
        assert (run_dir / "plots" / plot).stat().st_size > 1000, plot
    report = json.loads((run_dir / "eval" / "report.json").read_text())
    # Facts asked anew get their own set whenever the data stage wrote one (it does when the KB has
    # spare templates for a trained fact type).
    anew = {"capabilities_trained_anew"} if (run_dir / "data" / "test_trained_anew.jsonl").exists() else set()
    assert {r["benchmark"] for r in report["results"]} == {"capabilities", "medmcqa", *anew}
    accuracy = json.loads((run_dir / "reward_model" / "pairwise_accuracy.json").read_text())
    assert accuracy["n"] > 0 and accuracy["by_corruption"]
    assert "capabilities/" in stdout and "run directory" in stdout


def test_grpo_metrics_log_weights_and_cosines_every_step(resumed_run):
    run_dir, _, _ = resumed_run
    rows = [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
            if r["stage"] == "grpo" and "loss" in r]
    for row in rows:
        assert any(k.startswith("weights/integration/") for k in row)
        assert any(k.startswith("pcgrad/cos_before/") for k in row)
        assert any(k.startswith("components/") for k in row)


def test_accelerate_launch_two_processes(resumed_run, tmp_path):
    run_dir, _, _ = resumed_run
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
           "--cpu", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "training.run", *TINY,
           "--grpo_steps", "2", "--data", str(run_dir / "data"), "--runs_dir", str(tmp_path), "--name", "ddp"]
    result = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [r for r in map(json.loads, (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines())
            if r["stage"] == "grpo" and "loss" in r]
    assert [r["step"] for r in rows] == [1, 2]
    assert (tmp_path / "ddp" / "eval" / "DONE.json").exists()


def test_paper_preset_trains_a_qwen2_model_with_lora(resumed_run, tmp_path):
    # The paper's preset on a 2-layer random Qwen2 (the 0.5B model's architecture) given by --model
    # PATH, with the budget cut down by explicit flags, which win over the preset.
    from transformers import AutoTokenizer

    from training.models import random_model, resolve_model

    run_dir, _, _ = resumed_run
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m"))
    model = random_model("qwen2.5-0.5b", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=len(tokenizer),
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model.save_pretrained(tmp_path / "qwen2-tiny")
    tokenizer.save_pretrained(tmp_path / "qwen2-tiny")
    cmd = [sys.executable, "-m", "training.run", "--preset", "paper-0.5b", "--model", str(tmp_path / "qwen2-tiny"),
           "--data", str(run_dir / "data"), "--sft_steps", "1", "--sft_batch_size", "2", "--micro_batch_size", "1", "--rm_steps", "1",
           "--rm_batch_size", "2", "--rm_pairs", "4", "--rm_eval_pairs", "4", "--grpo_steps", "1",
           "--grpo_prompts_per_step", "4", "--num_generations", "2", "--max_completion_length", "8",
           "--eval_per_capability", "1", "--eval_max_new_tokens", "8", "--eval_benchmarks", "medmcqa:2",
           "--no_export", "--runs_dir", str(tmp_path / "runs"), "--name", "paper"]
    result = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    paper = tmp_path / "runs" / "paper"
    config = json.loads((paper / "config.json").read_text())
    assert (config["preset"], config["lora"], config["gradient_checkpointing"]) == ("paper-0.5b", True, True)
    assert json.loads((paper / "final" / "config.json").read_text())["model_type"] == "qwen2"
    assert (paper / "sft" / "final" / "config.json").exists()  # LoRA merged: a plain model, not an adapter
    assert not (paper / "final" / "adapter_config.json").exists()
    assert (paper / "eval" / "DONE.json").exists()


def test_ablation_trains_every_arm_and_writes_the_table(resumed_run, tmp_path, monkeypatch):
    # The arms' stage processes inherit this; one thread trains the tiny model fastest.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    from training.ablation import ARM_NAMES, ARMS, run_ablation
    from training.config import RunConfig, with_preset

    run_dir, _, _ = resumed_run
    config = with_preset(RunConfig(preset="tiny", ablation=True, data=str(run_dir / "data")), {"data"})
    table = run_ablation(config, tmp_path / "ablation", docs=tmp_path / "docs")
    assert (tmp_path / "docs" / "ablation.md").read_text() == table
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert {ARM_NAMES[a] for a in ARMS} <= set(rows)
    # Every score carries its 95% interval; the paired tests compare capability-aware GRPO with plain GRPO and SFT.
    assert "[" in rows["capability-aware GRPO"] and "## Paired tests" in table
    for comparison in ("capability-aware GRPO - plain GRPO", "capability-aware GRPO - SFT"):
        assert sum(line.startswith(f"| {comparison} | capabilities/") for line in table.splitlines()) >= 1
    assert "## Verdict" in table and "smallest detectable" in table
    # Both GRPO arms ran the same number of steps; PCGrad's cosines come from the capability-aware arm only.
    metrics = [json.loads(line) for line in (tmp_path / "ablation" / "metrics.jsonl").read_text().splitlines()]
    steps = {arm: [r["step"] for r in metrics if r["stage"] == arm and "loss" in r] for arm in ("grpo", "capability_grpo")}
    assert steps["grpo"] == steps["capability_grpo"] == [1, 2]
    assert not any(k.startswith("pcgrad/") for r in metrics if r["stage"] == "grpo" for k in r)
    assert "before PCGrad" in table
    # No arm is taken for the run's model (serving picks up runs/*/final).
    assert not (tmp_path / "ablation" / "final").exists()
    assert (tmp_path / "ablation" / "capability_grpo" / "final" / "config.json").exists()


def test_export_card_run_section_comes_from_the_runs_own_files(resumed_run, tmp_path):
    from training.export import CARD_MD, export_model, find_source
    from training.layout import RunLayout

    run_dir, _, _ = resumed_run
    run = RunLayout(run_dir)
    assert find_source(str(run.final)).run_dir == run_dir and find_source(str(run_dir)).aligned
    card = export_model(run_dir, tmp_path / "onnx", parity=False).card
    section = card["run"]
    assert section["config"] == json.loads(run.config.read_text())
    assert section["eval"]["scores"] == json.loads(run.done_file("eval").read_text())["scores"]
    assert set(section["stages"]) >= {"data", "base", "sft", "reward_model", "grpo", "eval"}
    assert section["stages"]["grpo"]["steps"] == 3
    assert "## Training run" in (tmp_path / "onnx" / CARD_MD).read_text()


STANDARD_STAGES = ["--preset", "tiny", "--rm_steps", "0", "--eval_benchmarks", "medmcqa:2",
                   # SFT as the standard preset runs it: validation loss every step, early stopping, best model kept.
                   # At learning rate 0 the validation loss cannot improve after its first measurement, so the
                   # callback must stop after `patience` more evaluations on any machine, long before --sft_steps.
                   "--sft_steps", "30", "--sft_eval_steps", "1", "--sft_patience", "2", "--sft_eval_records", "4",
                   "--sft_learning_rate", "0",
                   # The standard preset's data mix: the short knowledge and reasoning records repeated.
                   "--sft_passes", "knowledge=3,reasoning=2,integration=0.5",
                   # GRPO under a wall-clock budget that the first step already spends: it stops there, saved.
                   "--grpo_steps", "20", "--grpo_budget_minutes", "0.001", "--save_steps", "1",
                   # Stages in this process: the other path of run_stage (the fixture's run takes the child processes).
                   "--no_stage_processes",
                   # The base model evaluated on the same items, and the paired comparison written.
                   "--eval_base",
                   # Exported before the evaluation, which then generates on the exported graph.
                   "--export",
                   # LoRA, as the standard preset trains: the adapters are what `training.ship` ships.
                   "--lora"]


@pytest.fixture(scope="module")
def standard_run(resumed_run, tmp_path_factory):
    """The standard preset's stages on the tiny model, finished (the test below stops and resumes it)."""
    run_dir, _, _ = resumed_run
    runs = tmp_path_factory.mktemp("standard_runs")
    cmd = [sys.executable, "-m", "training.run", *STANDARD_STAGES, "--data", str(run_dir / "data"),
           "--runs_dir", str(runs), "--name", "standard"]
    first = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return runs / "standard"


def test_standard_preset_stages_early_stopping_budget_and_resume(resumed_run, standard_run):
    from training.layout import RunLayout

    run_dir, _, _ = resumed_run
    run = RunLayout(standard_run)
    sft = json.loads(run.done_file("sft").read_text())
    assert sft["steps"] == 3 and sft["best_checkpoint"].endswith("checkpoint-1"), sft
    evaluated = [r["eval_loss"] for r in map(json.loads, run.metrics.read_text().splitlines())
                 if r["stage"] == "sft" and "eval_loss" in r]
    assert len(evaluated) == 3 and sft["best_eval_loss"] == min(evaluated)
    grpo = json.loads(run.done_file("grpo").read_text())
    assert grpo["steps"] == 1 and grpo["budget"]["stopped_by_budget_at_step"] == 1, grpo
    assert grpo["budget"]["clock"] == "cpu"
    # Base and aligned scored on the same items; the comparison is paired, per capability set and benchmark.
    base_items = (run.stage_dir("base_eval") / "capabilities.predictions.jsonl").read_text().splitlines()
    aligned_items = (run.stage_dir("eval") / "capabilities.predictions.jsonl").read_text().splitlines()
    assert [json.loads(r)["id"] for r in base_items] == [json.loads(r)["id"] for r in aligned_items]
    alignment = json.loads(run.alignment.read_text())
    assert alignment["base"].endswith("base_eval") and alignment["aligned"].endswith("eval")
    for entry in [*alignment["capabilities"].values(), *alignment["benchmarks"].values()]:
        assert entry["n"] >= 1 and entry["ci_low"] <= entry["diff"] <= entry["ci_high"], entry
    assert any(k.startswith("trained_anew/") for k in alignment["capabilities"]) == \
        (run_dir / "data" / "test_trained_anew.jsonl").exists()
    assert {k.split("/")[0] for k in alignment["benchmarks"]} == {"medmcqa"}
    assert "medmcqa/acc_cloze" in alignment["benchmarks"]
    # The aligned model's generation ran on its export (the tiny base has none: PyTorch), and the card,
    # written before the evaluation, carries the evaluation's scores.
    assert json.loads(run.eval_report("eval").read_text())["engine"].startswith(f"onnx ({run.onnx / 'fp32'}")
    assert json.loads(run.eval_report("base_eval").read_text())["engine"] == "torch"
    card = json.loads((run.onnx / "model_card.json").read_text())
    assert card["run"]["eval"]["scores"] == json.loads(run.done_file("eval").read_text())["scores"] != {}

    # Stopped after its checkpoint, as a kill would leave it: --resume continues GRPO from checkpoint-1
    # with the budget already spent there, not a fresh one.
    spent = json.loads((run.stage_dir("grpo") / "checkpoint-1" / "trainer_state.json").read_text())
    spent = spent["stateful_callbacks"]["WallClockBudget"]["attributes"]["spent_s"]
    for stage in ("grpo", "export", "eval"):
        run.done_file(stage).unlink()
    resumed = subprocess.run([sys.executable, "-m", "training.run", "--resume", str(run.path)], cwd=REPO, env=_env(),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    grpo = json.loads(run.done_file("grpo").read_text())
    assert grpo["budget"]["resumed_from_s"] == pytest.approx(spent) and grpo["steps"] == 2, grpo
    steps = [r["step"] for r in map(json.loads, run.metrics.read_text().splitlines()) if r["stage"] == "grpo" and "loss" in r]
    assert steps == [1, 2]


def test_ablation_from_a_finished_run_trains_only_what_that_run_lacks(standard_run, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    from training.ablation import ARM_NAMES, ARMS, run_ablation
    from training.config import RunConfig
    from training.layout import RunLayout

    source = RunLayout(standard_run)
    settings = {**json.loads(source.config.read_text()), "resume": None, "name": None}
    # With --export each arm trained here generates on its own ONNX export, as the run's evaluation did.
    config = RunConfig(**{**settings, "ablation": True, "ablation_from": str(standard_run), "export": True})
    table = run_ablation(config, tmp_path / "ablation", docs=None)
    ablation = RunLayout(tmp_path / "ablation")
    # The run's SFT model and capability-aware GRPO are adopted, not trained again: same outputs, no checkpoints here.
    for theirs, mine in (("sft", "sft"), ("grpo", "capability_grpo"), ("eval", "eval_capability_grpo"),
                         ("base_eval", "eval_base")):
        assert json.loads(ablation.done_file(mine).read_text()) == json.loads(source.done_file(theirs).read_text())
    assert not list(ablation.stage_dir("sft").glob("checkpoint-*"))
    assert not list(ablation.stage_dir("capability_grpo").glob("checkpoint-*"))
    # Only the plain arm is trained, for the steps the run's GRPO took; SFT and plain GRPO are scored here.
    plain = json.loads(ablation.done_file("grpo").read_text())
    assert plain["steps"] == json.loads(source.done_file("grpo").read_text())["steps"]
    for arm in ("sft", "grpo"):
        report = json.loads(ablation.eval_report(f"eval_{arm}").read_text())
        assert report["engine"].startswith(f"onnx ({ablation.stage_export(f'export_{arm}')}"), report["engine"]
    assert not ablation.stage_dir("export_capability_grpo").exists(), "an adopted evaluation needs no export"
    metrics = [json.loads(line) for line in ablation.metrics.read_text().splitlines()]
    assert any(r["stage"] == "capability_grpo" and r.get("adopted_from") == str(standard_run) for r in metrics)
    rows = {line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")}
    assert {ARM_NAMES[a] for a in ARMS} <= rows and "capability-aware GRPO - plain GRPO" in table


@pytest.mark.parametrize("change, message", [
    ({"sft_learning_rate": 1e-3}, "sft_learning_rate"),
    ({"seed": 5}, "seed"),
], ids=["other-sft-rate", "other-seed"])
def test_ablation_from_a_run_with_other_settings_is_refused(standard_run, tmp_path, change, message):
    from training.ablation import AdoptionError, run_ablation
    from training.config import RunConfig

    settings = {**json.loads((standard_run / "config.json").read_text()), "resume": None, "name": None}
    config = RunConfig(**{**settings, **change, "ablation": True, "ablation_from": str(standard_run)})
    with pytest.raises(AdoptionError, match=message):
        run_ablation(config, tmp_path / "ablation", docs=None)
    assert not (tmp_path / "ablation" / "sft").exists()


def test_an_evaluation_the_run_has_not_finished_is_adopted_once_it_has(standard_run, tmp_path):
    import shutil

    from training.ablation import adopt_pipeline_run
    from training.config import RunConfig
    from training.layout import RunDirectory

    source = tmp_path / "source"
    shutil.copytree(standard_run, source)
    done = source / "eval" / "DONE.json"
    finished = done.read_text()
    done.unlink()  # the run is still evaluating its aligned model
    settings = {**json.loads((source / "config.json").read_text()), "resume": None, "name": None}
    config = RunConfig(**{**settings, "ablation": True, "ablation_from": str(source)})
    ablation = RunDirectory(tmp_path / "ablation")
    first = adopt_pipeline_run(config, source, ablation)
    assert "capability_grpo" in first and "eval_base" in first and "eval_capability_grpo" not in first
    done.write_text(finished)
    assert adopt_pipeline_run(config, source, ablation) == ["eval_capability_grpo"]
    assert ablation.done("eval_capability_grpo") == json.loads(finished)


def test_ship_stacks_the_runs_adapters_into_one_that_reproduces_its_model(standard_run, tmp_path):
    from safetensors.torch import load_file

    from serving.shipped import load_adapter, merge_adapter
    from training.layout import RunLayout
    from training.ship import MAX_WEIGHT_DIFF, ship_run

    target = ship_run(standard_run, "tiny-aligned", tmp_path / "models", commit="0" * 40)
    adapter = load_adapter(target)  # the convention serving checks: files, size, base_model
    card = adapter.card
    assert card["aligned"] and card["commit"] == "0" * 40 and card["data_seed"] == 0
    assert card["base_model"] == json.loads(RunLayout(standard_run).done_file("base").read_text())["model"]
    # One adapter of the summed rank, stored in float16, that adds up to the run's own model.
    config = json.loads((target / "adapter_config.json").read_text())
    sft = json.loads(next((standard_run / "sft").glob("checkpoint-*/adapter_config.json")).read_text())
    assert config["r"] == 2 * sft["r"]
    assert {str(t.dtype) for t in load_file(str(target / "adapter_model.safetensors")).values()} == {"torch.float16"}
    check = card["check_against_run"]
    assert check["max_weight_diff"] <= MAX_WEIGHT_DIFF and check["parity_identical"] == check["parity_prompts"]
    # The card carries the run's paired evaluation, score by score.
    alignment = json.loads(RunLayout(standard_run).alignment.read_text())
    assert {k.removeprefix("capabilities/") for k in card["evaluation"] if k.startswith("capabilities/")} == \
        set(alignment["capabilities"])
    assert all({"n", "diff", "ci_low", "ci_high", "p"} <= set(e) for e in card["evaluation"].values())
    assert "| score | n |" in (target / "README.md").read_text()
    # Serving's merge of the shipped adapter is the run's model.
    merged = load_file(str(merge_adapter(adapter, tmp_path / "merged") / "model.safetensors"))
    final = load_file(str(RunLayout(standard_run).final / "model.safetensors"))
    assert max((merged[k] - final[k]).abs().max().item() for k in final) <= MAX_WEIGHT_DIFF


def test_ship_refuses_a_run_that_trained_every_weight(resumed_run, tmp_path):
    from training.ship import ShipError, ship_run

    run_dir, _, _ = resumed_run
    with pytest.raises(ShipError, match="--no_lora"):
        ship_run(run_dir, "full", tmp_path / "models", commit="0" * 40)
    assert not (tmp_path / "models" / "full").exists()
