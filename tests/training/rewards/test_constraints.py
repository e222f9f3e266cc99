"""The constraint registry: clinical format checkers, IFEval ids through it, errors, fraction scoring."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

from training.records import ConstraintSpec
from training.rewards.constraints import (CONSTRAINTS, _ifeval_entry, check_constraint, check_constraints,
                                          validate_constraint_spec)

from shared_data import SHARED_DATA

IFEVAL_FILE = SHARED_DATA / "benchmarks" / "ifeval_input_data.jsonl"


# The punkt model some IFEval checkers need goes to a private cache, not ~/.cache.
pytestmark = pytest.mark.usefixtures("private_cache")


@dataclass(frozen=True)
class Case:
    name: str
    id: str
    response: str
    passed: bool
    kwargs: dict[str, Any] = field(default_factory=dict)
    reason: str = ""  # a fragment the reason must contain


SOAP_OK = "Subjective: cough for 3 days.\nObjective: T 38.2 C, crackles right base.\nAssessment: community-acquired pneumonia.\nPlan: amoxicillin, review in 48 h."
SOAP_MD = "## Subjective\nCough.\n**Objective**\nCrackles.\n**Assessment:** pneumonia\n### PLAN\n- amoxicillin"
PLAN = {"min_items": 2, "max_items": 4}
FIELDS = {"fields": ["drug", "dose_mg", "prn"], "types": {"drug": "string", "dose_mg": "number", "prn": "boolean"}}
GOOD_JSON = json.dumps({"drug": "amoxicillin", "dose_mg": 500, "prn": False})

CASES = [
    Case("soap/colon_labels", "clinical:soap_sections", SOAP_OK, True, reason="present in order"),
    Case("soap/markdown_headings", "clinical:soap_sections", SOAP_MD, True),
    Case("soap/missing_section", "clinical:soap_sections", SOAP_OK.replace("Objective:", "Exam:"), False, reason="missing section(s) ['Objective']"),
    Case("soap/wrong_order", "clinical:soap_sections", "Objective: febrile.\nSubjective: cough.\nAssessment: CAP.\nPlan: antibiotics.", False, reason="out of order"),
    Case("soap/empty_section", "clinical:soap_sections", "Subjective: cough.\nObjective:\n**Assessment**\n  \nPlan: rest.", False, reason="empty section(s) ['Objective', 'Assessment']"),
    # "Subjective findings ..." is prose, not a heading
    Case("soap/prose_is_not_heading", "clinical:soap_sections", "Subjective findings were mild.\nObjective: ok.\nAssessment: ok.\nPlan: ok.", False, reason="['Subjective']"),
    Case("soap/custom_sections", "clinical:soap_sections", "Findings: clear lungs.\nImpression: normal.", True, {"sections": ["Findings", "Impression"]}),
    Case("json/plain", "clinical:json_fields", GOOD_JSON, True, FIELDS),
    Case("json/fenced", "clinical:json_fields", f"```json\n{GOOD_JSON}\n```", True, FIELDS),
    Case("json/fenced_no_language", "clinical:json_fields", f"```\n{GOOD_JSON}\n```", True, {"fields": ["drug"]}),
    Case("json/missing_field", "clinical:json_fields", json.dumps({"drug": "amoxicillin"}), False, FIELDS, "missing field(s) ['dose_mg', 'prn']"),
    Case("json/wrong_type", "clinical:json_fields", json.dumps({"drug": "amoxicillin", "dose_mg": "500", "prn": False}), False, FIELDS, "'dose_mg' is string, expected number"),
    Case("json/bool_is_not_number", "clinical:json_fields", json.dumps({"drug": "x", "dose_mg": True, "prn": False}), False, FIELDS, "'dose_mg' is boolean"),
    Case("json/not_json", "clinical:json_fields", "drug: amoxicillin", False, FIELDS, "not valid JSON"),
    Case("json/prose_around_json", "clinical:json_fields", f"Here you go: {GOOD_JSON}", False, FIELDS, "not valid JSON"),
    Case("json/array_not_object", "clinical:json_fields", "[1, 2]", False, FIELDS, "JSON array, not an object"),
    Case("json/null_not_object", "clinical:json_fields", "null", False, FIELDS, "response is a JSON null, not an object"),
    Case("json/every_wrong_type_named", "clinical:json_fields", json.dumps({"drug": None, "dose_mg": "500", "prn": 1}), False, FIELDS,
         "wrong type(s): 'drug' is null, expected string; 'dose_mg' is string, expected number; 'prn' is number, expected boolean"),
    Case("plan/dot_items", "clinical:numbered_plan", "Plan:\n1. Start amoxicillin.\n2. Paracetamol as needed.\n3. Review in 48 h.", True, PLAN),
    Case("plan/paren_items", "clinical:numbered_plan", "1) Fluids\n2) Rest", True, PLAN),
    Case("plan/not_consecutive", "clinical:numbered_plan", "1. Fluids\n2. Rest\n4. Review", False, PLAN, "2 is followed by 4"),
    Case("plan/starts_at_two", "clinical:numbered_plan", "2. Fluids\n3. Rest", False, PLAN, "starts at 2"),
    Case("plan/too_few", "clinical:numbered_plan", "1. Fluids", False, PLAN, "1 item(s); needs at least 2"),
    Case("plan/too_many", "clinical:numbered_plan", "\n".join(f"{i}. step" for i in range(1, 6)), False, PLAN, "5 items; allows at most 4"),
    Case("plan/no_list", "clinical:numbered_plan", "- Fluids\n- Rest", False, PLAN, "no numbered list"),
    Case("plan/decimal_is_not_item", "clinical:numbered_plan", "1.5 mg daily\n2.5 mg nightly", False, PLAN, "no numbered list"),
    Case("plan/last_list_is_the_plan", "clinical:numbered_plan", "Differential:\n1. CAP\nPlan:\n1. Amoxicillin\n2. Review", True, PLAN, "last of 2"),
    Case("ifeval/no_comma_pass", "punctuation:no_comma", "Rest and fluids.", True),
    Case("ifeval/no_comma_fail", "punctuation:no_comma", "Rest, fluids.", False, reason="refrain from the use of any commas"),
    Case("ifeval/sentences_via_punkt", "length_constraints:number_sentences", "Dr. Lee saw him. He is well.", True, {"num_sentences": 3, "relation": "less than"}),
    Case("ifeval/json_strict_no_preamble", "detectable_format:json_format", 'Sure:\n{"a": 1}', False),
    Case("ifeval/null_kwargs_dropped", "startend:end_checker", "Done. Any other questions?", True, {"end_phrase": "Any other questions?", "num_words": None}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_constraint_case(case: Case) -> None:
    result = check_constraint(case.response, ConstraintSpec(id=case.id, kwargs=case.kwargs))
    assert result.passed is case.passed, result.reason
    assert result.score == (1.0 if case.passed else 0.0)
    assert case.reason in result.reason


def test_registry_holds_every_ifeval_id_and_the_clinical_ones() -> None:
    assert set(CONSTRAINTS) == set(INSTRUCTION_DICT) | {"clinical:soap_sections", "clinical:json_fields", "clinical:numbered_plan"}


def test_prompt_reaches_ifeval_checkers() -> None:
    spec = ConstraintSpec(id="combination:repeat_prompt", kwargs={"prompt_to_repeat": "Describe the plan."})
    assert check_constraint("Describe the plan. Rest and fluids.", spec, prompt="Describe the plan.").passed
    assert not check_constraint("Rest and fluids.", spec, prompt="Describe the plan.").passed


def test_unknown_id_lists_valid_families() -> None:
    with pytest.raises(ValueError) as err:
        check_constraint("x", ConstraintSpec(id="clinical:soap_section"))
    message = str(err.value)
    assert message.startswith("unknown constraint 'clinical:soap_section' (did you mean 'clinical:soap_sections'?); valid ids are ")
    assert "clinical:{json_fields,numbered_plan,soap_sections}" in message and "punctuation:{no_comma}" in message
    families = message.split("valid ids are ", 1)[1].split("; ")  # one "family:{names}" group per family, sorted
    assert families == sorted(families) and len(families) == len({cid.split(":")[0] for cid in CONSTRAINTS})
    assert "punctuation:{no_comma}" in families


BAD_SPECS = [
    ("json_missing_fields", "clinical:json_fields", {}, r"'clinical:json_fields' needs kwarg\(s\) \['fields'\]"),
    ("json_misspelt_kwarg", "clinical:json_fields", {"fields": ["a"], "type": {}}, r"does not take kwarg\(s\) \['type'\]; it accepts \['fields', 'types'\]"),
    ("json_bad_type_name", "clinical:json_fields", {"fields": ["a"], "types": {"a": "int"}}, r"unknown type\(s\) \{'a': 'int'\}"),
    ("json_type_not_a_field", "clinical:json_fields", {"fields": ["a"], "types": {"b": "string"}}, r"names \['b'\], which are not in `fields`"),
    ("plan_missing_min", "clinical:numbered_plan", {"max_items": 3}, r"'clinical:numbered_plan' needs kwarg\(s\) \['min_items'\]"),
    ("plan_max_below_min", "clinical:numbered_plan", {"min_items": 3, "max_items": 2}, r"`max_items` must be an int >= min_items"),
    ("soap_empty_sections", "clinical:soap_sections", {"sections": []}, r"`sections` must be a non-empty list"),
    ("soap_blank_section_name", "clinical:soap_sections", {"sections": ["Findings", "  "]}, r"`sections` must be a non-empty list"),
    ("ifeval_missing_relation", "length_constraints:number_words", {"num_words": 5}, r"'length_constraints:number_words' needs kwarg\(s\) \['relation'\]"),
    ("ifeval_bad_relation", "length_constraints:number_words", {"num_words": 5, "relation": "more than"}, r"rejects kwargs"),
    ("ifeval_kwarg_for_argless", "punctuation:no_comma", {"num_words": 5}, r"does not take kwarg\(s\) \['num_words'\]; it accepts none"),
    ("ifeval_bad_language", "language:response_language", {"language": "klingon"}, r"rejects kwargs"),
]


@pytest.mark.parametrize(("cid", "kwargs", "message"), [b[1:] for b in BAD_SPECS], ids=[b[0] for b in BAD_SPECS])
def test_bad_kwargs_fail_validation_and_checking(cid: str, kwargs: dict[str, Any], message: str) -> None:
    spec = ConstraintSpec(id=cid, kwargs=kwargs)
    with pytest.raises(ValueError, match=message):
        validate_constraint_spec(spec)
    with pytest.raises(ValueError, match=message):
        check_constraint("1. a\n2. b", spec)


def test_validation_catches_kwargs_that_only_fail_when_checked() -> None:
    with pytest.raises(ValueError, match="break the checker"):  # IFEval treats keywords as regexes
        validate_constraint_spec(ConstraintSpec(id="keywords:existence", kwargs={"keywords": ["(unclosed"]}))


@pytest.mark.parametrize("spec", [ConstraintSpec(id="clinical:soap_sections"), ConstraintSpec(id="clinical:json_fields", kwargs=FIELDS),
                                  ConstraintSpec(id="clinical:numbered_plan", kwargs=PLAN), ConstraintSpec(id="detectable_format:title")],
                         ids=["soap", "json", "plan", "ifeval_title"])
def test_valid_specs_validate(spec: ConstraintSpec) -> None:
    assert validate_constraint_spec(spec) is None


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"no shared data at {SHARED_DATA} (BALANCEDBIO_ALLOW_MISSING_DATA=1)")
def test_every_ifeval_benchmark_spec_validates() -> None:
    rows = [json.loads(line) for line in IFEVAL_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]
    specs = [(cid, kwargs) for row in rows for cid, kwargs in zip(row["instruction_id_list"], row["kwargs"])]
    assert len(specs) >= len(rows) > 0  # every IFEval prompt carries at least one instruction
    failures = []
    for cid, kwargs in specs:
        try:
            validate_constraint_spec(ConstraintSpec(id=cid, kwargs=kwargs))
        except ValueError as error:
            failures.append(f"{cid}: {error}")
    assert failures == []


def test_fraction_scoring_names_each_failure() -> None:
    specs = [
        ConstraintSpec(id="clinical:soap_sections"),
        ConstraintSpec(id="punctuation:no_comma"),
        ConstraintSpec(id="clinical:numbered_plan", kwargs={"min_items": 3}),
    ]
    response = SOAP_OK + "\n1. Amoxicillin\n2. Review"  # SOAP passes; it has commas; a 2-item plan
    result = check_constraints(response, specs)
    assert result.score == pytest.approx(1 / 3)
    assert result.reason.startswith("1/3 constraints satisfied; failed: ")
    assert "punctuation:no_comma: not followed" in result.reason
    assert "clinical:numbered_plan: the plan has 2 item(s); needs at least 3" in result.reason
    assert "soap_sections" not in result.reason


def test_fraction_scoring_all_pass_and_empty() -> None:
    result = check_constraints("Rest and fluids.", [ConstraintSpec(id="punctuation:no_comma")])
    assert (result.score, result.reason) == (1.0, "1/1 constraints satisfied")
    with pytest.raises(ValueError, match="^no constraints to check; an instruction task needs at least one ConstraintSpec$"):
        check_constraints("x", [])


@pytest.mark.parametrize("kwargs,valid", [
    ({"min_items": 1}, True), ({"min_items": 1, "max_items": 1}, True), ({"min_items": 0}, False),
    ({"min_items": True}, False), ({"min_items": 2.0}, False), ({"min_items": 2, "max_items": 1}, False),
    ({"min_items": 1, "max_items": 0}, False), ({"min_items": 1, "max_items": False}, False),
], ids=["one", "one_to_one", "zero", "bool", "float", "max_below_min", "max_zero", "max_bool"])
def test_numbered_plan_counts_are_positive_integers(kwargs, valid) -> None:
    spec = ConstraintSpec(id="clinical:numbered_plan", kwargs=kwargs)
    if valid:
        assert validate_constraint_spec(spec) is None
    else:
        with pytest.raises(ValueError, match="must be an int"):
            validate_constraint_spec(spec)


IFEVAL_CASES = [c for c in CASES if c.name.startswith("ifeval/")]


@pytest.mark.parametrize("case", IFEVAL_CASES, ids=[c.name for c in IFEVAL_CASES])
def test_an_ifeval_entry_checks_and_validates_its_own_instruction(case: Case) -> None:
    # The registry's IFEval entries are built once, at import, by `_ifeval_entry`; building one here
    # checks the builder itself (the mutation check cannot reach code that only runs at import).
    entry = _ifeval_entry(case.id)
    checker = INSTRUCTION_DICT[case.id](case.id)
    assert entry.required == tuple(checker.get_instruction_args_keys()) and entry.optional == ()
    kwargs = {k: v for k, v in case.kwargs.items() if v is not None}
    assert entry.validate(kwargs) is None
    result = entry.check(case.response, kwargs, "")
    assert result.passed is case.passed and case.reason in result.reason
    assert result.reason.startswith("followed: " if case.passed else "not followed: ")


def test_an_ifeval_entry_rejects_kwargs_its_checker_rejects() -> None:
    entry = _ifeval_entry("length_constraints:number_words")
    for use in (lambda kw: entry.validate(kw), lambda kw: entry.check("one two", kw, "")):
        with pytest.raises(ValueError, match="'length_constraints:number_words': the IFEval checker rejects kwargs"):
            use({"num_words": 5, "relation": "more than"})
    with pytest.raises(ValueError, match="break the checker"):
        _ifeval_entry("keywords:existence").validate({"keywords": ["(unclosed"]})


def test_an_empty_response_fails_an_ifeval_instruction_as_empty() -> None:
    result = _ifeval_entry("punctuation:no_comma").check("", {}, "")
    assert (result.score, result.reason) == (0.0, "empty response")
