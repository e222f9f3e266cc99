"""Evaluation reports: `report.json` (the record), `report.md` (the table), `chart.png` (the picture),
and side-by-side comparison of several reports."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

# The numbers a reader looks at first, per benchmark kind, in display order.
HEADLINE = {
    "multiple_choice": ("acc_loglik", "acc_generate", "unparseable_rate"),
    "ifeval": ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc"),
    "capabilities": ("knowledge", "reasoning", "instruction", "integration"),
}


@dataclass
class BenchmarkResult:
    benchmark: str
    kind: str
    data: str
    n: int
    metrics: dict
    wall_time_s: float

    def headline(self) -> dict[str, float]:
        return {k: self.metrics[k] for k in HEADLINE[self.kind] if k in self.metrics}


@dataclass
class EvalReport:
    model: str
    seed: int
    limit: int | None
    results: list[BenchmarkResult] = field(default_factory=list)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    environment: dict = field(default_factory=lambda: _environment())

    def write(self, out: Path) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        (out / "report.md").write_text(self.markdown())
        plot_bars({f"{r.benchmark}: {k}": v for r in self.results for k, v in r.headline().items()},
                  title=f"{self.model}", path=out / "chart.png")
        return out

    def markdown(self) -> str:
        lines = [f"# Evaluation of `{self.model}`", "",
                 f"seed {self.seed}, limit {self.limit or 'none'}, {self.created}, {self.environment.get('machine', '')}", "",
                 "| benchmark | n | metric | value | wall time (s) |", "|---|---:|---|---:|---:|"]
        for r in self.results:
            for i, (metric, value) in enumerate(r.headline().items()):
                lines.append(f"| {r.benchmark if i == 0 else ''} | {r.n if i == 0 else ''} | {metric} | {value:.3f} | "
                             f"{f'{r.wall_time_s:.0f}' if i == 0 else ''} |")
        return "\n".join(lines) + "\n"

    @classmethod
    def load(cls, path: Path) -> "EvalReport":
        path = Path(path)
        if path.is_dir():
            path = path / "report.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no report here; pass a report.json or the folder that holds one")
        raw = json.loads(path.read_text())
        raw["results"] = [BenchmarkResult(**r) for r in raw["results"]]
        return cls(**raw)


def _environment() -> dict:
    import torch
    import transformers

    return {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
            "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__}


def plot_bars(values: dict[str, float] | dict[str, dict[str, float]], title: str, path: Path) -> None:
    """Horizontal bars of scores in [0, 1]; a dict of dicts draws one coloured series per outer key."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = values if values and isinstance(next(iter(values.values())), dict) else {title: values}
    labels = sorted({k for s in series.values() for k in s}, reverse=True)
    height = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(labels) * max(len(series), 1) + 1.5))
    for i, (name, s) in enumerate(series.items()):
        ys = [j + i * height for j in range(len(labels))]
        ax.barh(ys, [s.get(k, 0.0) for k in labels], height=height, label=name)
    ax.set_yticks([j + height * (len(series) - 1) / 2 for j in range(len(labels))], labels)
    ax.set_xlim(0, 1)
    ax.set_xlabel("score")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    if len(series) > 1:
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _column(report: EvalReport, path: Path, reports: list[EvalReport]) -> str:
    """The model's name, made unique by the folder only when two reports of it cover one benchmark."""
    benchmarks = {r.benchmark for r in report.results}
    clash = any(other is not report and other.model == report.model and benchmarks & {r.benchmark for r in other.results}
                for other in reports)
    return f"{report.model} ({Path(path).name})" if clash else report.model


def compare(paths: list[Path], out: Path | None = None) -> str:
    """A Markdown table with one column per report (and a grouped chart when `out` is given)."""
    reports = [EvalReport.load(p) for p in paths]
    names = [_column(r, p, reports) for r, p in zip(reports, paths)]
    rows: dict[str, dict[str, float]] = {}
    for name, report in zip(names, reports):
        for result in report.results:
            for metric, value in result.headline().items():
                rows.setdefault(f"{result.benchmark}: {metric}", {})[name] = value
    names = list(dict.fromkeys(names))  # reports of one model on different benchmarks share a column
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for metric, cells in rows.items():
        lines.append(f"| {metric} | " + " | ".join(f"{cells[n]:.3f}" if n in cells else "–" for n in names) + " |")
    table = "\n".join(lines) + "\n"
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "comparison.md").write_text(table)
        plot_bars({n: {m: c[n] for m, c in rows.items() if n in c} for n in names}, "comparison", out / "comparison.png")
    return table
