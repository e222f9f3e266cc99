"""The "trained facts asked anew" test set: facts of the train split, asked in a way no training record was.

The test split holds *unseen* facts (splits are by seed fact), which measures generalisation; a 135M model
may stay near chance there whatever alignment does. What alignment on a knowledge base should deliver is
knowledge injection: a fact the model was trained on, recognised when it is asked differently. So each
knowledge or reasoning record of the train split that has options is asked again with

- a new question frame, from `FRAMES`, which no builder uses (the training records are asked bare), and
- a new distractor set: options drawn from the other answers and distractors of the same fact type
  (`provenance.source`, e.g. mkgsg:knowledge:phenotype-mc), such that the set of distractors was used by
  no training record of that fact type, and shares no distractor with the record it comes from.

The fact's own wording (the question stem and the right answer's text) is kept: the fact is what is
tested. Limitation: the new distractors are other options of the same fact type, not re-checked against
the knowledge base for *this* fact, so for many-to-many facts (a disease's phenotypes, a drug's
interactions) a drawn distractor can occasionally also be true; a knowledge-base check per fact type
(as the builders do) is the next step. The records keep their capability, answer spec and provenance (with `template` naming the frame),
so the evaluator scores them as it scores the test split: by cloze over the option texts.
"""

from __future__ import annotations

import random
from collections import defaultdict

from training.mkgsg.base import option_letters
from training.records import AnswerSpec, CapabilityRecord, ChatMessage

CAPABILITIES = ("knowledge", "reasoning")
# Frames around the fact's question; builders ask bare questions, so none of these is a training template.
FRAMES = {
    "anew:colleague": "A colleague asks you, without a reference at hand: {stem}",
    "anew:recall": "From what you know, answer this recall question. {stem}",
    "anew:exam": "Board review question. {stem}",
}


def fact_type(record: CapabilityRecord) -> str:
    return record.provenance.source


def distractors_of(record: CapabilityRecord) -> frozenset[str]:
    answer = record.verification.answer
    return frozenset(t for k, t in (answer.options or {}).items() if k != answer.value)


def stem_of(record: CapabilityRecord) -> str:
    """The user's question without its lettered option lines."""
    options = record.verification.answer.options or {}
    listed = {f"{k}. {v}" for k, v in options.items()}
    return "\n".join(line for line in record.messages[-1].content.splitlines() if line.strip() not in listed).strip()


def askable(record: CapabilityRecord) -> bool:
    answer = record.verification.answer
    return record.capability.value in CAPABILITIES and answer is not None and answer.kind == "option" and bool(answer.options)


def asked_anew(train: list[CapabilityRecord], pool: list[CapabilityRecord], seed: int = 0,
               attempts: int = 20) -> tuple[list[CapabilityRecord], dict]:
    """One asked-anew record per askable train record where a new distractor set can be drawn.

    `pool` (all splits) supplies candidate distractors of each fact type: the texts of its options.
    Returns the records and counts (asked, skipped by reason)."""
    used: dict[str, set[frozenset[str]]] = defaultdict(set)
    for r in train:
        if askable(r):
            used[fact_type(r)].add(distractors_of(r))
    texts: dict[str, set[str]] = defaultdict(set)
    for r in pool:
        if askable(r):
            texts[fact_type(r)].update(r.verification.answer.options.values())
    out, skipped = [], defaultdict(int)
    for r in train:
        if not askable(r):
            continue
        rng = random.Random(f"anew|{seed}|{r.id}")
        answer = r.verification.answer
        correct = answer.options[answer.value]
        banned = {t.lower() for t in (correct, *answer.accepted)} | {t.lower() for t in distractors_of(r)}
        candidates = sorted(t for t in texts[fact_type(r)] if t.lower() not in banned)
        need = len(answer.options) - 1
        if len(candidates) < need:
            skipped["too-few-distractors-of-this-fact-type"] += 1
            continue
        for _ in range(attempts):
            chosen = frozenset(rng.sample(candidates, need))
            if chosen not in used[fact_type(r)]:
                break
        else:
            skipped["every-draw-was-a-training-distractor-set"] += 1
            continue
        used[fact_type(r)].add(chosen)  # two asked-anew records do not share a set either
        out.append(_record(r, correct, sorted(chosen), rng))
    return out, {"asked": len(out), "skipped": dict(skipped)}


def _record(r: CapabilityRecord, correct: str, distractors: list[str], rng: random.Random) -> CapabilityRecord:
    texts = [correct, *distractors]
    rng.shuffle(texts)
    letters = option_letters(len(texts))
    options = dict(zip(letters, texts))
    value = letters[texts.index(correct)]
    frame = rng.choice(sorted(FRAMES))
    question = FRAMES[frame].format(stem=stem_of(r)) + "\n" + "\n".join(f"{k}. {v}" for k, v in options.items())
    reference = "\n".join(line for line in r.reference.splitlines() if not line.lower().startswith("answer:"))
    answer = r.verification.answer.model_copy(update={"value": value, "options": options})
    AnswerSpec.model_validate(answer.model_dump())  # the value must be one of the new options
    return r.model_copy(update={
        "id": f"{r.id}-anew",
        "messages": [*r.messages[:-1], ChatMessage(role="user", content=question)],
        "reference": f"{reference}\nAnswer: {value}".strip(),
        "verification": r.verification.model_copy(update={"answer": answer}),
        "provenance": r.provenance.model_copy(update={"template": frame}),
    })
