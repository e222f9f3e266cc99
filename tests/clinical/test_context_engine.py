"""clinical/guardrails/context.py: medspaCy's ConText with the project's rules, over caller-given spans."""

import subprocess
import sys
from pathlib import Path

import pytest

from clinical.guardrails import context
from clinical.guardrails.context import CLAUSE_BREAKS, RULES, assert_spans

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def spans_of(text: str, *phrases: str) -> list[tuple[int, int]]:
    return [(text.index(p), text.index(p) + len(p)) for p in phrases]


def test_engine_is_medspacy_context_with_only_our_rules():
    nlp = context._pipeline()
    assert nlp.pipe_names == ["sentencizer", "medspacy_context"]
    rules = nlp.get_pipe("medspacy_context").rules
    assert len(rules) == len(RULES) + len(CLAUSE_BREAKS)  # medspaCy's default file is not loaded
    assert {r.literal for r in rules} >= {"do not hesitate", "years ago", "; (clause break)"}


def test_each_phrase_has_one_rule():
    # Two rules on the same words overlap, and medspaCy keeps one of two overlapping modifiers.
    phrases = [p for p, _, _ in RULES]
    assert len(phrases) == len(set(phrases))


def test_termination_ends_a_scope_shorter_than_the_sentence():
    text = "History of anaphylaxis to penicillin years ago; which antibiotic for strep throat now?"
    penicillin, antibiotic = assert_spans(text, spans_of(text, "penicillin", "antibiotic"))
    assert penicillin.historical and not antibiotic.historical, antibiotic.cues


def test_comma_ends_a_negation_only_before_a_new_instruction():
    text = "Avoid ibuprofen, give acetaminophen."
    assert [a.negated for a in assert_spans(text, spans_of(text, "ibuprofen", "acetaminophen"))] == [True, False]
    text = "No aspirin, ibuprofen or naproxen for him."
    assert all(a.negated for a in assert_spans(text, spans_of(text, "aspirin", "ibuprofen", "naproxen")))


def test_scope_is_eight_tokens():
    near = "no one two three four five six seven aspirin"  # the target is the 8th token after "no"
    far = "no one two three four five six seven eight aspirin"
    assert assert_spans(near, spans_of(near, "aspirin"))[0].negated
    assert not assert_spans(far, spans_of(far, "aspirin"))[0].negated


def test_a_targets_own_words_do_not_qualify_it():
    # "won't" and "stop" lie inside the red flag, which medspaCy's own overlap test misses
    for text, target in (("her seizure won't stop for 10 min", "seizure won't stop for 10 min"),
                         ("he is not breathing", "not breathing")):
        [a] = assert_spans(text, spans_of(text, target))
        assert not a.negated and a.affirmed, a.cues


def test_overlapping_and_repeated_targets_each_get_an_assertion():
    text = "she denies crushing chest pain"
    spans = [(11, 30), (20, 30), (11, 30)]
    out = assert_spans(text, spans)
    assert [(a.start, a.end) for a in out] == spans
    assert all(a.negated and a.cues == ("negated:denies",) for a in out)


def test_empty_span_is_returned_unqualified():
    assert assert_spans("no aspirin", [(3, 3)]) == [context.Assertion(3, 3)]
    assert assert_spans("no aspirin", []) == []


def test_a_span_outside_the_text_is_returned_unqualified_not_an_error():
    assert assert_spans("no aspirin", [(20, 25), (3, 10)]) == [
        context.Assertion(20, 25), context.Assertion(3, 10, negated=True, cues=("negated:no",))]


def test_each_target_gets_its_own_modifiers():
    text = "Start ibuprofen today. Avoid aspirin."
    ibuprofen, aspirin = assert_spans(text, spans_of(text, "ibuprofen", "aspirin"))
    assert not ibuprofen.negated and aspirin.negated and aspirin.cues == ("negated:avoid",)


def test_rules_are_built_from_the_tables_with_their_category_direction_and_scope():
    # Built afresh (the pipeline caches its rules): one medspaCy rule per table row, as written.
    rules = context.context_rules()
    import medspacy.context

    # ... with medspaCy's one-sided overlap test replaced by the symmetric one (see _medspacy_context)
    assert medspacy.context.context_modifier.tuple_overlaps is context._overlaps
    assert [(r.literal, r.category, r.direction, r.max_scope) for r in rules[:len(RULES)]] == [
        (phrase, category, direction, None if direction in ("TERMINATE", "PSEUDO") else context.MAX_SCOPE)
        for phrase, category, direction in RULES]
    assert [(r.literal, r.category, r.direction, r.pattern) for r in rules[len(RULES):]] == [
        (name, "TERMINATE", "TERMINATE", pattern) for name, pattern in CLAUSE_BREAKS]


_FRESH_PROCESS = """
import warnings
from clinical.guardrails import context
context.load()
# medspaCy's matcher module runs warnings.filterwarnings("ignore") when imported
leaked = [f for f in warnings.filters if f[0] == "ignore" and f[1] is None and f[2] is Warning and f[3] is None]
assert not leaked, leaked
"""


def test_loading_medspacy_does_not_silence_warnings_process_wide():
    result = subprocess.run([sys.executable, "-c", _FRESH_PROCESS], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("text, target, flag", [
    ("His father had a stroke at 60.", "stroke", "family"),
    ("History of anaphylaxis to penicillin years ago.", "anaphylaxis", "historical"),
    ("If she develops a rash, stop amoxicillin.", "rash", "hypothetical"),
    ("She denies chest pain.", "chest pain", "negated"),
])
def test_each_modifier_category_sets_its_own_flag(text, target, flag):
    [a] = assert_spans(text, spans_of(text, target))
    flags = {"family": a.family, "historical": a.historical, "hypothetical": a.hypothetical, "negated": a.negated}
    assert [k for k, v in flags.items() if v] == [flag], a.cues
