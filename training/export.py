"""ONNX export of a trained run (or any model folder): fp32 with KV cache, optional int8, parity, card.

The served artefact is a folder:

    OUT/fp32/            Optimum `text-generation-with-past` export (model.onnx + tokenizer + config)
    OUT/int8/            the same after ORTQuantizer dynamic int8 (model_quantized.onnx), with --int8
    OUT/model_card.json  source run, evaluation scores, parity, file hashes, which variant to serve
    OUT/MODEL_CARD.md    the same for people

Parity is measured with Optimum's `ORTModelForCausalLM` (the export itself, not our serving engine,
whose own parity with PyTorch is a test of its own): fp32 must reproduce PyTorch's greedy tokens
exactly; int8 cannot, so its token agreement and its change in capability scores are reported.

CLI: python -m training.export --run RUN_DIR_OR_MODEL [--int8] --out DIR
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from training.models import EMBEDDED_MODELS, ModelUnavailableError, resolve_model

CARD_JSON, CARD_MD = "model_card.json", "MODEL_CARD.md"
FP32_FILE, INT8_FILE = "model.onnx", "model_quantized.onnx"
CAPABILITY_SAMPLE = Path(__file__).parent / "evaluate" / "samples" / "capabilities_fixture.jsonl"

# Short clinical prompts for the greedy parity check: enough variety to exercise the KV cache over
# different prompt lengths, few enough to run in seconds on two cores.
PARITY_PROMPTS = [
    "What is the first-line drug for type 2 diabetes?",
    "Name two symptoms of hypoglycaemia.",
    "Which ICD-10-CM chapter holds E11.9?",
    "Is warfarin safe to combine with aspirin? Answer briefly.",
    "List three risk factors for stroke.",
    "What does HbA1c measure?",
    "Give the generic name of Lipitor.",
    "Explain in one sentence what an ACE inhibitor does.",
]


@dataclass
class ExportResult:
    out_dir: Path
    serve_variant: str  # "fp32" or "int8": what the serving engine loads from out_dir
    card: dict = field(default_factory=dict)

    @property
    def serve_dir(self) -> Path:
        return self.out_dir / self.serve_variant

    def __fspath__(self) -> str:  # so callers may treat the result as the output path
        return str(self.out_dir)


@dataclass(frozen=True)
class ModelSource:
    """Where the weights come from, and what the card says about them."""

    model_dir: Path
    reference: str  # what the user passed
    run_dir: Path | None  # the training run the model belongs to, if any
    aligned: bool  # False for the untouched base model


def find_source(run_or_model: str) -> ModelSource:
    """Accept a run directory (`runs/NAME`, whose model is `final/`), a model folder, or an embedded name."""
    if run_or_model in EMBEDDED_MODELS:
        return ModelSource(Path(resolve_model(run_or_model)), run_or_model, None, aligned=False)
    path = Path(run_or_model).expanduser()
    if not path.exists():
        raise ModelUnavailableError(
            f"{run_or_model!r} is neither a run directory, a model folder, nor an embedded model {sorted(EMBEDDED_MODELS)}"
        )
    if (path / "final" / "config.json").is_file():
        return ModelSource(path / "final", run_or_model, path, aligned=True)
    if (path / "config.json").is_file():
        run_dir = path.parent if (path.parent / "run_config.json").is_file() else None
        return ModelSource(path, run_or_model, run_dir, aligned=run_dir is not None)
    raise ModelUnavailableError(
        f"{path} has neither final/config.json (a training run) nor config.json (a model folder); "
        "pass `runs/NAME` after training, or a folder written by save_pretrained"
    )


def newest_run(runs_dir: str | Path = "runs") -> Path | None:
    """The newest `runs/*/final/` holding a model, or None: the run the main job serves."""
    finals = [p.parent for p in Path(runs_dir).glob("*/final") if (p / "config.json").is_file()]
    return max(finals, key=lambda p: (p / "final" / "config.json").stat().st_mtime, default=None)


# -- export steps ---------------------------------------------------------------------------------
def _onnx_export(model_dir: Path, out: Path) -> None:
    from optimum.exporters.onnx import main_export

    # Optimum's own validation re-runs the model at several shapes (a minute on two cores); our
    # greedy parity check below is the stricter test of what matters, so it replaces it.
    main_export(str(model_dir), out, task="text-generation-with-past", do_validation=False,
                local_files_only=True)
    for name in ("SOURCE.txt",):  # provenance notes travel with the weights
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, out / name)


def _quantize_int8(fp32_dir: Path, out: Path) -> None:
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    quantizer = ORTQuantizer.from_pretrained(fp32_dir, file_name=FP32_FILE)
    # Dynamic (weights int8, activations quantised on the fly): no calibration data needed, and
    # per-channel scales keep the small model's accuracy. The AVX2 preset runs on every x86 CPU
    # (VNNI ones included); the ARM preset on ARM.
    import platform

    arm = platform.machine().lower() in ("arm64", "aarch64")
    preset = AutoQuantizationConfig.arm64 if arm else AutoQuantizationConfig.avx2
    qconfig = preset(is_static=False, per_channel=True)
    quantizer.quantize(save_dir=out, quantization_config=qconfig)
    for item in fp32_dir.iterdir():  # tokenizer and configs beside the quantised graph
        if item.is_file() and item.suffix != ".onnx" and not (out / item.name).exists():
            shutil.copy2(item, out / item.name)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_hashes(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): sha256(p) for p in sorted(out.rglob("*"))
            if p.is_file() and p.name not in (CARD_JSON, CARD_MD)}


# -- parity -----------------------------------------------------------------------------------------
def _greedy_tokens(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[list[int]]:
    """Greedy continuations one prompt at a time (no padding, so nothing but the model differs)."""
    import torch

    out = []
    eos = tokenizer.eos_token_id
    with torch.inference_mode():
        for prompt in prompts:
            ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
            gen = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, temperature=None,
                                 top_p=None, top_k=None, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
            out.append(gen[0, ids["input_ids"].shape[1]:].tolist())
    return out


def _agreement(reference: list[list[int]], candidate: list[list[int]]) -> dict:
    """Exact-match rate, and the share of reference tokens reproduced before the first divergence."""
    identical = sum(r == c for r, c in zip(reference, candidate))
    prefix = []
    for r, c in zip(reference, candidate):
        n = next((i for i, (a, b) in enumerate(zip(r, c)) if a != b), min(len(r), len(c)))
        prefix.append(n / max(len(r), 1))
    return {"prompts": len(reference), "identical": identical, "identical_rate": identical / max(len(reference), 1),
            "mean_prefix_agreement": sum(prefix) / max(len(prefix), 1)}


def _chat_prompts(tokenizer, questions: list[str]) -> list[str]:
    if tokenizer.chat_template is None:
        return questions
    return [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                          add_generation_prompt=True) for q in questions]


def _load_ort(directory: Path, file_name: str):
    from optimum.onnxruntime import ORTModelForCausalLM

    return ORTModelForCausalLM.from_pretrained(directory, file_name=file_name, use_cache=True,
                                               provider="CPUExecutionProvider")


def check_parity(model_dir: Path, fp32_dir: Path, int8_dir: Path | None, n_prompts: int = 8,
                 max_new_tokens: int = 32, capability_records: Path | None = CAPABILITY_SAMPLE,
                 capability_tokens: int = 96) -> dict:
    from training.models import load_model

    torch_model, tokenizer = load_model(str(model_dir))
    prompts = _chat_prompts(tokenizer, (PARITY_PROMPTS * (n_prompts // len(PARITY_PROMPTS) + 1))[:n_prompts])
    reference = _greedy_tokens(torch_model, tokenizer, prompts, max_new_tokens)
    del torch_model
    fp32 = _load_ort(fp32_dir, FP32_FILE)
    report: dict = {"max_new_tokens": max_new_tokens,
                    "fp32": _agreement(reference, _greedy_tokens(fp32, tokenizer, prompts, max_new_tokens))}
    report["fp32"]["passed"] = report["fp32"]["identical"] == len(prompts)
    if int8_dir is None:
        return report
    int8 = _load_ort(int8_dir, INT8_FILE)
    report["int8"] = _agreement(reference, _greedy_tokens(int8, tokenizer, prompts, max_new_tokens))
    if capability_records and Path(capability_records).is_file():
        report["capabilities"] = _capability_delta(fp32, int8, tokenizer, Path(capability_records), capability_tokens)
    return report


def _capability_delta(fp32, int8, tokenizer, records_path: Path, max_new_tokens: int) -> dict:
    """The four capability scores of fp32 and int8 on the same records, and int8 minus fp32."""
    from training.evaluate.capabilities import score_capabilities
    from training.evaluate.lm import TorchLM
    from training.records import load_records

    records = load_records(records_path)
    scores = {}
    for variant, model in (("fp32", fp32), ("int8", int8)):
        # TorchLM only needs generate() and config from the model, which ORTModelForCausalLM provides.
        lm = TorchLM(model, tokenizer, name=f"onnx-{variant}", max_gen_batch=8, progress=False)
        metrics, _ = score_capabilities(lm, records, max_new_tokens=max_new_tokens)
        scores[variant] = {k: v for k, v in metrics.items() if isinstance(v, float) and not k.endswith("_n")}
    delta = {k: scores["int8"].get(k, 0.0) - v for k, v in scores["fp32"].items()}
    return {"records": str(records_path), "n": len(records), "max_new_tokens": max_new_tokens, **scores,
            "delta": delta}


# -- the card -----------------------------------------------------------------------------------------
def _run_metadata(run_dir: Path | None) -> dict:
    if run_dir is None:
        return {}
    meta = {}
    for name in ("run_config.json", "metrics.json", "eval.json", "metrics"):
        path = run_dir / name
        if path.is_file():
            try:
                meta[path.stem] = json.loads(path.read_text())
            except json.JSONDecodeError:
                meta[path.stem] = path.read_text()[:4000]
    return meta


def write_card(out: Path, card: dict) -> None:
    (out / CARD_JSON).write_text(json.dumps(card, indent=2, default=str) + "\n")
    lines = [f"# Model card: {card['model_version']}", "",
             f"- source: `{card['source']['reference']}` (model folder `{card['source']['model_dir']}`)",
             f"- aligned: **{card['aligned']}**" + ("" if card["aligned"] else " (untouched base model)"),
             f"- served variant: `{card['serve']}` ({card['serve_reason']}); exported {card['exported_at']} in {card['export_seconds']:.0f} s", ""]
    parity = card.get("parity") or {}
    if parity:
        lines += ["## Parity with PyTorch (greedy decoding)", "", "| variant | prompts | identical | mean prefix agreement |",
                  "|---|---|---|---|"]
        for variant in ("fp32", "int8"):
            if variant in parity:
                p = parity[variant]
                lines.append(f"| {variant} | {p['prompts']} | {p['identical']} | {p['mean_prefix_agreement']:.3f} |")
        caps = parity.get("capabilities")
        if caps:
            lines += ["", f"## Capability scores ({caps['n']} records of `{Path(caps['records']).name}`, "
                      f"{caps['max_new_tokens']} new tokens)", "", "| score | fp32 | int8 | change |", "|---|---|---|---|"]
            for key, value in caps["fp32"].items():
                lines.append(f"| {key} | {value:.3f} | {caps['int8'].get(key, 0.0):.3f} | {caps['delta'][key]:+.3f} |")
    if card.get("run"):
        lines += ["", "## Training run", "", "```json", json.dumps(card["run"], indent=2, default=str)[:3000], "```"]
    lines += ["", "## Files (sha256)", ""] + [f"- `{k}` {v}" for k, v in card["files"].items()]
    (out / CARD_MD).write_text("\n".join(lines) + "\n")


def choose_variant(int8: bool, report: dict, tolerance: float) -> tuple[str, str]:
    """Serve int8 only if no capability score drops by more than `tolerance` against fp32."""
    if not int8:
        return "fp32", "int8 not requested"
    caps = (report or {}).get("capabilities")
    if not caps:
        return "int8", "int8 requested; no capability records to check it against"
    drops = {k: -caps["delta"][k] for k in ("knowledge", "reasoning", "instruction", "integration") if k in caps["delta"]}
    worst = max(drops.items(), key=lambda kv: kv[1], default=("none", 0.0))
    if worst[1] > tolerance:
        return "fp32", f"int8 drops {worst[0]} by {worst[1]:.3f} > tolerance {tolerance}: serving fp32"
    return "int8", f"int8 within tolerance {tolerance} (largest drop {worst[1]:.3f}, {worst[0]})"


def export_model(model_dir: str | Path, out_dir: str | Path, int8: bool = False, parity: bool = True,
                 n_prompts: int = 8, max_new_tokens: int = 32,
                 capability_records: str | Path | None = CAPABILITY_SAMPLE, int8_tolerance: float = 0.05,
                 capability_tokens: int = 96) -> ExportResult:
    """Export `model_dir` (a run directory, a model folder or an embedded model name) to `out_dir`.

    Returns an `ExportResult` (usable as a path: `os.fspath(result)` is `out_dir`). Raises
    `ParityError` when the fp32 export does not reproduce PyTorch's greedy tokens. With `int8`, the
    int8 variant is written and served only if it keeps every capability score within
    `int8_tolerance` of fp32 (the card says which was chosen and why)."""
    started = time.time()
    source = find_source(str(model_dir))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fp32_dir = out / "fp32"
    if fp32_dir.exists():
        shutil.rmtree(fp32_dir)
    _onnx_export(source.model_dir, fp32_dir)
    int8_dir = None
    if int8:
        int8_dir = out / "int8"
        if int8_dir.exists():
            shutil.rmtree(int8_dir)
        _quantize_int8(fp32_dir, int8_dir)
    report = {}
    if parity:
        report = check_parity(source.model_dir, fp32_dir, int8_dir, n_prompts=n_prompts, max_new_tokens=max_new_tokens,
                              capability_records=Path(capability_records) if capability_records else None,
                              capability_tokens=capability_tokens)
    serve, why = choose_variant(int8, report, int8_tolerance)
    version_name = source.run_dir.name if source.run_dir else source.model_dir.name
    card = {
        "model_version": f"{version_name}-{serve}",
        "aligned": source.aligned,
        "serve": serve,
        "serve_reason": why,
        "variants": {"fp32": f"fp32/{FP32_FILE}", **({"int8": f"int8/{INT8_FILE}"} if int8 else {})},
        "source": {"reference": source.reference, "model_dir": str(source.model_dir),
                   "run_dir": str(source.run_dir) if source.run_dir else None},
        "run": _run_metadata(source.run_dir),
        "parity": report,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "export_seconds": time.time() - started,
    }
    card["files"] = file_hashes(out)
    write_card(out, card)
    if parity and not report["fp32"]["passed"]:
        # Renamed so that nothing (serving, the main job) ever picks this export up as a good one.
        (out / CARD_JSON).rename(out / "model_card.parity_failed.json")
        raise ParityError(f"fp32 export differs from PyTorch on {report['fp32']['prompts'] - report['fp32']['identical']} "
                          f"of {report['fp32']['prompts']} prompts; see {out / CARD_MD}")
    return ExportResult(out, card["serve"], card)


class ParityError(RuntimeError):
    """The exported graph does not reproduce the PyTorch model; serving it would serve another model."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="run directory (runs/NAME), model folder, or embedded model name")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--int8", action="store_true", help="also write a dynamic int8 variant and serve it")
    parser.add_argument("--int8-tolerance", type=float, default=0.05,
                        help="largest capability-score drop (0-1) at which int8 is still served")
    parser.add_argument("--no-parity", action="store_true", help="skip the parity check (not recommended)")
    parser.add_argument("--prompts", type=int, default=8, help="number of parity prompts")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="greedy tokens compared per prompt")
    parser.add_argument("--capability-records", default=str(CAPABILITY_SAMPLE),
                        help="capability JSONL for the int8 score change ('' to skip)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        result = export_model(args.run, args.out, int8=args.int8, parity=not args.no_parity, n_prompts=args.prompts,
                              max_new_tokens=args.max_new_tokens, capability_records=args.capability_records or None,
                              int8_tolerance=args.int8_tolerance)
    except (ModelUnavailableError, ParityError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(result.out_dir), "serve": result.serve_variant,
                      "parity": result.card.get("parity")}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
