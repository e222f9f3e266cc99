"""The stages of `python -m training.run`, one function each, over one run directory.

Every stage function has the signature `fn(config, run, progress, **inputs) -> dict`: `inputs` are
plain strings and flags (model folders, the data folder, the stage's name), so a stage can run in
this process or in a child process (`training/stage.py` runs them either way), and its outputs
are what `<stage>/DONE.json` records. Where each file lives is `training/layout.py`'s business.
"""

from __future__ import annotations

import json
import os
import random
from collections import defaultdict
from pathlib import Path

from training.layout import ANEW_FILE, CAPABILITIES_ANEW, DONE, RunDirectory, read_json
from training.records import Capability, CapabilityRecord, dump_records, load_records
from training.reward_model import train_reward_model
from training.sft import repeated_by_capability, train_sft
from training.trainers import Progress, StageCallback, WallClockBudget, lora_config, quiet, save_final

EVAL_ORDER_ENV = "BALANCEDBIO_EVAL_ORDER"  # "reverse": score the benchmarks last to first

# The MKGSG output a run needs (`python -m training.mkgsg` writes these names).
DATA_FILES = ("train.jsonl", "val.jsonl", "test.jsonl", "preferences_train.jsonl", "preferences_val.jsonl")


# ---- data ----------------------------------------------------------------------------------
def stage_data(config, run: RunDirectory, progress: Progress | None = None) -> dict:
    if config.data:
        folder = Path(config.data)
        missing = [f for f in DATA_FILES if not (folder / f).exists()]
        if missing:
            raise FileNotFoundError(f"--data {folder}: missing {missing}; write it with python -m training.mkgsg")
        return {"data": str(folder)}
    from training.mkgsg.__main__ import main as mkgsg_main

    folder = run.stage("data")
    code = mkgsg_main(["--n", str(config.mkgsg_n), "--seed", str(config.seed), "--out", str(folder),
                       "--test_fraction", str(config.mkgsg_test_fraction)])
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


def stage_base(config, run: RunDirectory, progress: Progress | None = None) -> dict:
    """The model training starts from: the embedded model (converted from its GGUF once and cached)
    or, for tests, a random tiny one. A stage of its own so the conversion runs in a stage's process."""
    from training.models import resolve_model

    if config.model == "tiny":
        return {"model": tiny_model(run.stage("base"), config.seed)}
    return {"model": resolve_model(config.model)}


# ---- SFT and reward model (their trainers live in training/sft.py and training/reward_model.py) ----
def stage_sft(config, run: RunDirectory, progress: Progress | None = None, *, base: str, data: str) -> dict:
    train = repeated_by_capability(balanced(load_records(Path(data) / "train.jsonl"), None, config.seed),
                                   config.sft_pass_counts, config.seed)
    # Early stopping watches the loss on validation records, never test ones.
    val = balanced(load_records(Path(data) / "val.jsonl"), None, config.seed)[:config.sft_eval_records]
    return train_sft(config, run, base, train, val, [StageCallback(run, "sft", progress)])


def stage_reward_model(config, run: RunDirectory, progress: Progress | None = None, *, base: str, data: str) -> dict:
    return train_reward_model(config, run, base, data, [StageCallback(run, "reward_model", progress)])


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
                  temperature=1.0, loss_type="dapo", gradient_checkpointing=config.gradient_checkpointing,
                  # The wall-clock budget's spent time is restored from the checkpoint on resume.
                  restore_callback_states_from_checkpoint=True,
                  # Under a budget the last step is not known in advance, so the rate cannot decay towards it;
                  # the ablation's plain arm keeps the same schedule as the budgeted arm it is compared with.
                  lr_scheduler_type="constant_with_warmup" if config.grpo_budget_minutes else "linear",
                  warmup_steps=min(2, steps) if config.grpo_budget_minutes else 0)
    if capability_aware:
        args = CapabilityGRPOConfig(**common, weights=config.weights, orthogonality=config.orthogonality,
                                    rows_per_backward=config.micro_batch_size)
        cls = CapabilityGRPOTrainer
    else:
        names = [f.__name__ for f in funcs]
        args = GRPOConfig(**common, reward_weights=[BASE_WEIGHTS[n] for n in names if n in COMPONENTS])
        cls = GRPOTrainer
    return quiet(cls(model=policy, reward_funcs=funcs, args=args, train_dataset=grpo_dataset(records),
                     processing_class=tokenizer, peft_config=lora_config(config), callbacks=list(callbacks)))


def stage_grpo(config, run: RunDirectory, progress: Progress | None = None, *, policy: str,
               reward_model: str | None, data: str, stage: str = "grpo", capability_aware: bool = True,
               run_model: bool = True, max_steps: int | None = None, budgeted: bool = True) -> dict:
    """`max_steps` overrides --grpo_steps; `budgeted=False` ignores --grpo_budget_minutes (the
    ablation's plain arm takes exactly the steps the capability-aware arm's budget allowed)."""
    callbacks = [StageCallback(run, stage, progress)]
    if config.grpo_budget_minutes and budgeted:
        callbacks.append(WallClockBudget(config.grpo_budget_minutes, clock=config.budget_clock))
    trainer = grpo_trainer(config, run, policy, reward_model, data, stage, capability_aware, callbacks=callbacks,
                           max_steps=max_steps)
    checkpoint = run.last_checkpoint(stage)
    if checkpoint and hasattr(trainer, "load_capability_state"):
        trainer.load_capability_state(checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    # The pipeline's model is the run's model: `runs/NAME/final`, where export and serving look for
    # it. An ablation arm keeps its model in its own folder, so no arm is mistaken for a trained run.
    target = run.final if run_model else run.stage_model(stage)
    out = {"model": save_final(trainer, trainer.processing_class, target), "steps": trainer.state.global_step}
    budget = WallClockBudget.of(trainer)
    return out | ({"budget": budget.summary()} if budget else {})


# ---- evaluation ----------------------------------------------------------------------------
def capability_items(config, run: RunDirectory, data: str, stage: str) -> dict[str, tuple[str, list[CapabilityRecord]]]:
    """The capability records an evaluation scores, by report name: (file name in the stage's folder,
    records). Unseen facts (the test split) and, where MKGSG wrote it, trained facts asked anew, each
    balanced over capabilities with the run's seed. Saved evaluations are checked against this too."""
    items = {"capabilities": (run.capability_test(stage).name,
                              balanced(load_records(Path(data) / "test.jsonl"), config.eval_per_capability, config.seed))}
    anew = Path(data) / ANEW_FILE
    if anew.exists():
        items[CAPABILITIES_ANEW] = (ANEW_FILE, balanced(load_records(anew), config.eval_per_capability, config.seed))
    return items


def stage_evaluate(config, run: RunDirectory, progress: Progress | None = None, *, model: str, data: str,
                   stage: str = "eval", onnx_dir: str | None = None) -> dict:
    import torch

    from training.evaluate.engines import load_for_eval
    from training.evaluate.report import EvalReport
    from training.evaluate.runner import default_data, read_ids, run_benchmark

    folder = run.stage(stage)
    jobs = []
    for name, (file_name, records) in capability_items(config, run, data, stage).items():
        dump_records(records, folder / file_name)
        jobs.append((name, folder / file_name, None, None))
    fixed = config.fixed_ids
    for name, limit in config.benchmark_limits.items():
        path = _benchmark_file(default_data, name)
        # A saved subset applies to the full file only (the bundled samples hold other items).
        ids = read_ids(fixed[name]) if name in fixed and path == default_data(name) else None
        jobs.append((name, path, limit, ids))
    # A second evaluator may share this stage's folder from the other end (one process per core: a
    # benchmark's scoring barely gains from a second thread): each skips what the other has finished.
    if os.environ.get(EVAL_ORDER_ENV) == "reverse":
        jobs.reverse()
    # Generation on the ONNX engine when an export exists (`onnx_dir`, else a cached export of `model`):
    # the same greedy tokens as PyTorch, about 1.6x faster on one thread, and the graph that is served.
    # Its threads follow torch's (OMP_NUM_THREADS), so a run told to use one core does.
    lm = load_for_eval(model, engine=config.eval_engine, onnx_dir=onnx_dir, threads=torch.get_num_threads(),
                       progress=False)
    report = EvalReport(model=model, seed=config.seed, limit=None, engine=lm.engine)
    for done, (name, path, limit, ids) in enumerate(jobs):
        if progress is not None:
            progress(done, len(jobs))
        kind = "capabilities" if name == CAPABILITIES_ANEW else name
        # Multiple choice by letter and by cloze (option text): a small model's letter choice mostly
        # shows its prior for "A" (docs/baseline.md); capability sets and IFEval generate.
        modes = ("loglik", "generate") if kind in ("capabilities", "ifeval") else ("loglik", "cloze")
        key = {"model": model, "engine": lm.engine, "data": str(path), "limit": limit, "ids": ids, "modes": list(modes),
               "max_new_tokens": config.eval_max_new_tokens, "seed": config.seed}
        kept = run.finished_benchmark(name, stage)
        result = finished_benchmark(kept, key)
        if result is None:
            result = run_benchmark(lm, kind, path, limit=limit, seed=config.seed, modes=modes, ids=ids,
                                   max_new_tokens=config.eval_max_new_tokens, label=name,
                                   predictions_path=run.predictions(name, stage))
            save_finished_benchmark(kept, key, result)
        report.results.append(result)
    report.write(folder)
    scores = {f"{r.benchmark}/{k}": v for r in report.results for k, v in r.headline().items()}
    run.log(stage, {"eval": scores})
    return {"scores": scores, "report": str(run.eval_report(stage))}


def stage_export(config, run: RunDirectory, progress: Progress | None = None, *, model: str,
                 stage: str = "export") -> dict:
    from training.export import export_model

    # runs/NAME/onnx is where `python -m serving` looks for a run's export (and reuses it); another
    # export stage (an ablation arm) exports its own `model` into its stage folder.
    source, out = (run.path, run.onnx) if stage == "export" else (model, run.stage_export(stage))
    result = export_model(source, out)
    return {"onnx": str(result.out_dir), "serve": str(result.serve_dir)}


# The settings a base evaluation depends on: the same values mean the same items, prompts and budget.
EVAL_SETTINGS = ("model", "seed", "mkgsg_n", "mkgsg_test_fraction", "eval_per_capability", "eval_max_new_tokens",
                 "eval_benchmarks", "eval_fixed_ids")
SAVED_RUN_CONFIG = "run_config.json"  # the config of the run that made a saved evaluation


class SavedEvaluationMismatch(ValueError):
    pass


def stage_adopt_evaluation(config, run: RunDirectory, progress: Progress | None = None, *, source: str, data: str,
                           stage: str = "base_eval") -> dict:
    """A saved evaluation of the base model taken as this run's `stage`, instead of scoring the base again.

    The base model's scores depend on the items and the evaluation settings, not on the training, so a
    saved copy (a run's `base_eval/` folder with that run's `config.json` as `run_config.json`) serves
    every run that scores the same items the same way. It is adopted only when its run's settings and
    its capability items (unseen facts and trained facts asked anew) are this run's; otherwise the
    error says what differs."""
    import shutil

    folder = Path(source)
    saved = read_json(folder / SAVED_RUN_CONFIG)
    if saved is None or not (folder / run.eval_report(stage).name).is_file():
        raise FileNotFoundError(f"--base_eval_from {folder}: expected a saved evaluation there (report.json and "
                                f"{SAVED_RUN_CONFIG}); drop the flag to evaluate the base model in this run")
    differing = {k: (saved.get(k), getattr(config, k)) for k in EVAL_SETTINGS if saved.get(k) != getattr(config, k)}
    if differing:
        raise SavedEvaluationMismatch(f"--base_eval_from {folder} was made with other settings (saved, this run): "
                                      f"{differing}; use matching settings or drop --base_eval_from")
    mine = capability_items(config, run, data, stage)
    for name in sorted(set(mine) | {CAPABILITIES_ANEW}):  # a saved anew set this run lacks is a mismatch too
        file_name, records = mine.get(name, (ANEW_FILE, []))
        theirs = [r.id for r in load_records(folder / file_name)] if (folder / file_name).exists() else []
        if [r.id for r in records] != theirs:
            raise SavedEvaluationMismatch(f"--base_eval_from {folder} scored other capability items than this run's "
                                          f"{name} set ({len(theirs)} saved, {len(records)} here); drop --base_eval_from")
    shutil.copytree(folder, run.stage(stage), dirs_exist_ok=True)
    outputs = read_json(folder / DONE) or {}
    return {"scores": outputs.get("scores", {}), "report": str(run.eval_report(stage)), "adopted_from": str(folder)}


# An evaluation of the standard preset's items takes one to two hours on two cores, longer than is
# safe to leave uninterrupted; each benchmark's result is kept as it finishes, so `--resume` starts
# from the next one. A kept result counts only for exactly what it scored (`key`).
def finished_benchmark(path: Path, key: dict):
    from training.evaluate.report import BenchmarkResult

    saved = read_json(path)
    if saved is None or saved.get("key") != key:
        return None
    return BenchmarkResult(**saved["result"])


def save_finished_benchmark(path: Path, key: dict, result) -> None:
    from dataclasses import asdict

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps({"key": key, "result": asdict(result)}))
    partial.replace(path)  # a kill mid-write leaves the old state, never half a result


def _benchmark_file(default_data, name: str) -> Path:
    full = default_data(name)
    return full if full.exists() else default_data(name, sample=True)




# The stages by name: how a child process (`python -m training.stage`) finds the function to run.
STAGE_FUNCTIONS = {"data": stage_data, "base": stage_base, "sft": stage_sft, "reward_model": stage_reward_model,
                   "grpo": stage_grpo, "eval": stage_evaluate, "adopt_eval": stage_adopt_evaluation,
                   "export": stage_export}
