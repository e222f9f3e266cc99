"""Multiple-choice scoring, four ways, each with its picked-label distribution.

- letter (`loglik`): the option label the model finds most likely after the question with its lettered
  options, as lm-evaluation-harness's MMLU-style `multiple_choice` tasks do ("Answer:" then " A"). A 135M
  model has a strong prior for one letter (the base SmolLM2-135M picked "A" for 4,174 of 4,183 MedMCQA
  items), so on its own this mode measures letter bias, not knowledge.
- cloze: each option's own text after the bare question ("Answer:" then " <option text>"), options not
  listed, as lm-evaluation-harness's `acc`/`acc_norm` and lighteval's cloze tasks do. `acc_cloze` picks
  the largest summed log-likelihood; `acc_cloze_norm` divides it by the option text's length in
  characters (lm-evaluation-harness's `acc_norm`), so long options are not penalised for their length.
- circular (letter-debiased): the letter mode once per rotation of the options (the option texts move
  to other letters); an item counts only if every rotation picks the right text (as MMBench's circular
  evaluation). A model that always answers "A" scores 0, whatever the gold letters.
- generate: the model answers in its chat format and the label is read from its text; answers that
  cannot be read are counted apart (`parse_rate`).

Ties (equal scores, e.g. identical option texts) are broken at random with a generator seeded by the
item id, never by position, so a tie cannot favour "A"; the number of tied items is reported per mode.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter, defaultdict
from dataclasses import dataclass

from training.evaluate.benchmarks import MultipleChoiceItem
from training.evaluate.degeneration import degeneration_rates
from training.evaluate.lm import LanguageModel
from training.evaluate.stats import proportion
from training.rewards.answers import extract_choice

MODES = ("loglik", "cloze", "circular", "generate")
# One label taking more than this share of the picks marks the mode as label-biased.
BIAS_SHARE = 0.5
UNPARSEABLE = "(unparseable)"


def _letters(item: MultipleChoiceItem) -> bool:
    return all(len(c) == 1 for c in item.choices)


def _body(item: MultipleChoiceItem, texts: tuple[str, ...] | None = None, listed: bool = True) -> str:
    parts = [f"Abstract: {item.context}"] if item.context else []
    parts.append(f"Question: {item.question}")
    if listed and _letters(item):
        parts.extend(f"{label}. {text}" for label, text in zip(item.choices, texts or item.choice_texts))
    return "\n".join(parts)


def loglik_context(item: MultipleChoiceItem, texts: tuple[str, ...] | None = None) -> str:
    return _body(item, texts) + "\nAnswer:"


def cloze_context(item: MultipleChoiceItem) -> str:
    return _body(item, listed=False) + "\nAnswer:"


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
    cloze: str | None = None
    cloze_norm: str | None = None
    circular: list[str] | None = None  # the label of the *original* option picked under each rotation
    generated_text: str | None = None
    generated: str | None = None  # the label read from the text, None when unparseable

    def correct(self, mode: str) -> bool:
        if mode == "circular":
            return bool(self.circular) and all(p == self.gold for p in self.circular)
        return getattr(self, mode) == self.gold


# mode -> (metric name, prediction field)
METRICS = {"loglik": ("acc_loglik", "loglik"), "cloze": ("acc_cloze", "cloze"),
           "cloze_norm": ("acc_cloze_norm", "cloze_norm"), "circular": ("acc_circular", "circular"),
           "generate": ("acc_generate", "generated")}


def _argmax(scores: list[float], item_id: str, salt: str) -> tuple[int, bool]:
    """Index of the best score; ties broken by a generator seeded with the item id (not by position)."""
    best = max(scores)
    tied = [i for i, s in enumerate(scores) if s == best]
    if len(tied) == 1:
        return tied[0], False
    seed = int.from_bytes(hashlib.sha256(f"{item_id}/{salt}".encode()).digest()[:8], "big")
    return random.Random(seed).choice(tied), True


def _rotation(item: MultipleChoiceItem, shift: int) -> list[int]:
    """Original option index shown at each position after rotating by `shift`."""
    k = len(item.choices)
    return [(pos + shift) % k for pos in range(k)]


def score_multiple_choice(lm: LanguageModel, items: list[MultipleChoiceItem], modes=MODES[:3],
                          max_new_tokens: int = 16) -> tuple[dict, list[Prediction]]:
    """Metrics per mode (accuracy with its Wilson interval, picked-label distribution, bias flag, ties),
    accuracy per subject, and per-item predictions."""
    unknown = set(modes) - set(MODES)
    if unknown:
        raise ValueError(f"unknown scoring mode(s) {sorted(unknown)}; choose from {MODES}")
    preds = [Prediction(item.id, item.subject, item.gold_label) for item in items]
    ties: Counter = Counter()
    if "loglik" in modes:
        requests = [(loglik_context(item), " " + label) for item in items for label in item.choices]
        scores = iter(lm.loglikelihood(requests))
        for item, pred in zip(items, preds):
            index, tied = _argmax([next(scores) for _ in item.choices], item.id, "loglik")
            pred.loglik, ties["loglik"] = item.choices[index], ties["loglik"] + tied
    if "cloze" in modes:
        requests = [(cloze_context(item), " " + text) for item in items for text in item.choice_texts]
        scores = iter(lm.loglikelihood(requests))
        for item, pred in zip(items, preds):
            raw = [next(scores) for _ in item.choices]
            index, tied = _argmax(raw, item.id, "cloze")
            pred.cloze, ties["cloze"] = item.choices[index], ties["cloze"] + tied
            norm = [s / max(len(text), 1) for s, text in zip(raw, item.choice_texts)]
            index, tied = _argmax(norm, item.id, "cloze_norm")
            pred.cloze_norm, ties["cloze_norm"] = item.choices[index], ties["cloze_norm"] + tied
    if "circular" in modes:
        lettered = [(item, pred) for item, pred in zip(items, preds) if _letters(item)]
        requests = []
        for item, _ in lettered:
            for shift in range(len(item.choices)):
                texts = tuple(item.choice_texts[i] for i in _rotation(item, shift))
                requests += [(loglik_context(item, texts), " " + label) for label in item.choices]
        scores = iter(lm.loglikelihood(requests))
        for item, pred in lettered:
            pred.circular = []
            for shift in range(len(item.choices)):
                position, tied = _argmax([next(scores) for _ in item.choices], item.id, f"circular{shift}")
                ties["circular"] += tied
                pred.circular.append(item.choices[_rotation(item, shift)[position]])
    if "generate" in modes:
        texts = lm.generate([lm.chat_prompt(generation_messages(item)) for item in items], max_new_tokens)
        for item, pred, text in zip(items, preds, texts):
            pred.generated_text = text
            picked = extract_choice(text, item.choices, item.choice_texts)
            pred.generated = None if picked is None else item.choices[picked]
    metrics = summarize(preds, modes, ties, items)
    if "generate" in modes:
        metrics["degeneration"] = degeneration_rates(texts, [_body(item) for item in items])
    return metrics, preds


def _picked_labels(preds: list[Prediction], mode: str, items: list[MultipleChoiceItem] | None) -> Counter:
    """What the mode picked, by the label *shown*: for circular, the letter chosen under each rotation."""
    if mode == "circular":
        by_id = {i.id: i for i in items or []}
        counts: Counter = Counter()
        for p in preds:
            item = by_id.get(p.id)
            for shift, label in enumerate(p.circular or []):
                if item is None:
                    counts[label] += 1
                    continue
                original = item.choices.index(label)
                counts[item.choices[_rotation(item, shift).index(original)]] += 1
        return counts
    field_name = METRICS[mode][1]
    return Counter(getattr(p, field_name) or UNPARSEABLE for p in preds)


def mode_summary(preds: list[Prediction], mode: str, ties: int = 0, items=None) -> dict:
    """n, accuracy with its Wilson interval, picked-label distribution and the label-bias flag of one mode."""
    if mode == "circular":
        preds = [p for p in preds if p.circular]
    correct = sum(p.correct(mode if mode != "generate" else "generated") for p in preds)
    acc = proportion(correct, len(preds))
    picks = _picked_labels(preds, mode, items)
    total = sum(picks.values())
    top_label, top_count = max(picks.items(), key=lambda kv: kv[1]) if picks else (None, 0)
    gold = Counter(p.gold for p in preds)
    entry = {"n": acc.n, "acc": acc.value, "ci_low": acc.ci_low, "ci_high": acc.ci_high,
             "picks": dict(sorted(picks.items())), "gold": dict(sorted(gold.items())),
             "top_label": top_label, "top_share": top_count / total if total else None,
             "label_bias": bool(total and top_count / total > BIAS_SHARE), "ties": ties}
    if mode == "generate":
        entry["parse_rate"] = proportion(sum(p.generated is not None for p in preds), len(preds)).as_dict()
    return entry


def summarize(preds: list[Prediction], modes, ties: Counter | None = None, items=None) -> dict:
    ties = ties or Counter()
    shown = [m for mode in modes for m in ((mode, "cloze_norm") if mode == "cloze" else (mode,))]
    metrics: dict = {"n": len(preds), "modes": {}}
    for mode in shown:
        entry = mode_summary(preds, mode, ties[mode], items)
        if not entry["n"]:
            continue  # e.g. circular on yes/no/maybe items, whose options are not listed in the prompt
        metrics["modes"][mode] = entry
        metrics[METRICS[mode][0]] = entry["acc"]
    if "generate" in modes:
        metrics["unparseable_rate"] = 1 - metrics["modes"]["generate"]["parse_rate"]["value"] if preds else 0.0
    metrics["by_subject"] = _by_subject(preds, [m for m in shown if m in metrics["modes"]])
    return metrics


def item_scores(preds: list[Prediction], modes: dict) -> dict[str, dict[str, float]]:
    """metric -> item id -> 0/1, what a paired comparison of two reports needs."""
    return {METRICS[mode][0]: {p.id: float(p.correct(mode if mode != "generate" else "generated"))
                               for p in preds if mode != "circular" or p.circular}
            for mode in modes}


def _by_subject(preds: list[Prediction], modes) -> dict:
    groups: dict[str, list[Prediction]] = defaultdict(list)
    for p in preds:
        groups[p.subject or "all"].append(p)
    out = {}
    for subject, group in sorted(groups.items()):
        row = {"n": len(group)}
        for mode in modes:
            scored = [p for p in group if mode != "circular" or p.circular]
            if scored:
                row[METRICS[mode][0]] = sum(p.correct(mode if mode != "generate" else "generated")
                                            for p in scored) / len(scored)
        out[subject] = row
    return out
