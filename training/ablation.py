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
from training.evaluate.stats import mean_interval
from training.paired import DEGENERATE, PairedRow, compare_evaluations, item_outcomes
from training.plots import read_metrics
from training.stage import StageRunner, progress_display

ARMS = ("base", "sft", "grpo", "capability_grpo")
CAPABILITY_KEYS = ("knowledge", "reasoning", "instruction", "integration")


def run_ablation(config: RunConfig, run_dir: Path, docs: Path | None = Path("docs")) -> str:
    run = RunDirectory(run_dir)
    run.config.write_text(json.dumps(config.to_dict(), indent=1))
    if config.ablation_from:
        adopt_pipeline_run(config, Path(config.ablation_from), run)
    results: dict[str, dict] = {}
    with progress_display() as progress:
        # The same runner as the pipeline's: same stages, same resume, one process per stage.
        stages = StageRunner(run, subprocesses=config.stage_processes, progress=progress)
        data = stages.run_stage("data")["data"]
        base = stages.run_stage("base")["model"]
        sft = stages.run_stage("sft", base=base, data=data)
        # Without a reward model (--rm_steps 0) both arms use the rule rewards alone, as the pipeline does.
        rm = stages.run_stage("reward_model", base=sft["model"], data=data)["model"] if config.rm_steps > 0 else None
        arms = {"base": (base, 0.0), "sft": (sft["model"], sft["wall_time_s"])}
        # The capability-aware arm runs first: under a wall-clock budget its step count is then
        # given to the plain arm, so both arms take the same steps over the same prompts.
        aware = stages.run_stage("capability_grpo", "grpo", policy=sft["model"], reward_model=rm, data=data,
                                 stage="capability_grpo", capability_aware=True, run_model=False)
        plain = stages.run_stage("grpo", "grpo", policy=sft["model"], reward_model=rm, data=data,
                                 stage="grpo", capability_aware=False, run_model=False, max_steps=aware["steps"],
                                 budgeted=False)
        for arm, out in (("grpo", plain), ("capability_grpo", aware)):
            arms[arm] = (out["model"], sft["wall_time_s"] + out["wall_time_s"])
        # The arms the source run evaluated go last: its evaluation may still be running when the
        # ablation starts, and is adopted as soon as it has finished rather than made twice.
        for arm in sorted(arms, key=lambda a: f"eval_{a}" in ADOPTED_STAGES.values()):
            model, train_time = arms[arm]
            if config.ablation_from:
                adopt_pipeline_run(config, Path(config.ablation_from), run)
            onnx = {}
            if config.export and config.eval_engine != "torch" and arm != "base" and run.done(f"eval_{arm}") is None:
                # A trained arm generates on its own export, as the pipeline's evaluation does: the same
                # graph and decoding as the arms adopted from a run, and faster than PyTorch.
                onnx = {"onnx_dir": stages.run_stage(f"export_{arm}", "export", label=f"export {arm}", model=model,
                                                     stage=f"export_{arm}")["onnx"]}
            scores = stages.run_stage(f"eval_{arm}", "eval", label=f"evaluate {arm}", model=model, data=data,
                                      stage=f"eval_{arm}", **onnx)["scores"]
            results[arm] = {"scores": scores, "train_time_s": train_time, **arm_intervals(run.stage_dir(f"eval_{arm}"))}
    paired = {(a, b): compare_evaluations(run.stage_dir(f"eval_{a}"), run.stage_dir(f"eval_{b}"), seed=config.seed)
              for a, b in PAIRS}
    table = ablation_markdown(config, results, cosine_summary(run.metrics), paired)
    run.ablation_table.write_text(table)
    if docs is not None:
        docs.mkdir(parents=True, exist_ok=True)
        (docs / "ablation.md").write_text(table)
    return table


# What an ablation takes from a finished pipeline run: its stage -> the ablation's stage. The run's GRPO
# stage is the capability-aware arm (the pipeline trains nothing else), its evaluations two arms'.
ADOPTED_STAGES = {"data": "data", "base": "base", "sft": "sft", "reward_model": "reward_model",
                  "grpo": "capability_grpo", "base_eval": "eval_base", "eval": "eval_capability_grpo"}
# Settings that may differ from the run's: where things go, and what the ablation itself adds.
FREE_SETTINGS = {"preset", "resume", "ablation", "ablation_from", "runs_dir", "name", "export", "eval_base",
                 "base_eval_from", "eval_engine", "eval_benchmarks", "stage_processes"}


class AdoptionError(ValueError):
    pass


def adopt_pipeline_run(config: RunConfig, source: Path, run: RunDirectory) -> list[str]:
    """Take the finished stages of `source` (a `training.run` directory) as this ablation's, so the
    arms it already trained are not trained again: the models stay in `source` (the adopted DONE.json
    files point there), evaluations are copied (their per-item predictions are paired here), and the
    run's GRPO metrics become the capability-aware arm's (the gradient cosines). Stages this ablation
    finished itself are left alone; an evaluation the run has not finished yet is left for later
    (`run_ablation` adopts again before each evaluation). Returns the adopted stages."""
    import shutil

    from training.layout import RunLayout, read_json

    layout = RunLayout(source)
    theirs = read_json(layout.config)
    if theirs is None:
        raise AdoptionError(f"--ablation_from {source}: no config.json there; pass a run directory made by training.run")
    # A setting the source run's config does not name did not exist yet: it ran with the default.
    defaults = RunConfig().to_dict()
    differing = {k: (theirs.get(k, defaults[k]), v) for k, v in config.to_dict().items()
                 if k not in FREE_SETTINGS and theirs.get(k, defaults[k]) != v}
    if differing:
        raise AdoptionError(f"--ablation_from {source} was trained with other settings (run, ablation): {differing}; "
                            f"pass the same --preset and flags as that run")
    if not theirs.get("eval_base"):
        raise AdoptionError(f"--ablation_from {source} did not evaluate its base model; the ablation's base arm needs "
                            "it on the same items (train that run with --eval_base)")
    adopted = []
    for stage, mine in ADOPTED_STAGES.items():
        done = layout.done_file(stage)
        if run.done(mine) is not None or (stage == "reward_model" and config.rm_steps == 0):
            continue
        if not done.is_file() and stage.endswith("eval"):
            continue  # not finished yet: adopted when the ablation reaches it, else made here
        if not done.is_file():
            raise AdoptionError(f"--ablation_from {source}: its {stage} stage has not finished; finish the run first "
                                f"(`python -m training.run --resume {source}`)")
        if stage.endswith("eval"):
            shutil.copytree(layout.stage_dir(stage), run.stage(mine), dirs_exist_ok=True)
        run.mark_done(mine, read_json(done))
        adopted.append(mine)
    if "capability_grpo" in adopted:
        with run.metrics.open("a") as out:
            for row in read_metrics(layout.metrics):
                if row.get("stage") == "grpo":
                    out.write(json.dumps({**row, "stage": "capability_grpo", "adopted_from": str(source)}) + "\n")
    return adopted


def arm_intervals(eval_dir: Path) -> dict:
    """Each score's n and 95% interval, from the arm's per-item predictions."""
    intervals, ns = {}, {}
    for benchmark, metrics in item_outcomes(eval_dir).items():
        for metric, items in metrics.items():
            intervals[f"{benchmark}/{metric}"] = mean_interval(list(items.values()))
            ns[f"{benchmark}/{metric}"] = len(items)
    return {"intervals": intervals, "n": ns}


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


ARM_NAMES = {"base": "base", "sft": "SFT", "grpo": "plain GRPO", "capability_grpo": "capability-aware GRPO"}
# The paired tests the table reports: the method against its two nearest alternatives.
PAIRS = (("grpo", "capability_grpo"), ("sft", "capability_grpo"))
BENCHMARK_COLUMNS = (("medmcqa", "acc_loglik", "MedMCQA"), ("pubmedqa", "acc_loglik", "PubMedQA"),
                     ("ifeval", "prompt_level_loose_acc", "IFEval prompt loose"))


def verdict(pair: tuple[str, str], rows: list[PairedRow]) -> str:
    """The sentence for one paired comparison, from its rows: which differences the intervals
    separate from zero, and otherwise the smallest difference this many records could detect."""
    a, b = (ARM_NAMES[x] for x in pair)
    if not rows:
        return f"{b} vs {a}: nothing scored on both."
    better = [r.metric for r in rows if r.significant and r.diff > 0]
    worse = [r.metric for r in rows if r.significant and r.diff < 0]
    parts = []
    if better:
        parts.append(f"{b} scores higher than {a} on {', '.join(better)} (95% interval above zero, p < 0.05)")
    if worse:
        parts.append(f"lower on {', '.join(worse)} (interval below zero, p < 0.05)")
    rest = [r for r in rows if not r.significant]
    if rest:
        smallest = min(r.detectable for r in rest)
        parts.append(f"no difference beyond noise on {', '.join(r.metric for r in rest)}: with "
                     f"{min(r.n for r in rest)}-{max(r.n for r in rest)} paired records these could only detect a "
                     f"difference of about {smallest:.2f} or more (two-sided 5%, power 80%)")
    return f"{b} vs {a}: " + "; ".join(parts) + "."


def _cell(row_scores: dict, key: str, interval) -> str:
    if key not in row_scores:
        return "–"
    return f"{row_scores[key]:.3f}" + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")


def ablation_markdown(config: RunConfig, results: dict[str, dict], cosines: dict,
                      paired: dict[tuple[str, str], list[PairedRow]] | None = None) -> str:
    """The table: each arm's scores with 95% intervals, the paired tests of capability-aware GRPO
    against plain GRPO and SFT, the verdicts they support, and PCGrad's gradient cosines.

    `results[arm]`: {"scores": {"benchmark/metric": value}, "intervals": {same keys: (low, high)},
    "n": {same keys: n}, "train_time_s": s}; `paired[(a, b)]`: rows of b - a over shared items."""
    paired = paired or {}
    columns = [(f"capabilities/{c}", c) for c in CAPABILITY_KEYS] + [
        (f"{b}/{m}", name) for b, m, name in BENCHMARK_COLUMNS]
    limits = config.benchmark_limits
    budget = (f"a {config.grpo_budget_minutes:g}-minute budget for the capability-aware arm (at most {config.grpo_steps} "
              f"steps), the plain arm then run for the same number of steps" if config.grpo_budget_minutes
              else f"{config.grpo_steps} steps")
    lines = [
        "# Ablation: base, SFT, GRPO, capability-aware GRPO",
        "",
        f"Model `{config.model}` ({'LoRA' if config.lora else 'full'}), seed {config.seed}, {platform.machine()} CPU, "
        f"written by `python -m training.run --ablation` on {time.strftime('%Y-%m-%d')}.",
        f"Budget per GRPO arm: {budget}, {config.grpo_prompts_per_step} prompts x "
        f"{config.num_generations} completions of at most {config.max_completion_length} tokens a step, from the same "
        f"data, SFT model ({config.sft_steps} steps at most) and reward model ({config.rm_steps} steps). Capability "
        f"scores: {config.eval_per_capability} held-out MKGSG test records per capability; benchmark subsets: "
        + ", ".join(f"{k} {v}" for k, v in limits.items()) + f"; {config.eval_max_new_tokens} new tokens. "
        "Each score is followed by its 95% interval (Wilson for pass/fail items, bootstrap for graded ones). "
        "Train time is wall-clock on the machine as it was: when other jobs share it, it measures them too "
        "(bench/grpo_step.py compares the two GRPO steps on one batch).",
        "",
        "| arm | " + " | ".join(name for _, name in columns) + " | mean of 4 capabilities | train time (s) |",
        "|---|" + "---:|" * (len(columns) + 2),
    ]
    for arm in ARMS:
        if arm not in results:
            continue
        scores, intervals = results[arm]["scores"], results[arm].get("intervals", {})
        caps = [scores[k] for k, _ in columns[:4] if k in scores]
        average = f"{mean(caps):.3f}" if caps else "–"
        cells = [_cell(scores, k, intervals.get(k)) for k, _ in columns]
        lines.append(f"| {ARM_NAMES[arm]} | " + " | ".join(cells) + f" | {average} | {results[arm]['train_time_s']:.0f} |")
    ns = {k: n for r in results.values() for k, n in r.get("n", {}).items()}
    if ns:
        lines.append("\nRecords scored per column: " + ", ".join(f"{name} {ns[k]}" for k, name in columns if k in ns) + ".")
    if paired:
        lines += ["", "## Paired tests (same records, difference = second arm - first arm)", "",
                  "| comparison | score | n | difference | 95% interval | p | smallest detectable |",
                  "|---|---|---:|---:|---|---:|---:|"]
        for (a, b), rows in paired.items():
            for r in rows:
                diff = f"**{r.diff:+.3f}**" if r.significant else f"{r.diff:+.3f}"
                score = f"{r.benchmark}/{r.metric}" + (" (lower is better)" if r.metric == DEGENERATE else "")
                lines.append(f"| {ARM_NAMES[b]} - {ARM_NAMES[a]} | {score} | {r.n} | "
                             f"{diff} | [{r.ci_low:+.3f}, {r.ci_high:+.3f}] | {r.p:.3g} | "
                             f"{r.detectable:.3f} |")
        lines += ["", "Bold: the 95% interval (paired bootstrap) excludes zero and p (exact McNemar / sign test) < 0.05. *Smallest detectable*: the difference these n paired "
                  "records would detect at 5% with 80% power, given the share of records on which the two arms "
                  "disagreed (McNemar's normal approximation).", "", "## Verdict", ""]
        lines += [verdict(pair, [r for r in rows if r.benchmark == "capabilities" and r.metric != DEGENERATE])
                  for pair, rows in paired.items()]
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
