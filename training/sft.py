"""SFT warm start on MKGSG data with TRL's SFTTrainer.

A 135M model does not emit 'Answer: X', SOAP headings or JSON reliably out of the box; GRPO can
only reinforce formats the policy already samples now and then, so a short supervised pass on the
verified references comes first (the paper's stage 1). Loss is on the answer only: rows are TRL's
conversational prompt/completion pairs, which SFTTrainer masks to the completion.

With `--sft_eval_steps` the loss on validation records is measured every so many steps and
training stops once it has not improved for `--sft_patience` evaluations (transformers'
EarlyStoppingCallback); the best checkpoint, not the last, becomes the SFT model.
"""

from __future__ import annotations

import random
from typing import Sequence

from transformers import EarlyStoppingCallback

from training.records import CapabilityRecord
from training.trainers import WallClockBudget, lora_config, quiet, save_final


def repeated_by_capability(records: Sequence[CapabilityRecord], passes: dict[str, float],
                           seed: int) -> list[CapabilityRecord]:
    """Each capability's records `passes` times (whole copies, then a seeded share for a fraction);
    capabilities not named occur once. The trainer shuffles, so copies are spread over the run."""
    rng = random.Random(seed)
    out: list[CapabilityRecord] = []
    for capability in dict.fromkeys(r.capability.value for r in records):
        group = [r for r in records if r.capability.value == capability]
        times = passes.get(capability, 1.0)
        out.extend(group * int(times))
        out.extend(rng.sample(group, round(len(group) * (times - int(times)))))
    return out


def sft_rows(records: Sequence[CapabilityRecord]) -> list[dict]:
    return [{"prompt": [m.model_dump() for m in r.messages],
             "completion": [{"role": "assistant", "content": r.reference}]} for r in records]


def train_sft(config, run, base: str, train: Sequence[CapabilityRecord], val: Sequence[CapabilityRecord] = (),
              callbacks: Sequence = ()) -> dict:
    """Fine-tune `base` on the references under the run's budget; returns the saved model folder and
    what early stopping saw (the best validation loss and its step) when it is on."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    folder = run.stage("sft")
    tokenizer = AutoTokenizer.from_pretrained(base)
    early = bool(config.sft_eval_steps and val)
    # Early stopping needs a checkpoint at every evaluation (the best one is reloaded at the end);
    # without it, checkpoints only serve --resume.
    every = config.sft_eval_steps if early else config.save_steps
    args = SFTConfig(output_dir=str(folder), bf16=False, report_to=[], disable_tqdm=True, seed=config.seed,
                     max_steps=config.sft_steps, per_device_train_batch_size=config.micro_batch_size,
                     gradient_accumulation_steps=config.sft_batch_size // config.micro_batch_size,
                     per_device_eval_batch_size=config.micro_batch_size,
                     learning_rate=config.sft_learning_rate, max_length=config.max_length, logging_steps=1,
                     save_strategy="steps", save_steps=every, save_total_limit=2 if early else 1,
                     eval_strategy="steps" if early else "no", eval_steps=every if early else None,
                     load_best_model_at_end=early, metric_for_best_model="eval_loss" if early else None,
                     greater_is_better=False if early else None, restore_callback_states_from_checkpoint=True,
                     lr_scheduler_type="constant_with_warmup", warmup_steps=min(2, config.sft_steps),
                     gradient_checkpointing=config.gradient_checkpointing)
    extra = [EarlyStoppingCallback(early_stopping_patience=config.sft_patience)] if early else []
    if config.sft_budget_minutes:
        extra.append(WallClockBudget(config.sft_budget_minutes, clock=config.budget_clock))
    trainer = SFTTrainer(model=base, args=args, processing_class=tokenizer, peft_config=lora_config(config),
                         train_dataset=Dataset.from_list(sft_rows(train)),
                         eval_dataset=Dataset.from_list(sft_rows(val)) if early else None,
                         callbacks=[*callbacks, *extra])
    quiet(trainer).train(resume_from_checkpoint=run.last_checkpoint("sft"))
    out = {"model": save_final(trainer, tokenizer, run.stage_model("sft")), "steps": trainer.state.global_step}
    budget = WallClockBudget.of(trainer)
    if budget:
        out["budget"] = budget.summary()
    if early:
        out |= {"best_eval_loss": trainer.state.best_metric, "best_checkpoint": trainer.state.best_model_checkpoint,
                "eval_records": len(val)}
    return out
