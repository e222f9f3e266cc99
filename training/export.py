"""ONNX export of a trained run (or any model folder): fp32 with KV cache, optional int8/int4, parity, card.

The served artefact is a folder:

    OUT/fp32/            Optimum `text-generation-with-past` export (model.onnx + tokenizer + config)
    OUT/int8/            the same after ORTQuantizer dynamic int8 (model_quantized.onnx), with --int8
    OUT/int4/            the fp32 graph with int4 weight-only MatMulNBits (model_int4.onnx), with --int4
    OUT/model_card.json  source run, evaluation scores, parity, file hashes, which variant to serve
    OUT/MODEL_CARD.md    the same for people

Parity is measured with Optimum's `ORTModelForCausalLM` (the export itself, not our serving engine,
whose own parity with PyTorch is a test of its own): fp32 must reproduce PyTorch's greedy tokens
exactly; a quantised variant cannot, so its token agreement and its change in capability scores are
reported, and it is served only if no capability score drops by more than the tolerance.

CLI: python -m training.export --run RUN_DIR_OR_MODEL [--int8] [--int4] --out DIR
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
from typing import Sequence

from training.export_graph import add_logits_to_keep
from training.layout import RunLayout, read_json
from training.models import EMBEDDED_MODELS, ModelUnavailableError, resolve_model

CARD_JSON, CARD_MD = "model_card.json", "MODEL_CARD.md"
# The export's layout version, in its card: 2 adds `logits_to_keep` (training/export_graph.py). A cache
# holding an older export (the embedded base, a shipped adapter) is made again once.
EXPORT_FORMAT = 2
FP32_FILE, INT8_FILE, INT4_FILE = "model.onnx", "model_quantized.onnx", "model_int4.onnx"
VARIANT_FILES = {"fp32": FP32_FILE, "int8": INT8_FILE, "int4": INT4_FILE}
# Quantised variants, fastest first: the first requested one within tolerance is served.
QUANTIZED = ("int4", "int8")
CAPABILITIES = ("knowledge", "reasoning", "instruction", "integration")
INT4_ACCURACY_LEVEL = 4  # MatMulNBits: int8 activations in the dot products (see _quantize_int4)
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
    serve_variant: str  # "fp32", "int8" or "int4": what the serving engine loads from out_dir
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
    if (RunLayout(path).final / "config.json").is_file():
        return ModelSource(RunLayout(path).final, run_or_model, path, aligned=True)
    if (path / "config.json").is_file():
        run_dir = path.parent if RunLayout(path.parent).is_run() else None
        return ModelSource(path, run_or_model, run_dir, aligned=run_dir is not None)
    raise ModelUnavailableError(
        f"{path} has neither final/config.json (a training run) nor config.json (a model folder); "
        "pass `runs/NAME` after training, or a folder written by save_pretrained"
    )


def newest_run(runs_dir: str | Path = "runs") -> Path | None:
    """The newest `runs/*/final/` holding a model, or None: the run the main job serves."""
    runs = [RunLayout(p) for p in Path(runs_dir).glob("*") if p.is_dir()]
    finals = [r for r in runs if (r.final / "config.json").is_file()]
    if not finals:
        return None
    return max(finals, key=lambda r: (r.final / "config.json").stat().st_mtime).path


# -- export steps ---------------------------------------------------------------------------------
def _onnx_export(model_dir: Path, out: Path) -> None:
    from optimum.exporters.onnx import main_export

    # Optimum's own validation re-runs the model at several shapes (a minute on two cores); our
    # greedy parity check below is the stricter test of what matters, so it replaces it.
    main_export(str(model_dir), out, task="text-generation-with-past", do_validation=False,
                local_files_only=True)
    add_logits_to_keep(out / FP32_FILE)  # generation computes the head for the last position only
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
    _copy_companions(fp32_dir, out)


def _copy_companions(fp32_dir: Path, out: Path) -> None:
    """Tokenizer and configs beside a quantised graph; never the fp32 graph or its external weights
    (model.onnx_data: 2 GB for a 0.5B model, which the self-contained quantised graph does not use)."""
    for item in fp32_dir.iterdir():
        if item.is_file() and item.suffix not in (".onnx", ".onnx_data") and not (out / item.name).exists():
            shutil.copy2(item, out / item.name)


def _quantize_int4(fp32_dir: Path, out: Path, block_size: int = 32,
                   accuracy_level: int = INT4_ACCURACY_LEVEL, symmetric: bool = True) -> None:
    """Int4 weight-only (MatMulNBits): the lever against llama.cpp's 4-bit GGUF on a CPU.

    Only MatMul weights are quantised (one fp scale per `block_size` inputs; symmetric, or with a
    zero point per block when `symmetric` is False, the layout of the GGUF's Q4_1 the embedded weights
    come from); the graph's activations stay float. accuracy_level 4 lets the CPU kernel quantise
    activations to int8 inside the dot products, as llama.cpp's Q4 kernels do (q8 activations);
    0 would keep them fp32 there too."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(str(fp32_dir / FP32_FILE))  # external data (a >2 GB graph) is loaded with it
    quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=block_size, is_symmetric=symmetric,
                                     accuracy_level=accuracy_level or None)
    quantizer.process()
    out.mkdir(parents=True, exist_ok=True)
    # The int4 graph of these models is far below protobuf's 2 GB limit: one self-contained file.
    quantizer.model.save_model_to_file(str(out / INT4_FILE), use_external_data_format=False)
    _copy_companions(fp32_dir, out)


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
    import onnxruntime as ort
    from optimum.onnxruntime import ORTModelForCausalLM

    options = ort.SessionOptions()
    # ORT warns that `logits_to_keep` is an overridable initializer, which is what export_graph intends.
    options.log_severity_level = 3
    return ORTModelForCausalLM.from_pretrained(directory, file_name=file_name, use_cache=True,
                                               provider="CPUExecutionProvider", session_options=options)


def check_parity(model_dir: Path, fp32_dir: Path, quantized: dict[str, Path] | None = None, n_prompts: int = 8,
                 max_new_tokens: int = 32, capability_records: Path | None = CAPABILITY_SAMPLE,
                 capability_tokens: int = 96) -> dict:
    """fp32 against PyTorch (must be identical); each `quantized` variant (name -> folder) is reported."""
    from training.models import load_model

    torch_model, tokenizer = load_model(str(model_dir))
    prompts = _chat_prompts(tokenizer, (PARITY_PROMPTS * (n_prompts // len(PARITY_PROMPTS) + 1))[:n_prompts])
    reference = _greedy_tokens(torch_model, tokenizer, prompts, max_new_tokens)
    del torch_model
    fp32 = _load_ort(fp32_dir, FP32_FILE)
    report: dict = {"max_new_tokens": max_new_tokens,
                    "fp32": _agreement(reference, _greedy_tokens(fp32, tokenizer, prompts, max_new_tokens))}
    report["fp32"]["passed"] = report["fp32"]["identical"] == len(prompts)
    if not quantized:
        return report
    models = {"fp32": fp32}
    for variant, directory in quantized.items():
        models[variant] = _load_ort(directory, VARIANT_FILES[variant])
        report[variant] = _agreement(reference, _greedy_tokens(models[variant], tokenizer, prompts, max_new_tokens))
    if capability_records and Path(capability_records).is_file():
        report["capabilities"] = _capability_delta(models, tokenizer, Path(capability_records), capability_tokens)
    return report


def _capability_delta(models: dict, tokenizer, records_path: Path, max_new_tokens: int) -> dict:
    """The four capability scores of every variant on the same records; `delta[variant]` is it minus fp32."""
    from training.evaluate.capabilities import score_capabilities
    from training.evaluate.lm import TorchLM
    from training.records import load_records

    records = load_records(records_path)
    scores = {}
    for variant, model in models.items():
        # TorchLM only needs generate() and config from the model, which ORTModelForCausalLM provides.
        lm = TorchLM(model, tokenizer, name=f"onnx-{variant}", max_gen_batch=8, progress=False)
        metrics, _ = score_capabilities(lm, records, max_new_tokens=max_new_tokens)
        scores[variant] = {k: v for k, v in metrics.items() if isinstance(v, float) and not k.endswith("_n")}
    delta = {variant: {k: scores[variant].get(k, 0.0) - v for k, v in scores["fp32"].items()}
             for variant in models if variant != "fp32"}
    return {"records": str(records_path), "n": len(records), "max_new_tokens": max_new_tokens, **scores,
            "delta": delta}


# -- the card -----------------------------------------------------------------------------------------
def _run_metadata(run_dir: Path | None) -> dict:
    """The card's `run` section, from the files the run wrote (training/layout.py names them): its
    command-line settings, what each finished stage reported, and the evaluation scores."""
    if run_dir is None:
        return {}
    run = RunLayout(run_dir)
    if not run.is_run():
        return {}
    config = read_json(run.config) or {}
    # The evaluation's scores get a section of their own below.
    stages = {name: {k: v for k, v in outputs.items() if k != "scores"}
              for name, outputs in run.finished_stages().items()}
    evaluation = read_json(run.done_file("eval")) or {}
    return {"run_dir": str(run.path), "config": config, "stages": stages,
            "eval": {"scores": evaluation.get("scores", {}), "report": evaluation.get("report")},
            "summary": read_json(run.summary) or {}}


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
        for variant in [*VARIANT_FILES, *sorted(k for k in parity if k.startswith("fused-"))]:
            if variant in parity:
                p = parity[variant]
                lines.append(f"| {variant} | {p['prompts']} | {p['identical']} | {p['mean_prefix_agreement']:.3f} |")
        caps = parity.get("capabilities")
        if caps:
            quant = list(caps["delta"])
            lines += ["", f"## Capability scores ({caps['n']} records of `{Path(caps['records']).name}`, "
                      f"{caps['max_new_tokens']} new tokens)", "",
                      "| score | fp32 | " + " | ".join(f"{v} | {v} change" for v in quant) + " |",
                      "|---|---|" + "---|---|" * len(quant)]
            for key, value in caps["fp32"].items():
                lines.append(f"| {key} | {value:.3f} | " + " | ".join(
                    f"{caps[v].get(key, 0.0):.3f} | {caps['delta'][v][key]:+.3f}" for v in quant) + " |")
    for variant, verdict in (card.get("acceptance") or {}).items():  # training.quantization's paired evidence
        lines += ["", *acceptance_markdown(variant, verdict)]
    if card.get("run"):
        lines += ["", "## Training run", "", "```json", json.dumps(card["run"], indent=2, default=str)[:3000], "```"]
    lines += ["", "## Files (sha256)", ""] + [f"- `{k}` {v}" for k, v in card["files"].items()]
    (out / CARD_MD).write_text("\n".join(lines) + "\n")


def acceptance_markdown(variant: str, verdict: dict) -> list[str]:
    """One variant's paired evidence against fp32 (`training.quantization`'s verdict, as the card keeps it)."""
    lines = [f"## {variant} against fp32: {'accepted' if verdict['accepted'] else 'not accepted'} "
             f"(tolerance {verdict['tolerance']})", "", verdict["reason"], "",
             "| score | n | fp32 | variant | diff [95%] | p |", "|---|---:|---:|---:|---|---:|"]
    return lines + [f"| {r['benchmark']}/{r['metric']} | {r['n']} | {r['base']:.3f} | {r['aligned']:.3f} | "
                    f"{r['diff']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] | {r['p']:.3g} |" for r in verdict["rows"]]


def is_current(out: Path) -> bool:
    """Whether `out` holds a finished export in this code's format (a cache older than it is made again)."""
    try:
        card = read_json(Path(out) / CARD_JSON)
    except json.JSONDecodeError:  # cut short by a kill: make it again
        return False
    return card is not None and card.get("format", 1) >= EXPORT_FORMAT


def refresh_card_run(out: Path) -> dict | None:
    """Fill the `run` section of the card in export folder `out` again from its run's files: the run
    exports before it evaluates (so the evaluation scores the served graph), and the evaluation's scores
    exist only afterwards. The files and their hashes are unchanged. None when `out` holds no card."""
    out = Path(out)
    card = read_json(out / CARD_JSON)
    if card is None:
        return None
    run_dir = card.get("source", {}).get("run_dir")
    card["run"] = _run_metadata(Path(run_dir) if run_dir else None)
    write_card(out, card)
    return card


def choose_variant(requested: Sequence[str], report: dict, tolerance: float) -> tuple[str, str]:
    """(variant, why): the fastest requested quantised variant (int4, then int8) whose capability
    scores all stay within `tolerance` of fp32; fp32 when none does."""
    candidates = [v for v in QUANTIZED if v in requested]
    if not candidates:
        return "fp32", "no quantised variant requested"
    caps = (report or {}).get("capabilities")
    if not caps:
        return candidates[0], f"{candidates[0]} requested; no capability records to check it against"
    refused = []
    for variant in candidates:
        delta = caps["delta"].get(variant)
        if delta is None:  # requested but never scored: unchecked is not within tolerance
            refused.append(f"{variant} has no capability scores")
            continue
        drops = {k: -delta[k] for k in CAPABILITIES if k in delta}
        worst = max(drops.items(), key=lambda kv: kv[1], default=("none", 0.0))
        if worst[1] > tolerance:
            refused.append(f"{variant} drops {worst[0]} by {worst[1]:.3f} > tolerance {tolerance}")
            continue
        return variant, "; ".join(refused + [f"{variant} within tolerance {tolerance} "
                                             f"(largest drop {worst[1]:.3f}, {worst[0]})"])
    return "fp32", "; ".join(refused) + ": serving fp32"


def export_model(model_dir: str | Path, out_dir: str | Path, int8: bool = False, parity: bool = True,
                 n_prompts: int = 8, max_new_tokens: int = 32,
                 capability_records: str | Path | None = CAPABILITY_SAMPLE, int8_tolerance: float = 0.05,
                 capability_tokens: int = 96, int4: bool = False, int4_block_size: int = 32,
                 int4_symmetric: bool = True) -> ExportResult:
    """Export `model_dir` (a run directory, a model folder or an embedded model name) to `out_dir`.

    Returns an `ExportResult` (usable as a path: `os.fspath(result)` is `out_dir`). Raises
    `ParityError` when the fp32 export does not reproduce PyTorch's greedy tokens. With `int8` and/or
    `int4`, those variants are written and screened on the capability fixture (a variant that drops a
    score by more than `int8_tolerance` there is named); fp32 is served until `python -m
    training.quantization` accepts a variant on paired evidence. The card says why."""
    started = time.time()
    source = find_source(str(model_dir))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fp32_dir = out / "fp32"
    if fp32_dir.exists():
        shutil.rmtree(fp32_dir)
    _onnx_export(source.model_dir, fp32_dir)
    quantized = {}
    for variant, wanted in (("int8", int8), ("int4", int4)):
        if (out / variant).exists():  # a stale variant must not outlive a re-export without it
            shutil.rmtree(out / variant)
        if wanted:
            quantized[variant] = out / variant
    if int8:
        _quantize_int8(fp32_dir, quantized["int8"])
    if int4:
        _quantize_int4(fp32_dir, quantized["int4"], block_size=int4_block_size, symmetric=int4_symmetric)
    report = {}
    if parity:
        report = check_parity(source.model_dir, fp32_dir, quantized, n_prompts=n_prompts, max_new_tokens=max_new_tokens,
                              capability_records=Path(capability_records) if capability_records else None,
                              capability_tokens=capability_tokens)
    # The fixture's eight records screen a variant, they cannot accept one (one flipped record moves a
    # score by 0.5): a quantised variant is served only once training.quantization accepts it.
    serve, why = choose_variant(list(quantized), report, int8_tolerance)
    if serve != "fp32":
        serve, why = "fp32", (f"fixture screen: {why}; a quantised variant is served only after "
                              "`python -m training.quantization` accepts it on paired evidence: serving fp32")
    version_name = source.run_dir.name if source.run_dir else source.model_dir.name
    card = {
        "model_version": f"{version_name}-{serve}",
        "format": EXPORT_FORMAT,
        "aligned": source.aligned,
        "serve": serve,
        "serve_reason": why,
        "variants": {v: f"{v}/{VARIANT_FILES[v]}" for v in ("fp32", *quantized)},
        **({"quantization": {"int4": {"op": "MatMulNBits", "bits": 4, "block_size": int4_block_size,
                                       "symmetric": int4_symmetric, "accuracy_level": INT4_ACCURACY_LEVEL}}} if int4 else {}),
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
    parser.add_argument("--int8", action="store_true", help="also write a dynamic int8 variant (served if within tolerance)")
    parser.add_argument("--int4", action="store_true",
                        help="also write an int4 weight-only (MatMulNBits) variant; served before int8 if within tolerance")
    parser.add_argument("--int4-block-size", type=int, default=32, choices=[16, 32, 64, 128],
                        help="weights per int4 scale")
    parser.add_argument("--int4-asymmetric", action="store_true",
                        help="int4 with a zero point per block (as the GGUF's Q4_1) instead of symmetric")
    parser.add_argument("--tolerance", "--int8-tolerance", dest="tolerance", type=float, default=0.05,
                        help="largest capability-score drop (0-1) on the fixture screen; serving a quantised variant "
                             "needs `python -m training.quantization`")
    parser.add_argument("--no-parity", action="store_true", help="skip the parity check (not recommended)")
    parser.add_argument("--prompts", type=int, default=8, help="number of parity prompts")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="greedy tokens compared per prompt")
    parser.add_argument("--capability-records", default=str(CAPABILITY_SAMPLE),
                        help="capability JSONL for the quantised variants' score change ('' to skip)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        result = export_model(args.run, args.out, int8=args.int8, parity=not args.no_parity, n_prompts=args.prompts,
                              max_new_tokens=args.max_new_tokens, capability_records=args.capability_records or None,
                              int8_tolerance=args.tolerance, int4=args.int4, int4_block_size=args.int4_block_size,
                              int4_symmetric=not args.int4_asymmetric)
    except (ModelUnavailableError, ParityError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(result.out_dir), "serve": result.serve_variant,
                      "parity": result.card.get("parity")}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
