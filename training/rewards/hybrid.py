"""The hybrid reward: rule components routed by capability, plus the project's reward model.

Each rule component is a TRL reward function, `(completions, record, **kwargs) -> list[float | None]`,
returning `None` where the component does not apply to a row (TRL then leaves it out of that row's
sum). A row carries its capability record as JSON in the `record` column, so a reward reads the
same spec the evaluator reads (`training.evaluate.capabilities.verify_record`): the training signal
and the reported score cannot drift apart.

Which component applies to which capability (ROUTING) follows DESIGN.md's table: knowledge is
judged by its answer, reasoning by answer and path, instruction following by its constraints,
integration by all four; the reward model scores every capability.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Callable, Sequence

from training.records import Capability, CapabilityRecord
from training.rewards.constraints import check_constraints
from training.rewards.verifiers import verify_answer, verify_reasoning, verify_safety

RULE_COMPONENTS = ("answer", "reasoning", "constraints", "safety")
MODEL_COMPONENT = "model"
COMPONENTS = (*RULE_COMPONENTS, MODEL_COMPONENT)

ROUTING: dict[Capability, tuple[str, ...]] = {
    Capability.KNOWLEDGE: ("answer", MODEL_COMPONENT),
    Capability.REASONING: ("answer", "reasoning", MODEL_COMPONENT),
    Capability.INSTRUCTION: ("constraints", MODEL_COMPONENT),
    Capability.INTEGRATION: ("answer", "reasoning", "constraints", "safety", MODEL_COMPONENT),
}

# The starting mix inside a capability. Rules are the ground truth; the learned reward model
# gets a smaller share because it can be gamed (the paper's hybrid keeps rules dominant).
BASE_WEIGHTS: dict[str, float] = {"answer": 1.0, "reasoning": 0.7, "constraints": 1.0, "safety": 1.0,
                                  MODEL_COMPONENT: 0.3}


@lru_cache(maxsize=4096)
def parse_record(record_json: str) -> CapabilityRecord:
    return CapabilityRecord.model_validate_json(record_json)


def completion_text(completion) -> str:
    """TRL passes a string (standard format) or a list of messages (conversational format)."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion if m.get("role", "assistant") == "assistant")


def _routed(component: str, record: CapabilityRecord) -> bool:
    return component in ROUTING[record.capability]


def answer_score(completion: str, record: CapabilityRecord) -> float | None:
    spec = record.verification.answer
    return verify_answer(completion, spec).score if spec and _routed("answer", record) else None


def reasoning_score(completion: str, record: CapabilityRecord) -> float | None:
    spec = record.verification.reasoning
    if not spec or not _routed("reasoning", record):
        return None
    return verify_reasoning(completion, spec, record.verification.answer).score


def constraints_score(completion: str, record: CapabilityRecord) -> float | None:
    specs = record.verification.constraints
    if not specs or not _routed("constraints", record):
        return None
    return check_constraints(completion, specs, prompt=record.messages[-1].content).score


def safety_score(completion: str, record: CapabilityRecord) -> float | None:
    spec = record.verification.safety
    if not spec or not spec.forbidden or not _routed("safety", record):
        return None
    return verify_safety(completion, spec).score


RULE_SCORERS: dict[str, Callable[[str, CapabilityRecord], float | None]] = {
    "answer": answer_score, "reasoning": reasoning_score,
    "constraints": constraints_score, "safety": safety_score,
}


def rule_reward(component: str) -> Callable[..., list[float | None]]:
    """A TRL reward function for one rule component, named after it (TRL logs by `__name__`)."""
    if component not in RULE_SCORERS:
        raise ValueError(f"unknown rule component {component!r}; choose from {', '.join(RULE_SCORERS)}")
    scorer = RULE_SCORERS[component]

    def reward(completions: Sequence, record: Sequence[str], **_: object) -> list[float | None]:
        return [scorer(completion_text(c), parse_record(r)) for c, r in zip(completions, record)]

    reward.__name__ = component
    return reward


class ModelReward:
    """The model-based component: the project's reward model, squashed to (0, 1).

    A sigmoid of the reward model's logit keeps it on the rules' [0, 1] scale, so "lagging its
    target" means the same thing for every component.
    """

    __name__ = MODEL_COMPONENT

    def __init__(self, model_dir: str, max_length: int = 512, batch_size: int = 8):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir, torch_dtype=torch.float32)
        self.model.eval()
        self.max_length, self.batch_size = max_length, batch_size

    def texts(self, prompts: Sequence, completions: Sequence) -> list[str]:
        texts = []
        for prompt, completion in zip(prompts, completions):
            messages = list(prompt) if not isinstance(prompt, str) else [{"role": "user", "content": prompt}]
            messages.append({"role": "assistant", "content": completion_text(completion)})
            texts.append(self.tokenizer.apply_chat_template(messages, tokenize=False))
        return texts

    def logits(self, texts: list[str]) -> list[float]:
        import torch

        out: list[float] = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(texts[i:i + self.batch_size], return_tensors="pt", padding=True,
                                       truncation=True, max_length=self.max_length, return_token_type_ids=False)
                out.extend(self.model(**batch).logits[:, 0].float().tolist())
        return out

    def __call__(self, prompts: Sequence, completions: Sequence, **_: object) -> list[float]:
        return [1.0 / (1.0 + math.exp(-x)) for x in self.logits(self.texts(prompts, completions))]


def reward_functions(model_reward: Callable | None = None) -> list[Callable]:
    """The hybrid's components in COMPONENTS order; the model component only when a model is given."""
    funcs: list[Callable] = [rule_reward(c) for c in RULE_COMPONENTS]
    if model_reward is not None:
        funcs.append(model_reward)
    return funcs


def record_column(records: Sequence[CapabilityRecord]) -> list[str]:
    """The `record` dataset column: each record as compact JSON, parsed (and cached) by the rewards."""
    return [json.dumps(r.model_dump(mode="json"), separators=(",", ":")) for r in records]
