"""Multiple-choice scoring, two ways.

- Log-likelihood: the option label the model finds most likely after the question, as
  lm-evaluation-harness's `multiple_choice` output type does (zero-shot, "Answer:" then " A").
  It needs no parsing, so it measures knowledge even when the model cannot follow a format.
- Generation: the model answers in its chat format and the answer is read from its text. This is
  how a clinician meets the model; answers that cannot be read are counted apart from wrong ones.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from training.evaluate.benchmarks import MultipleChoiceItem
from training.evaluate.lm import LanguageModel
from training.rewards.answers import extract_choice

MODES = ("loglik", "generate")


def _letters(item: MultipleChoiceItem) -> bool:
    return all(len(c) == 1 for c in item.choices)


def _body(item: MultipleChoiceItem) -> str:
    parts = [f"Abstract: {item.context}"] if item.context else []
    parts.append(f"Question: {item.question}")
    if _letters(item):
        parts.extend(f"{label}. {text}" for label, text in zip(item.choices, item.choice_texts))
    return "\n".join(parts)


def loglik_context(item: MultipleChoiceItem) -> str:
    return _body(item) + "\nAnswer:"


def generation_messages(item: MultipleChoiceItem) -> list[dict]:
    if _letters(item):
        labels = ", ".join(item.choices[:-1]) + f" or {item.choices[-1]}"
        ask = f"Answer with the letter of the correct option ({labels}) only."
    else:
        ask = f"Answer with one word: {', '.join(item.choices[:-1])} or {item.choices[-1]}."
    return [{"role": "user", "content": f"{_body(item)}\n\n{ask}"}]


@dataclass
class Prediction:
    id: str
    subject: str
    gold: str
    loglik: str | None = None
    generated_text: str | None = None
    generated: str | None = None  # the label read from the text, None when unparseable


def score_multiple_choice(lm: LanguageModel, items: list[MultipleChoiceItem], modes=MODES,
                          max_new_tokens: int = 16) -> tuple[dict, list[Prediction]]:
    """Metrics (accuracy per mode, unparseable rate, accuracy per subject) and per-item predictions."""
    unknown = set(modes) - set(MODES)
    if unknown:
        raise ValueError(f"unknown scoring mode(s) {sorted(unknown)}; choose from {MODES}")
    preds = [Prediction(item.id, item.subject, item.gold_label) for item in items]
    metrics: dict = {"n": len(items)}
    if "loglik" in modes:
        requests = [(loglik_context(item), " " + label) for item in items for label in item.choices]
        scores = iter(lm.loglikelihood(requests))
        for item, pred in zip(items, preds):
            per_choice = [next(scores) for _ in item.choices]
            pred.loglik = item.choices[max(range(len(per_choice)), key=per_choice.__getitem__)]
        metrics["acc_loglik"] = _mean(p.loglik == p.gold for p in preds)
    if "generate" in modes:
        texts = lm.generate([lm.chat_prompt(generation_messages(item)) for item in items], max_new_tokens)
        for item, pred, text in zip(items, preds, texts):
            pred.generated_text = text
            picked = extract_choice(text, item.choices, item.choice_texts)
            pred.generated = None if picked is None else item.choices[picked]
        metrics["acc_generate"] = _mean(p.generated == p.gold for p in preds)
        metrics["unparseable_rate"] = _mean(p.generated is None for p in preds)
    metrics["by_subject"] = _by_subject(preds, modes)
    return metrics, preds


def _by_subject(preds: list[Prediction], modes) -> dict:
    groups: dict[str, list[Prediction]] = defaultdict(list)
    for p in preds:
        groups[p.subject or "all"].append(p)
    out = {}
    for subject, group in sorted(groups.items()):
        row = {"n": len(group)}
        if "loglik" in modes:
            row["acc_loglik"] = _mean(p.loglik == p.gold for p in group)
        if "generate" in modes:
            row["acc_generate"] = _mean(p.generated == p.gold for p in group)
        out[subject] = row
    return out


def _mean(flags) -> float:
    flags = list(flags)
    return sum(flags) / len(flags) if flags else 0.0
