"""`python -m training.ship RUN --name NAME`: a trained run's LoRA as one adapter in `models/NAME/`.

A LoRA run trains two adapters in turn: SFT's over the base model, merged into `sft/final`, then
GRPO's over that. Both are low-rank updates of the same modules, so base + SFT + GRPO is exactly
one adapter of their summed rank (PEFT's `add_weighted_adapter(..., combination_type="cat")`
stacks the factors, each scaled by its own alpha/r). The stacked adapter is stored in float16,
which halves it to fit the 25 MB a clone carries (PEFT casts it back to the base's float32 when
loading), and is checked before anything is written to `models/`: merged into the base, it must
reproduce the run's own `final/` weights (largest difference stated) and its greedy tokens on the
export's parity prompts. The card (models/README.md) takes the command, seed and commit, and the
run's paired evaluation (`alignment.json`): n, base, aligned, diff, ci_low, ci_high, p per score.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from training.layout import RunLayout, read_json
from training.models import EMBEDDED_MODELS

SHIPPED_DTYPE = "float16"
# A float16 adapter moves a merged weight by a few 1e-6 (its factors keep 11 significant bits);
# anything larger means the adapters did not add up to the run's model.
MAX_WEIGHT_DIFF = 1e-3
PARITY_TOKENS = 32


class ShipError(ValueError):
    pass


def run_adapters(run: RunLayout) -> tuple[Path, Path]:
    """The SFT adapter the run kept (its best checkpoint) and GRPO's last one."""
    config = read_json(run.config) or {}
    if not config.get("lora", True):
        raise ShipError(f"{run.path} trained every weight (--no_lora); serve its final/ folder with "
                        "BALANCEDBIO_MODEL instead of shipping an adapter")
    sft, grpo = read_json(run.done_file("sft")), read_json(run.done_file("grpo"))
    if sft is None or grpo is None:
        raise ShipError(f"{run.path}: SFT and GRPO must both have finished (DONE.json); "
                        f"continue it with `python -m training.run --resume {run.path}`")
    sft_adapter = Path(sft.get("best_checkpoint") or run.last_checkpoint("sft") or "")
    grpo_adapter = run.stage_dir("grpo") / f"checkpoint-{grpo['steps']}"
    for path in (sft_adapter, grpo_adapter):
        if not (path / "adapter_model.safetensors").is_file():
            raise ShipError(f"{path} holds no adapter_model.safetensors; the run's adapters are needed to ship it")
    return sft_adapter, grpo_adapter


def stack_adapters(base_model: str, sft_adapter: Path, grpo_adapter: Path, out: Path) -> Path:
    """SFT's and GRPO's adapters over `base_model` as one PEFT adapter (rank = their sum) in `out`."""
    import torch
    from peft import PeftModel

    from training.models import load_model

    model, _ = load_model(base_model)
    peft = PeftModel.from_pretrained(model, str(sft_adapter), adapter_name="sft")
    peft.load_adapter(str(grpo_adapter), adapter_name="grpo")
    peft.add_weighted_adapter(["sft", "grpo"], [1.0, 1.0], adapter_name="default", combination_type="cat")
    peft.set_adapter("default")
    for name in ("sft", "grpo"):
        peft.delete_adapter(name)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_" in name:
                param.data = param.data.to(getattr(torch, SHIPPED_DTYPE))
    peft.peft_config["default"].base_model_name_or_path = base_model
    peft.save_pretrained(str(out))
    return out


def check_against_run(base_model: str, adapter_dir: Path, final: Path) -> dict:
    """Merge the stacked adapter into the base and compare with the run's final model: the largest
    weight difference, and greedy tokens on the export's parity prompts."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from training.export import PARITY_PROMPTS
    from training.models import load_model

    model, tokenizer = load_model(base_model)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload().eval()
    reference = AutoModelForCausalLM.from_pretrained(str(final), dtype=torch.float32).eval()
    ours, theirs = merged.state_dict(), reference.state_dict()
    if set(ours) != set(theirs):
        raise ShipError(f"the merged adapter's weights are not the run's model's ({len(set(ours) ^ set(theirs))} "
                        f"names differ); was {final} trained from {base_model}?")
    worst = max(((ours[k].float() - theirs[k].float()).abs().max().item(), k) for k in ours)
    same = 0
    with torch.inference_mode():
        for prompt in PARITY_PROMPTS:
            text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                 add_generation_prompt=True)
            ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
            outs = [m.generate(ids, max_new_tokens=PARITY_TOKENS, do_sample=False, temperature=None, top_p=None,
                               top_k=None, repetition_penalty=1.0, pad_token_id=tokenizer.pad_token_id)[0].tolist()
                    for m in (merged, reference)]
            same += outs[0] == outs[1]
    return {"max_weight_diff": worst[0], "max_weight_diff_tensor": worst[1], "parity_prompts": len(PARITY_PROMPTS),
            "parity_identical": same, "parity_tokens": PARITY_TOKENS}


def model_card(run: RunLayout, name: str, base: str, commit: str, check: dict, sft_adapter: Path,
               grpo_adapter: Path) -> dict:
    config = read_json(run.config) or {}
    alignment = read_json(run.alignment)
    if alignment is None:
        raise ShipError(f"{run.alignment} is missing: a shipped model carries its paired evaluation against the "
                        "base; finish the run with --eval_base (or write it with `python -m training.alignment`)")
    entries = {**{f"capabilities/{k}": v for k, v in alignment["capabilities"].items()}, **alignment["benchmarks"]}
    evaluation = {k: {f: v[f] for f in ("n", "base", "aligned", "diff", "ci_low", "ci_high", "p", "significant")}
                  for k, v in entries.items()}
    return {
        "name": name, "base_model": base, "aligned": True,
        "command": f"python -m training.run --preset {config.get('preset')} --name {run.path.name}"
                   + (" --eval_base" if config.get("eval_base") else ""),
        "data_seed": config.get("seed"), "commit": commit, "created": time.strftime("%Y-%m-%d"),
        "training": {"sft_steps": (read_json(run.done_file("sft")) or {}).get("steps"),
                     "sft_adapter": sft_adapter.name, "grpo_steps": (read_json(run.done_file("grpo")) or {}).get("steps"),
                     "grpo_adapter": grpo_adapter.name, "records": config.get("mkgsg_n"),
                     "adapter": f"LoRA over {config.get('model')}: SFT and GRPO adapters stacked (rank = their sum), "
                                f"stored in {SHIPPED_DTYPE}"},
        "check_against_run": check,
        "evaluation_method": alignment.get("method"),
        "evaluation": evaluation,
    }


def card_markdown(card: dict) -> str:
    lines = [f"# {card['name']}: aligned `{card['base_model']}`", "",
             f"Made by `{card['command']}` (data seed {card['data_seed']}, commit {card['commit'][:12]}), "
             f"{card['training']['sft_steps']} SFT steps and {card['training']['grpo_steps']} capability-aware GRPO "
             f"steps; {card['training']['adapter']}. Merged into its base, it reproduces the run's model to "
             f"{card['check_against_run']['max_weight_diff']:.1e} per weight and its greedy tokens on "
             f"{card['check_against_run']['parity_identical']} of {card['check_against_run']['parity_prompts']} prompts.",
             "", "Paired evaluation against the base model on the same items (aligned - base, 95% interval, p; "
             "**bold**: the interval excludes zero):", "",
             "| score | n | base | aligned | diff | 95% interval | p |", "|---|---:|---:|---:|---:|---|---:|"]
    for key, e in card["evaluation"].items():
        diff = f"**{e['diff']:+.3f}**" if e["significant"] else f"{e['diff']:+.3f}"
        lines.append(f"| {key} | {e['n']} | {e['base']:.3f} | {e['aligned']:.3f} | {diff} | "
                     f"[{e['ci_low']:+.3f}, {e['ci_high']:+.3f}] | {e['p']:.3g} |")
    return "\n".join(lines) + "\n"


def ship_run(run_dir: Path, name: str, models: Path, commit: str) -> Path:
    from serving.shipped import load_adapter

    run = RunLayout(run_dir)
    config = read_json(run.config)
    if config is None:
        raise ShipError(f"{run_dir}: no config.json; pass a run directory made by training.run")
    sft_adapter, grpo_adapter = run_adapters(run)
    # The card names an embedded model by its name, so a fresh clone resolves it from its package.
    base = config["model"] if config["model"] in EMBEDDED_MODELS else (read_json(run.done_file("base")) or {})["model"]
    target = models / name
    staging = models / f".{name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    stack_adapters(base, sft_adapter, grpo_adapter, staging)
    check = check_against_run(base, staging, run.final)
    if check["max_weight_diff"] > MAX_WEIGHT_DIFF:
        shutil.rmtree(staging)
        raise ShipError(f"the stacked adapter misses the run's model by {check['max_weight_diff']:.2e} in "
                        f"{check['max_weight_diff_tensor']} (limit {MAX_WEIGHT_DIFF}); not shipped")
    card = model_card(run, name, base, commit, check, sft_adapter, grpo_adapter)
    (staging / "model_card.json").write_text(json.dumps(card, indent=1) + "\n")
    (staging / "README.md").write_text(card_markdown(card))
    load_adapter(staging)  # the convention serving checks (size, files, base_model)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.ship", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished LoRA run directory (runs/NAME) with alignment.json")
    parser.add_argument("--name", required=True, help="the folder name under models/ (the served model's name)")
    parser.add_argument("--models", type=Path, default=Path("models"), help="where shipped adapters live")
    parser.add_argument("--commit", default=None, help="the training code's commit (default: git HEAD)")
    args = parser.parse_args(argv)
    # The card names the embedded base by name; PEFT would ask the hub about it unless told not to.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    commit = args.commit or subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    try:
        target = ship_run(args.run, args.name, args.models, commit)
    except ShipError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    card = json.loads((target / "model_card.json").read_text())
    size = (target / "adapter_model.safetensors").stat().st_size / 2**20
    print(f"shipped {target} ({size:.1f} MB); max weight difference to the run's model "
          f"{card['check_against_run']['max_weight_diff']:.1e}, greedy parity "
          f"{card['check_against_run']['parity_identical']}/{card['check_against_run']['parity_prompts']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
