"""The model-based reward: a reward model trained on MKGSG's preference pairs with TRL's RewardTrainer.

Each pair is a verified answer against a copy corrupted in one way (wrong entity, missing
reasoning step, broken format, unsafe drug). Held-out pairwise accuracy is reported per kind of
corruption, because "the reward model is 80 % accurate" hides that it may not see unsafe drugs
at all, and that is the part the hybrid most needs it for.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from training.rewards.hybrid import ModelReward
from training.trainers import quiet


def load_pairs(path: str | Path, limit: int | None = None) -> list[dict]:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    missing = [i for i, r in enumerate(rows) if not {"prompt", "chosen", "rejected"} <= r.keys()]
    if missing:
        raise ValueError(f"{path}: rows {missing[:5]} lack prompt/chosen/rejected; regenerate with python -m training.mkgsg")
    return _balanced(rows, limit) if limit else rows


def _balanced(rows: list[dict], limit: int) -> list[dict]:
    # Round-robin over corruption kinds so a small budget still covers every kind.
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_kind[r.get("corruption", "?")].append(r)
    out, queues = [], [list(v) for _, v in sorted(by_kind.items())]
    while len(out) < limit and any(queues):
        for q in queues:
            if q and len(out) < limit:
                out.append(q.pop(0))
    return out


def train_reward_model(config, run, base: str, data: str, callbacks: Sequence = ()) -> dict:
    """Train on the run's share of pairs, then score the held-out pairs; returns the model and accuracy."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    folder = run.stage("reward_model")
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    trainable = freeze_below_top_layers(model, config.rm_trainable_layers)
    pairs = load_pairs(Path(data) / "preferences_train.jsonl", limit=config.rm_pairs)
    keep = ("prompt", "chosen", "rejected")
    args = RewardConfig(output_dir=str(folder), bf16=False, report_to=[], disable_tqdm=True, seed=config.seed,
                        max_steps=config.rm_steps, per_device_train_batch_size=config.micro_batch_size,
                        gradient_accumulation_steps=config.rm_batch_size // config.micro_batch_size,
                        learning_rate=1e-4 if config.rm_trainable_layers else 2e-5, max_length=config.max_length,
                        logging_steps=1, save_strategy="steps", save_steps=config.save_steps, save_total_limit=1,
                        gradient_checkpointing=config.gradient_checkpointing)
    trainer = RewardTrainer(model=model, args=args, processing_class=tokenizer,
                            train_dataset=Dataset.from_list([{k: p[k] for k in keep} for p in pairs]),
                            callbacks=list(callbacks))
    quiet(trainer).train(resume_from_checkpoint=run.last_checkpoint("reward_model"))
    final = run.stage_model("reward_model")
    trainer.save_model(str(final))
    trainer.accelerator.wait_for_everyone()
    if not trainer.accelerator.is_main_process:  # the held-out scoring is done once
        return {"model": str(final)}
    tokenizer.save_pretrained(str(final))
    held_out = load_pairs(Path(data) / "preferences_val.jsonl", limit=config.rm_eval_pairs)
    accuracy = pairwise_accuracy(ModelReward(str(final), max_length=config.max_length), held_out)
    accuracy["trainable_parameters"] = trainable
    run.pairwise_accuracy().write_text(json.dumps(accuracy, indent=1))
    run.log("reward_model", {"heldout_pairwise_accuracy": accuracy["accuracy"],
                             **{f"heldout_accuracy/{k}": v["accuracy"] for k, v in accuracy["by_corruption"].items()}})
    return {"model": str(final), "pairwise_accuracy": accuracy}


def freeze_below_top_layers(model, top: int) -> int:
    """Leave only the top `top` transformer layers, the final norm and the score head trainable (0: all).

    On a CPU the reward model's backward pass would cost as much as the policy's; the lower layers
    of an instruction-tuned model already encode the text well, so only the top is adapted."""
    if top <= 0:
        return sum(p.numel() for p in model.parameters())
    for p in model.parameters():
        p.requires_grad = False
    for module in (*model.base_model.layers[-top:], model.base_model.norm, model.score):
        for p in module.parameters():
            p.requires_grad = True
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def pairwise_accuracy(model_reward, pairs: Sequence[dict]) -> dict:
    """Share of held-out pairs where the reward model scores `chosen` above `rejected`, per kind."""
    prompts = [p["prompt"] for p in pairs]
    chosen = model_reward.logits(model_reward.texts(prompts, [p["chosen"] for p in pairs]))
    rejected = model_reward.logits(model_reward.texts(prompts, [p["rejected"] for p in pairs]))
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for p, c, r in zip(pairs, chosen, rejected):
        by_kind[p.get("corruption", "?")].append(c > r)
    everything = [x for v in by_kind.values() for x in v]
    return {"n": len(everything), "accuracy": sum(everything) / max(len(everything), 1),
            "by_corruption": {k: {"n": len(v), "accuracy": sum(v) / len(v)} for k, v in sorted(by_kind.items())}}
