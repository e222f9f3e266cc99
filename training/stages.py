"""The stages of `python -m training.run`, one function each, over one run directory.

A run directory holds `config.json`, `metrics.jsonl` (every logged training number, one JSON
object per line with its stage and step), `plots/`, and one folder per stage. A stage that
finishes writes `<stage>/DONE.json` with its outputs; `--resume` skips those and restarts a
stage cut short from its newest `checkpoint-*`.
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from pathlib import Path

from transformers import TrainerCallback

from training.records import Capability, CapabilityRecord, dump_records, load_records


class RunDirectory:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.path / "metrics.jsonl"

    def stage(self, name: str) -> Path:
        folder = self.path / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def done(self, name: str) -> dict | None:
        marker = self.path / name / "DONE.json"
        return json.loads(marker.read_text()) if marker.exists() else None

    def mark_done(self, name: str, outputs: dict) -> dict:
        (self.stage(name) / "DONE.json").write_text(json.dumps(outputs, indent=1, default=str))
        return outputs

    def log(self, stage: str, values: dict) -> None:
        with self.metrics_path.open("a") as f:
            f.write(json.dumps({"stage": stage, "time": round(time.time(), 1), **values}) + "\n")

    def last_checkpoint(self, name: str) -> str | None:
        from transformers.trainer_utils import get_last_checkpoint

        folder = self.path / name
        return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def quiet(trainer):
    """Drop the trainer's log printer: the logs go to metrics.jsonl and the progress display shows steps."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer


class StageCallback(TrainerCallback):
    """Advances the stage's progress bar and appends the trainer's logs to metrics.jsonl."""

    def __init__(self, run: RunDirectory, stage: str, progress=None, task=None):
        self.run, self.stage, self.progress, self.task = run, stage, progress, task

    def on_train_begin(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, total=state.max_steps, completed=state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            self.run.log(self.stage, {"step": state.global_step, **logs})


# ---- data ----------------------------------------------------------------------------------
def stage_data(config, run: RunDirectory) -> dict:
    if config.data:
        folder = Path(config.data)
        missing = [f for f in ("train.jsonl", "test.jsonl", "preferences_train.jsonl", "preferences_val.jsonl")
                   if not (folder / f).exists()]
        if missing:
            raise FileNotFoundError(f"--data {folder}: missing {missing}; write it with python -m training.mkgsg")
        return {"data": str(folder)}
    from training.mkgsg.__main__ import main as mkgsg_main

    folder = run.stage("data")
    code = mkgsg_main(["--n", str(config.mkgsg_n), "--seed", str(config.seed), "--out", str(folder)])
    if code:
        raise RuntimeError(f"MKGSG exited with {code}; see its message above")
    return {"data": str(folder)}


def balanced(records: list[CapabilityRecord], per_capability: int | None, seed: int) -> list[CapabilityRecord]:
    """Records interleaved over capabilities (k, r, i, g, k, r, ...), so any window of four is balanced."""
    by: dict[str, list[CapabilityRecord]] = defaultdict(list)
    for r in records:
        by[r.capability.value].append(r)
    rng = random.Random(seed)
    queues = []
    for c in Capability:
        group = list(by.get(c.value, []))
        rng.shuffle(group)
        queues.append(group[:per_capability] if per_capability else group)
    out = []
    for i in range(max((len(q) for q in queues), default=0)):
        out.extend(q[i] for q in queues if i < len(q))
    return out


# ---- models --------------------------------------------------------------------------------
def tiny_model(folder: Path, seed: int = 0) -> str:
    """A 2-layer random Llama with the embedded model's tokenizer: the whole pipeline in seconds."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from training.models import resolve_model

    if (folder / "config.json").exists():
        return str(folder)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m"))
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def base_model_path(config, run: RunDirectory) -> str:
    from training.models import resolve_model

    if config.model == "tiny":
        return tiny_model(run.stage("base"), config.seed)
    return resolve_model(config.model)


def lora_config(config):
    if not config.lora:
        return None
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")


def save_final(trainer, tokenizer, folder: Path) -> str:
    if trainer.accelerator.is_main_process:
        model = trainer.accelerator.unwrap_model(trainer.model)
        if hasattr(model, "merge_and_unload"):  # LoRA: export and serving want one plain model
            model = model.merge_and_unload()
        model.save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))
    trainer.accelerator.wait_for_everyone()
    return str(folder)


# ---- SFT and reward model (their trainers live in training/sft.py and training/reward_model.py) ----
def stage_sft(config, run: RunDirectory, base: str, data: str, progress, task) -> dict:
    from training.sft import train_sft

    train = balanced(load_records(Path(data) / "train.jsonl"), None, config.seed)
    return {"model": train_sft(config, run, base, train, [StageCallback(run, "sft", progress, task)])}


def stage_reward_model(config, run: RunDirectory, base: str, data: str, progress, task) -> dict:
    from training.reward_model import train_reward_model

    return train_reward_model(config, run, base, data, [StageCallback(run, "reward_model", progress, task)])


# ---- GRPO ----------------------------------------------------------------------------------
def grpo_dataset(records: list[CapabilityRecord]):
    from datasets import Dataset

    from training.rewards.hybrid import record_column

    return Dataset.from_dict({"prompt": [[m.model_dump() for m in r.messages] for r in records],
                              "capability": [r.capability.value for r in records],
                              "record": record_column(records)})


def grpo_trainer(config, run: RunDirectory, policy: str, reward_model: str | None, data: str, stage: str,
                 capability_aware: bool, callbacks=(), max_steps: int | None = None):
    """Plain TRL GRPO (static base weights, one backward pass) or the capability-aware subclass."""
    import os

    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from training.grpo import CapabilityGRPOConfig, CapabilityGRPOTrainer
    from training.rewards.hybrid import BASE_WEIGHTS, COMPONENTS, ModelReward, reward_functions

    tokenizer = AutoTokenizer.from_pretrained(policy)
    tokenizer.padding_side = "left"
    model_reward = ModelReward(reward_model, max_length=config.max_length) if reward_model else None
    funcs = reward_functions(model_reward)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    completions = config.grpo_prompts_per_step * config.num_generations
    steps = max_steps or config.grpo_steps
    records = balanced(load_records(Path(data) / "train.jsonl"), None, config.seed)
    records = records[:steps * config.grpo_prompts_per_step]  # each prompt seen once: the budget is the step count
    common = dict(output_dir=str(run.stage(stage)), bf16=False, report_to=[], disable_tqdm=True, seed=config.seed,
                  max_steps=steps, per_device_train_batch_size=max(1, completions // world),
                  num_generations=config.num_generations, max_completion_length=config.max_completion_length,
                  learning_rate=config.grpo_learning_rate, logging_steps=1, save_strategy="steps",
                  save_steps=config.save_steps, save_total_limit=1, shuffle_dataset=False,
                  temperature=1.0, loss_type="dapo", gradient_checkpointing=config.gradient_checkpointing)
    if capability_aware:
        args = CapabilityGRPOConfig(**common, weights=config.weights, orthogonality=config.orthogonality)
        cls = CapabilityGRPOTrainer
    else:
        names = [f.__name__ for f in funcs]
        args = GRPOConfig(**common, reward_weights=[BASE_WEIGHTS[n] for n in names if n in COMPONENTS])
        cls = GRPOTrainer
    return quiet(cls(model=policy, reward_funcs=funcs, args=args, train_dataset=grpo_dataset(records),
                     processing_class=tokenizer, peft_config=lora_config(config), callbacks=list(callbacks)))


def stage_grpo(config, run: RunDirectory, policy: str, reward_model: str | None, data: str, progress, task,
               stage: str = "grpo", capability_aware: bool = True, run_model: bool = True) -> dict:
    trainer = grpo_trainer(config, run, policy, reward_model, data, stage, capability_aware,
                           callbacks=[StageCallback(run, stage, progress, task)])
    checkpoint = run.last_checkpoint(stage)
    if checkpoint and hasattr(trainer, "load_capability_state"):
        trainer.load_capability_state(checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    # The pipeline's model is the run's model: `runs/NAME/final`, where export and serving look for
    # it. An ablation arm keeps its model in its own folder, so no arm is mistaken for a trained run.
    target = run.path / "final" if run_model else run.stage(stage) / "final"
    return {"model": save_final(trainer, trainer.processing_class, target)}


# ---- evaluation ----------------------------------------------------------------------------
def stage_evaluate(config, run: RunDirectory, model: str, data: str, progress, task, stage: str = "eval") -> dict:
    from training.evaluate.lm import load_language_model
    from training.evaluate.report import EvalReport
    from training.evaluate.runner import default_data, run_benchmark

    folder = run.stage(stage)
    test = balanced(load_records(Path(data) / "test.jsonl"), config.eval_per_capability, config.seed)
    dump_records(test, folder / "capability_test.jsonl")
    lm = load_language_model(model, progress=False)
    report = EvalReport(model=model, seed=config.seed, limit=None)
    jobs = [("capabilities", folder / "capability_test.jsonl", None), *(
        (name, _benchmark_file(default_data, name), limit) for name, limit in config.benchmark_limits.items())]
    if progress is not None:
        progress.update(task, total=len(jobs), completed=0)
    for name, path, limit in jobs:
        modes = ("loglik",) if name not in ("capabilities", "ifeval") else ("loglik", "generate")
        report.results.append(run_benchmark(lm, name, path, limit=limit, seed=config.seed, modes=modes,
                                            max_new_tokens=config.eval_max_new_tokens,
                                            predictions_path=folder / f"{name}.predictions.jsonl"))
        if progress is not None:
            progress.advance(task)
    report.write(folder)
    scores = {f"{r.benchmark}/{k}": v for r in report.results for k, v in r.headline().items()}
    run.log(stage, {"eval": scores})
    return {"scores": scores, "report": str(folder / "report.json")}


def _benchmark_file(default_data, name: str) -> Path:
    full = default_data(name)
    return full if full.exists() else default_data(name, sample=True)
