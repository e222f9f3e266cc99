"""The hybrid reward's rule components: routing by capability, scores on named completions."""

from __future__ import annotations

import pytest

from training.evaluate.runner import SAMPLES
from training.records import Capability, load_records
from training.rewards.hybrid import (COMPONENTS, RULE_SCORERS, ROUTING, completion_text, record_column,
                                     reward_functions, rule_reward)

RECORDS = {r.id: r for r in load_records(SAMPLES / "capabilities_fixture.jsonl")}


def scores(record_id: str, completion: str) -> dict[str, float | None]:
    # The reward functions and the record column are built here, in the test, rather than once at
    # import: a check of the builders (the mutation check among them) then sees what they build now.
    column = dict(zip(RECORDS, record_column(RECORDS.values())))
    return {f.__name__: f([completion], record=[column[record_id]])[0] for f in reward_functions()}


@pytest.mark.parametrize("record_id", sorted(RECORDS))
def test_reference_earns_full_score_on_every_routed_component(record_id):
    got = scores(record_id, RECORDS[record_id].reference)
    applied = {k for k, v in got.items() if v is not None}
    assert applied and applied <= set(ROUTING[RECORDS[record_id].capability])
    assert all(got[k] == 1.0 for k in applied), got


@pytest.mark.parametrize("record_id, expected", [
    ("fx-knowledge-brand", {"answer"}),
    ("fx-reasoning-marfan", {"answer", "reasoning"}),
    ("fx-instruction-bullets", {"constraints"}),
    ("fx-integration-cap", {"answer", "constraints", "safety"}),
], ids=["knowledge-answer-only", "reasoning-answer-and-path", "instruction-constraints-only",
        "integration-everything-specified"])
def test_components_apply_only_where_routed_and_specified(record_id, expected):
    got = scores(record_id, "anything")
    assert {k for k, v in got.items() if v is not None} == expected


CORRUPTED = [
    ("wrong-option", "fx-knowledge-brand", "Lipitor is simvastatin.\nAnswer: A", {"answer": 0.0}),
    ("right-option-conversational", "fx-knowledge-brand", [{"role": "assistant", "content": "Answer: B"}],
     {"answer": 1.0}),
    ("answer-without-path", "fx-reasoning-marfan", "Answer: Marfan syndrome", {"answer": 1.0, "reasoning": 0.0}),
    ("comma-breaks-one-of-two", "fx-instruction-bullets",
     "* Cut salt, eat less\n* Walk daily\n* Stop smoking", {"constraints": 0.5}),
    ("forbidden-drug-in-plan", "fx-integration-cap",
     "Subjective: cough.\nObjective: fever.\nAssessment: pneumonia.\nPlan: clarithromycin for 5 days.\n"
     "Answer: clarithromycin", {"answer": 0.0, "constraints": 1.0, "safety": 0.0}),
]


@pytest.mark.parametrize("name, record_id, completion, expected", CORRUPTED, ids=[c[0] for c in CORRUPTED])
def test_named_completions_score_as_a_clinician_would(name, record_id, completion, expected):
    got = scores(record_id, completion)
    for component, value in expected.items():
        assert got[component] == pytest.approx(value), (component, got)


def test_model_component_joins_only_when_a_model_is_given():
    assert [f.__name__ for f in reward_functions()] == list(COMPONENTS[:-1])
    assert reward_functions(model_reward=lambda **_: [])[-1] is not None


def test_unknown_component_names_the_valid_ones():
    with pytest.raises(ValueError, match="answer, reasoning, constraints, safety"):
        rule_reward("fluency")


def test_a_reward_scores_each_completion_against_its_own_record():
    # A batch mixes capabilities: row i is judged by record i, and a conversational completion by its text.
    ids = ["fx-knowledge-brand", "fx-reasoning-marfan", "fx-knowledge-brand"]
    completions = ["Answer: B", "Answer: Marfan syndrome", [{"role": "assistant", "content": "Answer: A"}]]
    answer = rule_reward("answer")
    assert answer.__name__ == "answer"
    assert answer(completions, record=record_column([RECORDS[i] for i in ids])) == [1.0, 1.0, 0.0]



@pytest.mark.parametrize("capability, scored", [
    (Capability.KNOWLEDGE, {"answer"}),
    (Capability.REASONING, {"answer"}),  # the record has no reasoning chain to check
    (Capability.INSTRUCTION, {"constraints"}),
    (Capability.INTEGRATION, {"answer", "constraints", "safety"}),
], ids=["knowledge", "reasoning", "instruction", "integration"])
def test_a_specified_component_is_left_out_where_the_capability_does_not_route_it(capability, scored):
    # The integration record specifies answer, constraints and safety; relabelled, only the routed ones score.
    record = RECORDS["fx-integration-cap"].model_copy(update={"capability": capability})
    got = {name: scorer(record.reference, record) for name, scorer in RULE_SCORERS.items()}
    assert {k for k, v in got.items() if v is not None} == scored
    assert all(got[k] == 1.0 for k in scored)



def test_a_conversational_completion_is_its_assistant_turns():
    turns = [{"role": "user", "content": "Which statin?"}, {"role": "assistant", "content": "Answer: "},
             {"content": "B"}, {"role": "assistant"}]  # no role: an assistant turn; no content: nothing
    assert completion_text(turns) == "Answer: B"
    assert completion_text("Answer: B") == "Answer: B"
