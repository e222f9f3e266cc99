"""What every training stage (SFT, reward model, GRPO) does to its TRL trainer the same way:
LoRA settings, quiet logging into the run's metrics, a wall-clock budget, and saving the final model.

These sit below `stages.py`, `sft.py` and `reward_model.py`, which all import them; nothing here
imports a stage.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

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

    "As many steps as the budget allows": the step count is only a ceiling. The time spent so
    far travels in every checkpoint (transformers' stateful callbacks, restored on resume), so a
    run that is killed and resumed stops at the same total budget, not at a fresh one. The check
    is at step ends, so a run overshoots by at most one step.
    """

    def __init__(self, budget_minutes: float, spent_s: float = 0.0):
        if budget_minutes <= 0:
            raise ValueError(f"budget_minutes must be positive (got {budget_minutes}); leave the budget unset for none")
        self.budget_minutes, self.spent_s = budget_minutes, spent_s
        self._since: float | None = None
        self.stopped_at: int | None = None
        self.resumed_from_s: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        # Called after a resumed trainer restored `spent_s` from the checkpoint.
        self.resumed_from_s = self.spent_s
        self._since = time.monotonic()

    def _tick(self) -> float:
        now = time.monotonic()
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
        return {"args": {"budget_minutes": self.budget_minutes}, "attributes": {"spent_s": self.spent_s}}

    def summary(self) -> dict:
        return {"budget_minutes": self.budget_minutes, "spent_s": round(self.spent_s, 1),
                "resumed_from_s": self.resumed_from_s, "stopped_by_budget_at_step": self.stopped_at}

    @staticmethod
    def of(trainer) -> "WallClockBudget | None":
        """The trainer's budget callback (after a resume, the instance restored from the checkpoint)."""
        return next((c for c in trainer.callback_handler.callbacks if isinstance(c, WallClockBudget)), None)
