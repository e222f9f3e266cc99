"""Drug mentions in free text (question, model answer), each with its ConText assertion.

The target matcher is the knowledge base's drug dictionary (`find_drugs`: 107k names of 20k
drugs, brands included); the assertion (negated, hypothetical, another person's, historical) comes
from clinical.guardrails.context. A mention that is negated ("no clarithromycin", "avoid
clarithromycin") is not a proposal and is not checked; a hypothetical one ("if we were to give
clarithromycin") is a proposal and is.
"""

from __future__ import annotations

from dataclasses import dataclass

from clinical.guardrails.context import Assertion, assert_spans
from clinical.knowledge import get_knowledge_base


@dataclass(frozen=True)
class DrugMention:
    drug: str  # canonical name
    text: str  # as written
    start: int
    end: int
    assertion: Assertion

    @property
    def proposed(self) -> bool:
        """Should this mention be checked against the patient? Everything not ruled out or not theirs."""
        a = self.assertion
        return not (a.negated or a.family)


def drug_mentions(text: str) -> list[DrugMention]:
    """Every dictionary drug in `text`, with its assertion; raises if the NLP pipeline cannot load."""
    if not isinstance(text, str):
        raise TypeError("text must be a string")
    found = get_knowledge_base().find_drugs(text)
    assertions = assert_spans(text, [(m.start, m.end) for m in found])
    return [DrugMention(m.drug.name, text[m.start:m.end], m.start, m.end, a) for m, a in zip(found, assertions)]


def proposed_drugs(text: str) -> list[str]:
    """Canonical names of the drugs `text` proposes (not negated, not someone else's), in order."""
    return list(dict.fromkeys(m.drug for m in drug_mentions(text) if m.proposed))
