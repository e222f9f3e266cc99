"""Plots of a run from its metrics.jsonl: reward per component, hybrid weights, gradient cosines,
capability scores. People look at these rather than read the JSONL."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from training.layout import RunLayout


def read_metrics(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _series(rows: list[dict], stage: str, prefix: str) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for row in rows:
        if row.get("stage") != stage:
            continue
        for key, value in row.items():
            if key.startswith(prefix) and isinstance(value, (int, float)):
                out[key.removeprefix(prefix)].append((row["step"], value))
    return dict(out)


def _line_plot(series: dict, title: str, ylabel: str, path: Path) -> Path | None:
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # optimizer steps are whole numbers
    # One colour per quantity (tab20: a dozen components stay distinguishable); a "before X" series
    # shares X's colour, dashed, so a projection reads as the step from dashed to solid.
    palette, colours = plt.get_cmap("tab20"), {}
    for name, points in sorted(series.items()):
        xs, ys = zip(*points)
        before = name.startswith("before ")
        base = name.split(" ", 1)[1] if name.startswith(("before ", "after ")) else name
        colour = colours.setdefault(base, palette(len(colours) % 20))
        ax.plot(xs, ys, marker="o", markersize=3, label=name, color=colour, linestyle="--" if before else "-")
    ax.set(title=title, xlabel="step", ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_run(run: RunLayout, stage: str = "grpo") -> list[Path]:
    rows = read_metrics(run.metrics)
    plots = run.plots
    made = [
        _line_plot(_series(rows, stage, "components/"), "GRPO: raw reward per capability/component",
                   "mean score", plots / "reward_components.png"),
        _line_plot(_series(rows, stage, "weights/"), "GRPO: hybrid weights per capability/component",
                   "weight", plots / "weights.png"),
        _line_plot({f"before {k}": v for k, v in _series(rows, stage, "pcgrad/cos_before/").items()}
                   | {f"after {k}": v for k, v in _series(rows, stage, "pcgrad/cos_after/").items()},
                   "GRPO: cosine between capability gradients", "cosine", plots / "gradient_cosines.png"),
        _line_plot(_series(rows, "sft", "loss") | {"reward_model": p for p in _series(rows, "reward_model", "loss").values()},
                   "training loss", "loss", plots / "losses.png"),
    ]
    scores = [r["eval"] for r in rows if r.get("stage") == "eval" and "eval" in r]
    if scores:
        from training.evaluate.report import plot_bars

        plot_bars(scores[-1], title="capability and benchmark scores", path=plots / "scores.png")
        made.append(plots / "scores.png")
    return [p for p in made if p]
