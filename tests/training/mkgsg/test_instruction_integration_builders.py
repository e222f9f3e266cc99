"""The MKGSG instruction and integration builders on real knowledge-base seeds.

Every record must be a valid `CapabilityRecord` whose reference passes its own verification
(score 1.0) and the curation checks, with checkable constraint specs; integration cases must
recommend a drug the KB shows to be safe for the patient and forbid only drugs the KB really flags;
the same seed and rng seed must give the same bytes.
"""

from __future__ import annotations

import random
import re

import pytest

from training.evaluate.capabilities import verify_record
from training.mkgsg import instruction, integration
from training.mkgsg.base import Rejected, Seed
from training.mkgsg.curation import ontology_check, self_check
from training.records import CapabilityRecord
from training.rewards.constraints import validate_constraint_spec

N = 20  # seeds per builder


def _spread(items: list, n: int) -> list:
    """n items evenly spread over a sorted list: deterministic, and not all from one corner of it."""
    return items[::max(1, len(items) // n)][:n]


@pytest.fixture(scope="module")
def kb():
    from clinical.knowledge import get_knowledge_base

    return get_knowledge_base()  # HPO loads once here (~25 s)


@pytest.fixture(scope="module")
def seeds(kb) -> dict[str, list[Seed]]:
    codes = [c for chapter in ("4", "9", "13", "19")
             for c in _spread(list(kb.iter_icd10_codes(chapter, leaves_only=True)), N // 4)]
    diseases = [d for d in sorted(kb.iter_diseases("OMIM"), key=lambda d: d.id) if len(kb.disease_phenotypes(d)) >= 5]
    drugs = sorted((d for d in kb.iter_drugs() if d.drugbank_id), key=lambda d: d.name)
    named = [d for d in drugs if integration.drug_names(d, kb)]  # a drug card needs more than an id
    listed = [d for d in drugs if d.name in integration.high_partners(kb)]
    pairs = sorted(kb.iter_interaction_pairs("high"), key=lambda p: (p.drug_a, p.drug_b))
    return {
        "icd10": [Seed("icd10", c.code, c) for c in codes],
        "hpo": [Seed("hpo", d.id, d) for d in _spread(diseases, N)],
        "drugs": [Seed("drugs", d.drugbank_id, d) for d in _spread(named, N)],
        "listed-drugs": [Seed("drugs", d.drugbank_id, d) for d in _spread(listed, N)],
        "interactions": [Seed("interactions", f"{p.drug_a}+{p.drug_b}", p) for p in _spread(pairs, N)],
    }


# (capability, builders, seed pool, source)
CASES = [
    ("instruction", instruction.BUILDERS, "icd10", "icd10"),
    ("instruction", instruction.BUILDERS, "hpo", "hpo"),
    ("instruction", instruction.BUILDERS, "drugs", "drugs"),
    ("instruction", instruction.BUILDERS, "interactions", "interactions"),
    ("integration", integration.BUILDERS, "interactions", "interactions"),
    ("integration", integration.BUILDERS, "listed-drugs", "drugs"),
]
CASE_IDS = [f"{c[0]}-{c[2]}" for c in CASES]


def _build(builders, seed: Seed, kb, n: int) -> CapabilityRecord:
    return builders[seed.source](seed, kb, random.Random(f"test|{seed.key}|{n}"))


@pytest.fixture(scope="module")
def built(kb, seeds) -> dict[str, list[CapabilityRecord]]:
    return {name: [_build(builders, s, kb, i) for i, s in enumerate(seeds[pool])]
            for name, (_, builders, pool, _) in zip(CASE_IDS, CASES)}


@pytest.mark.parametrize("case", CASE_IDS)
def test_every_record_is_valid_and_passes_its_own_checks(case, built, kb):
    capability = case.split("-")[0]
    assert len(built[case]) == N
    for record in built[case]:
        assert record.capability.value == capability
        assert CapabilityRecord.model_validate_json(record.model_dump_json()) == record
        assert record.provenance.source.startswith(f"mkgsg:{capability}:")
        verdict = verify_record(record, record.reference)
        assert verdict.score == 1.0, (record.id, {k: c.reason for k, c in verdict.checks.items()})
        assert record.verification.constraints
        for spec in record.verification.constraints:
            validate_constraint_spec(spec)
        assert self_check(record) is None and ontology_check(record, kb) is None, record.id


@pytest.mark.parametrize("case", CASE_IDS)
def test_same_seed_and_rng_seed_give_the_same_record(case, seeds, kb, built):
    _, builders, pool, _ = CASES[CASE_IDS.index(case)]
    for i, seed in enumerate(seeds[pool][:5]):
        assert _build(builders, seed, kb, i).model_dump_json() == built[case][i].model_dump_json()


@pytest.mark.parametrize("case", CASE_IDS)
def test_prompts_carry_no_patient_identifiers(case, built):
    identifier = re.compile(r"\b(?:patient name|name:|MRN|medical record number|date of birth|DOB|born on|"
                            r"address|phone|SSN|Mr\.|Mrs\.|Ms\.)", re.IGNORECASE)
    for record in built[case]:
        assert not identifier.search(record.messages[-1].content), record.messages[-1].content


KINDS = [("icd10", "icd10-describe"), ("hpo", "hpo-features"), ("drugs", "drug-card"),
         ("interactions", "interaction-pair")]


@pytest.mark.parametrize("source, kind", KINDS, ids=[k[0] for k in KINDS])
def test_instruction_question_kind_follows_the_seed(source, kind, built):
    assert {r.provenance.source for r in built[f"instruction-{source}"]} == {f"mkgsg:instruction:{kind}"}


def test_instruction_constraints_are_varied(built):
    records = [r for source, _ in KINDS for r in built[f"instruction-{source}"][:10]]
    ids = {spec.id for r in records for spec in r.verification.constraints}
    assert len(records) == 40 and len(ids) >= 8, sorted(ids)
    assert all(1 <= len(r.verification.constraints) <= 3 for r in records)


def test_instruction_prompt_states_every_constraint(built):
    for r in (r for source, _ in KINDS for r in built[f"instruction-{source}"]):
        prompt = r.messages[-1].content
        for spec in r.verification.constraints:
            assert any(instruction._say(spec, style) in prompt for style in (0, 1)), (spec.id, prompt)


def _patient(record: CapabilityRecord) -> tuple[list[str], str]:
    """(active medications, allergen) as the case states them."""
    prompt = record.messages[-1].content
    meds = re.search(r"Active medications: (.+?)\. Allergies", prompt).group(1)
    allergen = re.search(r"Allergies: (.+?) \(", prompt).group(1)
    return re.split(r", | and ", meds), allergen


def _recommended(record: CapabilityRecord) -> str:
    answer = record.verification.answer
    return answer.options[answer.value] if answer.kind == "option" else answer.value


@pytest.mark.parametrize("case", ["integration-interactions", "integration-listed-drugs"])
def test_integration_recommends_a_drug_the_kb_shows_safe(case, built, kb):
    for record in built[case]:
        actives, allergen = _patient(record)
        drug = _recommended(record)
        assert drug != allergen and kb.normalize_drug(drug).name != kb.normalize_drug(allergen).name
        assert all(not kb.interactions([drug, med], strict=True) for med in actives), (drug, actives)
        names = [f.drug for f in record.verification.safety.forbidden]
        assert drug not in names and allergen in names


@pytest.mark.parametrize("case", ["integration-interactions", "integration-listed-drugs"])
def test_integration_forbids_only_real_interactions_and_the_allergen(case, built, kb):
    for record in built[case]:
        actives, allergen = _patient(record)
        reasons = {f.reason for f in record.verification.safety.forbidden}
        assert reasons == {"interaction", "allergy"}
        for forbidden in record.verification.safety.forbidden:
            if forbidden.reason == "allergy":
                assert forbidden.drug == allergen
            else:
                assert any(i.severity == "high" for med in actives for i in kb.interactions([forbidden.drug, med])), \
                    (forbidden.drug, actives)
                assert forbidden.evidence.startswith("ONC high-priority:") and "DB" in forbidden.evidence


@pytest.mark.parametrize("case", ["integration-interactions", "integration-listed-drugs"])
def test_integration_reference_follows_the_workflow(case, built):
    for record in built[case]:
        text, fmt = record.reference, record.verification.constraints[0].id
        if fmt == "clinical:json_fields":  # keys in workflow order, one per line
            steps = [f'"{k}":' for k in record.verification.constraints[0].kwargs["fields"]]
        else:
            names = ["Subjective", "Objective"] if text.startswith("Subjective") else ["History", "Findings"]
            steps = [f"\n{n}:" for n in [*names, "Assessment", "Plan"]]
            assert text.splitlines()[-1] == f"Answer: {record.verification.answer.value}"
        positions = [("\n" + text).find(step) for step in steps]
        assert min(positions) >= 0 and positions == sorted(positions), (fmt, text)
        assert _recommended(record) in text[positions[-2 if fmt == "clinical:json_fields" else -1]:]


REJECTIONS = [
    # (case, builders, how to find a seed, reason)
    ("instruction-drug-with-only-an-id", instruction.BUILDERS,
     lambda kb: next(Seed("drugs", d.drugbank_id, d) for d in sorted(kb.iter_drugs(), key=lambda d: d.name)
                     if not integration.drug_names(d, kb) and not d.mesh_tree
                     and d.name not in integration.onc_classes(kb) and d.name not in integration.high_partners(kb)),
     "too-few-drug-facts"),
    ("instruction-disease-with-two-features", instruction.BUILDERS,
     lambda kb: next(Seed("hpo", d.id, d) for d in sorted(kb.iter_diseases("OMIM"), key=lambda d: d.id)
                     if len(kb.disease_phenotypes(d)) == 2),
     "too-few-phenotypes"),
    ("integration-drug-on-no-onc-list", integration.BUILDERS,
     lambda kb: next(Seed("drugs", d.drugbank_id, d) for d in sorted(kb.iter_drugs(), key=lambda d: d.name)
                     if d.name not in integration.high_partners(kb)),
     "no-high-priority-partner"),
]


@pytest.mark.parametrize("builders, find, reason", [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS])
def test_a_seed_that_cannot_make_a_record_is_rejected_with_a_reason(builders, find, reason, kb):
    seed = find(kb)
    with pytest.raises(Rejected) as caught:
        builders[seed.source](seed, kb, random.Random(0))
    assert caught.value.reason == reason and caught.value.detail


UNSAFE = [("recommends-the-interacting-drug", "interacting"), ("recommends-the-allergen", "allergen")]


@pytest.mark.parametrize("swap", [u[1] for u in UNSAFE], ids=[u[0] for u in UNSAFE])
def test_an_unsafe_recommendation_is_caught_before_the_record_is_made(swap, kb):
    pair = next(kb.iter_interaction_pairs("high"))
    index = integration.onc_drug_index(kb)
    case = integration._case(kb, random.Random(3), index[pair.drug_a], index[pair.drug_b])
    integration._recheck(kb, case)  # the built case itself is safe
    case.safe = case.interacting[0][0] if swap == "interacting" else case.allergen
    with pytest.raises(Rejected, match="unsafe-reference"):
        integration._recheck(kb, case)
