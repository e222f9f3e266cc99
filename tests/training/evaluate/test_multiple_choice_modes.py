"""Letter, cloze, circular and generation scoring: what each mode picks, its bias flag, and its ties.

The scripted models below implement the evaluator's `LanguageModel` protocol with fixed habits (always
the letter "A"; knows the answer text; cannot tell options apart), so the expected scores follow from
the habit; the embedded model's batched cloze scores are checked against the naive loop in
test_loglikelihood.py.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from training.evaluate.benchmarks import MultipleChoiceItem
from training.evaluate.multiple_choice import (Prediction, cloze_context, generation_messages, item_scores,
                                               loglik_context, mode_summary, score_multiple_choice, summarize)
from training.evaluate.stats import proportion

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


def right_letter_shown(context: str) -> str:
    """The letter under which a letter prompt of ITEMS shows its item's right text."""
    item = next(i for i in ITEMS if i.question in context)
    shown = [line[3:] for line in context.splitlines() if line[:3] in ("A. ", "B. ", "C. ", "D. ")]
    return "ABCD"[shown.index(item.choice_texts[item.gold])]


def test_circular_needs_every_rotation_right():
    class RightUnlessFirst(KnowsTheText):
        """Picks the right text's letter, except when the right text is shown first (then says B)."""

        def loglikelihood(self, requests):
            out = []
            for context, cont in requests:
                right = right_letter_shown(context)
                out.append(0.0 if cont == " " + (right if right != "A" else "B") else -5.0)
            return out
    metrics, _ = score_multiple_choice(RightUnlessFirst(), ITEMS, ("loglik", "circular"))
    assert metrics["modes"]["loglik"]["acc"] == pytest.approx(9 / 12)
    assert metrics["modes"]["circular"]["acc"] == 0.0  # every item is shown first in one rotation


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown scoring mode"):
        score_multiple_choice(LetterHabit(), ITEMS, ("vibes",))


# --- the prompts: what each mode shows the model ---------------------------------------------------

LETTERED = MultipleChoiceItem(id="p1", question="Which drug is a statin?", choices=("A", "B", "C"),
                              choice_texts=("aspirin", "atorvastatin", "warfarin"), gold=1, context="Statins lower LDL.")
LABELLED = MultipleChoiceItem(id="p2", question="Does aspirin prevent stroke?", choices=("yes", "no", "maybe"),
                              choice_texts=("yes", "no", "maybe"), gold=0)
PROMPTS = [
    ("letter-lists-the-options", lambda: loglik_context(LETTERED),
     "Abstract: Statins lower LDL.\nQuestion: Which drug is a statin?\nA. aspirin\nB. atorvastatin\nC. warfarin\nAnswer:"),
    ("letter-lists-given-texts", lambda: loglik_context(LETTERED, ("warfarin", "aspirin", "atorvastatin")),
     "Abstract: Statins lower LDL.\nQuestion: Which drug is a statin?\nA. warfarin\nB. aspirin\nC. atorvastatin\nAnswer:"),
    ("cloze-hides-the-options", lambda: cloze_context(LETTERED),
     "Abstract: Statins lower LDL.\nQuestion: Which drug is a statin?\nAnswer:"),
    ("labels-are-not-listed", lambda: loglik_context(LABELLED), "Question: Does aspirin prevent stroke?\nAnswer:"),
    ("labels-cloze", lambda: cloze_context(LABELLED), "Question: Does aspirin prevent stroke?\nAnswer:"),
    ("generate-asks-for-a-letter", lambda: generation_messages(LETTERED), [{"role": "user", "content":
     "Abstract: Statins lower LDL.\nQuestion: Which drug is a statin?\nA. aspirin\nB. atorvastatin\nC. warfarin\n\n"
     "Answer with the letter of the correct option (A, B or C) only."}]),
    ("generate-asks-for-a-word", lambda: generation_messages(LABELLED), [{"role": "user", "content":
     "Question: Does aspirin prevent stroke?\n\nAnswer with one word: yes, no or maybe."}]),
]


@pytest.mark.parametrize("build, expected", [p[1:] for p in PROMPTS], ids=[p[0] for p in PROMPTS])
def test_each_mode_shows_the_model_the_harness_prompt(build, expected):
    assert build() == expected  # built in the test, not at import, so that a check of the builders sees them


# --- circular evaluation ----------------------------------------------------------------------------

class KnowsTheLetter(LetterHabit):
    """Picks the letter under which the right text is shown, whatever the order of the options."""

    def loglikelihood(self, requests):
        return [0.0 if cont == " " + right_letter_shown(context) else -5.0 for context, cont in requests]


def test_circular_counts_an_item_right_in_every_rotation():
    metrics, preds = score_multiple_choice(KnowsTheLetter(), ITEMS, ("loglik", "circular"))
    circular = metrics["modes"]["circular"]
    assert metrics["acc_circular"] == 1.0 and circular["n"] == len(ITEMS) and circular["ties"] == 0
    # The right text is shown under every letter once across the four rotations.
    assert circular["picks"] == {"A": 12, "B": 12, "C": 12, "D": 12} and not circular["label_bias"]
    assert all(p.circular == [p.gold] * 4 and p.correct("circular") for p in preds)


def test_rotation_by_shift_shows_option_shift_first():
    # A letter habit picks whatever is shown first: under rotation `shift` that is the original option `shift`.
    _, preds = score_multiple_choice(LetterHabit(), ITEMS, ("circular",))
    assert all(p.circular == ["A", "B", "C", "D"] for p in preds)
    assert not any(p.correct("circular") for p in preds)


def test_circular_picks_without_the_items_count_the_original_labels():
    _, preds = score_multiple_choice(LetterHabit(), ITEMS, ("circular",))
    assert mode_summary(preds, "circular", items=ITEMS)["picks"] == {"A": 48}  # the letter shown
    assert mode_summary(preds, "circular")["picks"] == {"A": 12, "B": 12, "C": 12, "D": 12}  # the option picked


def test_circular_skips_items_whose_options_are_not_listed():
    items = ITEMS[:2] + [MultipleChoiceItem(id="yn", question="Which drug treats condition 0? Yes or no",
                                            choices=("yes", "no"), choice_texts=("yes", "no"), gold=1)]
    metrics, preds = score_multiple_choice(LetterHabit(), items, ("circular",))
    assert metrics["modes"]["circular"]["n"] == 2 and preds[2].circular is None
    assert not preds[2].correct("circular")


# --- one mode's summary -------------------------------------------------------------------------------

def _preds(picks: str, golds: str) -> list[Prediction]:
    return [Prediction(f"i{n}", "", gold, loglik=pick) for n, (pick, gold) in enumerate(zip(picks, golds))]


def test_mode_summary_reports_accuracy_interval_picks_gold_and_bias():
    entry = mode_summary(_preds("AAAB", "ABCB"), "loglik")
    acc = proportion(2, 4)
    assert entry == {"n": 4, "acc": 0.5, "ci_low": acc.ci_low, "ci_high": acc.ci_high,
                     "picks": {"A": 3, "B": 1}, "gold": {"A": 1, "B": 2, "C": 1},
                     "top_label": "A", "top_share": 0.75, "label_bias": True, "ties": 0}
    balanced = mode_summary(_preds("ABAB", "ABCB"), "loglik", ties=3)
    assert balanced["top_share"] == 0.5 and not balanced["label_bias"] and balanced["ties"] == 3  # not above half


def test_mode_summary_of_nothing_has_no_top_label():
    entry = mode_summary([], "loglik")
    assert entry["n"] == 0 and entry["acc"] is None and entry["picks"] == {} and entry["gold"] == {}
    assert (entry["top_label"], entry["top_share"], entry["label_bias"]) == (None, None, False)


def test_unread_generations_are_counted_apart():
    preds = [Prediction("g1", "", "A", generated="A"), Prediction("g2", "", "B", generated=None)]
    entry = mode_summary(preds, "generate")
    assert entry["acc"] == 0.5 and entry["picks"] == {"(unparseable)": 1, "A": 1}
    assert entry["parse_rate"] == proportion(1, 2).as_dict()
    metrics = summarize(preds, ("generate",))
    assert metrics["unparseable_rate"] == 0.5 and metrics["acc_generate"] == 0.5


class PerCharacter(LetterHabit):
    """Summed log-likelihood -1 per character: per character, every option ties."""

    def loglikelihood(self, requests):
        return [-float(len(cont.strip())) for _, cont in requests]


@pytest.mark.parametrize("model, mode, field", [(Indifferent, "loglik", "loglik"), (Indifferent, "cloze", "cloze"),
                                               (PerCharacter, "cloze", "cloze_norm")], ids=["loglik", "cloze", "cloze_norm"])
def test_ties_are_broken_by_the_item_ids_seed_so_any_tool_can_reproduce_them(model, mode, field):
    _, preds = score_multiple_choice(model(), ITEMS, (mode,))
    for item, pred in zip(ITEMS, preds):
        seed = int.from_bytes(hashlib.sha256(f"{item.id}/{field}".encode()).digest()[:8], "big")
        assert getattr(pred, field) == item.choices[random.Random(seed).choice(range(4))]


def test_a_clear_winner_is_not_a_tie():
    metrics, _ = score_multiple_choice(LetterHabit(), ITEMS, ("loglik", "cloze", "circular"))
    assert {m: e["ties"] for m, e in metrics["modes"].items()} == {"loglik": 0, "cloze": 12, "cloze_norm": 0,
                                                                    "circular": 0}
    indifferent, _ = score_multiple_choice(Indifferent(), ITEMS, ("circular",))
    assert indifferent["modes"]["circular"]["ties"] == 4 * len(ITEMS)  # every rotation of every item


# --- per-item scores and subjects -----------------------------------------------------------------------

def test_item_scores_give_each_metric_a_zero_or_one_per_item():
    preds = [Prediction("a", "", "A", loglik="A", circular=["A", "B"], generated="A"),
             Prediction("b", "", "B", loglik="A", circular=None, generated=None)]
    assert item_scores(preds, ["loglik", "circular", "generate"]) == {
        "acc_loglik": {"a": 1.0, "b": 0.0},
        "acc_circular": {"a": 0.0},  # an item without rotations has no circular score
        "acc_generate": {"a": 1.0, "b": 0.0},
    }


def test_accuracy_by_subject():
    preds = [Prediction("a", "cardio", "A", loglik="A", generated="B"), Prediction("b", "cardio", "B", loglik="A"),
             Prediction("c", "", "C", loglik="C", generated="C")]
    metrics = summarize(preds, ("loglik", "generate"))
    assert metrics["n"] == 3
    assert metrics["by_subject"] == {"all": {"n": 1, "acc_loglik": 1.0, "acc_generate": 1.0},
                                     "cardio": {"n": 2, "acc_loglik": 0.5, "acc_generate": 0.0}}
