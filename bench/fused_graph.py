"""Which quantised fused graph keeps the 135M model's predictions: a screen before the acceptance run.

    python bench/fused_graph.py [--builder DIR/onnxruntime_genai/models/builder.py] [--threads 1]
                                [--variants fp32,int4-acc4,int4-acc1,int4-acc1-head32,...] [--texts 48]

The model builder of onnxruntime-genai (training/export_fused.py; `make setup` unpacks it) turns the embedded model into a graph with
GroupQueryAttention and, for int4, MatMulNBits weights. Each variant named here is built once (cached
under ~/.cache/balancedbio/bench/fused/) and compared with PyTorch on the same token ids:

  top-1      teacher forced: the share of positions whose most likely next token is PyTorch's, over
             --texts real texts (MedMCQA questions and options from the committed sample, and the
             parity prompts with PyTorch's own greedy answers), and the mean KL(PyTorch || variant);
  prefix     greedy at batch 1 on the serving engine, 32 tokens: the share of PyTorch's tokens
             reproduced before the first difference (the export's parity figure);
  decode     tokens/s at batch 1 on the serving engine (as served: repetition penalty included),
             median of --repeats, against the Optimum fp32 export measured in the same run.

Teacher-forced agreement separates a variant that drifts by one token early (low prefix, high top-1)
from one that has lost the model (both low). This is a screen: serving a variant needs
`python -m training.quantization`'s paired evidence on benchmark items.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_decode import prepare, timed  # noqa: E402  (the side-by-side bench's export and timing)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# name -> (builder precision, extra options). acc = MatMulNBits' accuracy level: 4 quantises the
# activations to int8 (the builder's CPU default), 1 keeps them fp32.
VARIANTS = {
    "fp32": ("fp32", []),
    "int4-acc4": ("int4", ["int4_is_symmetric=false", "int4_accuracy_level=4"]),
    "int4-acc1": ("int4", ["int4_is_symmetric=false", "int4_accuracy_level=1"]),
    # The LM head in int8, the rest int4 (round to nearest, or k-quant's search for scales).
    "int4-acc1-rtn-last": ("int4", ["int4_is_symmetric=false", "int4_accuracy_level=1", "int4_algo_config=rtn_last"]),
    "int4-acc1-kquant-last": ("int4", ["int4_is_symmetric=false", "int4_accuracy_level=1", "int4_algo_config=k_quant_last"]),
    "int4-acc1-kquant-mixed": ("int4", ["int4_is_symmetric=false", "int4_accuracy_level=1",
                                        "int4_algo_config=k_quant_mixed"]),
    # The GGUF's own Q4_1 blocks (training.export_fused.gguf_int4): fp32 dot products, or int8 activations.
    "int4-gguf": ("gguf", ["accuracy_level=1"]),
    "int4-gguf-acc4": ("gguf", ["accuracy_level=4"]),
    "int4-gguf-float-zp": ("gguf", ["accuracy_level=1", "float_zero_points"]),
    # Builder 0.11.4 writes an invalid graph for this one (the head's int4 weight is referenced, not written).
    "int4-acc1-head32": ("int4", ["int4_is_symmetric=false", "int4_accuracy_level=1",
                                  "int4_nodes_to_exclude=/lm_head/MatMul"]),
}


def build(builder: Path, hf: Path, out: Path, variant: str) -> Path:
    """The variant's graph, built once and cached (training.export_fused does the building)."""
    from training.export_fused import build_fused, embedded_gguf, gguf_int4

    if not (out / "model.onnx").is_file():
        precision, extra = VARIANTS[variant]
        if precision == "gguf":
            fp32 = build(builder, hf, out.parent / "fp32", "fp32")
            gguf_int4(fp32, embedded_gguf(hf), out, accuracy_level=int(extra[0].split("=")[1]),
                      float_zero_points="float_zero_points" in extra)
        else:
            build_fused(hf, out, variant, builder=builder, options=VARIANTS[variant])
    return out


def texts(tok, prompts: list[list[int]], answers: list[list[int]], n: int) -> list[list[int]]:
    """Token ids of real clinical text: MedMCQA questions with their options, and the chat prompts
    followed by PyTorch's greedy answers (what the model itself says, so agreement there is served text)."""
    sample = Path(__file__).resolve().parents[1] / "training/evaluate/samples/medmcqa_dev_sample.jsonl"
    out = []
    for line in sample.read_text().splitlines():
        row = json.loads(line)
        body = f"Question: {row['question']}\nOptions: A. {row['opa']} B. {row['opb']} C. {row['opc']} D. {row['opd']}"
        out.append(tok(body, add_special_tokens=False)["input_ids"][:160])
    return (out + [p + a for p, a in zip(prompts, answers)])[:n]


def teacher_forced(session, ids: list[int]):
    import numpy as np

    inputs = {i.name: i for i in session.get_inputs()}
    feed = {"input_ids": np.array([ids], np.int64), "attention_mask": np.ones((1, len(ids)), np.int64)}
    for name, spec in inputs.items():
        if name.startswith("past_key_values."):
            dtype = np.float16 if "float16" in spec.type else np.float32
            feed[name] = np.zeros((1, int(spec.shape[1]), 0, int(spec.shape[3])), dtype)
    if "position_ids" in inputs:
        feed["position_ids"] = np.arange(len(ids), dtype=np.int64)[None]
    return session.run(["logits"], feed)[0][0].astype(np.float64)


def agreement(reference, candidate) -> tuple[float, float]:
    """(top-1 agreement, mean KL(reference || candidate)) over positions."""
    import numpy as np

    def log_softmax(x):
        x = x - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    p, q = log_softmax(reference), log_softmax(candidate)
    top1 = float((reference.argmax(-1) == candidate.argmax(-1)).mean())
    return top1, float((np.exp(p) * (p - q)).sum(-1).mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--builder", help="builder.py of an unpacked onnxruntime-genai wheel (default: the venv's)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--texts", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")

    import numpy as np
    import onnxruntime as ort
    import torch
    from rich.progress import track
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from serving.engine import OnnxEngine, SamplingParams
    from training.export import PARITY_PROMPTS, _agreement
    from training.models import cache_dir, embedded_model_dir

    torch.set_num_threads(args.threads)
    hf = embedded_model_dir()
    tok = AutoTokenizer.from_pretrained(hf)
    model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32).eval()
    prompts = [list(tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True))
               for p in PARITY_PROMPTS]
    with torch.inference_mode():  # greedy, so the first 32 of these 48 tokens are the 32-token reference
        answers = [model.generate(torch.tensor([p]), max_new_tokens=48, do_sample=False)[0, len(p):].tolist()
                   for p in prompts]
        corpus = texts(tok, prompts, answers, args.texts)
        reference = [model(torch.tensor([ids])).logits[0].double().numpy() for ids in corpus]
    greedy_ref = [a[:32] for a in answers]
    del model

    def decode_speed(engine) -> float:
        """(N - 1) tokens over time(N) - time(1), as engine_decode.py measures decode."""
        engine.eos_ids = set()  # fixed length
        engine.greedy_tokens(prompts[0], 2)  # warm-up
        full = timed(lambda: engine.greedy_tokens(prompts[0], 33), args.repeats)
        return 32 / max(full - timed(lambda: engine.greedy_tokens(prompts[0], 1), args.repeats), 1e-9)

    def screen(variant: str, folder: Path) -> dict:
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        scores = [agreement(r, teacher_forced(session, ids)) for r, ids in zip(reference, corpus)]
        del session
        engine = OnnxEngine(folder, threads=args.threads, prefer_gpu=False)
        # Plain greedy, as PyTorch's reference: no repetition control here.
        plain = SamplingParams(repetition_penalty=1.0, no_repeat_ngram_size=0)
        greedy = [engine.greedy_tokens(p, 32, plain)[:32] for p in prompts]
        result = {"top1": float(np.mean([s[0] for s in scores])), "kl": float(np.mean([s[1] for s in scores])),
                  "prefix": _agreement(greedy_ref, greedy)["mean_prefix_agreement"],
                  "size_mb": round(sum(p.stat().st_size for p in folder.glob("model.onnx*")) / 1e6, 1),
                  "decode_tokens_per_s": decode_speed(engine)}
        engine.close()
        return result

    _, export = prepare("smollm2-135m", cache_dir() / "bench")
    served = OnnxEngine(export / "fp32", threads=args.threads, prefer_gpu=False)
    results = {"served fp32 (Optimum)": {"decode_tokens_per_s": decode_speed(served)}}
    served.close()
    from training.export_fused import builder_script

    builder, root = Path(args.builder) if args.builder else builder_script(), cache_dir() / "bench" / "fused"
    for variant in track(args.variants.split(","), description="fused variants"):
        try:
            results[variant] = screen(variant, build(builder, hf, root / variant, variant))
        except Exception as e:  # one broken variant (a builder option that writes an invalid graph) is reported
            results[variant] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}",
                                "decode_tokens_per_s": float("nan")}
    base = results["served fp32 (Optimum)"]["decode_tokens_per_s"]
    print(f"\n{args.threads} thread(s); {len(corpus)} texts, {sum(len(c) for c in corpus)} positions teacher forced; "
          f"greedy on {len(prompts)} prompts x 32 tokens\n")
    print("| graph | size (MB) | top-1 vs PyTorch | mean KL | greedy prefix | decode tok/s | vs served |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        if "error" in r:
            print(f"| {name} | failed: {r['error']} | | | | | |")
            continue
        cells = [f"{r['size_mb']:.0f}" if "size_mb" in r else "–", f"{r['top1']:.3f}" if "top1" in r else "–",
                 f"{r['kl']:.4f}" if "kl" in r else "–", f"{r['prefix']:.2f}" if "prefix" in r else "–",
                 f"{r['decode_tokens_per_s']:.1f}", f"{r['decode_tokens_per_s'] / base:.2f}x"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
