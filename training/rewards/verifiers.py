"""Rule verifiers for the capability record's `verification` spec.

Each takes a completion and one part of the spec and returns a `VerifierResult`: 1.0 or 0.0 with
the reason (the reasoning verifier gives partial credit for a partial chain). Instruction
constraints are checked in `training.rewards.constraints`.
"""

from __future__ import annotations

import re

from training.records import AnswerSpec, ReasoningSpec, SafetySpec
from training.rewards import VerifierResult
from training.rewards.answers import extract_choice, final_answer_text, first_mention, mentions

# A forbidden drug named right after one of these is being warned against, not recommended.
_NEGATION = re.compile(
    r"\b(avoid|avoiding|not|no|never|without|instead of|rather than|contraindicated|stop|discontinue|hold|allerg\w*)\b[^.;\n]{0,40}$",
    re.IGNORECASE,
)


_PLAN_HEADING = re.compile(r"^\W*plan\W*(?:[:\n]|$)", re.IGNORECASE | re.MULTILINE)


def verify_answer(completion: str, spec: AnswerSpec) -> VerifierResult:
    """The completion's final answer is the spec's value (or an accepted synonym)."""
    if spec.kind in ("option", "label"):
        labels = list(spec.options)
        picked = extract_choice(completion, labels, list(spec.options.values()))
        if picked is None:
            return VerifierResult(0.0, f"no single option among {labels} could be read from the answer")
        if labels[picked] == spec.value:
            return VerifierResult(1.0, f"picked {spec.value}, the correct option")
        return VerifierResult(0.0, f"picked {labels[picked]}, expected {spec.value}")
    stated = final_answer_text(completion)
    names = [spec.value, *spec.accepted]
    for name in names:
        if mentions(stated, name):
            return VerifierResult(1.0, f"the answer names {name!r}")
    return VerifierResult(0.0, f"the answer {stated[:80]!r} names none of {names[:4]}")


def verify_reasoning(completion: str, spec: ReasoningSpec, answer: AnswerSpec | None = None) -> VerifierResult:
    """The completion names the chain's entities in order, and its final answer is right.

    Score: the share of chain entities named in order (a chain named out of order counts only its
    longest ordered prefix), times 0 when the final answer is wrong, since reasoning that reaches
    the wrong conclusion is not valid reasoning.
    """
    if answer is not None:
        verdict = verify_answer(completion, answer)
        if not verdict.passed:
            return VerifierResult(0.0, f"final answer wrong: {verdict.reason}")
    last, named = -1, 0
    for entity in spec.chain:
        offset = first_mention(completion, [entity, *spec.synonyms.get(entity, [])])
        if offset is None or offset < last:
            missing = "not named" if offset is None else "named out of order"
            score = named / len(spec.chain)
            return VerifierResult(score, f"{named}/{len(spec.chain)} chain steps; {entity!r} {missing}")
        last, named = offset, named + 1
    return VerifierResult(1.0, f"all {len(spec.chain)} chain steps named in order")


def recommendation_text(completion: str) -> str:
    """The part of a completion that recommends: from a "Plan" heading on when there is one (the
    assessment may name a drug to explain why it is ruled out), else the whole completion."""
    match = _PLAN_HEADING.search(completion)
    return completion[match.start():] if match else completion


def verify_safety(completion: str, spec: SafetySpec) -> VerifierResult:
    """No drug the case forbids is recommended. Naming it in a warning ("avoid warfarin") is fine."""
    recommending = recommendation_text(completion)
    for forbidden in spec.forbidden:
        for name in (forbidden.drug, *forbidden.names):
            for sentence in re.split(r"(?<=[.;!?\n])\s*", recommending):
                if mentions(sentence, name) and not _warned_against(sentence, name):
                    return VerifierResult(
                        0.0, f"recommends {forbidden.drug} ({name!r}) despite a {forbidden.reason} {forbidden.evidence}".strip()
                    )
    return VerifierResult(1.0, "no forbidden drug recommended")


def _warned_against(sentence: str, name: str) -> bool:
    index = sentence.lower().find(name.lower())
    return index >= 0 and _NEGATION.search(sentence[:index]) is not None
