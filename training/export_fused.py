"""Fused-attention variants of an export, made by ONNX Runtime GenAI's model builder.

Optimum's export (training/export.py) computes attention from a dozen primitive operators per layer;
the model builder of onnxruntime-genai writes one GroupQueryAttention (rotary embedding and KV-cache
append included) and one fused QKV MatMul per layer, which decodes faster on a CPU
(docs/serving.md, "A fused graph"). The builder is used as a tool, from its wheel unpacked beside the
project's packages (`make setup` does `pip install --no-deps --target .venv/genai-builder
onnxruntime-genai==0.11.4`): its own runtime would need the CPU onnxruntime, and the project pins
onnxruntime-gpu, whose CPU provider runs the graph. Its 0.11 line still runs on transformers 4.57.

A fused variant goes into the export folder beside fp32 (`OUT/fused-fp32/`, `OUT/fused-int4/`) with
the model's own config, generation config and tokenizer (the builder's tokenizer files decode
byte-level tokens raw). GroupQueryAttention reads each row's length from its attention mask and
expects the rows right-padded, so the graph carries `balancedbio.cache_layout = right` in its
metadata and the serving engine batches it that way (serving/batching.py). Parity: greedy tokens on
the serving engine, repetition control off, must equal PyTorch's for fused-fp32, alone and batched;
a quantised fused variant is reported and, like the others, served only after `python -m
training.quantization` accepts it.

CLI, on an export made by `python -m training.export --run RUN_OR_MODEL --out DIR`:

    python -m training.export_fused DIR --run RUN_OR_MODEL [--variants fused-fp32,fused-int4]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

BUILDER_PIN = "onnxruntime-genai==0.11.4"
BUILDER_ENV = "BALANCEDBIO_GENAI_BUILDER"
COMPANIONS = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json", "chat_template.jinja")

# variant -> (builder precision, its extra options). int4: asymmetric blocks of 32 (the GGUF's Q4_1
# layout the embedded weights come from), fp32 activations in the dot products (accuracy level 1; the
# builder's CPU default, level 4, quantises them to int8 too), the LM head kept in fp32 (49k x 576: the
# layer whose rounding moves every token's logit). bench/fused_graph.py screens the alternatives.
FUSED_VARIANTS: dict[str, tuple[str, list[str]]] = {
    "fused-fp32": ("fp32", []),
    "fused-int4": ("int4", ["int4_is_symmetric=false", "int4_accuracy_level=1", "int4_nodes_to_exclude=/lm_head/MatMul"]),
}
FUSED_FILE = "model.onnx"


class FusedExportError(RuntimeError):
    """The builder is missing or failed, or its graph is not a fused one."""


def builder_script() -> Path:
    """builder.py of the unpacked onnxruntime-genai wheel: $BALANCEDBIO_GENAI_BUILDER, else the venv's."""
    configured = os.environ.get(BUILDER_ENV)
    # A configured path is the only one looked at: a typo must not fall back to another builder silently.
    candidates = [Path(configured)] if configured else [
        Path(sys.prefix) / "genai-builder" / "onnxruntime_genai" / "models" / "builder.py"]
    for path in candidates:
        if path.is_dir():
            path = path / "onnxruntime_genai" / "models" / "builder.py"
        if path.is_file():
            return path
    raise FusedExportError(f"ONNX Runtime GenAI's model builder is not installed (looked at {', '.join(map(str, candidates))}); "
                           f"run `make setup`, or `pip install --no-deps --target {Path(sys.prefix) / 'genai-builder'} "
                           f"{BUILDER_PIN}`, or point {BUILDER_ENV} at builder.py")


def build_fused(model_dir: Path, out: Path, variant: str, builder: Path | None = None,
                options: tuple[str, list[str]] | None = None) -> Path:
    """Write fused `variant` of the model folder `model_dir` into `out` (replaced); returns `out`.
    `options` (builder precision, extra options) builds a variant not in FUSED_VARIANTS (the bench's screen)."""
    if options is None and variant not in FUSED_VARIANTS:
        raise FusedExportError(f"unknown fused variant {variant!r}; choose from {', '.join(FUSED_VARIANTS)}")
    import onnx

    from serving.batching import LAYOUT_METADATA_KEY

    precision, extra = options or FUSED_VARIANTS[variant]
    builder = builder or builder_script()
    if out.exists():
        shutil.rmtree(out)
    with tempfile.TemporaryDirectory(prefix="genai-builder-") as cache:
        cmd = [sys.executable, str(builder), "-i", str(model_dir), "-o", str(out), "-p", precision, "-e", "cpu",
               "-c", cache] + (["--extra_options", *extra] if extra else [])
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise FusedExportError(f"the model builder failed on {variant} ({' '.join(cmd)}):\n{done.stdout[-3000:]}")
    graph_file = out / FUSED_FILE
    # The graph without its weights (they sit in model.onnx.data for fp32): small to read and rewrite.
    model = onnx.load(str(graph_file), load_external_data=False)
    if not any(node.op_type == "GroupQueryAttention" for node in model.graph.node):
        raise FusedExportError(f"{graph_file}: the builder wrote no GroupQueryAttention; this model's architecture "
                               "is not one it fuses")
    kept = [p for p in model.metadata_props if p.key != LAYOUT_METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=LAYOUT_METADATA_KEY, value="right")
    onnx.save(model, str(graph_file))
    for name in COMPANIONS:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, out / name)
    return out


def _plain_greedy(engine, prompts: list[list[int]], max_new_tokens: int, together: bool) -> list[list[int]]:
    """Greedy ids on the serving engine with repetition control off (PyTorch's reference has none)."""
    from serving.engine import SamplingParams, _Job

    plain = SamplingParams(max_new_tokens=max_new_tokens, repetition_penalty=1.0, no_repeat_ngram_size=0)
    jobs = [_Job(list(ids), plain, lambda kind, value: None, processors=engine.processors_for(plain)) for ids in prompts]
    for batch in ([jobs] if together else [[job] for job in jobs]):
        engine._run_batch(batch)
    return [job.tokens + ([job.eos] if job.eos is not None else []) for job in jobs]


def fused_parity(model_dir: Path, variants: dict[str, Path], prompts: Sequence[str], max_new_tokens: int = 32) -> dict:
    """Each fused variant's greedy tokens against PyTorch's, decoded alone and all prompts batched."""
    from serving.engine import OnnxEngine
    from training.export import _agreement, _greedy_tokens
    from training.models import load_model

    torch_model, tokenizer = load_model(str(model_dir))
    reference = _greedy_tokens(torch_model, tokenizer, list(prompts), max_new_tokens)
    del torch_model
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    report = {}
    for variant, directory in variants.items():
        engine = OnnxEngine(directory, prefer_gpu=False)
        alone = _agreement(reference, _plain_greedy(engine, ids, max_new_tokens, together=False))
        batched = _agreement(reference, _plain_greedy(engine, ids, max_new_tokens, together=True))
        report[variant] = {**alone, "batched": batched,
                           "passed": alone["identical"] == len(prompts) and batched["identical"] == len(prompts)}
        engine.close()
    return report


def add_fused_variants(out: Path, model_dir: Path, variants: Sequence[str], n_prompts: int = 8,
                       max_new_tokens: int = 32) -> dict:
    """Build `variants` into the export folder `out` (made by training.export from `model_dir`), check
    their parity and record them in its card. fused-fp32 is served when its parity holds (the same
    tokens, faster); a quantised fused variant waits for training.quantization."""
    from training.export import CARD_JSON, PARITY_PROMPTS, _chat_prompts, file_hashes, write_card
    from training.layout import read_json
    from transformers import AutoTokenizer

    out, model_dir = Path(out), Path(model_dir)
    card = read_json(out / CARD_JSON)
    if card is None:
        raise FusedExportError(f"{out} holds no model_card.json; export the model first (python -m training.export)")
    started, built = time.time(), {}
    for variant in variants:
        built[variant] = build_fused(model_dir, out / variant, variant)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    prompts = _chat_prompts(tokenizer, (PARITY_PROMPTS * (n_prompts // len(PARITY_PROMPTS) + 1))[:n_prompts])
    report = fused_parity(model_dir, built, prompts, max_new_tokens)
    card.setdefault("parity", {}).update(report)
    card["variants"].update({v: f"{v}/{FUSED_FILE}" for v in built})
    card["fused"] = {"builder": BUILDER_PIN, "options": {v: FUSED_VARIANTS[v] for v in built},
                     "seconds": round(time.time() - started, 1)}
    if report.get("fused-fp32", {}).get("passed") and card.get("serve") == "fp32":
        card["serve"] = "fused-fp32"
        card["serve_reason"] = ("fused-fp32 reproduces PyTorch's greedy tokens alone and batched, and decodes faster "
                                "than fp32 (GroupQueryAttention)")
        card["model_version"] = card["model_version"].rsplit("-fp32", 1)[0] + "-fused-fp32"
    card["files"] = file_hashes(out)
    write_card(out, card)
    return report


def main(argv: list[str] | None = None) -> int:
    from training.export import find_source
    from training.models import ModelUnavailableError

    parser = argparse.ArgumentParser(prog="python -m training.export_fused", description=__doc__.split("\n\n")[0])
    parser.add_argument("export", help="an export folder made by python -m training.export")
    parser.add_argument("--run", required=True, help="the run directory, model folder or embedded model it was made from")
    parser.add_argument("--variants", default="fused-fp32", help=f"comma-separated, of {', '.join(FUSED_VARIANTS)}")
    parser.add_argument("--prompts", type=int, default=8, help="number of parity prompts")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="greedy tokens compared per prompt")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        report = add_fused_variants(Path(args.export), find_source(args.run).model_dir, args.variants.split(","),
                                    n_prompts=args.prompts, max_new_tokens=args.max_new_tokens)
    except (FusedExportError, ModelUnavailableError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
