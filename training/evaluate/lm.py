"""The one model interface the evaluator talks to.

Every benchmark is reduced to two requests, as in lm-evaluation-harness: the log-likelihood of a
continuation given a context, and greedy generation from a prompt. A PyTorch model implements
them here; the ONNX Runtime engine implements the same protocol later, so a model and its export
are scored by the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from tqdm.auto import tqdm

from training.evaluate.decoding import DecodingConfig, eos_ids, explicit_from_env


class LanguageModel(Protocol):
    name: str

    def chat_prompt(self, messages: Sequence[dict]) -> str:
        """The text the model sees for a chat, ending where the assistant's answer starts."""

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[float]:
        """Sum of log-probabilities of each continuation's tokens given its context."""

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        """Greedy completions of already-formatted prompts, without the prompt."""


@dataclass(frozen=True)
class _Scored:
    """One distinct forward pass: the tokens fed in and, per request that reads it, the
    continuation tokens whose log-probabilities are summed from the last logits."""

    inputs: tuple[int, ...]
    readers: tuple[tuple[int, tuple[int, ...]], ...]  # (request index, continuation tokens)


class TorchLM:
    """A Hugging Face causal LM behind the `LanguageModel` protocol.

    Batches are filled up to `max_batch_tokens` padded tokens, longest first, so long PubMedQA
    abstracts and short MMLU questions both use the cores well. Requests whose model input is the
    same (all single-token continuations of one context, e.g. the option letters of a question)
    share one forward pass: a 4-option item costs one pass, not four.
    """

    def __init__(self, model, tokenizer, name: str, max_batch_tokens: int = 4096, max_gen_batch: int = 32,
                 progress: bool = True, decoding: DecodingConfig | None = None):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        # The served engine's repetition control (training/evaluate/decoding.py), so both decode alike;
        # an explicit `decoding` wins over the model's generation_config.json, which wins over the defaults.
        self.decoding = decoding or DecodingConfig().for_model(getattr(model, "generation_config", None),
                                                               explicit_from_env())
        self.max_batch_tokens = max_batch_tokens
        # Decoding is bound by per-step overhead, not FLOPs, on a CPU: wide batches pay off there.
        self.max_gen_batch = max_gen_batch
        self.progress = progress
        self.max_length = int(getattr(model.config, "max_position_embeddings", 2048))

    # -- formatting ---------------------------------------------------------------------------
    def chat_prompt(self, messages: Sequence[dict]) -> str:
        if self.tokenizer.chat_template is None:
            return "\n\n".join(m["content"] for m in messages) + "\n\n"
        return self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        # As lm-evaluation-harness does: trailing spaces of the context belong to the continuation
        # (" A" is one token), and the pair is encoded whole so merges across the seam are kept.
        stripped = context.rstrip(" ")
        continuation = context[len(stripped):] + continuation
        whole, ctx = self._encode(stripped + continuation), self._encode(stripped)
        return ctx, whole[len(ctx):]

    # -- log-likelihood -----------------------------------------------------------------------
    def _plan(self, requests: Sequence[tuple[str, str]]) -> list[_Scored]:
        by_input: dict[tuple[int, ...], list[tuple[int, tuple[int, ...]]]] = {}
        for i, (context, continuation) in enumerate(requests):
            ctx, cont = self._encode_pair(context, continuation)
            if not cont:
                raise ValueError(f"request {i}: the continuation {continuation!r} encodes to no tokens")
            # The last continuation token is predicted, never fed; keep the most recent context.
            inputs = tuple((ctx + cont)[:-1][-self.max_length:])
            by_input.setdefault(inputs, []).append((i, tuple(cont)))
        return [_Scored(k, tuple(v)) for k, v in by_input.items()]

    def _batches(self, items: list, length, max_rows: int | None = None) -> list[list]:
        ordered = sorted(items, key=length, reverse=True)
        batches, current = [], []
        for item in ordered:
            full = max_rows is not None and len(current) >= max_rows
            if current and (full or length(current[0]) * (len(current) + 1) > self.max_batch_tokens):
                batches.append(current)
                current = []
            current.append(item)
        if current:
            batches.append(current)
        return batches

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[float]:
        import torch

        plan = self._plan(requests)
        results: list[float] = [0.0] * len(requests)
        batches = self._batches(plan, lambda s: len(s.inputs))
        bar = tqdm(total=len(requests), desc=f"{self.name}: log-likelihood", disable=not self.progress, unit="req")
        with torch.inference_mode():
            for batch in batches:
                width = max(len(s.inputs) for s in batch)
                keep = max(len(cont) for s in batch for _, cont in s.readers)
                ids, mask = self._left_pad([list(s.inputs) for s in batch], width)
                logprobs = self._forward_last(ids, mask, keep).log_softmax(-1)
                for row, scored in enumerate(batch):
                    for index, cont in scored.readers:
                        # With left padding, the logits predicting the continuation are the last ones.
                        span = logprobs[row, keep - len(cont):]
                        target = torch.tensor(cont).unsqueeze(-1)
                        results[index] = float(span.gather(-1, target).sum())
                        bar.update()
        bar.close()
        return results

    def loglikelihood_naive(self, requests: Sequence[tuple[str, str]]) -> list[float]:
        """One request at a time, no padding, no sharing: the reference the batched path must match."""
        import torch

        out = []
        with torch.inference_mode():
            for context, continuation in requests:
                ctx, cont = self._encode_pair(context, continuation)
                ids = torch.tensor([ctx + cont])
                logprobs = self.model(input_ids=ids).logits[0, :-1].log_softmax(-1)
                picked = logprobs[len(ctx) - 1:].gather(-1, torch.tensor(cont).unsqueeze(-1))
                out.append(float(picked.sum()))
        return out

    def _left_pad(self, rows: list[list[int]], width: int):
        import torch

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, width - len(row):] = torch.tensor(row)
            mask[r, width - len(row):] = 1
        return ids, mask

    def _forward_last(self, ids, mask, keep: int):
        # Positions count from each row's first real token, so a left-padded row is computed
        # exactly as it would be alone; only the last `keep` positions go through the LM head.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return self.model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits

    # -- generation ---------------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        import torch

        encoded = [(i, self._encode(p)[-(self.max_length - max_new_tokens):]) for i, p in enumerate(prompts)]
        outputs: list[str] = [""] * len(prompts)
        # Prompt tokens bound the prefill's memory; the row count bounds the decode batch.
        batches = self._batches(encoded, lambda e: len(e[1]), max_rows=self.max_gen_batch)
        bar = tqdm(total=len(prompts), desc=f"{self.name}: generate", disable=not self.progress, unit="prompt")
        eos = sorted(eos_ids(self.model.generation_config, self.tokenizer.eos_token_id))
        with torch.inference_mode():
            for batch in batches:
                width = max(len(e[1]) for e in batch)
                ids, mask = self._left_pad([e[1] for e in batch], width)
                generated = self.model.generate(
                    input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                    temperature=None, top_p=None, top_k=None,
                    pad_token_id=self.tokenizer.pad_token_id, eos_token_id=eos, **self.decoding.generate_kwargs(),
                )
                for (index, _), row in zip(batch, generated[:, width:]):
                    outputs[index] = self.tokenizer.decode(row, skip_special_tokens=True).strip()
                    bar.update()
        bar.close()
        return outputs


def load_language_model(name_or_path: str, max_batch_tokens: int = 4096, progress: bool = True,
                        decoding: DecodingConfig | None = None) -> LanguageModel:
    """The evaluator's entry point: a model reference to a `LanguageModel`."""
    from training.models import load_model

    model, tokenizer = load_model(name_or_path)
    return TorchLM(model, tokenizer, name=name_or_path, max_batch_tokens=max_batch_tokens, progress=progress,
                   decoding=decoding)
