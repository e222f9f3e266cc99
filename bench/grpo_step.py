"""GRPO step cost: capability-aware GRPO vs plain TRL GRPO on the same batch, and rollout speed.

    python bench/grpo_step.py [--rounds 3] [--data MKGSG_DIR] [--model smollm2-135m] [--no_lora]
                              [--gradient_checkpointing]

Both trainers are built by `training.stages.grpo_trainer` from the default run's settings (LoRA,
4 prompts x 4 completions of up to 48 tokens, the reward model's component scored by a
sequence-classification head on the policy's weights) over the same records. Each round runs one
optimizer step of each trainer on the same first batch, alternating which goes first, so the
noise of this shared machine falls on both alike; round 0 is a warm-up. A step is split into its
phases by timing the trainer's own methods: rollout generation, reward scoring, and the rest (the
update: forward, backward, PCGrad, optimizer). Figures are medians over rounds; compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# TRL generates and scores inside training_step, so "update" (forward, backward, optimizer) is what
# remains of a step after the rollout and the rewards.
PHASES = {"generate": "_generate_single_turn", "rewards": "_calculate_rewards"}


class StepClock:
    """Wall time per optimizer step and per phase, through wrappers on the trainer's methods."""

    def __init__(self, trainer):
        from transformers import TrainerCallback

        self.steps: list[dict] = []
        self.current: dict = defaultdict(float)
        self.tokens = 0
        for phase, method in PHASES.items():
            setattr(trainer, method, self._timed(phase, getattr(trainer, method)))
        clock = self

        class Boundaries(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                clock.current = defaultdict(float, started=time.perf_counter())

            def on_step_end(self, args, state, control, **kwargs):
                step = clock.current
                step["step"] = time.perf_counter() - step.pop("started")
                step["update"] = step["step"] - step["generate"] - step["rewards"]
                clock.steps.append(dict(step))

        trainer.add_callback(Boundaries())

    def _timed(self, phase, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            self.current[phase] += time.perf_counter() - start
            if phase == "generate":
                completion_ids = out[0]  # (completion_ids, logprobs) in TRL 1.x
                self.current["tokens"] += sum(len(c) for c in completion_ids)
            return out
        return wrapper

    def median(self, key: str) -> float:
        values = [s.get(key, 0.0) for s in self.steps[1:]] or [s.get(key, 0.0) for s in self.steps]
        return statistics.median(values)


def build(config, run, policy: str, data: str, capability_aware: bool):
    from training.stages import grpo_trainer

    name = "capability" if capability_aware else "plain"
    # The policy's own weights under a fresh score head stand in for the trained reward model:
    # the cost of scoring is the same, and this benchmark measures cost only.
    trainer = grpo_trainer(config, run, policy, policy, data, name, capability_aware, max_steps=1)
    trainer.args.save_strategy = "no"
    return trainer, StepClock(trainer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds of one step per trainer (after a warm-up)")
    parser.add_argument("--data", help="an MKGSG output folder (default: generate 120 records here)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--no_lora", action="store_true", help="train every weight instead of LoRA adapters")
    parser.add_argument("--gradient_checkpointing", action="store_true", help="TRL's default; off in the default run")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)

    import torch

    from training.config import RunConfig
    from training.models import resolve_model
    from training.stages import RunDirectory, quiet  # noqa: F401  (quiet: trainers are built quiet)

    config = RunConfig(model=args.model, lora=not args.no_lora, gradient_checkpointing=args.gradient_checkpointing)
    policy = resolve_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDirectory(Path(tmp))
        data = args.data
        if data is None:
            from training.mkgsg.__main__ import main as mkgsg_main

            data = str(Path(tmp) / "data")
            if mkgsg_main(["--n", "120", "--seed", "0", "--out", data]):
                return 1
        results = {name: build(config, run, policy, data, aware) for name, aware in
                   (("plain", False), ("capability", True))}
        for round_ in range(args.rounds + 1):
            for name in (("plain", "capability") if round_ % 2 == 0 else ("capability", "plain")):
                torch.manual_seed(round_)  # both trainers sample their completions under the same seed
                results[name][0].train()   # max_steps=1: one step on the dataset's first batch
        results = {name: clock for name, (_, clock) in results.items()}

    plain, aware = results["plain"], results["capability"]
    rows = []
    print(f"\nGRPO step on {config.grpo_prompts_per_step} prompts x {config.num_generations} completions "
          f"(<= {config.max_completion_length} tokens), LoRA={config.lora}, "
          f"gradient checkpointing={config.gradient_checkpointing}, torch threads {torch.get_num_threads()}, "
          f"median of {args.rounds} rounds after a warm-up\n")
    print(f"| phase | plain TRL GRPO (s) | capability-aware (s) | ratio |\n|---|---:|---:|---:|")
    for key in ("step", "generate", "rewards", "update"):
        p, a = plain.median(key), aware.median(key)
        rows.append({"phase": key, "plain_s": round(p, 2), "capability_s": round(a, 2), "ratio": round(a / p, 2)})
        print(f"| {key} | {p:.2f} | {a:.2f} | {a / p:.2f} |")
    rollout = {name: clock.median("tokens") / clock.median("generate") for name, clock in results.items()}
    share = plain.median("generate") / plain.median("step")
    print(f"\nrollout: {rollout['plain']:.0f} completion tokens/s (plain), {rollout['capability']:.0f} (capability-aware); "
          f"generation is {share:.0%} of a plain step")
    ratio = aware.median("step") / plain.median("step")
    print(f"capability-aware step / plain step = {ratio:.2f} (target <= 1.3)")
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "rollout_tokens_per_s": rollout, "step_ratio": ratio,
                                              "steps": {k: v.steps for k, v in results.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
