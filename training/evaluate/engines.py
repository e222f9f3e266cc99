"""Which engine runs an evaluation: generation on the ONNX Runtime engine whenever an export exists,
log-likelihood on PyTorch.

Generation is the slow part of IFEval and the capability set (hundreds of prompts, up to 512 new tokens
each); the serving engine decodes with a KV cache in ONNX Runtime, the same graph the product serves, so
a score measured here is the served model's. Log-likelihood stays on `TorchLM`, which batches and
shares forward passes (the engine scores one request at a time). `serving.engine` imports nothing of
the project, so calling it from here adds no cycle; it is imported only when an export is used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from training.evaluate.lm import LanguageModel, load_language_model

# onnx-all: generation and log-likelihood both on the export, which is how a quantised variant must be
# judged (its weights are not PyTorch's); one request at a time, so slower than the split.
ENGINES = ("auto", "torch", "onnx", "onnx-all")


class SplitLM:
    """Generation (and its chat format) from one engine, log-likelihood from a PyTorch model loaded on first use."""

    def __init__(self, generator, scorer_ref: str, max_batch_tokens: int = 4096, progress: bool = True):
        self.generator, self.scorer_ref, self.max_batch_tokens = generator, scorer_ref, max_batch_tokens
        self.progress = progress
        self.name = scorer_ref
        self.engine = f"onnx ({generator.directory}, {generator.provider})"
        self._scorer: LanguageModel | None = None

    def chat_prompt(self, messages: Sequence[dict]) -> str:
        return self.generator.chat_prompt(messages)

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        return self.generator.generate(prompts, max_new_tokens)

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[float]:
        if self._scorer is None:
            self._scorer = load_language_model(self.scorer_ref, max_batch_tokens=self.max_batch_tokens,
                                               progress=self.progress)
        return self._scorer.loglikelihood(requests)


def find_export(model: str) -> Path | None:
    """An ONNX export of `model`: the cached export of the embedded base model, a run's `onnx/` folder,
    or the folder itself when it is an export (holds model_card.json naming a served variant)."""
    candidates = []
    path = Path(model)
    if path.is_dir():
        candidates += [path, path / "onnx"]
    else:
        from training.models import cache_dir

        candidates.append(cache_dir() / "onnx" / Path(model).name)
    for candidate in candidates:
        card = candidate / "model_card.json"
        if card.is_file() and json.loads(card.read_text()).get("serve"):
            return candidate
    return None


def load_for_eval(model: str, engine: str = "auto", onnx_dir: str | None = None, threads: int | None = None,
                  max_batch_tokens: int = 4096, progress: bool = True) -> LanguageModel:
    """The evaluator's model: `auto` generates on the ONNX engine when an export of `model` exists
    (or `onnx_dir` names one), else on PyTorch; `torch` and `onnx` force one."""
    if engine not in ENGINES:
        raise ValueError(f"--engine takes one of {ENGINES}, got {engine!r}")
    export = Path(onnx_dir) if onnx_dir else (find_export(model) if engine != "torch" else None)
    if engine in ("onnx", "onnx-all") and export is None:
        raise ValueError(f"--engine {engine}: no ONNX export of {model!r} found; export it with "
                         "`python -m training.export --run RUN_OR_MODEL --out DIR` and pass --onnx_dir DIR")
    if engine == "torch" or export is None:
        lm = load_language_model(model, max_batch_tokens=max_batch_tokens, progress=progress)
        lm.engine = "torch"
        return lm
    from serving.engine import OnnxEngine

    generator = OnnxEngine(export, threads=threads, prefer_gpu=True)
    if engine == "onnx-all":
        generator.engine = f"onnx-all ({generator.directory}, {generator.provider})"
        return generator
    return SplitLM(generator, model, max_batch_tokens=max_batch_tokens, progress=progress)
