"""The four capability scores over capability-tagged JSONL (see `training.records`).

Knowledge and reasoning records that carry options are scored by cloze log-likelihood: each option's
own text after the question (options not listed), the largest per-character log-likelihood wins (as
lm-evaluation-harness's `acc_norm`; the raw sum is reported beside it as `<capability>_cloze_raw`). This
is cheap (no generation) and blind to answer format, so a 135M model's knowledge is measured even when
it cannot yet write "Answer: B". Records without options, and instruction following and integration,
are scored by generation and the verifiers; their parse rate (a final answer could be read) and
degeneration are reported beside the score, since a gain that is only a better parse is no knowledge gain.

Our reading of the paper's capabilities (DESIGN.md), per record:
- knowledge: the final answer is right;
- reasoning: the final answer is right AND the completion names the knowledge path's entities in order;
- instruction following: the share of the record's constraints satisfied;
- integration: every check of the record passes at once (answer, reasoning when given,
  all constraints, safety); the score is the share of such records.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from training.evaluate.degeneration import degeneration, degeneration_rates
from training.evaluate.lm import LanguageModel
from training.evaluate.multiple_choice import _argmax
from training.evaluate.stats import mean_interval, proportion
from training.records import Capability, CapabilityRecord
from training.rewards import VerifierResult
from training.rewards.constraints import check_constraints
from training.rewards.answers import final_answer_text
from training.rewards.verifiers import verify_answer, verify_reasoning, verify_safety

CLOZE_CAPABILITIES = (Capability.KNOWLEDGE, Capability.REASONING)


@dataclass
class RecordVerdict:
    id: str
    capability: str
    score: float
    checks: dict[str, VerifierResult] = field(default_factory=dict)
    completion: str = ""
    method: str = "generate"  # or "cloze"
    parsed: bool | None = None  # generation: a final answer could be read (None when the record has no answer)
    cloze_raw: float | None = None  # cloze: the raw-sum pick's score, beside the per-character one
    degeneration: dict | None = None  # generation: loops and echoes (training/evaluate/degeneration.py)


def verify_record(record: CapabilityRecord, completion: str) -> RecordVerdict:
    """Run every check the record's spec allows and fold them into its capability's score."""
    spec, checks = record.verification, {}
    if spec.answer:
        checks["answer"] = verify_answer(completion, spec.answer)
    if spec.reasoning:
        checks["reasoning"] = verify_reasoning(completion, spec.reasoning, spec.answer)
    if spec.constraints:
        prompt = record.messages[-1].content
        checks["constraints"] = check_constraints(completion, spec.constraints, prompt=prompt)
    if spec.safety and spec.safety.forbidden:
        checks["safety"] = verify_safety(completion, spec.safety)

    capability = record.capability
    if capability is Capability.KNOWLEDGE:
        score = checks["answer"].score
    elif capability is Capability.REASONING:
        score = float(checks["answer"].passed and checks["reasoning"].passed)
    elif capability is Capability.INSTRUCTION:
        score = checks["constraints"].score
    else:
        score = float(all(c.passed for c in checks.values()))
    return RecordVerdict(record.id, capability.value, score, checks, completion)


def clozeable(record: CapabilityRecord) -> bool:
    answer = record.verification.answer
    return record.capability in CLOZE_CAPABILITIES and answer is not None and bool(answer.options)


def cloze_question(record: CapabilityRecord) -> str:
    """The user's question without its lettered option lines, ending where the answer text goes."""
    options = record.verification.answer.options or {}
    listed = {f"{k}. {v}" for k, v in options.items()} | {f"{k}) {v}" for k, v in options.items()}
    stem = "\n".join(line for line in record.messages[-1].content.splitlines() if line.strip() not in listed)
    return f"Question: {stem.strip()}\nAnswer:"


def score_cloze(lm: LanguageModel, records: list[CapabilityRecord]) -> list[RecordVerdict]:
    requests = [(cloze_question(r), " " + text) for r in records for text in r.verification.answer.options.values()]
    scores = iter(lm.loglikelihood(requests) if requests else [])
    verdicts = []
    for r in records:
        labels, texts = zip(*r.verification.answer.options.items())
        raw = [next(scores) for _ in labels]
        norm, _ = _argmax([s / max(len(t), 1) for s, t in zip(raw, texts)], r.id, "cloze_norm")
        plain, _ = _argmax(raw, r.id, "cloze")
        gold = r.verification.answer.value
        check = VerifierResult(score=float(labels[norm] == gold),
                               reason=f"cloze picked {labels[norm]} ({texts[norm]!r}); gold {gold}")
        verdicts.append(RecordVerdict(r.id, r.capability.value, check.score, {"answer": check}, completion=labels[norm],
                                      method="cloze", cloze_raw=float(labels[plain] == gold)))
    return verdicts


def score_capabilities(lm: LanguageModel, records: list[CapabilityRecord], max_new_tokens: int = 256,
                       cloze: bool = True) -> tuple[dict, list[RecordVerdict]]:
    """Score the four capabilities (absent ones are omitted): cloze where the record allows and `cloze`
    is on, else generation and the verifiers."""
    by_cloze = [r for r in records if cloze and clozeable(r)]
    generated = [r for r in records if not (cloze and clozeable(r))]
    prompts = [lm.chat_prompt([m.model_dump() for m in r.messages]) for r in generated]
    completions = lm.generate(prompts, max_new_tokens) if generated else []
    verdicts = {v.id: v for v in score_cloze(lm, by_cloze)}
    for r, c in zip(generated, completions):
        v = verify_record(r, c)
        v.parsed = bool(final_answer_text(c).strip()) if r.verification.answer else None
        v.degeneration = vars(degeneration(c, r.messages[-1].content, reference=r.reference))
        verdicts[r.id] = v
    ordered = [verdicts[r.id] for r in records]
    metrics = summarize(ordered)
    metrics["degeneration"] = degeneration_rates(completions, [r.messages[-1].content for r in generated],
                                                 references=[r.reference for r in generated])
    return metrics, ordered


def summarize(verdicts: list[RecordVerdict]) -> dict:
    by_capability: dict[str, list[RecordVerdict]] = defaultdict(list)
    for v in verdicts:
        by_capability[v.capability].append(v)
    metrics: dict = {"n": len(verdicts), "intervals": {}}
    for capability in Capability:
        group = by_capability.get(capability.value)
        if not group:
            continue
        name = capability.value
        scores = [v.score for v in group]
        metrics[name] = sum(scores) / len(scores)
        low, high = mean_interval(scores)
        metrics["intervals"][name] = {"n": len(group), "value": metrics[name], "ci_low": low, "ci_high": high}
        metrics[f"{name}_n"] = len(group)
        methods = sorted({v.method for v in group})
        metrics[f"{name}_method"] = "+".join(methods)
        cloze = [v for v in group if v.method == "cloze"]
        if cloze:
            metrics[f"{name}_cloze_n"] = len(cloze)
            metrics[f"{name}_cloze_raw"] = sum(v.cloze_raw for v in cloze) / len(cloze)
            picks = defaultdict(int)
            for v in cloze:
                picks[v.completion] += 1
            metrics[f"{name}_cloze_picks"] = dict(sorted(picks.items()))
        answered = [v for v in group if v.parsed is not None]
        if answered:
            metrics[f"{name}_parse_rate"] = proportion(sum(v.parsed for v in answered), len(answered)).as_dict()
        components: dict[str, list[float]] = defaultdict(list)
        for v in group:
            for check_name, check in v.checks.items():
                components[check_name].append(check.score)
        for check_name, values in components.items():
            metrics[f"{name}_{check_name}"] = sum(values) / len(values)
    return metrics
