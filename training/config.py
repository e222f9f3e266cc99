"""The main job's settings (`python -m training.run --help`), TRL-style, with named presets.

Presets fix the compute budget. `default` is sized for the embedded 135M model on a 2-core CPU
(target: the whole pipeline in about 20 minutes; the smoke run), `standard` is the recipe that
should show a gain (about 2.5 hours on 2 cores, resumable), `tiny` builds a 2-layer random model for tests,
`paper-0.5b` is the paper's Qwen2.5-0.5B-Instruct with LoRA for a GPU machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from training.evaluate.engines import ENGINES
from training.evaluate.runner import BENCHMARKS

PROJECT = Path(__file__).resolve().parents[1]  # where relative --eval_fixed_ids paths point
BUDGET_CLOCKS = ("cpu", "wall")  # how the SFT and GRPO budgets count minutes (training.trainers.WallClockBudget)

PRESETS: dict[str, dict] = {
    "default": {},
    "tiny": dict(model="tiny", lora=False, mkgsg_n=60, sft_steps=2, sft_batch_size=2, rm_steps=2, rm_batch_size=2, rm_pairs=8,
                 rm_eval_pairs=8, grpo_steps=2, grpo_prompts_per_step=4, num_generations=2, max_completion_length=12,
                 eval_per_capability=1, eval_max_new_tokens=12, eval_benchmarks="medmcqa:4",
                 save_steps=1, export=False),
    # The recipe for a measured gain on 2 CPU cores in about 2.5 hours (docs/training.md says how
    # each number was chosen): >= 2,000 training records, SFT until the validation loss stops
    # improving, then capability-aware GRPO for as many steps as its budget allows.
    # The first standard run (45 SFT + 60 GRPO minutes) saw 0.30 of a pass over the training records with the
    # validation loss still falling and could not teach the facts; the budget moved to SFT, which repeats
    # the short knowledge and reasoning records (docs/training.md, "The standard run of 2026-12-03").
    "standard": dict(mkgsg_n=4000, mkgsg_test_fraction=0.3, sft_steps=1500, sft_batch_size=8, sft_eval_steps=25, sft_patience=3,
                     sft_eval_records=96, sft_budget_minutes=100, sft_passes="knowledge=3,reasoning=2,integration=0.5",
                     rm_steps=60, rm_batch_size=8, rm_pairs=480,
                     rm_eval_pairs=200, grpo_steps=1000, grpo_budget_minutes=40, grpo_prompts_per_step=4,
                     num_generations=4, max_completion_length=64, save_steps=5, eval_per_capability=250,
                     eval_max_new_tokens=192, eval_benchmarks="medmcqa:1000,pubmedqa:500,ifeval:541", eval_base=True),
    "paper-0.5b": dict(model="Qwen/Qwen2.5-0.5B-Instruct", lora=True, mkgsg_n=20000, sft_steps=600, sft_batch_size=16,
                       rm_steps=400, rm_batch_size=16, rm_pairs=6000, rm_eval_pairs=600, rm_trainable_layers=0,
                       grpo_steps=500, grpo_prompts_per_step=16, num_generations=8, max_completion_length=512,
                       eval_per_capability=100, eval_max_new_tokens=512,
                       eval_benchmarks="medmcqa:1000,pubmedqa:500,ifeval:541", save_steps=50,
                       grpo_learning_rate=2e-5, gradient_checkpointing=True, micro_batch_size=4),
}


@dataclass
class RunConfig:
    preset: str = field(default="default", metadata={"help": f"Budget preset: {', '.join(PRESETS)}. Explicit flags win."})
    model: str = field(default="smollm2-135m", metadata={
        "help": "Embedded name (smollm2-135m), 'tiny' (random 2-layer model for tests), a local folder or a cached hub name."})
    resume: str | None = field(default=None, metadata={
        "help": "A run directory to continue: finished stages are skipped, a stage cut short restarts from its last checkpoint."})
    ablation: bool = field(default=False, metadata={
        "help": "Train base / SFT / GRPO / capability-aware GRPO under one budget and write the table into docs/."})
    ablation_from: str | None = field(default=None, metadata={
        "help": "With --ablation: a finished training.run directory (e.g. the standard run) trained with these "
                "settings; the ablation adopts its data, SFT model, reward model, capability-aware GRPO model and "
                "both evaluations instead of making them again, and trains and scores only the plain GRPO arm "
                "and scores the SFT arm. --eval_benchmarks may be narrower than the run's (paired over what both scored)."})
    runs_dir: str = field(default="runs", metadata={"help": "Where run directories are created."})
    name: str | None = field(default=None, metadata={"help": "Run directory name (default: the start time)."})
    seed: int = field(default=0, metadata={"help": "Seed for data generation, sampling and training."})
    data: str | None = field(default=None, metadata={"help": "Reuse an MKGSG output folder instead of generating one."})
    mkgsg_n: int = field(default=400, metadata={"help": "Synthetic records to generate (split ~80/10/10 by seed fact)."})
    mkgsg_test_fraction: float = field(default=0.1, metadata={
        "help": "Share of seed facts held out for the unseen-facts test split. The standard preset holds out 30% "
                "so that each capability has at least 250 test records (enough to detect a ~0.1 change)."})
    lora: bool = field(default=True, metadata={
        "help": "Train LoRA adapters (PEFT) instead of every weight: on a CPU it skips the weight gradients and the "
                "optimizer state of the whole model, and keeps checkpoints small. The final model is merged."})
    gradient_checkpointing: bool = field(default=False, metadata={
        "help": "Recompute activations in the backward pass (TRL's default, to save GPU memory). Off by default: "
                "on a CPU the 135M model fits with room to spare and recomputing costs about a third of each step."})
    sft_steps: int = field(default=10, metadata={"help": "SFT optimizer steps (0 skips SFT)."})
    sft_batch_size: int = field(default=4, metadata={"help": "SFT sequences per step."})
    micro_batch_size: int = field(default=1, metadata={
        "help": "Sequences (SFT), pairs (reward model) or completions (capability-aware GRPO, within one "
                "capability) per forward/backward pass; a step's batch is reached by gradient accumulation. Memory "
                "grows with it: for the 135M model without gradient checkpointing one 384-token sequence holds about "
                "1.5 GB of activations, so 4 at once took a 6.6 GB SFT process."})
    sft_learning_rate: float = field(default=2e-4, metadata={"help": "SFT learning rate."})
    sft_passes: str = field(default="", metadata={
        "help": "How often each capability's training records occur in SFT's data, as capability=passes "
                "(comma-separated; a fraction keeps that share of the records, drawn with --seed; unnamed "
                "capabilities once), e.g. knowledge=3,reasoning=2,integration=0.5. Facts are learnt from "
                "repetition, and a knowledge record costs a fifth of an integration note's tokens, so under a "
                "budget the knowledge base is taught more by repeating its short records than by one pass."})
    sft_eval_steps: int = field(default=0, metadata={
        "help": "Measure the loss on validation records every N SFT steps and stop once it stops improving "
                "(early stopping; the best checkpoint becomes the SFT model). 0: no validation, --sft_steps steps."})
    sft_patience: int = field(default=3, metadata={
        "help": "Evaluations without a lower validation loss before SFT stops (with --sft_eval_steps)."})
    sft_eval_records: int = field(default=64, metadata={
        "help": "Validation records (balanced over capabilities) for SFT's early stopping."})
    sft_budget_minutes: float = field(default=0.0, metadata={
        "help": "Wall-clock ceiling of SFT training in minutes (0: none); kept across --resume."})
    budget_clock: str = field(default="cpu", metadata={
        "help": "How the SFT and GRPO budgets count minutes: 'cpu' (the process's CPU time over its compute "
                "threads: the minutes a machine running nothing else would need, so a budget trains the same "
                "steps on a shared machine) or 'wall' (elapsed time)."})
    max_length: int = field(default=384, metadata={"help": "Token limit of SFT and reward-model sequences."})
    rm_steps: int = field(default=8, metadata={"help": "Reward-model optimizer steps (0 drops the model component)."})
    rm_batch_size: int = field(default=4, metadata={"help": "Preference pairs per reward-model step."})
    rm_pairs: int = field(default=96, metadata={"help": "Training pairs drawn round-robin over corruption kinds."})
    rm_eval_pairs: int = field(default=48, metadata={"help": "Held-out pairs for pairwise accuracy."})
    rm_trainable_layers: int = field(default=2, metadata={
        "help": "Train only the top N transformer layers + score head of the reward model (0 = all); keeps it cheap on CPU."})
    grpo_steps: int = field(default=4, metadata={"help": "GRPO optimizer steps."})
    grpo_prompts_per_step: int = field(default=4, metadata={"help": "Prompts per step (balanced over capabilities)."})
    num_generations: int = field(default=4, metadata={"help": "Completions sampled per prompt (GRPO's group)."})
    max_completion_length: int = field(default=48, metadata={"help": "Token limit of each GRPO rollout."})
    grpo_learning_rate: float = field(default=1e-4, metadata={
        "help": "GRPO learning rate. LoRA adapters start at zero and the default budget is a few steps, so it is "
                "larger than a full fine-tune would use (at 2e-5 six steps left every evaluation score unchanged)."})
    grpo_budget_minutes: float = field(default=0.0, metadata={
        "help": "Train GRPO for as many steps as fit in this many minutes (--grpo_steps is then only a ceiling); "
                "the time spent travels in the checkpoints, so --resume continues the same budget. 0: no budget."})
    weights: str = field(default="dynamic", metadata={"help": "Hybrid weights: static or dynamic."})
    orthogonality: str = field(default="pcgrad", metadata={"help": "Gradient orthogonality: none or pcgrad."})
    save_steps: int = field(default=2, metadata={"help": "Checkpoint every N steps in each training stage (for --resume)."})
    eval_per_capability: int = field(default=4, metadata={"help": "Held-out synthetic test records per capability."})
    eval_max_new_tokens: int = field(default=128, metadata={"help": "Generation budget in evaluation."})
    eval_engine: str = field(default="auto", metadata={
        "help": "What generates in evaluation: auto (the ONNX Runtime engine when an export of the model exists: the "
                "cached export of the embedded base model, or the run's own export, which then runs before the "
                "evaluation), torch, or onnx (fail without an export). Log-likelihood always runs on PyTorch."})
    eval_base: bool = field(default=False, metadata={
        "help": "Also evaluate the base model on the same items and write the paired comparison (alignment.json: "
                "aligned - base with 95% intervals and p-values, as `python -m training.alignment` does)."})
    base_eval_from: str | None = field(default=None, metadata={
        "help": "With --eval_base: take the base model's evaluation from this saved folder (a run's base_eval "
                "folder plus its config as run_config.json) instead of scoring the base again; refused unless it "
                "was made with this run's evaluation settings on this run's test items."})
    eval_fixed_ids: str = field(default="medmcqa=docs/baseline/medmcqa_ids.txt", metadata={
        "help": "Saved item subsets as name=path (comma-separated, paths relative to the project): a benchmark with "
                "one is drawn from those ids whenever its full file is present, so every run and the baseline score "
                "the same questions."})
    eval_benchmarks: str = field(default="medmcqa:30,pubmedqa:20,ifeval:6", metadata={
        "help": f"Benchmark subsets as name:limit, comma-separated; known: {', '.join(BENCHMARKS)}."})
    export: bool = field(default=True, metadata={"help": "Export the aligned model to ONNX as the last stage."})
    stage_processes: bool = field(default=True, metadata={
        "help": "Run each stage in its own Python process, so the memory a trainer held is returned before the next "
                "stage starts (peak resident memory of the run = that of its largest stage). Under accelerate launch "
                "stages always run in the ranks' processes."})

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown --preset {self.preset!r}; choose from {', '.join(PRESETS)}")
        if self.weights not in ("static", "dynamic"):
            raise ValueError(f"--weights {self.weights!r}: use static or dynamic")
        if self.orthogonality not in ("none", "pcgrad"):
            raise ValueError(f"--orthogonality {self.orthogonality!r}: use none or pcgrad")
        for name in ("sft_batch_size", "rm_batch_size"):
            if self.micro_batch_size < 1 or getattr(self, name) % self.micro_batch_size:
                raise ValueError(f"--{name} {getattr(self, name)} must be a multiple of --micro_batch_size "
                                 f"{self.micro_batch_size} (a step accumulates whole micro-batches)")
        if self.ablation_from and not self.ablation:
            raise ValueError("--ablation_from only applies to an ablation: add --ablation, or drop --ablation_from")
        if self.budget_clock not in BUDGET_CLOCKS:
            raise ValueError(f"--budget_clock {self.budget_clock!r}: use one of {', '.join(BUDGET_CLOCKS)}")
        if self.num_generations < 2:
            raise ValueError("--num_generations must be at least 2: GRPO compares completions within a group")
        for name in ("sft_budget_minutes", "grpo_budget_minutes", "sft_eval_steps", "sft_patience"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be 0 (off) or positive, got {getattr(self, name)}")
        if self.sft_eval_steps and self.sft_eval_records < 1:
            raise ValueError("--sft_eval_steps needs validation records: set --sft_eval_records to 1 or more")
        if self.eval_engine not in ENGINES:
            raise ValueError(f"--eval_engine {self.eval_engine!r}: use one of {', '.join(ENGINES)}")
        if self.base_eval_from and not self.eval_base:
            raise ValueError("--base_eval_from is the base model's side of the paired comparison; add --eval_base")
        if self.grpo_steps < 1:
            raise ValueError("--grpo_steps must be at least 1; to skip alignment evaluate the base model instead")
        self.sft_pass_counts  # noqa: B018 (parses, so a bad entry fails at start)
        self.fixed_ids  # noqa: B018 (parses, so a bad entry fails at start, not after training)
        for name, limit in self.benchmark_limits.items():
            if name not in BENCHMARKS or limit < 1:
                raise ValueError(f"--eval_benchmarks entry {name}:{limit} is not valid; use name:limit with a "
                                 f"positive limit and a name from {', '.join(BENCHMARKS)}")

    @property
    def benchmark_limits(self) -> dict[str, int]:
        out = {}
        for part in filter(None, (p.strip() for p in self.eval_benchmarks.split(","))):
            name, _, limit = part.partition(":")
            if not limit.isdigit():
                raise ValueError(f"--eval_benchmarks entry {part!r} needs a limit, e.g. medmcqa:30")
            out[name] = int(limit)
        return out

    @property
    def sft_pass_counts(self) -> dict[str, float]:
        """--sft_passes as capability -> passes over its training records."""
        from training.records import Capability

        known = [c.value for c in Capability]
        out = {}
        for part in filter(None, (p.strip() for p in self.sft_passes.split(","))):
            name, sep, passes = part.partition("=")
            try:
                value = float(passes)
            except ValueError:
                value = -1.0
            if not sep or name not in known or not 0 <= value <= 100:
                raise ValueError(f"--sft_passes entry {part!r} is not valid; use capability=passes with passes from 0 "
                                 f"to 100 and a capability from {', '.join(known)}, e.g. knowledge=3")
            out[name] = value
        if out and not any(out.get(c, 1.0) for c in known):
            raise ValueError("--sft_passes leaves SFT no records: give at least one capability passes above 0")
        return out

    @property
    def fixed_ids(self) -> dict[str, Path]:
        """--eval_fixed_ids as benchmark -> id file (relative paths are the project's)."""
        out = {}
        for part in filter(None, (p.strip() for p in self.eval_fixed_ids.split(","))):
            name, sep, path = part.partition("=")
            if not sep or not path or name not in BENCHMARKS:
                raise ValueError(f"--eval_fixed_ids entry {part!r} is not valid; use name=path with a name from "
                                 f"{', '.join(BENCHMARKS)}, e.g. medmcqa=docs/baseline/medmcqa_ids.txt")
            out[name] = Path(path) if Path(path).is_absolute() else PROJECT / path
        return out

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def with_preset(config: RunConfig, explicit: set[str]) -> RunConfig:
    """Apply the preset's values to every field the user did not set on the command line."""
    values = config.to_dict()
    values.update({k: v for k, v in PRESETS[config.preset].items() if k not in explicit})
    return RunConfig(**values)
