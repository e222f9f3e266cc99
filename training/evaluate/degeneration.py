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
- except what the task's own answer restates: where the item has a reference answer, prompt words that the
  reference reproduces in a span of ECHO_SPAN words (a note's History line restating the case, say) are
  content the task asks for, and a span of the output counts as an echo only if none of its prompt words
  are among them. Without a reference (IFEval, consults) every span counts.
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


def _restated(prompt: list[str], reference: list[str], span: int) -> list[bool]:
    """For each prompt word, whether the reference answer reproduces it within a shared span of `span` words."""
    covered = [False] * len(prompt)
    shared = set(_ngrams(reference, span))
    for i, gram in enumerate(_ngrams(prompt, span)):
        if gram in shared:
            covered[i:i + span] = [True] * span
    return covered


def _echo_span(out: list[str], prompt: list[str], n: int, reference: list[str] = ()) -> tuple[str, ...] | None:
    """The first span of the output that reproduces the prompt (see the module doc), or None."""
    span = min(ECHO_SPAN, len(prompt))
    if span < n:
        return None  # a prompt shorter than an n-gram cannot be told apart from ordinary wording
    restated = _restated(prompt, list(reference), span)
    prompt_spans = {gram for i, gram in enumerate(_ngrams(prompt, span)) if not any(restated[i:i + span])}
    return next((g for g in _ngrams(out, span) if g in prompt_spans), None)


def degeneration(text: str, prompt: str = "", n: int = 4, repeats: int = 3, reference: str = "") -> Degeneration:
    """Whether one output loops (some n-gram of words occurs `repeats`+ times) or echoes its prompt beyond
    what `reference`, the item's reference answer if it has one, restates of it."""
    if n < 1 or repeats < 2:
        raise ValueError(f"degeneration needs n >= 1 and repeats >= 2; got n={n}, repeats={repeats}")
    out = words(text)
    reasons = []
    counts = Counter(_ngrams(out, n))
    top = counts.most_common(1)[0] if counts else None  # ties: the n-gram seen first
    repeated = top is not None and top[1] >= repeats
    if repeated:
        reasons.append(f"{n}-gram {' '.join(top[0])!r} occurs {top[1]} times")
    echo = _echo_span(out, words(prompt), n, words(reference))
    if echo is not None:
        reasons.append(f"reproduces {len(echo)} consecutive words of the prompt: {' '.join(echo)!r}")
    if not reasons:
        reasons.append(f"no {n}-gram occurs {repeats}+ times and no {ECHO_SPAN}-word span of the prompt is reproduced")
    return Degeneration(repeated_ngram=repeated, echoes_prompt=echo is not None, reason="; ".join(reasons))


def degeneration_rates(texts: list[str], prompts: list[str], n: int = 4, repeats: int = 3,
                       references: list[str] | None = None) -> dict:
    """Shares of outputs that loop, that echo their prompt, and that do either, each with a Wilson 95% interval.
    `references`, one per output where the items have reference answers, exempt what those restate.

    Returns {"n": N, "repeated_ngram": {k, n, value, ci_low, ci_high}, "echoes_prompt": {...}, "any": {...}}.
    """
    if len(texts) != len(prompts):
        raise ValueError(f"degeneration_rates needs one prompt per output; got {len(texts)} outputs and "
                         f"{len(prompts)} prompts (pass '' for an output without a prompt)")
    if references is not None and len(references) != len(texts):
        raise ValueError(f"degeneration_rates needs one reference per output; got {len(texts)} outputs and "
                         f"{len(references)} references (pass '' for an item without one)")
    refs = references if references is not None else [""] * len(texts)
    flags = [degeneration(t, p, n=n, repeats=repeats, reference=r) for t, p, r in zip(texts, prompts, refs)]
    total = len(flags)
    return {
        "n": total,
        "repeated_ngram": proportion(sum(f.repeated_ngram for f in flags), total).as_dict(),
        "echoes_prompt": proportion(sum(f.echoes_prompt for f in flags), total).as_dict(),
        "any": proportion(sum(f.degenerate for f in flags), total).as_dict(),
    }
