"""The run directory's layout: every path of `runs/NAME/` is named here and nowhere else.

    runs/NAME/
      config.json            the RunConfig the run was started with (`--resume` reads it back)
      metrics.jsonl          every logged training number, one JSON object per line (stage, step, values)
      summary.json           what the run produced: stage outputs, plots, final model, wall time
      plots/                 PNGs drawn from metrics.jsonl
      final/                 the aligned model (merged, save_pretrained): export and serving take it from here
      onnx/                  the ONNX export of final/ with its model card
      export_<arm>/onnx/     an ablation arm's own export, which its evaluation generates on
      ablation.md            the ablation's table (ablation runs only)
      alignment.json         aligned - base, paired, per capability and benchmark (--eval_base runs only)
      <stage>/               one folder per stage (data, base, sft, reward_model, grpo, eval, ...):
        DONE.json            the stage's outputs, written when it finished (`--resume` skips it)
        progress.json        steps done / total while it runs (the parent's progress bar reads it)
        checkpoint-N/        the trainer's checkpoints (`--resume` restarts from the newest)
        final/               the stage's own model (SFT, reward model, an ablation arm)
      eval/report.json       the evaluation report; eval/<benchmark>.predictions.jsonl per item
      base_eval/             the base model's evaluation on the same items (--eval_base)
      reward_model/pairwise_accuracy.json

Anything that reads a run (the export's model card, plots, the ablation table, tests) asks a
`RunLayout` for the path instead of spelling it, so the writer and the readers cannot disagree.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path


DONE = "DONE.json"
PREDICTIONS = ".predictions.jsonl"  # <benchmark>.predictions.jsonl: one evaluated item per line
ANEW_FILE = "test_trained_anew.jsonl"  # MKGSG's trained-facts-asked-anew set (training.mkgsg.anew)
CAPABILITIES_ANEW = "capabilities_trained_anew"  # its name in reports, beside "capabilities" (unseen facts)
CAPABILITY_TEST = "capability_test.jsonl"  # the unseen-facts records an evaluation scored
# The records file an evaluation folder keeps beside each capability set's predictions.
CAPABILITY_RECORDS = {"capabilities": CAPABILITY_TEST, CAPABILITIES_ANEW: ANEW_FILE}


@dataclass(frozen=True)
class RunLayout:
    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    # ---- files of the run as a whole ---------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    @property
    def final(self) -> Path:
        return self.path / "final"

    @property
    def onnx(self) -> Path:
        return self.path / "onnx"

    @property
    def ablation_table(self) -> Path:
        return self.path / "ablation.md"

    @property
    def alignment(self) -> Path:
        return self.path / "alignment.json"

    # ---- per stage ---------------------------------------------------------------------------
    def stage_dir(self, stage: str) -> Path:
        return self.path / stage

    def done_file(self, stage: str) -> Path:
        return self.stage_dir(stage) / DONE

    def progress_file(self, stage: str) -> Path:
        return self.stage_dir(stage) / "progress.json"

    def stage_model(self, stage: str) -> Path:
        return self.stage_dir(stage) / "final"

    def stage_export(self, stage: str) -> Path:
        """Where an export stage other than the run's own (`onnx/`) writes: an ablation arm's graph."""
        return self.stage_dir(stage) / "onnx"

    def eval_report(self, stage: str = "eval") -> Path:
        return self.stage_dir(stage) / "report.json"

    def predictions(self, benchmark: str, stage: str = "eval") -> Path:
        return self.stage_dir(stage) / f"{benchmark}{PREDICTIONS}"

    def finished_benchmark(self, benchmark: str, stage: str = "eval") -> Path:
        """One benchmark's result, kept as it finished so a stopped evaluation resumes after it."""
        return self.stage_dir(stage) / "finished" / f"{benchmark}.json"

    def capability_test(self, stage: str = "eval") -> Path:
        return self.stage_dir(stage) / CAPABILITY_TEST

    def pairwise_accuracy(self, stage: str = "reward_model") -> Path:
        return self.stage_dir(stage) / "pairwise_accuracy.json"

    def finished_stages(self) -> dict[str, dict]:
        """Every stage that finished, by name, with the outputs its DONE.json recorded."""
        return {marker.parent.name: json.loads(marker.read_text())
                for marker in sorted(self.path.glob(f"*/{DONE}")) if marker.is_file()}

    def is_run(self) -> bool:
        """A directory written by training.run (it always starts by saving its config)."""
        return self.config.is_file()


class RunDirectory(RunLayout):
    """A run directory being written: the layout plus the few operations every stage needs."""

    def __init__(self, path: Path):
        super().__init__(Path(path))
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def metrics_path(self) -> Path:  # the name the trainers' helpers and bench/ use
        return self.metrics

    def stage(self, name: str) -> Path:
        folder = self.stage_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def done(self, name: str) -> dict | None:
        marker = self.done_file(name)
        return json.loads(marker.read_text()) if marker.exists() else None

    def mark_done(self, name: str, outputs: dict) -> dict:
        self.stage(name)
        self.done_file(name).write_text(json.dumps(outputs, indent=1, default=str))
        return outputs

    def log(self, stage: str, values: dict) -> None:
        with self.metrics.open("a") as f:
            f.write(json.dumps({"stage": stage, "time": round(time.time(), 1), **values}) + "\n")

    def last_checkpoint(self, name: str) -> str | None:
        from transformers.trainer_utils import get_last_checkpoint

        folder = self.stage_dir(name)
        return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None
