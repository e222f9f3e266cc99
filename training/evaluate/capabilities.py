"""The four capability scores over capability-tagged JSONL (see `training.records`).

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

from training.evaluate.lm import LanguageModel
from training.records import Capability, CapabilityRecord
from training.rewards import VerifierResult
from training.rewards.constraints import check_constraints
from training.rewards.verifiers import verify_answer, verify_reasoning, verify_safety


@dataclass
class RecordVerdict:
    id: str
    capability: str
    score: float
    checks: dict[str, VerifierResult] = field(default_factory=dict)
    completion: str = ""


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


def score_capabilities(lm: LanguageModel, records: list[CapabilityRecord],
                       max_new_tokens: int = 256) -> tuple[dict, list[RecordVerdict]]:
    """Generate an answer per record and score the four capabilities (absent ones are omitted)."""
    prompts = [lm.chat_prompt([m.model_dump() for m in r.messages]) for r in records]
    completions = lm.generate(prompts, max_new_tokens)
    verdicts = [verify_record(r, c) for r, c in zip(records, completions)]
    return summarize(verdicts), verdicts


def summarize(verdicts: list[RecordVerdict]) -> dict:
    by_capability: dict[str, list[RecordVerdict]] = defaultdict(list)
    for v in verdicts:
        by_capability[v.capability].append(v)
    metrics: dict = {"n": len(verdicts)}
    for capability in Capability:
        group = by_capability.get(capability.value)
        if not group:
            continue
        metrics[capability.value] = sum(v.score for v in group) / len(group)
        components: dict[str, list[float]] = defaultdict(list)
        for v in group:
            for name, check in v.checks.items():
                components[name].append(check.score)
        metrics[f"{capability.value}_n"] = len(group)
        for name, scores in components.items():
            metrics[f"{capability.value}_{name}"] = sum(scores) / len(scores)
    return metrics
