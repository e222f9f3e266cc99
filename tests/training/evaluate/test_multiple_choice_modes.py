"""Letter, cloze, circular and generation scoring: what each mode picks, its bias flag, and its ties.

The scripted models below implement the evaluator's `LanguageModel` protocol with fixed habits (always
the letter "A"; knows the answer text; cannot tell options apart), so the expected scores follow from
the habit; the embedded model's batched cloze scores are checked against the naive loop in
test_loglikelihood.py.
"""

from __future__ import annotations

import pytest

from training.evaluate.benchmarks import MultipleChoiceItem
from training.evaluate.multiple_choice import cloze_context, score_multiple_choice

ITEMS = [MultipleChoiceItem(id=f"q{i}", question=f"Which drug treats condition {i}?", choices=("A", "B", "C", "D"),
                            choice_texts=("aspirin", "metformin", "insulin glargine", "warfarin"), gold=i % 4)
         for i in range(12)]


class LetterHabit:
    """Always finds " A" most likely after a lettered question; generates "A"."""

    name = "letter-habit"

    def chat_prompt(self, messages):
        return messages[-1]["content"]

    def loglikelihood(self, requests):
        return [0.0 if cont == " A" else -5.0 for _, cont in requests]

    def generate(self, prompts, max_new_tokens):
        return ["A" for _ in prompts]


class KnowsTheText(LetterHabit):
    """Knows each item's answer text (cloze right), but still says "A" by letter."""

    def loglikelihood(self, requests):
        out = []
        for context, cont in requests:
            item = next(i for i in ITEMS if i.question in context)
            if context == cloze_context(item):
                out.append(0.0 if cont == " " + item.choice_texts[item.gold] else -5.0)
            else:
                out.append(0.0 if cont == " A" else -5.0)
        return out


class Indifferent(LetterHabit):
    """Every option equally likely: every pick is a tie."""

    def loglikelihood(self, requests):
        return [-1.0 for _ in requests]


def test_letter_habit_is_flagged_and_circular_sees_through_it():
    metrics, preds = score_multiple_choice(LetterHabit(), ITEMS, ("loglik", "circular", "generate"))
    modes = metrics["modes"]
    # Letter mode scores exactly the share of gold "A" (3 of 12): a letter habit, not knowledge.
    assert modes["loglik"]["acc"] == pytest.approx(3 / 12) and modes["loglik"]["picks"] == {"A": 12}
    assert modes["loglik"]["label_bias"] and modes["generate"]["label_bias"]
    assert modes["circular"]["acc"] == 0.0 and modes["circular"]["picks"] == {"A": 48}
    assert modes["generate"]["parse_rate"]["value"] == 1.0
    assert metrics["degeneration"]["n"] == len(ITEMS) and metrics["degeneration"]["any"]["value"] == 0.0
    assert all(p.circular for p in preds)


def test_cloze_sees_knowledge_the_letter_mode_hides():
    metrics, _ = score_multiple_choice(KnowsTheText(), ITEMS, ("loglik", "cloze"))
    modes = metrics["modes"]
    assert modes["cloze"]["acc"] == 1.0 and modes["cloze_norm"]["acc"] == 1.0
    assert modes["cloze"]["picks"] == {"A": 3, "B": 3, "C": 3, "D": 3} and not modes["cloze"]["label_bias"]
    assert modes["loglik"]["acc"] == pytest.approx(0.25)
    assert metrics["acc_cloze"] == 1.0 and metrics["acc_loglik"] == pytest.approx(0.25)


def test_cloze_norm_divides_by_option_characters():
    # Summed log-likelihood -1 per character: raw favours the shortest text, per-character is a tie for all.
    class PerCharacter(LetterHabit):
        def loglikelihood(self, requests):
            return [-float(len(cont.strip())) for _, cont in requests]
    metrics, preds = score_multiple_choice(PerCharacter(), ITEMS, ("cloze",))
    assert {p.cloze for p in preds} == {"A"}  # "aspirin" (7) is shorter than "metformin", "warfarin"...
    assert metrics["modes"]["cloze_norm"]["ties"] == len(ITEMS)


def test_ties_are_spread_not_given_to_the_first_option():
    metrics, preds = score_multiple_choice(Indifferent(), ITEMS * 5, ("loglik", "cloze"))
    assert metrics["modes"]["loglik"]["ties"] == 60
    assert len(metrics["modes"]["loglik"]["picks"]) > 1  # not all "A"
    again, _ = score_multiple_choice(Indifferent(), ITEMS * 5, ("loglik", "cloze"))
    assert again["modes"] == metrics["modes"]  # seeded by item id: reproducible


def test_circular_needs_every_rotation_right():
    class RightUnlessFirst(KnowsTheText):
        """Picks the right text's letter, except when the right text is shown first (then says B)."""

        def loglikelihood(self, requests):
            out = []
            for context, cont in requests:
                item = next(i for i in ITEMS if i.question in context)
                shown = [line[3:] for line in context.splitlines() if line[:3] in ("A. ", "B. ", "C. ", "D. ")]
                right = "ABCD"[shown.index(item.choice_texts[item.gold])]
                out.append(0.0 if cont == " " + (right if right != "A" else "B") else -5.0)
            return out
    metrics, _ = score_multiple_choice(RightUnlessFirst(), ITEMS, ("loglik", "circular"))
    assert metrics["modes"]["loglik"]["acc"] == pytest.approx(9 / 12)
    assert metrics["modes"]["circular"]["acc"] == 0.0  # every item is shown first in one rotation


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown scoring mode"):
        score_multiple_choice(LetterHabit(), ITEMS, ("vibes",))
