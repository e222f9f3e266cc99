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
# builder's CPU default, level 4, quantises them to int8 too), the LM head in int8 (`rtn_last`; 49k x
# 576, the layer whose rounding moves every token's logit; keeping it fp32 with `int4_nodes_to_exclude`
# makes builder 0.11.4 write an invalid graph). bench/fused_graph.py screens the alternatives.
FUSED_VARIANTS: dict[str, tuple[str, list[str]]] = {
    "fused-fp32": ("fp32", []),
    "fused-int4": ("int4", ["int4_is_symmetric=false", "int4_accuracy_level=1", "int4_algo_config=rtn_last"]),
}
# fused-int4-gguf: the fused fp32 graph with every projection replaced by MatMulNBits holding the
# GGUF's own Q4_1 blocks (the embedded model's weights are those blocks dequantised), so it computes
# the same weights as PyTorch, not a rounding of them; the LM head (Q8_0 in the GGUF) stays fp32.
GGUF_VARIANT = "fused-int4-gguf"
ALL_VARIANTS = (*FUSED_VARIANTS, GGUF_VARIANT)
FUSED_FILE = "model.onnx"
Q4_1_BLOCK, Q4_1_BYTES = 32, 20  # weights per block; bytes per block: float16 d, float16 m, 16 of nibbles
LAST_AXIS = "q4_1.last_axis"
# The builder's fused projections -> the GGUF tensors they hold, concatenated along the output rows.
GGUF_PROJECTIONS = {"attn.qkv_proj": ("attn_q", "attn_k", "attn_v"), "attn.o_proj": ("attn_output",),
                    "mlp.gate_proj": ("ffn_gate",), "mlp.up_proj": ("ffn_up",), "mlp.down_proj": ("ffn_down",)}


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
    # Built beside and moved into place at the end: a failed build leaves a served variant as it was.
    final, out = out, out.with_name(out.name + ".building")
    if out.exists():
        shutil.rmtree(out)
    with tempfile.TemporaryDirectory(prefix="genai-builder-") as cache:
        cmd = [sys.executable, str(builder), "-i", str(model_dir), "-o", str(out), "-p", precision, "-e", "cpu",
               "-c", cache] + (["--extra_options", *extra] if extra else [])
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        shutil.rmtree(out, ignore_errors=True)
        raise FusedExportError(f"the model builder failed on {variant} ({' '.join(cmd)}):\n{done.stdout[-3000:]}")
    graph_file = out / FUSED_FILE
    # The graph without its weights (they sit in model.onnx.data for fp32): small to read and rewrite.
    model = onnx.load(str(graph_file), load_external_data=False)
    if not any(node.op_type == "GroupQueryAttention" for node in model.graph.node):
        raise FusedExportError(f"{graph_file}: the builder wrote no GroupQueryAttention; this model's architecture "
                               "is not one it fuses")
    props = {p.key: p.value for p in model.metadata_props}
    onnx.helper.set_model_props(model, {**props, LAYOUT_METADATA_KEY: "right"})
    onnx.save(model, str(graph_file))
    for name in COMPANIONS:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, out / name)
    if final.exists():
        shutil.rmtree(final)
    out.rename(final)
    return final


def _q4_1_blocks(raw) -> tuple:
    """(q [rows, blocks, 32] uint8, d [rows, blocks], m [rows, blocks]) of a Q4_1 tensor's raw bytes:
    weight = d * q + m; in a block, byte j holds element j (low nibble) and element j + 16 (high)."""
    import numpy as np

    blocks = np.asarray(raw, np.uint8).reshape(raw.shape[0], -1, Q4_1_BYTES)
    d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    m = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
    qs = blocks[..., 4:]
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1), d, m


def _matched_rows(gguf_rows, model_rows, what: str):
    """Which GGUF row each of the model's weight rows is, matched bitwise (the GGUF stores the q and k
    projections' rows permuted for its rotary layout); refused when a row is not the GGUF's."""
    import numpy as np

    index = {row.tobytes(): i for i, row in enumerate(gguf_rows)}
    order = np.array([index.get(row.tobytes(), -1) for row in model_rows])
    if (order < 0).any():
        raise FusedExportError(f"{what}: {int((order < 0).sum())} of {len(order)} weight rows are not the GGUF's "
                               f"blocks; {GGUF_VARIANT} is exact only for the embedded base model (a trained model's "
                               "weights are off the GGUF's grid): use fused-int4 and python -m training.quantization")
    return order


def _projection_blocks(tensors: dict, layer: str, projection: str, model_rows, what: str) -> tuple:
    """(q, d, m) of one builder projection from the GGUF's tensors, concatenated and put in the model's
    row order; a constant block (d = 0, every weight m) becomes q 0 and scale 1, so zero point -m stays finite."""
    import numpy as np

    parts = [_q4_1_blocks(tensors[f"blk.{layer}.{g}.weight"].data) for g in GGUF_PROJECTIONS[projection]]
    q, d, m = (np.concatenate([part[k] for part in parts]) for k in range(3))
    order = _matched_rows((q * d[..., None] + m[..., None]).reshape(len(q), -1), model_rows, what)
    q, d, m = q[order], d[order], m[order]
    q[d == 0] = 0
    return q, np.where(d == 0, 1.0, d).astype(np.float32), m


def gguf_int4(fused_fp32: Path, gguf: Path, out: Path, accuracy_level: int = 1, float_zero_points: bool = False) -> Path:
    """`fused_fp32` (build_fused's fused-fp32 of the embedded model) with each projection as MatMulNBits
    over the GGUF's Q4_1 blocks (weight = d * q + m per block of 32).

    Default: MatMulNBits with scale d and integer zero point 0 computes x . (d q), ONNX Runtime's fast
    int4 kernel, and each block's minimum comes back as a small fp32 MatMul of x's block sums by m
    (x . m = sum over blocks of m_b * sum of x in block b), added to it: the same weights. With
    `float_zero_points`, MatMulNBits takes zero points -m / d, Q4_1 in one operator, but ONNX
    Runtime 1.2x computes float zero points on a slow path (bench/fused_graph.py: 0.2x fp32).
    accuracy_level 1 (the default) keeps the activations fp32, so the graph is exact; 4 lets the int4
    kernel quantise them to int8 for its dot products, as llama.cpp does with Q8_1 (2.26x against 1.38x
    the served fp32, top-1 agreement 0.924)."""
    import re

    import numpy as np
    import onnx
    from gguf import GGUFReader
    from onnx import helper, numpy_helper

    model = onnx.load(str(fused_fp32 / FUSED_FILE))
    tensors = {t.name: t for t in GGUFReader(str(gguf)).tensors}
    weights = {i.name: i for i in model.graph.initializer}
    pattern = re.compile(r"model\.layers\.(\d+)\.(" + "|".join(re.escape(k) for k in GGUF_PROJECTIONS) + r")\.MatMul\.weight")
    nodes, removed, block_sums = [], set(), {}
    constants = {LAST_AXIS: numpy_helper.from_array(np.array([-1], np.int64), LAST_AXIS)}  # shared by every projection
    for node in model.graph.node:
        found = pattern.fullmatch(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        if not found:
            nodes.append(node)
            continue
        model_rows = numpy_helper.to_array(weights[node.input[1]]).T  # MatMul holds [K, N]; rows are N
        removed.add(node.input[1])
        q, d, m = _projection_blocks(tensors, *found.groups(), model_rows, node.input[1])
        base, (n_out, k_in), x = node.input[1][: -len(".weight")], model_rows.shape, node.input[0]
        zero_points = ((-m / d).astype(np.float32).reshape(-1) if float_zero_points
                       else np.zeros(n_out * ((d.shape[1] + 1) // 2), np.uint8))  # two 4-bit zeros a byte
        new = [numpy_helper.from_array((q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8), f"{base}.q4_1"),
               numpy_helper.from_array(d.reshape(-1), f"{base}.scales"),
               numpy_helper.from_array(zero_points, f"{base}.zero_points")]
        model.graph.initializer.extend(new)
        nbits = dict(domain="com.microsoft", K=k_in, N=n_out, bits=4, block_size=Q4_1_BLOCK, accuracy_level=accuracy_level)
        if float_zero_points:
            nodes.append(helper.make_node("MatMulNBits", [x, *(t.name for t in new)], list(node.output), name=node.name, **nbits))
            continue
        if x not in block_sums:  # x's sum over each block of 32 inputs, once per input (gate and up share one)
            shape, sums = f"q4_1.block_shape.{k_in}", f"{x}/block_sums"
            if shape not in constants:
                constants[shape] = numpy_helper.from_array(np.array([0, 0, k_in // Q4_1_BLOCK, Q4_1_BLOCK], np.int64), shape)
            nodes += [helper.make_node("Reshape", [x, shape], [f"{x}/blocks"], name=f"{node.name}/blocks"),
                      helper.make_node("ReduceSum", [f"{x}/blocks", LAST_AXIS], [sums], name=f"{node.name}/block_sums",
                                       keepdims=0)]
            block_sums[x] = sums
        model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(m.T), f"{base}.block_minima"))
        nodes += [helper.make_node("MatMulNBits", [x, *(t.name for t in new)], [f"{node.name}/scaled"], name=node.name, **nbits),
                  helper.make_node("MatMul", [block_sums[x], f"{base}.block_minima"], [f"{node.name}/minima"],
                                   name=f"{node.name}/minima"),
                  helper.make_node("Add", [f"{node.name}/scaled", f"{node.name}/minima"], list(node.output),
                                   name=f"{node.name}/weights")]
    if not removed:
        raise FusedExportError(f"{fused_fp32}: no projection MatMul named as the builder names them")
    kept = [i for i in model.graph.initializer if i.name not in removed]
    del model.graph.initializer[:]
    model.graph.initializer.extend([*kept, *(constants.values() if block_sums else ())])
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    onnx.save(model, str(out / FUSED_FILE), save_as_external_data=True, location=FUSED_FILE + ".data")
    for name in (*COMPANIONS, "genai_config.json"):
        if (fused_fp32 / name).is_file():
            shutil.copy2(fused_fp32 / name, out / name)
    return out


def embedded_gguf(model_dir: Path) -> Path:
    """The GGUF the embedded model in `model_dir` was converted from."""
    from training.models import EMBEDDED_MODELS, _package_file, embedded_model_dir

    for name, spec in EMBEDDED_MODELS.items():
        if Path(model_dir).resolve() == embedded_model_dir(name).resolve():
            return _package_file(spec.package, spec.gguf_file)
    raise FusedExportError(f"{GGUF_VARIANT} rebuilds int4 from the GGUF an embedded model comes from; {model_dir} is not "
                           "an embedded model (a trained model's weights are off the GGUF's grid): use fused-int4")


def _plain_greedy(engine, prompts: list[list[int]], max_new_tokens: int, together: bool) -> list[list[int]]:
    """Greedy ids on the serving engine with repetition control off (PyTorch's reference has none)."""
    from serving.engine import SamplingParams, _Job

    plain = SamplingParams(max_new_tokens=max_new_tokens, repetition_penalty=1.0, no_repeat_ngram_size=0)
    jobs = [_Job(list(ids), plain, lambda kind, value: None, processors=engine.processors_for(plain)) for ids in prompts]
    for batch in ([jobs] if together else [[job] for job in jobs]):
        engine._run_batch(batch)
    return [job.tokens + ([job.eos] if job.eos is not None else []) for job in jobs]


def fused_parity(model_dir: Path, variants: dict[str, Path], n_prompts: int = 8, max_new_tokens: int = 32) -> dict:
    """Each fused variant's greedy tokens on the export's parity prompts against PyTorch's, decoded
    alone and all prompts batched."""
    from serving.engine import OnnxEngine
    from training.export import PARITY_PROMPTS, _agreement, _chat_prompts, _greedy_tokens
    from training.models import load_model

    torch_model, tokenizer = load_model(str(model_dir))
    prompts = _chat_prompts(tokenizer, (PARITY_PROMPTS * (n_prompts // len(PARITY_PROMPTS) + 1))[:n_prompts])
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
    from training.export import CARD_JSON, file_hashes, write_card
    from training.layout import read_json

    out, model_dir = Path(out), Path(model_dir)
    card = read_json(out / CARD_JSON)
    if card is None:
        raise FusedExportError(f"{out} holds no model_card.json; export the model first (python -m training.export)")
    unknown = [v for v in variants if v not in ALL_VARIANTS]
    if unknown:
        raise FusedExportError(f"unknown fused variants {unknown}; choose from {', '.join(ALL_VARIANTS)}")
    started, built = time.time(), {}
    for variant in variants:
        if variant == GGUF_VARIANT:
            fp32 = built.get("fused-fp32") or build_fused(model_dir, out / "fused-fp32.tmp", "fused-fp32")
            built[variant] = gguf_int4(fp32, embedded_gguf(model_dir), out / variant)
            if fp32.name.endswith(".tmp"):
                shutil.rmtree(fp32)
        else:
            built[variant] = build_fused(model_dir, out / variant, variant)
    report = fused_parity(model_dir, built, n_prompts, max_new_tokens)
    card.setdefault("parity", {}).update(report)
    card["variants"].update({v: f"{v}/{FUSED_FILE}" for v in built})
    card["fused"] = {"builder": BUILDER_PIN, "options": {v: FUSED_VARIANTS.get(v, ("gguf q4_1 blocks", [])) for v in built},
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
    parser.add_argument("--variants", default="fused-fp32", help=f"comma-separated, of {', '.join(ALL_VARIANTS)}")
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
