"""Decoding settings shared by every generation path: the evaluator's PyTorch model and the served
ONNX engine decode with the same repetition control, defined exactly as transformers' generation
defines it, so a score measured offline is a score of what is served.

A 135M model decoding greedily falls into loops (the same sentence until the token budget runs
out). Two of transformers' controls address that, and both are used here through transformers' own
`LogitsProcessor` classes (the ONNX engine applies them to its logits as torch tensors):

- `repetition_penalty` (`RepetitionPenaltyLogitsProcessor`, CTRL's penalty): every token already in
  the sequence, prompt included, has its logit divided by the penalty when positive and multiplied
  by it when negative. 1.0 is off.
- `no_repeat_ngram_size` (`NoRepeatNGramLogitsProcessor`): a token that would complete an n-gram
  already present in the sequence gets -inf. 0 is off.

The defaults were chosen by measuring degeneration and the capability scores on the validation
split of MKGSG records (base model, greedy); the table and the command are in docs/serving.md.

Precedence, lowest first: these defaults; a value the model's own generation_config.json states
(a shipped model may declare its decoding); an explicit setting (the environment variables
BALANCEDBIO_REPETITION_PENALTY / BALANCEDBIO_NO_REPEAT_NGRAM_SIZE, or arguments).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Sequence

# Measured defaults (docs/serving.md, "Decoding"): 1.2 ended the loops on validation prompts (10/40 -> 0/40).
DEFAULT_REPETITION_PENALTY = 1.2
DEFAULT_NO_REPEAT_NGRAM_SIZE = 0
_ENV = {"repetition_penalty": "BALANCEDBIO_REPETITION_PENALTY", "no_repeat_ngram_size": "BALANCEDBIO_NO_REPEAT_NGRAM_SIZE"}
# transformers' GenerationConfig values that mean "not set" for these fields.
_UNSET = {"repetition_penalty": (None, 1.0), "no_repeat_ngram_size": (None, 0)}


class DecodingConfigError(ValueError):
    """A decoding setting the generation code cannot use; the message names it and the valid range."""


@dataclass(frozen=True)
class DecodingConfig:
    repetition_penalty: float = field(default=DEFAULT_REPETITION_PENALTY, metadata={
        "help": "transformers' repetition_penalty (RepetitionPenaltyLogitsProcessor): logits of tokens already in the "
                "sequence, prompt included, are divided (positive) or multiplied (negative) by it. 1.0 is off."})
    no_repeat_ngram_size: int = field(default=DEFAULT_NO_REPEAT_NGRAM_SIZE, metadata={
        "help": "transformers' no_repeat_ngram_size (NoRepeatNGramLogitsProcessor): no n-gram of this size may occur "
                "twice in the sequence, prompt included. 0 is off."})

    def __post_init__(self) -> None:
        if not self.repetition_penalty > 0:
            raise DecodingConfigError(f"repetition_penalty={self.repetition_penalty} must be > 0 (1.0 is off; "
                                      "values above 1 discourage repeats)")
        if int(self.no_repeat_ngram_size) != self.no_repeat_ngram_size or self.no_repeat_ngram_size < 0:
            raise DecodingConfigError(f"no_repeat_ngram_size={self.no_repeat_ngram_size} must be a whole number >= 0 "
                                      "(0 is off)")

    @classmethod
    def from_env(cls) -> "DecodingConfig":
        """The defaults, with BALANCEDBIO_REPETITION_PENALTY / BALANCEDBIO_NO_REPEAT_NGRAM_SIZE applied when set."""
        return cls().updated(**explicit_from_env())

    def updated(self, **values) -> "DecodingConfig":
        """A copy with the given (non-None) fields replaced."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})

    def for_model(self, generation_config, explicit: dict | None = None) -> "DecodingConfig":
        """These settings under a model's generation config: a value the model's generation_config.json
        states wins over the defaults, and `explicit` (a user's setting) wins over both."""
        stated = {}
        for f in fields(self):
            value = getattr(generation_config, f.name, None) if generation_config is not None else None
            if value not in _UNSET[f.name]:
                stated[f.name] = value
        return self.updated(**stated).updated(**(explicit or {}))

    def generate_kwargs(self) -> dict:
        """Keyword arguments for transformers' `generate()`, which builds the same processors."""
        return {"repetition_penalty": float(self.repetition_penalty),
                "no_repeat_ngram_size": int(self.no_repeat_ngram_size)}

    def logits_processors(self):
        """transformers' processors for these settings, in the order `generate()` applies them."""
        from transformers import LogitsProcessorList, NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor

        processors = LogitsProcessorList()
        if self.repetition_penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(penalty=float(self.repetition_penalty)))
        if self.no_repeat_ngram_size > 0:
            processors.append(NoRepeatNGramLogitsProcessor(int(self.no_repeat_ngram_size)))
        return processors

    def label(self) -> str:
        return f"repetition_penalty={self.repetition_penalty:g}, no_repeat_ngram_size={self.no_repeat_ngram_size}"


def explicit_from_env() -> dict:
    """The decoding settings the environment states (only those set); bad values fail naming the variable."""
    out: dict = {}
    for name, variable in _ENV.items():
        raw = os.environ.get(variable, "").strip()
        if not raw:
            continue
        try:
            out[name] = float(raw) if name == "repetition_penalty" else int(raw)
        except ValueError:
            raise DecodingConfigError(f"{variable}={raw!r} is not a number; "
                                      f"{DecodingConfig.__dataclass_fields__[name].metadata['help']}") from None
    DecodingConfig().updated(**out)  # range checks, with the field's message
    return out


def eos_ids(generation_config, fallback: int | Sequence[int] | None = None) -> set[int]:
    """The end-of-sequence ids a generation stops at: the generation config's (int or list), else `fallback`."""
    eos = getattr(generation_config, "eos_token_id", None) if generation_config is not None else None
    if eos is None:
        eos = fallback
    return set(eos if isinstance(eos, (list, tuple, set)) else [eos]) - {None}
