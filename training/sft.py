"""SFT warm start on MKGSG data with TRL's SFTTrainer.

A 135M model does not emit 'Answer: X', SOAP headings or JSON reliably out of the box; GRPO can
only reinforce formats the policy already samples now and then, so a short supervised pass on the
verified references comes first (the paper's stage 1). Loss is on the answer only: rows are TRL's
conversational prompt/completion pairs, which SFTTrainer masks to the completion.
"""

from __future__ import annotations

from typing import Sequence

from training.records import CapabilityRecord


def sft_rows(records: Sequence[CapabilityRecord]) -> list[dict]:
    return [{"prompt": [m.model_dump() for m in r.messages],
             "completion": [{"role": "assistant", "content": r.reference}]} for r in records]


def train_sft(config, run, base: str, train: Sequence[CapabilityRecord], callbacks: Sequence = ()) -> str:
    """Fine-tune `base` on the references under the run's budget; returns the saved model folder."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from training.stages import lora_config, quiet, save_final

    folder = run.stage("sft")
    tokenizer = AutoTokenizer.from_pretrained(base)
    args = SFTConfig(output_dir=str(folder), bf16=False, report_to=[], disable_tqdm=True, seed=config.seed,
                     max_steps=config.sft_steps, per_device_train_batch_size=config.sft_batch_size,
                     learning_rate=config.sft_learning_rate, max_length=config.max_length, logging_steps=1,
                     save_strategy="steps", save_steps=config.save_steps, save_total_limit=1,
                     lr_scheduler_type="constant_with_warmup", warmup_steps=min(2, config.sft_steps),
                     gradient_checkpointing=config.gradient_checkpointing)
    trainer = SFTTrainer(model=base, args=args, processing_class=tokenizer, peft_config=lora_config(config),
                         train_dataset=Dataset.from_list(sft_rows(train)), callbacks=list(callbacks))
    quiet(trainer).train(resume_from_checkpoint=run.last_checkpoint("sft"))
    return save_final(trainer, tokenizer, folder / "final")
