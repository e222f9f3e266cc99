"""What every training stage (SFT, reward model, GRPO) does to its TRL trainer the same way:
LoRA settings, quiet logging into the run's metrics, a wall-clock budget, and saving the final model.

These sit below `stages.py`, `sft.py` and `reward_model.py`, which all import them; nothing here
imports a stage.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from training.config import BUDGET_CLOCKS
from training.layout import RunDirectory

# progress(completed, total): how a stage reports its steps, to a progress bar or a file.
Progress = Callable[[int, int | None], None]


def lora_config(config):
    if not config.lora:
        return None
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")


def quiet(trainer):
    """Drop the trainer's log printer: the logs go to metrics.jsonl and the progress display shows steps."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer


def save_final(trainer, tokenizer, folder: Path) -> str:
    if trainer.accelerator.is_main_process:
        model = trainer.accelerator.unwrap_model(trainer.model)
        if hasattr(model, "merge_and_unload"):  # LoRA: export and serving want one plain model
            model = model.merge_and_unload()
        model.save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))
    trainer.accelerator.wait_for_everyone()
    return str(folder)


class StageCallback(TrainerCallback):
    """Reports the stage's steps and appends the trainer's logs to metrics.jsonl."""

    def __init__(self, run: RunDirectory, stage: str, progress: Progress | None = None):
        self.run, self.stage, self.progress = run, stage, progress

    def on_train_begin(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress(state.global_step, state.max_steps)

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress(state.global_step, state.max_steps)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            self.run.log(self.stage, {"step": state.global_step, **logs})


class WallClockBudget(TrainerCallback, ExportableState):
    """Stops training once `budget_minutes` of training time are spent, with a checkpoint.

    The `cpu` clock counts the process's CPU seconds divided by torch's compute threads: on a
    machine shared with other jobs the wall clock would stop training after a fraction of the
    steps the same budget gives on a machine of its own (measured here: 1 SFT step a minute at
    load 10 against several a minute alone), so the recipe would depend on the neighbours. The
    `wall` clock counts elapsed time.

    "As many steps as the budget allows": the step count is only a ceiling. The time spent so
    far travels in every checkpoint (transformers' stateful callbacks, restored on resume), so a
    run that is killed and resumed stops at the same total budget, not at a fresh one. The check
    is at step ends, so a run overshoots by at most one step.
    """

    def __init__(self, budget_minutes: float, spent_s: float = 0.0, clock: str = "wall"):
        if budget_minutes <= 0:
            raise ValueError(f"budget_minutes must be positive (got {budget_minutes}); leave the budget unset for none")
        if clock not in BUDGET_CLOCKS:
            raise ValueError(f"clock {clock!r}: use one of {', '.join(BUDGET_CLOCKS)}")
        self.budget_minutes, self.spent_s, self.clock = budget_minutes, spent_s, clock
        self._since: float | None = None
        self.stopped_at: int | None = None
        self.resumed_from_s: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        # Called after a resumed trainer restored `spent_s` from the checkpoint.
        self.resumed_from_s = self.spent_s
        self._since = self._now()

    def _now(self) -> float:
        if self.clock == "wall":
            return time.monotonic()
        return time.process_time() / max(1, torch.get_num_threads())

    def _tick(self) -> float:
        now = self._now()
        if self._since is not None:
            self.spent_s += now - self._since
        self._since = now
        return self.spent_s

    def on_step_end(self, args, state, control, **kwargs):
        if self._tick() >= self.budget_minutes * 60:
            control.should_training_stop = True
            control.should_save = True
            self.stopped_at = state.global_step
        return control

    def state(self) -> dict:
        self._tick()
        return {"args": {"budget_minutes": self.budget_minutes, "clock": self.clock}, "attributes": {"spent_s": self.spent_s}}

    def summary(self) -> dict:
        return {"budget_minutes": self.budget_minutes, "clock": self.clock, "spent_s": round(self.spent_s, 1),
                "resumed_from_s": self.resumed_from_s, "stopped_by_budget_at_step": self.stopped_at}

    @staticmethod
    def of(trainer) -> "WallClockBudget | None":
        """The trainer's budget callback (after a resume, the instance restored from the checkpoint)."""
        return next((c for c in trainer.callback_handler.callbacks if isinstance(c, WallClockBudget)), None)
