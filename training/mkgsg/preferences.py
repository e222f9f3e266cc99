"""Preference pairs for the reward model: a verified answer against a corrupted copy of it.

Each corruption breaks exactly one thing a clinician cares about, and a pair is kept only when
the project's verifiers really score the corrupted answer lower, so the reward model learns
what the rule rewards mean rather than surface noise. Pairs are in TRL's conversational
preference format (`prompt`, `chosen`, `rejected` as message lists).
"""

from __future__ import annotations

import random
import re

from training.evaluate.capabilities import verify_record
from training.records import CapabilityRecord
from training.rewards.answers import mentions

CORRUPTIONS = ("wrong_entity", "missing_reasoning_step", "broken_format", "unsafe_drug")
_ANSWER_LINE = re.compile(r"(?im)^(\W*(?:final\s+)?answer\s*(?:is|:|-)?\s*)(.+)$")


def _replace_answer(text: str, new: str) -> str | None:
    lines = list(_ANSWER_LINE.finditer(text))
    if not lines:
        return None
    last = lines[-1]
    return text[:last.start(2)] + new + text[last.end(2):]


def wrong_entity(record: CapabilityRecord, rng: random.Random) -> str | None:
    answer = record.verification.answer
    if answer is None:
        return None
    if answer.options:
        others = sorted(k for k in answer.options if k != answer.value)
        return _replace_answer(record.reference, rng.choice(others)) if others else None
    # An open answer: state a sibling entity the record itself names as wrong, else a chain step.
    chain = record.verification.reasoning.chain if record.verification.reasoning else []
    candidates = [c for c in chain if not mentions(c, answer.value) and not mentions(answer.value, c)]
    return _replace_answer(record.reference, rng.choice(candidates)) if candidates else None


def missing_reasoning_step(record: CapabilityRecord, rng: random.Random) -> str | None:
    reasoning = record.verification.reasoning
    if reasoning is None or len(reasoning.chain) < 2:
        return None
    step = rng.choice(reasoning.chain[:-1])  # an intermediate step, never the conclusion
    names = [step, *reasoning.synonyms.get(step, [])]
    kept = [s for s in re.split(r"(?<=[.;\n])\s*", record.reference) if not any(mentions(s, n) for n in names)]
    return " ".join(kept).strip() or None


def broken_format(record: CapabilityRecord, rng: random.Random) -> str | None:
    if not record.verification.constraints:
        return None
    text = record.reference
    # Flatten the layout the format constraints look at: headings, bullets, numbering, JSON braces,
    # line breaks; then add the punctuation and case the lexical constraints forbid.
    flat = re.sub(r"(?m)^\s*(?:#+\s*|[*\-]\s+|\d+[.)]\s+)", "", text)
    flat = re.sub(r"(?im)^(subjective|objective|assessment|plan)\s*:\s*", "", flat)
    flat = flat.replace("{", "").replace("}", "").replace("\n", " ")
    variants = [flat, flat + ", and so on, etc", flat.upper(), flat.lower() + " P.S."]
    rng.shuffle(variants)
    return next((v for v in variants if v != text), None)


def unsafe_drug(record: CapabilityRecord, rng: random.Random) -> str | None:
    safety = record.verification.safety
    answer = record.verification.answer
    if not safety or not safety.forbidden or answer is None:
        return None
    forbidden = rng.choice(sorted(safety.forbidden, key=lambda f: f.drug))
    safe_names = [answer.value, *answer.accepted] if answer.kind == "entity" else [answer.options[answer.value]]
    text = record.reference
    for name in sorted(set(safe_names), key=len, reverse=True):
        text = re.sub(rf"(?i)\b{re.escape(name)}\b", forbidden.drug, text)
    if answer.kind != "entity":  # an option answer: point the final line at the forbidden drug's letter if listed
        letter = next((k for k, v in answer.options.items() if mentions(v, forbidden.drug)), None)
        text = _replace_answer(text, letter) if letter else text
    return text if text != record.reference else None


_CORRUPT = {"wrong_entity": wrong_entity, "missing_reasoning_step": missing_reasoning_step,
            "broken_format": broken_format, "unsafe_drug": unsafe_drug}


def preference_pairs(record: CapabilityRecord, rng: random.Random) -> list[dict]:
    """Every corruption that applies to the record and that the verifiers score lower."""
    pairs = []
    for kind in CORRUPTIONS:
        corrupted = _CORRUPT[kind](record, rng)
        if not corrupted:
            continue
        chosen, rejected = verify_record(record, record.reference), verify_record(record, corrupted)
        if rejected.score >= chosen.score and all(
                rejected.checks[k].score >= chosen.checks[k].score for k in chosen.checks):
            continue  # the verifiers cannot tell them apart: no signal to learn
        pairs.append({
            "id": f"{record.id}-{kind}",
            "record_id": record.id,
            "capability": record.capability.value,
            "corruption": kind,
            "prompt": [m.model_dump() for m in record.messages],
            "chosen": [{"role": "assistant", "content": record.reference}],
            "rejected": [{"role": "assistant", "content": corrupted}],
            "rejected_reasons": {k: c.reason for k, c in rejected.checks.items() if not c.passed},
        })
    return pairs
