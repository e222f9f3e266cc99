"""Degeneration of generated text: loops and echoes of the prompt.

A small model that has lost its way repeats itself ("the patient has pneumonia. the patient has pneumonia.
...") or reads the question back instead of answering it. Both are measured on words, not tokens, so the
metric means the same for the PyTorch and the ONNX engine and for any tokenizer:

- words: lower-cased runs of letters/digits (`\\w+`, with inner apostrophes and hyphens kept), so case and
  punctuation do not hide a repeat;
- repeated n-gram: some n consecutive words (default 4) occur `repeats` (default 3) or more times in the
  output, overlapping occurrences included ("a a a a a a" holds "a a a a" three times);
- echoes the prompt: the output reproduces ECHO_SPAN (12) consecutive words of the prompt, or the whole
  prompt when the prompt is shorter than that but at least n words long. Twelve words is longer than the
  stock phrases an answer legitimately shares with its question ("what is the most likely diagnosis"),
  and shorter than any sentence of a case vignette, so quoting a sentence of the case back counts.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from training.evaluate.stats import proportion

ECHO_SPAN = 12
_WORD = re.compile(r"\w+(?:['\-]\w+)*")


@dataclass(frozen=True)
class Degeneration:
    repeated_ngram: bool
    echoes_prompt: bool
    reason: str

    @property
    def degenerate(self) -> bool:
        return self.repeated_ngram or self.echoes_prompt


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _ngrams(seq: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)]


def _echo_span(out: list[str], prompt: list[str], n: int) -> tuple[str, ...] | None:
    """The first span of the output that reproduces the prompt (see the module doc), or None."""
    span = min(ECHO_SPAN, len(prompt))
    if span < n:
        return None  # a prompt shorter than an n-gram cannot be told apart from ordinary wording
    prompt_spans = set(_ngrams(prompt, span))
    return next((g for g in _ngrams(out, span) if g in prompt_spans), None)


def degeneration(text: str, prompt: str = "", n: int = 4, repeats: int = 3) -> Degeneration:
    """Whether one output loops (some n-gram of words occurs `repeats`+ times) or echoes its prompt."""
    if n < 1 or repeats < 2:
        raise ValueError(f"degeneration needs n >= 1 and repeats >= 2; got n={n}, repeats={repeats}")
    out = words(text)
    reasons = []
    counts = Counter(_ngrams(out, n))
    top = counts.most_common(1)[0] if counts else None  # ties: the n-gram seen first
    repeated = top is not None and top[1] >= repeats
    if repeated:
        reasons.append(f"{n}-gram {' '.join(top[0])!r} occurs {top[1]} times")
    echo = _echo_span(out, words(prompt), n)
    if echo is not None:
        reasons.append(f"reproduces {len(echo)} consecutive words of the prompt: {' '.join(echo)!r}")
    if not reasons:
        reasons.append(f"no {n}-gram occurs {repeats}+ times and no {ECHO_SPAN}-word span of the prompt is reproduced")
    return Degeneration(repeated_ngram=repeated, echoes_prompt=echo is not None, reason="; ".join(reasons))


def degeneration_rates(texts: list[str], prompts: list[str], n: int = 4, repeats: int = 3) -> dict:
    """Shares of outputs that loop, that echo their prompt, and that do either, each with a Wilson 95% interval.

    Returns {"n": N, "repeated_ngram": {k, n, value, ci_low, ci_high}, "echoes_prompt": {...}, "any": {...}}.
    """
    if len(texts) != len(prompts):
        raise ValueError(f"degeneration_rates needs one prompt per output; got {len(texts)} outputs and "
                         f"{len(prompts)} prompts (pass '' for an output without a prompt)")
    flags = [degeneration(t, p, n=n, repeats=repeats) for t, p in zip(texts, prompts)]
    total = len(flags)
    return {
        "n": total,
        "repeated_ngram": proportion(sum(f.repeated_ngram for f in flags), total).as_dict(),
        "echoes_prompt": proportion(sum(f.echoes_prompt for f in flags), total).as_dict(),
        "any": proportion(sum(f.degenerate for f in flags), total).as_dict(),
    }
