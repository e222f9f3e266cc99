"""`python -m training.run`: the whole BalancedBio pipeline in one run directory.

MKGSG data -> SFT warm start -> reward model -> capability-aware GRPO -> ONNX export -> evaluation
(the four capability scores on the held-out synthetic test split, plus benchmark subsets; generation
on the export) -> the export's card completed with the scores.
With no arguments it aligns the embedded SmolLM2-135M-Instruct on the CPU under the `default`
budget; `--preset paper-0.5b` trains Qwen2.5-0.5B-Instruct with LoRA; `--resume RUN_DIR`
continues a killed run; `--ablation` writes the base / SFT / GRPO / capability-aware GRPO table.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from training.ablation import run_ablation
from training.alignment import write_alignment_report
from training.cli import parse_config
from training.config import RunConfig, with_preset
from training.export import refresh_card_run
from training.layout import RunDirectory, RunLayout
from training.models import ModelUnavailableError
from training.plots import plot_run
from training.stage import StageFailed, StageRunner, is_main_process, peak_memory, progress_display


def explicit_flags(argv: list[str]) -> set[str]:
    """Fields set on the command line; `--no_lora` sets `lora`, so a preset cannot undo it."""
    names = {a[2:].split("=", 1)[0].replace("-", "_") for a in argv if a.startswith("--")}
    return names | {n.removeprefix("no_") for n in names if n.startswith("no_")}


def resolve_config(argv: list[str] | None) -> tuple[RunConfig, Path]:
    argv = list(sys.argv[1:] if argv is None else argv)
    config = with_preset(parse_config(RunConfig, argv, __doc__.split("\n")[0]), explicit_flags(argv))
    if config.resume:
        run_dir = Path(config.resume)
        saved = RunLayout(run_dir).config
        if not saved.exists():
            raise SystemExit(f"error: --resume {run_dir}: no config.json there; pass a run directory made by training.run")
        # The saved config wins, so a resumed run trains under the budget it started with.
        values = {**json.loads(saved.read_text()), "resume": str(run_dir)}
        return RunConfig(**values), run_dir
    if config.name is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Ranks start at slightly different times; a time-stamped name would split the run in two.
        raise SystemExit("error: under accelerate launch pass --name RUN_NAME so every rank writes the same run directory")
    name = config.name or time.strftime("%Y%m%d-%H%M%S") + ("-ablation" if config.ablation else "")
    return config, Path(config.runs_dir) / name


def run_pipeline(config: RunConfig, run_dir: Path, console=None) -> dict:
    # Under `accelerate launch` every rank runs this; the trainers share the work, everything else
    # (data, evaluation, export, files) is done once by the main rank while the others wait.
    run = RunDirectory(run_dir)
    if is_main_process():
        run.config.write_text(json.dumps(config.to_dict(), indent=1))
    outputs: dict = {}
    started = time.perf_counter()
    with progress_display(is_main_process()) as progress:
        stages = StageRunner(run, subprocesses=config.stage_processes, progress=progress)
        data = stages.run_stage("data")["data"]
        policy = base = stages.run_stage("base")["model"]
        if config.sft_steps > 0:
            policy = stages.run_stage("sft", everyone=True, base=base, data=data)["model"]
        reward_model = None
        if config.rm_steps > 0:
            outputs["reward_model"] = stages.run_stage("reward_model", everyone=True, base=policy, data=data)
            reward_model = outputs["reward_model"]["model"]
        final = stages.run_stage("grpo", everyone=True, policy=policy, reward_model=reward_model, data=data)["model"]
        if config.base_eval_from:  # scored once, saved, and checked to be these items
            outputs["base_eval"] = stages.run_stage("base_eval", "adopt_eval", label="adopt the saved base evaluation",
                                                    source=config.base_eval_from, data=data, stage="base_eval")
        elif config.eval_base:  # the same items, so aligned - base is a paired comparison
            outputs["base_eval"] = stages.run_stage("base_eval", "eval", label="evaluate the base model", model=base,
                                                    data=data, stage="base_eval")
        # Exported before the evaluation, so the evaluation generates on the graph that is served (and
        # about 1.6x faster); the card's run section is filled again once the evaluation's scores exist.
        onnx = {}
        if config.export:
            outputs["export"] = stages.run_stage("export", model=final)
            onnx = {"onnx_dir": outputs["export"]["onnx"]}  # unused under --eval_engine torch
        outputs["eval"] = stages.run_stage("eval", model=final, data=data, **onnx)
        if config.export and is_main_process():
            refresh_card_run(run.onnx)
        if config.eval_base and is_main_process():
            write_alignment_report(run.stage_dir("base_eval"), run.stage_dir("eval"), out=run.alignment, seed=config.seed)
            outputs["alignment"] = str(run.alignment)
    if not is_main_process():
        return outputs
    outputs["plots"] = [str(p) for p in plot_run(run)]
    outputs["final_model"] = final
    outputs["wall_time_s"] = round(time.perf_counter() - started, 1)
    outputs["memory"] = peak_memory(run)
    run.summary.write_text(json.dumps(outputs, indent=1, default=str))
    return outputs


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # The run's own display shows progress; per-map bars would bury it. Said by the environment (which
    # the stages inherit) rather than by importing datasets: this process only orchestrates, and every
    # import here counts in the run's peak memory beside the largest stage.
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    config, run_dir = resolve_config(argv)
    console = Console()
    try:
        if config.ablation:
            table = run_ablation(config, run_dir)
            console.print(table)
            return 0
        outputs = run_pipeline(config, run_dir, console)
    except StageFailed as e:
        console.print(f"[red]error:[/red] {e}")
        return e.exit_code
    except ModelUnavailableError as e:  # under accelerate launch stages run in this process
        console.print(f"[red]error:[/red] {e}")
        return 2
    if "eval" not in outputs:  # a non-main rank under accelerate launch
        return 0
    scores = outputs["eval"]["scores"]
    for key, value in scores.items():
        console.print(f"  {key:<45} {value:.3f}")
    layout = RunLayout(run_dir)
    console.print(f"run directory: {run_dir}  ({layout.config.name}, {layout.metrics.name}, {layout.plots.name}/, "
                  f"checkpoints, {layout.eval_report().parent.name}/)")
    console.print(f"wall time: {outputs['wall_time_s']:.0f} s; peak resident memory: parent "
                  f"{outputs['memory']['parent_mb']} MB + largest stage ({outputs['memory']['largest_stage']}) "
                  f"{outputs['memory']['parent_plus_largest_stage_mb'] - outputs['memory']['parent_mb']} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
