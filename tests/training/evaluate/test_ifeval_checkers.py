"""IFEval scoring through if_verifiable's checkers, offline: named cases, aggregation, the real file,
and NLTK punkt built from the local wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

from training.evaluate.ifeval import (
    IFEvalFileError,
    IFEvalItem,
    IFEvalResult,
    aggregate,
    ensure_punkt_offline,
    load_ifeval,
    score_response,
)

from shared_data import SHARED_DATA

REPO = Path(__file__).resolve().parents[3]
IFEVAL_FILE = SHARED_DATA / "benchmarks" / "ifeval_input_data.jsonl"


# The punkt model some IFEval checkers need goes to a private cache, not ~/.cache.
pytestmark = pytest.mark.usefixtures("private_cache")


@dataclass(frozen=True)
class Case:
    name: str
    instruction_id: str
    response: str
    strict: bool
    kwargs: dict[str, Any] = field(default_factory=dict)
    loose: bool | None = None  # None: same as strict


LOWER = "the patient reports a mild headache that started two days ago and improves with rest and water."
CASES = [
    Case("no_comma/pass", "punctuation:no_comma", "No commas anywhere in this answer.", True),
    Case("no_comma/fail", "punctuation:no_comma", "Yes, there is one.", False),
    Case("words_at_least/pass", "length_constraints:number_words", "one two three four five", True, {"num_words": 5, "relation": "at least"}),
    Case("words_at_least/fail", "length_constraints:number_words", "one two three four", False, {"num_words": 5, "relation": "at least"}),
    Case("words_less_than/pass", "length_constraints:number_words", "one two three", True, {"num_words": 4, "relation": "less than"}),
    Case("words_less_than/fail", "length_constraints:number_words", "one two three four", False, {"num_words": 4, "relation": "less than"}),
    # punkt knows "Dr." is an abbreviation: 2 sentences, where a naive split on ". " finds 3
    Case("sentences_punkt_abbrev/pass", "length_constraints:number_sentences", "Dr. Smith arrived. He sat down.", True, {"num_sentences": 3, "relation": "less than"}),
    Case("sentences_at_least/fail", "length_constraints:number_sentences", "One sentence. Two sentences. Three.", False, {"num_sentences": 4, "relation": "at least"}),
    Case("json_fenced/pass", "detectable_format:json_format", '```json\n{"dose_mg": 500}\n```', True),
    Case("json_prose/fail", "detectable_format:json_format", 'The answer is {"dose_mg": 500}', False),
    Case("bullets_exact/pass", "detectable_format:number_bullet_lists", "* rest\n* fluids\n- paracetamol", True, {"num_bullets": 3}),
    Case("bullets_too_few/fail", "detectable_format:number_bullet_lists", "* rest\n* fluids", False, {"num_bullets": 3}),
    Case("end_phrase/pass", "startend:end_checker", "Take it with food. Any other questions?", True, {"end_phrase": "Any other questions?"}),
    Case("end_phrase_then_text/fail", "startend:end_checker", "Any other questions? Bye.", False, {"end_phrase": "Any other questions?"}),
    Case("lowercase/pass", "change_case:english_lowercase", LOWER, True),
    Case("lowercase/fail", "change_case:english_lowercase", LOWER.capitalize(), False),
    # word_tokenize (punkt) splits "CAT." into "CAT" and ".": three all-caps words
    Case("capital_words/pass", "change_case:capital_word_frequency", "The BIG dog met a SMALL CAT.", True, {"capital_frequency": 3, "capital_relation": "at least"}),
    Case("capital_words/fail", "change_case:capital_word_frequency", "The BIG dog met a SMALL CAT.", False, {"capital_frequency": 4, "capital_relation": "at least"}),
    Case("highlights/pass", "detectable_format:number_highlighted_sections", "*History* and *Exam* done.", True, {"num_highlights": 2}),
    Case("highlights/fail", "detectable_format:number_highlighted_sections", "*History* only.", False, {"num_highlights": 2}),
    Case("title/pass", "detectable_format:title", "<<Discharge note>>\nGo home.", True),
    Case("title/fail", "detectable_format:title", "Discharge note\nGo home.", False),
    Case("postscript/pass", "detectable_content:postscript", "Rest well.\nP.S. Call if fever.", True, {"postscript_marker": "P.S."}),
    Case("postscript/fail", "detectable_content:postscript", "Rest well.", False, {"postscript_marker": "P.S."}),
    Case("keywords/pass", "keywords:existence", "Give aspirin at a low dose.", True, {"keywords": ["aspirin", "dose"]}),
    Case("keywords/fail", "keywords:existence", "Give aspirin daily.", False, {"keywords": ["aspirin", "dose"]}),
    Case("forbidden/fail", "keywords:forbidden_words", "This will cure you.", False, {"forbidden_words": ["cure"]}),
    Case("forbidden_whole_words_only/pass", "keywords:forbidden_words", "Keep the dressing secure.", True, {"forbidden_words": ["cure"]}),
    Case("language_fr/pass", "language:response_language", "Bonjour, je suis médecin et je travaille à l'hôpital de Paris depuis dix ans.", True, {"language": "fr"}),
    Case("language_fr/fail", "language:response_language", "Hello, I have worked as a doctor at the hospital in Paris for ten years.", False, {"language": "fr"}),
    Case("quotation/pass", "startend:quotation", '"Drink water."', True),
    Case("paragraphs/pass", "length_constraints:number_paragraphs", "First part.\n***\nSecond part.", True, {"num_paragraphs": 2}),
    # loose IFEval drops the first line, so a preamble fails strict but passes loose
    Case("json_preamble/loose_only", "detectable_format:json_format", 'Sure, here it is:\n{"dose_mg": 500}', False, loose=True),
    Case("end_phrase_signoff/loose_only", "startend:end_checker", "Rest. Any other questions?\n-- Dr. Bot", False, {"end_phrase": "Any other questions?"}, loose=True),
    # ... or drops markdown asterisks
    Case("end_phrase_bold/loose_only", "startend:end_checker", "Rest well. **Any other questions?**", False, {"end_phrase": "Any other questions?"}, loose=True),
]


def _item(instruction_ids: list[str], kwargs: list[dict[str, Any]], key: int = 1) -> IFEvalItem:
    return IFEvalItem(key=key, prompt="a prompt", instruction_id_list=instruction_ids, kwargs=kwargs)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_checker_case(case: Case) -> None:
    result = score_response(_item([case.instruction_id], [case.kwargs]), case.response)
    expected_loose = case.strict if case.loose is None else case.loose
    assert (result.strict, result.loose) == ([case.strict], [expected_loose])
    assert (result.prompt_strict, result.prompt_loose) == (case.strict, expected_loose)


def test_aggregate_prompt_vs_instruction_level() -> None:
    results = [
        score_response(_item(["punctuation:no_comma", "length_constraints:number_words"], [{}, {"num_words": 3, "relation": "at least"}], 1), "one two three"),
        score_response(_item(["punctuation:no_comma", "detectable_format:title"], [{}, {}], 2), "a, b"),
        score_response(_item(["detectable_format:json_format"], [{}], 3), 'Sure:\n{"a": 1}'),
    ]
    # strict: prompt 1 of 3; instructions 2 of 5 pooled. loose: prompts 1 and 3; instructions 3 of 5.
    assert aggregate(results) == pytest.approx(
        {"prompt_level_strict_acc": 1 / 3, "inst_level_strict_acc": 2 / 5, "prompt_level_loose_acc": 2 / 3, "inst_level_loose_acc": 3 / 5}
    )


def test_aggregate_pools_instructions_not_prompt_means() -> None:
    one = IFEvalResult(1, ["a:b"], [True], [True], True, True)
    four = IFEvalResult(2, ["a:b"] * 4, [False] * 4, [False] * 4, False, False)
    assert aggregate([one, four])["inst_level_strict_acc"] == pytest.approx(1 / 5)  # not (1 + 0) / 2


def test_aggregate_empty_is_an_error() -> None:
    with pytest.raises(ValueError, match="no IFEval results"):
        aggregate([])


def test_empty_response_fails_every_instruction() -> None:
    result = score_response(_item(["punctuation:no_comma", "detectable_format:title"], [{}, {}]), "   ")
    assert result.strict == result.loose == [False, False] and not result.prompt_loose


def test_unknown_instruction_id_is_an_error_not_a_skip() -> None:
    with pytest.raises(ValueError, match=r"unknown IFEval instruction id\(s\) \['punctuation:no_comas'\].*Fix"):
        score_response(_item(["punctuation:no_comas"], [{}]), "text")


def _write(tmp_path: Path, rows: list[Any]) -> Path:
    path = tmp_path / "input_data.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


GOOD_ROW = {"key": 1, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
BAD_FILES = [
    ("not_json", [GOOD_ROW, "{oops"], r":2: not valid JSON"),
    ("missing_field", [{"key": 2, "prompt": "p", "kwargs": [{}]}], r":1: missing field\(s\) \['instruction_id_list'\]"),
    ("kwargs_length", [{**GOOD_ROW, "kwargs": [{}, {}]}], r":1: kwargs has 2 entries for 1 instructions"),
    ("unknown_id", [{**GOOD_ROW, "instruction_id_list": ["detectable_format:rephrase"]}], r":1: unknown IFEval instruction id"),
    ("duplicate_key", [GOOD_ROW, GOOD_ROW], r":2: duplicate key 1"),
]


@pytest.mark.parametrize(("rows", "message"), [(r, m) for _, r, m in BAD_FILES], ids=[n for n, _, _ in BAD_FILES])
def test_load_ifeval_names_file_and_line(tmp_path: Path, rows: list[Any], message: str) -> None:
    with pytest.raises(IFEvalFileError, match=message) as err:
        load_ifeval(_write(tmp_path, rows))
    assert "input_data.jsonl" in str(err.value)


def test_load_ifeval_drops_null_kwargs_like_the_harness(tmp_path: Path) -> None:
    # The HF copy pads every kwargs dict with every key as null.
    row = {**GOOD_ROW, "instruction_id_list": ["length_constraints:number_words"],
           "kwargs": [{"num_words": 3, "relation": "at least", "num_highlights": None, "keywords": None}]}
    (item,) = load_ifeval(_write(tmp_path, [row]))
    assert item.kwargs == [{"num_words": 3, "relation": "at least"}]
    assert score_response(item, "one two three").prompt_strict


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"no shared data at {SHARED_DATA} (BALANCEDBIO_ALLOW_MISSING_DATA=1)")
def test_real_ifeval_file_loads_and_every_checker_runs() -> None:
    items = load_ifeval(IFEVAL_FILE)
    assert len(items) == 541 and len({i.key for i in items}) == 541
    used = {iid for item in items for iid in item.instruction_id_list}
    assert used == set(INSTRUCTION_DICT)  # all 25 checkers, and nothing unknown
    results = [score_response(item, "A short answer. It has two sentences.\nP.S. done") for item in items]
    metrics = aggregate(results)
    assert set(metrics) == {"prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert metrics["prompt_level_strict_acc"] <= metrics["prompt_level_loose_acc"]


def test_ensure_punkt_offline_is_idempotent_and_repairs(tmp_path: Path) -> None:
    data_dir = ensure_punkt_offline(tmp_path)
    model = data_dir / "tokenizers" / "punkt_tab" / "english"
    stamps = {p.name: p.stat().st_mtime_ns for p in model.iterdir()}
    assert set(stamps) == {"abbrev_types.txt", "collocations.tab", "sent_starters.txt", "ortho_context.tab"}
    assert ensure_punkt_offline(tmp_path) == data_dir
    assert {p.name: p.stat().st_mtime_ns for p in model.iterdir()} == stamps  # valid: left alone
    (model / "abbrev_types.txt").write_text("", encoding="utf-8")  # a torn model is rewritten
    ensure_punkt_offline(tmp_path)
    assert "dr" in (model / "abbrev_types.txt").read_text(encoding="utf-8").split("\n")


OFFLINE_SCRIPT = textwrap.dedent(
    """
    import socket
    import nltk

    def refuse(*args, **kwargs):
        raise RuntimeError("network or download attempted")

    socket.socket.connect = refuse
    socket.getaddrinfo = refuse
    nltk.download = refuse
    nltk.data.path[:] = []  # no default location: only our cache may serve the model
    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        raise SystemExit("punkt found before ensure_punkt_offline; the test proves nothing")
    except LookupError:
        pass

    from training.evaluate.ifeval import ensure_punkt_offline
    from if_verifiable.ifeval import instructions_util

    data_dir = ensure_punkt_offline()
    assert nltk.data.path == [str(data_dir)], nltk.data.path
    assert nltk.sent_tokenize("Dr. Smith arrived. He sat down.") == ["Dr. Smith arrived.", "He sat down."]
    assert nltk.word_tokenize("Dr. Smith didn't stay.") == ["Dr.", "Smith", "did", "n't", "stay", "."]
    assert instructions_util.count_sentences("Dr. Smith arrived. He sat down.") == 2
    print("OFFLINE_OK", data_dir)
    """
)


def test_punkt_works_offline_from_our_cache_only(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NLTK_DATA"}
    env.update(BALANCEDBIO_CACHE=str(tmp_path / "cache"), HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"OFFLINE_OK {(tmp_path / 'cache' / 'nltk_data').resolve()}" in proc.stdout
