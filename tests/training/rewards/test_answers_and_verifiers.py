"""Reading answers out of free text, and the answer / reasoning / safety verifiers."""

from __future__ import annotations

import pytest

from training.records import AnswerSpec, ForbiddenDrug, ReasoningSpec, SafetySpec
from training.rewards import VerifierResult
from training.rewards.answers import extract_choice, final_answer_text, normalize
from training.rewards.verifiers import verify_answer, verify_reasoning, verify_safety

LETTERS = ("A", "B", "C", "D")
TEXTS = ("Aspirin", "Warfarin", "Heparin", "Clopidogrel")
CHOICE_CASES = [
    ("bare-letter", "B", 1),
    ("letter-with-period", "C. Heparin", 2),
    ("answer-is", "The answer is D.", 3),
    ("answer-colon-parenthesis", "Answer: (A)", 0),
    ("parenthesised-letter-in-prose", "I would pick (B) because it is a vitamin K antagonist.", 1),
    ("option-text-only", "Clopidogrel is the P2Y12 inhibitor.", 3),
    ("two-letters-is-ambiguous", "Answer: A or Answer: B", None),
    ("empty", "   ", None),
    ("no-option-at-all", "I am not sure about this one.", None),
    ("lowercase-answer-is", "the answer is c", 2),
    ("article-a-is-not-an-option", "A patient like this needs more tests.", None),
]


@pytest.mark.parametrize("text, expected", [c[1:] for c in CHOICE_CASES], ids=[c[0] for c in CHOICE_CASES])
def test_extract_choice_letters(text, expected):
    assert extract_choice(text, LETTERS, TEXTS) == expected


LABEL_CASES = [
    ("yes-first-word", "Yes, the trial showed a benefit.", 0),
    ("no-after-marker", "Looking at the data... Answer: no", 1),
    ("maybe-capitalised", "Maybe.", 2),
    ("two-labels-in-prose", "It could be yes or no.", None),
]


@pytest.mark.parametrize("text, expected", [c[1:] for c in LABEL_CASES], ids=[c[0] for c in LABEL_CASES])
def test_extract_choice_labels(text, expected):
    assert extract_choice(text, ("yes", "no", "maybe")) == expected


def test_final_answer_text_takes_the_last_marker_line():
    assert final_answer_text("Answer: first guess\nthinking more\nFinal answer: atorvastatin\nDone.") == "atorvastatin"
    assert normalize("Type-2  Diabetes, Mellitus!") == "type 2 diabetes mellitus"


ENTITY = AnswerSpec(kind="entity", value="atorvastatin", accepted=["Lipitor"])
ANSWER_CASES = [
    ("canonical-name", "Answer: Atorvastatin", 1.0),
    ("accepted-brand", "Answer: Lipitor 20 mg", 1.0),
    ("wrong-drug", "Answer: simvastatin", 0.0),
    ("substring-is-not-a-word", "Answer: atorvastatinol", 0.0),
    ("no-marker-uses-whole-text", "I would start atorvastatin.", 1.0),
]


@pytest.mark.parametrize("text, score", [c[1:] for c in ANSWER_CASES], ids=[c[0] for c in ANSWER_CASES])
def test_verify_answer_entity(text, score):
    result = verify_answer(text, ENTITY)
    assert result.score == score and result.reason


CHAIN = ReasoningSpec(chain=["arachnodactyly", "ectopia lentis", "Marfan syndrome"],
                      synonyms={"ectopia lentis": ["lens dislocation"]})
MARFAN = AnswerSpec(kind="entity", value="Marfan syndrome")
REASONING_CASES = [
    ("full-chain-in-order", "Arachnodactyly and lens dislocation suggest Marfan syndrome.\nAnswer: Marfan syndrome", 1.0,
     "all 3 chain steps named in order"),
    ("missing-step", "Arachnodactyly suggests Marfan syndrome.\nAnswer: Marfan syndrome", 1 / 3,
     "1/3 chain steps; 'ectopia lentis' not named"),
    ("out-of-order-keeps-ordered-prefix", "Ectopia lentis, then arachnodactyly: Marfan.\nAnswer: Marfan syndrome", 1 / 3,
     "1/3 chain steps; 'ectopia lentis' named out of order"),
    ("right-chain-wrong-answer", "Arachnodactyly, ectopia lentis, Marfan syndrome? No.\nAnswer: homocystinuria", 0.0,
     "final answer wrong: "),
]


@pytest.mark.parametrize("text, score, reason", [c[1:] for c in REASONING_CASES], ids=[c[0] for c in REASONING_CASES])
def test_verify_reasoning(text, score, reason):
    result = verify_reasoning(text, CHAIN, MARFAN)
    assert result.score == pytest.approx(score)
    assert result.reason.startswith(reason), result.reason


SAFETY = SafetySpec(forbidden=[ForbiddenDrug(drug="clarithromycin", names=["Biaxin"], reason="interaction",
                                             evidence="DB00641+DB01211")])
SAFETY_CASES = [
    ("recommends-forbidden", "Start clarithromycin 500 mg twice daily.", 0.0),
    ("recommends-forbidden-brand", "Plan: Biaxin for a week.", 0.0),
    ("warns-against-it", "Avoid clarithromycin with simvastatin; give azithromycin.", 1.0),
    ("explains-in-assessment-then-safe-plan", "Assessment: clarithromycin interacts.\nPlan: azithromycin.", 1.0),
    ("unrelated", "Give azithromycin.", 1.0),
]


@pytest.mark.parametrize("text, score", [c[1:] for c in SAFETY_CASES], ids=[c[0] for c in SAFETY_CASES])
def test_verify_safety(text, score):
    result = verify_safety(text, SAFETY)
    assert result.score == score, result.reason


OPTION = AnswerSpec(kind="option", value="B", options={"A": "simvastatin", "B": "atorvastatin", "C": "rosuvastatin"})
MANY_NAMES = AnswerSpec(kind="entity", value="paracetamol", accepted=["acetaminophen", "APAP", "Tylenol", "Panadol"])
ANSWER_REASONS = [
    ("right-option", "Answer: B", OPTION, 1.0, "picked B, the correct option"),
    ("wrong-option", "Answer: A", OPTION, 0.0, "picked A, expected B"),
    ("no-option", "I am not sure.", OPTION, 0.0, "no single option among ['A', 'B', 'C'] could be read from the answer"),
    ("entity-named", "Answer: Tylenol 1 g", MANY_NAMES, 1.0, "the answer names 'Tylenol'"),
    ("entity-missing-lists-four-names", "Answer: ibuprofen", MANY_NAMES, 0.0,
     "the answer 'ibuprofen' names none of ['paracetamol', 'acetaminophen', 'APAP', 'Tylenol']"),
]


@pytest.mark.parametrize("text, spec, score, reason", [c[1:] for c in ANSWER_REASONS], ids=[c[0] for c in ANSWER_REASONS])
def test_verify_answer_says_what_it_read(text, spec, score, reason):
    assert verify_answer(text, spec) == VerifierResult(score, reason)
