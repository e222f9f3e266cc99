"""`python -m training.run`: the whole BalancedBio pipeline in one run directory.

MKGSG data -> SFT warm start -> reward model -> capability-aware GRPO -> evaluation (the four
capability scores on the held-out synthetic test split, plus benchmark subsets) -> ONNX export.
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

from training.cli import parse_config
from training.config import RunConfig, with_preset

STAGES = ("data", "sft", "reward_model", "grpo", "eval", "export")


def explicit_flags(argv: list[str]) -> set[str]:
    """Fields set on the command line; `--no_lora` sets `lora`, so a preset cannot undo it."""
    names = {a[2:].split("=", 1)[0].replace("-", "_") for a in argv if a.startswith("--")}
    return names | {n.removeprefix("no_") for n in names if n.startswith("no_")}


def resolve_config(argv: list[str] | None) -> tuple[RunConfig, Path]:
    argv = list(sys.argv[1:] if argv is None else argv)
    config = with_preset(parse_config(RunConfig, argv, __doc__.split("\n")[0]), explicit_flags(argv))
    if config.resume:
        run_dir = Path(config.resume)
        saved = run_dir / "config.json"
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


def progress_display(enabled: bool = True):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("[bold]{task.description:<34}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), disable=not enabled)


def run_pipeline(config: RunConfig, run_dir: Path, console=None) -> dict:
    from accelerate import PartialState

    from training import stages
    from training.plots import plot_run

    # Under `accelerate launch` every rank runs this; the trainers share the work, everything else
    # (data, evaluation, export, files) is done once by the main rank while the others wait.
    state = PartialState()
    run = stages.RunDirectory(run_dir)
    if state.is_main_process:
        (run.path / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
    outputs: dict = {}
    started = time.perf_counter()
    with progress_display(state.is_main_process) as progress:
        tasks = {s: progress.add_task(f"{i}/{len(STAGES)} {s}", total=None, start=False)
                 for i, s in enumerate(STAGES, 1)}

        def stage(name, fn, *args, everyone: bool = False):
            done = run.done(name)
            if done is not None:
                progress.update(tasks[name], total=1, completed=1, description=f"{name} (done earlier)")
                return done
            progress.start_task(tasks[name])
            t0 = time.perf_counter()
            if everyone or state.is_main_process:
                result = fn(*args)
                result["wall_time_s"] = round(time.perf_counter() - t0, 1)
                if state.is_main_process:
                    run.mark_done(name, result)
            state.wait_for_everyone()
            task = progress.tasks[tasks[name]]
            progress.update(tasks[name], total=task.total or 1, completed=task.total or 1)
            return run.done(name)

        data = stage("data", stages.stage_data, config, run)["data"]
        base = stages.base_model_path(config, run)
        policy = base
        if config.sft_steps > 0:
            policy = stage("sft", stages.stage_sft, config, run, base, data, progress, tasks["sft"],
                           everyone=True)["model"]
        reward_model = None
        if config.rm_steps > 0:
            outputs["reward_model"] = stage("reward_model", stages.stage_reward_model, config, run, policy, data,
                                            progress, tasks["reward_model"], everyone=True)
            reward_model = outputs["reward_model"]["model"]
        final = stage("grpo", stages.stage_grpo, config, run, policy, reward_model, data, progress,
                      tasks["grpo"], everyone=True)["model"]
        outputs["eval"] = stage("eval", stages.stage_evaluate, config, run, final, data, progress, tasks["eval"])
        if config.export:
            outputs["export"] = stage("export", export_stage, config, run, final)
    if not state.is_main_process:
        return outputs
    outputs["plots"] = [str(p) for p in plot_run(run.path)]
    outputs["final_model"] = final
    outputs["wall_time_s"] = round(time.perf_counter() - started, 1)
    (run.path / "summary.json").write_text(json.dumps(outputs, indent=1, default=str))
    return outputs


def export_stage(config, run, model: str) -> dict:
    from training.export import export_model

    # runs/NAME/onnx is where `python -m serving` looks for a run's export (and reuses it).
    result = export_model(run.path, run.path / "onnx")
    return {"onnx": str(result.out_dir), "serve": str(result.serve_dir)}


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    from training.models import ModelUnavailableError

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets

    datasets.disable_progress_bars()  # the run's own display shows progress; per-map bars would bury it
    config, run_dir = resolve_config(argv)
    console = Console()
    try:
        if config.ablation:
            from training.ablation import run_ablation

            table = run_ablation(config, run_dir)
            console.print(table)
            return 0
        outputs = run_pipeline(config, run_dir, console)
    except ModelUnavailableError as e:
        console.print(f"[red]error:[/red] {e}")
        return 2
    if "eval" not in outputs:  # a non-main rank under accelerate launch
        return 0
    scores = outputs["eval"]["scores"]
    for key, value in scores.items():
        console.print(f"  {key:<45} {value:.3f}")
    console.print(f"run directory: {run_dir}  (config.json, metrics.jsonl, plots/, checkpoints, eval/report.md)")
    console.print(f"wall time: {outputs['wall_time_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
