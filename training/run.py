"""`python -m training.run`: the main job.

Today it evaluates a model (the embedded SmolLM2-135M-Instruct by default) on the benchmark
samples bundled with the project and on the hand-checked capability fixture, writes the report
into a run directory and prints the table. The alignment stages (MKGSG data, SFT, reward model,
capability-aware GRPO, ONNX export) are added in front of this evaluation as they land.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from training.cli import parse_config
from training.evaluate.runner import BENCHMARKS

SAMPLE_BENCHMARKS = ("medqa", "medmcqa", "pubmedqa", "mmlu_medical", "ifeval", "capabilities")


@dataclass
class RunConfig:
    """The main job's settings."""

    model: str = field(default="smollm2-135m", metadata={
        "help": "Embedded model name, a local model folder, or a cached hub name."})
    benchmarks: str = field(default=",".join(SAMPLE_BENCHMARKS), metadata={
        "help": f"Comma-separated benchmarks to evaluate on their bundled samples; known: {', '.join(BENCHMARKS)}."})
    ifeval_max_new_tokens: int = field(default=256, metadata={
        "help": "Generation budget for IFEval here (the full baseline uses 512); smaller keeps the job short on a CPU."})
    seed: int = field(default=0, metadata={"help": "Seed for anything random."})
    runs_dir: str = field(default="runs", metadata={"help": "Where run directories are created."})

    def __post_init__(self) -> None:
        unknown = [b for b in self.benchmark_list if b not in BENCHMARKS]
        if unknown or not self.benchmark_list:
            raise ValueError(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
        if self.ifeval_max_new_tokens < 16:
            raise ValueError("--ifeval_max_new_tokens below 16 cannot answer any IFEval prompt; use 256 or more")

    @property
    def benchmark_list(self) -> list[str]:
        return [b.strip() for b in self.benchmarks.split(",") if b.strip()]


def main(argv: list[str] | None = None) -> int:
    config = parse_config(RunConfig, argv, __doc__.split("\n")[0])

    from rich.console import Console

    from training.evaluate.lm import load_language_model
    from training.evaluate.report import EvalReport
    from training.evaluate.runner import default_data, run_benchmark
    from training.models import ModelUnavailableError

    console = Console()
    run_dir = Path(config.runs_dir) / time.strftime("%Y%m%d-%H%M%S")
    try:
        with console.status(f"loading {config.model}"):
            lm = load_language_model(config.model)
    except ModelUnavailableError as e:
        console.print(f"[red]error:[/red] {e}")
        return 2
    report = EvalReport(model=config.model, seed=config.seed, limit=None)
    stages = config.benchmark_list
    for i, name in enumerate(stages, 1):
        console.rule(f"stage {i}/{len(stages)}: evaluate {name} (bundled sample)")
        budget = config.ifeval_max_new_tokens if name == "ifeval" else None
        report.results.append(run_benchmark(lm, name, default_data(name, sample=True), seed=config.seed,
                                            max_new_tokens=budget,
                                            predictions_path=run_dir / "eval" / f"{name}.predictions.jsonl"))
    report.write(run_dir / "eval")
    console.print(_table(report))
    console.print(f"run directory: {run_dir} (report.json, report.md, chart.png, predictions)")
    return 0


def _table(report):
    from rich.table import Table

    table = Table(title=f"{report.model} on the bundled samples")
    for column in ("benchmark", "n", "metric", "value", "seconds"):
        table.add_column(column, justify="right" if column in ("n", "value", "seconds") else "left")
    for r in report.results:
        for j, (metric, value) in enumerate(r.headline().items()):
            first = j == 0
            table.add_row(r.benchmark if first else "", str(r.n) if first else "", metric, f"{value:.3f}",
                          f"{r.wall_time_s:.0f}" if first else "")
    return table


if __name__ == "__main__":
    sys.exit(main())
