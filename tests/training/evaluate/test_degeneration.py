"""Degeneration: loops (a 4-gram of words 3+ times) and echoes of the prompt (12 consecutive prompt words)."""

from __future__ import annotations

import pytest

from training.evaluate.degeneration import ECHO_SPAN, degeneration, degeneration_rates

QUESTION = ("A 67-year-old man presents with fever, productive cough and right lower lobe consolidation on the "
            "chest radiograph. What is the most likely diagnosis?")

CASES = [
    # name, text, prompt, repeated, echo
    ("clean answer", "Community-acquired pneumonia; start amoxicillin and reassess in 48 hours.", QUESTION, False, False),
    ("empty output", "", QUESTION, False, False),
    ("loop of a sentence", "The patient has pneumonia. " * 3, "", True, False),
    ("loop ignores case and punctuation", "The patient has pneumonia! the PATIENT has, pneumonia; the patient has pneumonia",
     "", True, False),
    ("4-gram twice is not a loop", "The patient has pneumonia. The patient has pneumonia.", "", False, False),
    ("overlapping single-word loop", "no no no no no no", "", True, False),
    ("echo of a case sentence", "A 67-year-old man presents with fever, productive cough and right lower lobe consolidation.",
     QUESTION, False, True),
    ("11 prompt words are not an echo", "man presents with fever productive cough and right lower lobe consolidation",
     QUESTION, False, False),
    ("stock phrase is not an echo", "The most likely diagnosis is pneumonia.", QUESTION, False, False),
    ("short prompt echoed whole", "Sure. List three causes of anaemia.", "List three causes of anaemia", False, True),
    ("prompt shorter than n never echoes", "Hello there", "Hello there", False, False),
    ("question read back in a loop", (QUESTION + " ") * 3, QUESTION, True, True),
]


@pytest.mark.parametrize("name,text,prompt,repeated,echo", CASES, ids=[c[0] for c in CASES])
def test_degeneration_cases(name, text, prompt, repeated, echo):
    result = degeneration(text, prompt)
    assert (result.repeated_ngram, result.echoes_prompt) == (repeated, echo), result.reason
    assert result.degenerate == (repeated or echo)
    assert result.reason


def test_reason_names_the_repeated_ngram_and_its_count():
    result = degeneration("take aspirin daily now " * 4)
    assert "'take aspirin daily now' occurs 4 times" in result.reason


def test_reason_names_the_echoed_span():
    result = degeneration(QUESTION, QUESTION)
    assert f"reproduces {ECHO_SPAN} consecutive words" in result.reason


@pytest.mark.parametrize("n,repeats,text,expected", [
    (4, 3, "chest pain chest pain chest pain", False),  # the default sees "chest pain chest pain" only twice
    (2, 3, "chest pain chest pain chest pain", True),
    (2, 4, "chest pain chest pain chest pain", False),
    (5, 3, "the patient has pneumonia. " * 3, False),
], ids=["default-4gram-on-bigram-loop", "n2-r3", "n2-r4", "n5-too-long"])
def test_n_and_repeats_are_honoured(n, repeats, text, expected):
    assert degeneration(text, n=n, repeats=repeats).repeated_ngram is expected


@pytest.mark.parametrize("n,repeats", [(0, 3), (4, 1)])
def test_bad_parameters_are_refused(n, repeats):
    with pytest.raises(ValueError, match="n >= 1 and repeats >= 2"):
        degeneration("text", n=n, repeats=repeats)


def test_rates_count_each_kind_with_wilson_intervals():
    texts = ["fine answer about sepsis", "loop loop loop loop loop loop", QUESTION, "another fine answer"]
    prompts = ["", "", QUESTION, QUESTION]
    rates = degeneration_rates(texts, prompts)
    assert rates["n"] == 4
    assert (rates["repeated_ngram"]["k"], rates["echoes_prompt"]["k"], rates["any"]["k"]) == (1, 1, 2)
    assert rates["any"]["value"] == pytest.approx(0.5)
    for key in ("repeated_ngram", "echoes_prompt", "any"):
        entry = rates[key]
        assert 0 <= entry["ci_low"] <= entry["value"] <= entry["ci_high"] <= 1
    # Wilson for 2/4 at 95%: [0.150, 0.850].
    assert (rates["any"]["ci_low"], rates["any"]["ci_high"]) == pytest.approx((0.150, 0.850), abs=1e-3)


def test_rates_of_nothing_have_no_value():
    rates = degeneration_rates([], [])
    assert rates["n"] == 0 and rates["any"]["value"] is None and rates["any"]["ci_low"] is None


def test_rates_need_one_prompt_per_output():
    with pytest.raises(ValueError, match="one prompt per output"):
        degeneration_rates(["a", "b"], ["p"])


CASE_NOTE_PROMPT = ("A case for medication review (no identifiers).\nHistory: 60-year-old man with left sided colitis "
                    "with rectal bleeding (K51.511). Active medications: procainamide and acebutolol.\nWhich candidate "
                    "should be started? Check each one against every active medication for interactions.")
CASE_NOTE_REFERENCE = ("Subjective: 60-year-old man with left sided colitis with rectal bleeding (K51.511). Active "
                       "medications: procainamide and acebutolol.\nAssessment: rabeprazole has no interaction.")
HISTORY_LINE = "History: 60-year-old man with left sided colitis with rectal bleeding (K51.511). Active medications: procainamide and acebutolol."
INSTRUCTIONS = "Check each one against every active medication for interactions."

REFERENCE_CASES = [
    # name, text, reference, echo
    ("restating the case as the reference does", HISTORY_LINE + " Assessment: start rabeprazole.", CASE_NOTE_REFERENCE, False),
    ("the same restatement without a reference", HISTORY_LINE + " Assessment: start rabeprazole.", "", True),
    ("reading the instructions back", "Which candidate should be started? " + INSTRUCTIONS, CASE_NOTE_REFERENCE, True),
    ("case and instructions back to back", HISTORY_LINE + " Which candidate should be started? " + INSTRUCTIONS,
     CASE_NOTE_REFERENCE, True),
]


@pytest.mark.parametrize("name,text,reference,echo", REFERENCE_CASES, ids=[c[0] for c in REFERENCE_CASES])
def test_what_the_reference_restates_is_not_an_echo(name, text, reference, echo):
    assert degeneration(text, CASE_NOTE_PROMPT, reference=reference).echoes_prompt is echo


def test_rates_take_one_reference_per_output():
    text = HISTORY_LINE + " Assessment: start rabeprazole."
    assert degeneration_rates([text], [CASE_NOTE_PROMPT], references=[CASE_NOTE_REFERENCE])["echoes_prompt"]["k"] == 0
    assert degeneration_rates([text], [CASE_NOTE_PROMPT])["echoes_prompt"]["k"] == 1
    with pytest.raises(ValueError, match="one reference per output"):
        degeneration_rates([text], [CASE_NOTE_PROMPT], references=[])
