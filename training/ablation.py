"""`python -m training.run --ablation`: base / SFT / GRPO / capability-aware GRPO under one budget.

The two GRPO arms start from the same SFT model and reward model, see the same prompts in the
same order for the same number of steps with the same group size, so they differ only in what
the paper adds: per-capability normalisation, dynamic weights and PCGrad. The table says which
arm wins on each score, and reports the gradient cosines that PCGrad measured, because a
method that projects conflicts can only help where gradients actually conflict.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from statistics import mean

from training.config import RunConfig
from training.layout import RunDirectory
from training.plots import read_metrics
from training.stage import StageRunner, progress_display

ARMS = ("base", "sft", "grpo", "capability_grpo")
CAPABILITY_KEYS = ("knowledge", "reasoning", "instruction", "integration")


def run_ablation(config: RunConfig, run_dir: Path, docs: Path | None = Path("docs")) -> str:
    run = RunDirectory(run_dir)
    run.config.write_text(json.dumps(config.to_dict(), indent=1))
    results: dict[str, dict] = {}
    with progress_display() as progress:
        # The same runner as the pipeline's: same stages, same resume, one process per stage.
        stages = StageRunner(run, subprocesses=config.stage_processes, progress=progress)
        data = stages.run_stage("data")["data"]
        base = stages.run_stage("base")["model"]
        sft = stages.run_stage("sft", base=base, data=data)
        rm = stages.run_stage("reward_model", base=sft["model"], data=data)
        arms = {"base": (base, 0.0), "sft": (sft["model"], sft["wall_time_s"])}
        for arm, aware in (("grpo", False), ("capability_grpo", True)):
            out = stages.run_stage(arm, "grpo", policy=sft["model"], reward_model=rm["model"], data=data,
                                   stage=arm, capability_aware=aware, run_model=False)
            arms[arm] = (out["model"], sft["wall_time_s"] + out["wall_time_s"])
        for arm, (model, train_time) in arms.items():
            scores = stages.run_stage(f"eval_{arm}", "eval", label=f"evaluate {arm}", model=model, data=data,
                                      stage=f"eval_{arm}")["scores"]
            results[arm] = {"scores": scores, "train_time_s": train_time}
    table = ablation_markdown(config, results, cosine_summary(run.metrics))
    run.ablation_table.write_text(table)
    if docs is not None:
        docs.mkdir(parents=True, exist_ok=True)
        (docs / "ablation.md").write_text(table)
    return table


def cosine_summary(metrics_path: Path) -> dict[str, dict[str, float]]:
    rows = [r for r in read_metrics(metrics_path) if r.get("stage") == "capability_grpo"]
    out: dict[str, dict[str, float]] = {}
    for when in ("before", "after"):
        prefix = f"pcgrad/cos_{when}/"
        pairs = {k.removeprefix(prefix) for r in rows for k in r if k.startswith(prefix)}
        for pair in sorted(pairs):
            values = [r[prefix + pair] for r in rows if prefix + pair in r]
            out.setdefault(pair, {})[when] = mean(values)
            out[pair][f"{when}_min"] = min(values)
    conflicts = [r["pcgrad/conflicts"] for r in rows if "pcgrad/conflicts" in r]
    if conflicts:
        out["_conflicts_per_step"] = {"mean": mean(conflicts)}
    return out


def verdict(aware: float, plain: float, per_capability: int) -> str:
    """The sentence the table ends with; a difference smaller than one test record is called noise."""
    delta, record = aware - plain, 1 / max(per_capability, 1)
    scores = f"({aware:.3f} vs {plain:.3f} mean capability score, difference {delta:+.3f})"
    if abs(delta) < record:
        return (f"No difference beyond noise between capability-aware and plain GRPO {scores}: with {per_capability} "
                f"test records per capability one record moves a capability score by {record:.2f}, so this "
                f"budget cannot tell them apart.")
    return (f"Capability-aware GRPO {'beats' if delta > 0 else 'does not beat'} plain GRPO {scores}, by more "
            f"than one test record ({record:.2f}).")


def ablation_markdown(config: RunConfig, results: dict[str, dict], cosines: dict) -> str:
    columns = [(f"capabilities/{c}", c) for c in CAPABILITY_KEYS] + [
        ("medmcqa/acc_loglik", "MedMCQA"), ("pubmedqa/acc_loglik", "PubMedQA"),
        ("ifeval/prompt_level_strict_acc", "IFEval prompt strict"), ("ifeval/inst_level_strict_acc", "IFEval inst strict")]
    limits = config.benchmark_limits
    lines = [
        "# Ablation: base, SFT, GRPO, capability-aware GRPO",
        "",
        f"Model `{config.model}` ({'LoRA' if config.lora else 'full'}), seed {config.seed}, {platform.machine()} CPU, "
        f"written by `python -m training.run --ablation` on {time.strftime('%Y-%m-%d')}.",
        f"Budget per GRPO arm: {config.grpo_steps} steps x {config.grpo_prompts_per_step} prompts x "
        f"{config.num_generations} completions of at most {config.max_completion_length} tokens, from the same SFT "
        f"model ({config.sft_steps} steps) and reward model ({config.rm_steps} steps). Capability scores: "
        f"{config.eval_per_capability} held-out MKGSG test records per capability; benchmark subsets: "
        + ", ".join(f"{k} {v}" for k, v in limits.items()) + f"; {config.eval_max_new_tokens} new tokens. "
        "Train time is wall-clock on the machine as it was: when other jobs share it, it measures them too "
        "(bench/grpo_step.py compares the two GRPO steps on one batch).",
        "",
        "| arm | " + " | ".join(name for _, name in columns) + " | mean of 4 capabilities | train time (s) |",
        "|---|" + "---:|" * (len(columns) + 2),
    ]
    means = {}
    for arm in ARMS:
        if arm not in results:
            continue
        scores = results[arm]["scores"]
        caps = [scores[k] for k, _ in columns[:4] if k in scores]
        means[arm] = mean(caps) if caps else float("nan")
        cells = [f"{scores[k]:.3f}" if k in scores else "–" for k, _ in columns]
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {means[arm]:.3f} | {results[arm]['train_time_s']:.0f} |")
    lines += ["", "## Verdict", ""]
    if "grpo" in means and "capability_grpo" in means:
        lines.append(verdict(means["capability_grpo"], means["grpo"], config.eval_per_capability))
    if cosines:
        lines += ["", "## Gradient cosines between capabilities (capability-aware arm, mean over steps)", "",
                  "| pair | before PCGrad | min before | after PCGrad |", "|---|---:|---:|---:|"]
        for pair, v in cosines.items():
            if pair.startswith("_"):
                continue
            lines.append(f"| {pair} | {v.get('before', float('nan')):+.3f} | {v.get('before_min', float('nan')):+.3f} | "
                         f"{v.get('after', float('nan')):+.3f} |")
        if "_conflicts_per_step" in cosines:
            lines.append(f"\nProjections per step (pairs with a negative dot product, counted both ways): "
                         f"{cosines['_conflicts_per_step']['mean']:.1f} on average.")
        lines.append("\nCosines near zero mean the capabilities' gradients barely interact at this scale, which bounds "
                     "what PCGrad can change; strongly negative ones are where it acts.")
    return "\n".join(lines) + "\n"
