"""Evaluation reports: `report.json` (the record), `report.md` (the table), `chart.png` (the picture),
and side-by-side comparison of several reports."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from training.evaluate.multiple_choice import BIAS_SHARE
from training.evaluate.stats import BOOTSTRAP_RESAMPLES, ItemMismatchError, mean_interval, paired_comparison

# The numbers a reader looks at first, per benchmark kind, in display order.
HEADLINE = {
    "multiple_choice": ("acc_loglik", "acc_cloze", "acc_cloze_norm", "acc_circular", "acc_generate", "unparseable_rate"),
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
    items: dict = field(default_factory=dict)  # metric -> item id -> score, for paired comparisons

    def headline(self) -> dict[str, float]:
        keys = HEADLINE.get(self.kind, ()) + tuple(k for k in self.metrics.get("intervals", {})
                                                   if k not in HEADLINE.get(self.kind, ()))
        return {k: self.metrics[k] for k in keys if isinstance(self.metrics.get(k), (int, float))}

    def interval(self, metric: str) -> tuple[int, float, float] | None:
        """(n, low, high) of a headline metric: stored by the scorer, else from the per-item scores."""
        stored = self.metrics.get("intervals", {}).get(metric)
        if stored and stored.get("ci_low") is not None:
            return stored["n"], stored["ci_low"], stored["ci_high"]
        mode = next((m for m, e in self.metrics.get("modes", {}).items() if f"acc_{m}" == metric), None)
        if mode:
            entry = self.metrics["modes"][mode]
            return entry["n"], entry["ci_low"], entry["ci_high"]
        scores = list(self.items.get(metric, {}).values())
        if scores:
            low, high = mean_interval(scores)
            return len(scores), low, high
        return None


@dataclass
class EvalReport:
    model: str
    seed: int
    limit: int | None
    results: list[BenchmarkResult] = field(default_factory=list)
    engine: str = "torch"
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    environment: dict = field(default_factory=lambda: _environment())

    def write(self, out: Path) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        (out / "report.md").write_text(self.markdown())
        values, intervals = {}, {}
        for r in self.results:
            for k, v in r.headline().items():
                values[f"{r.benchmark}: {k}"] = v
                ci = r.interval(k)
                if ci:
                    intervals[f"{r.benchmark}: {k}"] = (ci[1], ci[2])
        plot_bars(values, title=f"{self.model} (bars: 95% intervals)", path=out / "chart.png", intervals=intervals)
        return out

    def markdown(self) -> str:
        lines = [f"# Evaluation of `{self.model}`", "",
                 f"seed {self.seed}, limit {self.limit or 'none'}, generation on {self.engine}, {self.created}, "
                 f"{self.environment.get('machine', '')}", "",
                 "| benchmark | metric | n | value | 95% interval | wall time (s) |", "|---|---|---:|---:|---|---:|"]
        for r in self.results:
            for i, (metric, value) in enumerate(r.headline().items()):
                ci = r.interval(metric)
                n, interval = (ci[0], f"[{ci[1]:.3f}, {ci[2]:.3f}]") if ci else (r.n, "–")
                lines.append(f"| {r.benchmark if i == 0 else ''} | {metric} | {n} | {value:.3f} | {interval} | "
                             f"{f'{r.wall_time_s:.0f}' if i == 0 else ''} |")
        for r in self.results:
            lines += _modes_table(r) + _degeneration_lines(r)
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


def _modes_table(r: BenchmarkResult) -> list[str]:
    """Per scoring mode: what the model picked, so a score that is only a letter habit shows as one."""
    modes = r.metrics.get("modes")
    if not modes:
        return []
    lines = ["", f"**{r.benchmark}: picked labels per mode** (gold: "
             + ", ".join(f"{k} {v}" for k, v in next(iter(modes.values()))["gold"].items()) + ")", "",
             "| mode | n | accuracy | 95% interval | picks | top share | flag |", "|---|---:|---:|---|---|---:|---|"]
    for mode, e in modes.items():
        picks = ", ".join(f"{k} {v}" for k, v in e["picks"].items())
        flag = f"**one label > {int(BIAS_SHARE * 100)}% of picks**" if e["label_bias"] else ""
        extra = f"; parse rate {e['parse_rate']['value']:.3f}" if "parse_rate" in e else ""
        lines.append(f"| {mode} | {e['n']} | {e['acc']:.3f} | [{e['ci_low']:.3f}, {e['ci_high']:.3f}] | {picks}{extra} | "
                     f"{e['top_share']:.2f} | {flag} |")
    return lines


def _degeneration_lines(r: BenchmarkResult) -> list[str]:
    found = {name: d for name, d in r.metrics.get("degeneration_by_set", {}).items()}
    if "degeneration" in r.metrics:
        found = {"all generations": r.metrics["degeneration"], **found}
    if not found:
        return []
    lines = ["", f"**{r.benchmark}: degeneration of generations** (4-gram of words 3+ times; echo: 12 consecutive "
             "prompt words)", "", "| outputs | n | repeated 4-gram | echoes prompt | either |", "|---|---:|---|---|---|"]

    def cell(p: dict) -> str:
        return "–" if p["value"] is None else f"{p['value']:.3f} [{p['ci_low']:.3f}, {p['ci_high']:.3f}]"
    for name, d in found.items():
        lines.append(f"| {name} | {d['n']} | {cell(d['repeated_ngram'])} | {cell(d['echoes_prompt'])} | {cell(d['any'])} |")
    return lines


def plot_bars(values: dict[str, float] | dict[str, dict[str, float]], title: str, path: Path,
              intervals: dict | None = None) -> None:
    """Horizontal bars of scores in [0, 1]; a dict of dicts draws one coloured series per outer key.
    `intervals` (same shape, (low, high) per bar) draws each bar's 95% interval as an error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = values if values and isinstance(next(iter(values.values())), dict) else {title: values}
    if intervals and series is not values:
        intervals = {title: intervals}
    labels = sorted({k for s in series.values() for k in s}, reverse=True)
    height = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(labels) * max(len(series), 1) + 1.5))
    for i, (name, s) in enumerate(series.items()):
        ys = [j + i * height for j in range(len(labels))]
        widths = [s.get(k, 0.0) for k in labels]
        ci = (intervals or {}).get(name, {})
        err = None
        if ci:
            err = [[max(w - ci[k][0], 0) if k in ci else 0 for k, w in zip(labels, widths)],
                   [max(ci[k][1] - w, 0) if k in ci else 0 for k, w in zip(labels, widths)]]
        ax.barh(ys, widths, height=height, label=name, xerr=err, capsize=3 if err else 0)
    ax.set_yticks([j + height * (len(series) - 1) / 2 for j in range(len(labels))], labels)
    ax.set_xlim(0, 1)
    ax.set_xlabel("score (error bars: 95% interval)" if intervals else "score")
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


def paired(a: EvalReport, b: EvalReport, seed: int = 0) -> list[dict]:
    """B against A per benchmark and metric both scored item by item (B - A, paired bootstrap, McNemar).

    Raises ItemMismatchError when a benchmark's metric was scored on different items in the two reports."""
    rows = []
    b_results = {r.benchmark: r for r in b.results}
    for ra in a.results:
        rb = b_results.get(ra.benchmark)
        if rb is None:
            continue
        for metric in [m for m in ra.items if m in rb.items]:
            try:
                result = paired_comparison(ra.items[metric], rb.items[metric], seed=seed)
            except ItemMismatchError as e:
                raise ItemMismatchError(f"{ra.benchmark} {metric}: {e}") from None
            rows.append({"benchmark": ra.benchmark, "metric": metric, **result.as_dict()})
    return rows


def compare(paths: list[Path], out: Path | None = None, seed: int = 0) -> str:
    """A Markdown table with one column per report (and a grouped chart when `out` is given); for two
    reports, also the paired difference B - A per metric (comparison.json holds it for machines)."""
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
    diffs = paired(reports[0], reports[1], seed) if len(reports) == 2 else []
    if len(reports) == 2:
        table += "\n" + paired_markdown(diffs, str(paths[0]), str(paths[1]))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "comparison.md").write_text(table)
        plot_bars({n: {m: c[n] for m, c in rows.items() if n in c} for n in names}, "comparison", out / "comparison.png")
        if len(reports) == 2:
            (out / "comparison.json").write_text(json.dumps({
                "a": {"path": str(paths[0]), "model": reports[0].model},
                "b": {"path": str(paths[1]), "model": reports[1].model},
                "method": "diff = mean(B) - mean(A) over the same items; 95% paired bootstrap (percentile, "
                          f"{BOOTSTRAP_RESAMPLES} resamples, seed {seed}); p: exact McNemar (sign test on differing "
                          "items); significant: interval excludes 0 and p < 0.05",
                "comparisons": diffs}, indent=2))
    return table


def paired_markdown(diffs: list[dict], a: str, b: str) -> str:
    if not diffs:
        return (f"No metric was scored item by item in both {a} and {b} (reports written before per-item scores "
                "were kept cannot be paired; evaluate again).\n")
    lines = [f"Paired: B = {b} minus A = {a}, same items; 95% paired-bootstrap interval; exact McNemar p. "
             "`*` marks a significant difference (interval excludes 0 and p < 0.05).", "",
             "| benchmark | metric | n | A | B | B - A | 95% interval | p | |", "|---|---|---:|---:|---:|---:|---|---:|---|"]
    for d in diffs:
        lines.append(f"| {d['benchmark']} | {d['metric']} | {d['n']} | {d['a']:.3f} | {d['b']:.3f} | {d['diff']:+.3f} | "
                     f"[{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] | {d['p']:.3g} | {'*' if d['significant'] else ''} |")
    return "\n".join(lines) + "\n"
