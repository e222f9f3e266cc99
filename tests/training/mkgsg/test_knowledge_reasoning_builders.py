"""MKGSG knowledge and reasoning builders: every record verifies against its own reference, and its
answer holds when re-derived from the knowledge base by a route other than the builder's own."""

from __future__ import annotations

import random

import pytest

from clinical.knowledge import get_knowledge_base
from training.evaluate.capabilities import verify_record
from training.mkgsg import knowledge, reasoning
from training.mkgsg.base import ANSWER_SYSTEM_PROMPT, Rejected, Seed
from training.records import CapabilityRecord
from training.rewards.answers import mentions, normalize

N_SEEDS = 20
MODULES = {"knowledge": knowledge, "reasoning": reasoning}
CASES = [(c, s) for c in MODULES for s in ("icd10", "drugs", "hpo", "interactions")]
# Fewest records out of N_SEEDS each builder must make from the seeds below (the rest may be rejected).
MIN_BUILT = {("reasoning", "hpo"): 14, ("reasoning", "drugs"): 12}


@pytest.fixture(scope="module")
def kb():
    kb = get_knowledge_base()
    kb.preload()
    return kb


def _seeds(kb, capability: str, source: str) -> list[Seed]:
    if source == "icd10":
        codes = []
        for chapter in ("4", "9", "10", "19"):  # endocrine, circulatory, respiratory, injuries (7th characters)
            leaves = list(kb.iter_icd10_codes(chapter, leaves_only=True))[:200]
            codes += leaves[::40]
        return [Seed("icd10", c.code, c) for c in codes[:N_SEEDS]]
    if source == "hpo":
        diseases = (d for d in kb.iter_diseases("OMIM") if len(kb.disease_phenotypes(d)) >= 5)
        return [Seed("hpo", d.id, d) for _, d in zip(range(N_SEEDS), diseases)]
    if source == "drugs":
        if capability == "reasoning":  # brand or alias -> generic -> ONC partner needs an ONC drug
            names = sorted({n for p in kb.iter_interaction_pairs("high") for n in (p.drug_a, p.drug_b)})
            drugs = [kb.normalize_drug(n) for n in names]
            drugs = [d for d in drugs if d and d.drugbank_id and knowledge.other_names(kb, d)[0]]
        else:  # flagged brands, then established drugs known only by aliases
            everything = list(kb.iter_drugs())
            drugs = [d for d in everything if d.brands][:12]
            drugs += [d for d in everything if not d.brands and d.mesh_tree and knowledge.aliases(kb, d)][:8]
        return [Seed("drugs", d.drugbank_id, d) for d in drugs[:N_SEEDS]]
    pairs = list(kb.iter_interaction_pairs("high"))[:N_SEEDS]
    return [Seed("interactions", f"{p.drug_a}+{p.drug_b}", p) for p in pairs]


@pytest.fixture(scope="module")
def built(kb):
    """(capability, source) -> [(rng seed, seed, record)]; a seed's rng seed is its position."""
    out = {}
    for capability, source in CASES:
        builder = MODULES[capability].BUILDERS[source]
        rows = []
        for i, seed in enumerate(_seeds(kb, capability, source)):
            try:
                rows.append((i, seed, builder(seed, kb, random.Random(i))))
            except Rejected:
                pass
        out[capability, source] = rows
    return out


def _options(record):
    answer = record.verification.answer
    correct = answer.options[answer.value]
    return correct, [text for letter, text in answer.options.items() if letter != answer.value]


def _kind(record) -> str:
    return record.provenance.source.rsplit(":", 1)[1]


# --- answers re-derived from the knowledge base, one check per builder ---------------------------


def _check_knowledge_icd10(kb, seed, record):
    code, kind, answer = seed.item.code, _kind(record), record.verification.answer
    if kind == "code-to-description":
        correct, wrong = _options(record)
        assert normalize(correct) == normalize(kb.icd10_description(code))
        siblings = set(kb.icd10_ancestors(code)[:-1])
        for other in record.provenance.icd10[1:]:
            assert other != code and siblings & set(kb.icd10_ancestors(other)), f"{other} is not near {code}"
        assert {normalize(w) for w in wrong} == {normalize(kb.icd10_description(c)) for c in record.provenance.icd10[1:]}
    elif kind == "description-to-code":
        correct, wrong = _options(record)
        assert correct == code and normalize(kb.icd10_description(code)) in normalize(record.messages[-1].content)
        for other in wrong:
            assert kb.is_valid_icd10(other) and set(kb.icd10_ancestors(other)[:-1]) & set(kb.icd10_ancestors(code)[:-1])
    elif kind == "code-check":  # yes/no: is the description coded with the code shown?
        shown = record.provenance.icd10[-1]
        assert (answer.value == "yes") == (shown == code) and f" {shown} " in f" {record.messages[-1].content} "
        assert shown == code or set(kb.icd10_ancestors(shown)[:-1]) & set(kb.icd10_ancestors(code)[:-1])
    elif kind == "block":
        assert answer.accepted[0] in kb.icd10_ancestors(code)
        assert answer.value in kb.icd10_description(answer.accepted[0])
    else:
        assert kind == "chapter" and answer.value == kb.icd10_chapter(code).title


def _check_knowledge_drugs(kb, seed, record):
    drug, kind, answer = seed.item, _kind(record), record.verification.answer
    asked = [n for n in knowledge.other_names(kb, drug)[0]
             if mentions(record.messages[-1].content.split("\n")[0], n)]
    if kind.startswith("generic-to"):
        correct, wrong = _options(record)
        assert kb.normalize_drug(correct).name == drug.name
        assert all(kb.normalize_drug(w).name != drug.name for w in wrong)
        return
    # The name asked about resolves to the seed drug alone (e.g. Lipitor -> atorvastatin).
    assert asked and all(kb.normalize_drug(name).name == drug.name for name in asked)
    if answer.kind == "entity":
        assert answer.value == drug.name
        assert all(kb.normalize_drug(name).name == drug.name for name in answer.accepted)
        assert not any(mentions(a, name) for a in asked for name in (answer.value, *answer.accepted))  # echo fails
    else:
        correct, wrong = _options(record)
        assert correct == drug.name and all(kb.normalize_drug(w).name != drug.name for w in wrong)


def _check_knowledge_hpo(kb, seed, record):
    correct, wrong = _options(record)
    assert kb.matched_phenotypes(seed.item, [correct]), f"{correct} is not annotated to {seed.item.name}"
    for other in wrong:
        assert not kb.matched_phenotypes(seed.item, [other]), f"distractor {other} is annotated to {seed.item.name}"


def _check_knowledge_interactions(kb, seed, record):
    if _kind(record) == "interaction-check":  # yes/no: the pair asked about is high priority, or not listed at all
        pair, answer, question = seed.item, record.verification.answer, record.messages[-1].content
        anchor = next(d for d in (pair.drug_a, pair.drug_b) if mentions(question, d))
        asked = [d for d in (pair.drug_a, pair.drug_b) if mentions(question, d)]
        if answer.value == "yes":
            assert sorted(asked) == sorted([pair.drug_a, pair.drug_b])
            assert any(i.severity == "high" for i in kb.interactions(asked))
        else:
            partner = next(d for d in (pair.drug_a, pair.drug_b) if d != anchor)
            assert asked == [anchor] and not mentions(question, partner)
            shown = [d for d in knowledge.onc_drugs(kb) if d != anchor and mentions(question, d)]
            assert shown and all(kb.interactions([anchor, d]) == [] for d in shown)
        return
    correct, wrong = _options(record)
    pair = seed.item
    anchor = pair.drug_b if correct == pair.drug_a else pair.drug_a
    assert {anchor, correct} == {pair.drug_a, pair.drug_b}
    assert any(i.severity == "high" for i in kb.interactions([anchor, correct]))
    assert all(kb.interactions([anchor, w]) == [] for w in wrong)


def _check_reasoning_icd10(kb, seed, record):
    code, spec = seed.item.code, record.verification.reasoning
    chapter = kb.icd10_chapter(code)
    assert record.verification.answer.value == chapter.title and f"chapter {chapter.number}" in record.verification.answer.accepted
    assert spec.chain[0] == code and spec.chain[-1] == chapter.title
    ancestors = kb.icd10_ancestors(code)
    assert [ancestors.index(step) for step in spec.chain[1:-1]] == sorted(ancestors.index(s) for s in spec.chain[1:-1])


def _check_reasoning_hpo(kb, seed, record):
    disease, answer, spec = seed.item, record.verification.answer, record.verification.reasoning
    ranking = kb.diseases_for_phenotypes(record.provenance.hpo, limit=4, sources=(disease.source,))
    assert ranking[0].disease.id == disease.id and ranking[0].score > ranking[1].score
    assert spec.chain[:-1] == [kb.phenotype(h).name for h in record.provenance.hpo] and spec.chain[-1] == disease.name
    assert 3 <= len(record.provenance.hpo) <= 4
    if answer.kind == "option":
        correct, wrong = _options(record)
        assert correct == disease.name
        scores = {m.disease.name: m.score for m in ranking}
        assert all(0 < scores[w] < 1 for w in wrong)  # rivals share some, not all, of the findings
    else:
        assert answer.value == disease.name


def _check_reasoning_interactions(kb, seed, record):
    correct, wrong = _options(record)
    anchor, chain = record.verification.reasoning.chain[0], record.verification.reasoning.chain
    assert anchor in (seed.item.drug_a, seed.item.drug_b)
    assert kb.interactions([anchor, correct]) == []
    assert all(any(i.severity == "high" for i in kb.interactions([anchor, w])) for w in wrong)
    assert chain[-1] == correct and sorted(chain[1:-1]) == sorted(wrong)


def _check_reasoning_drugs(kb, seed, record):
    correct, wrong = _options(record)
    name, generic, partner = record.verification.reasoning.chain
    assert kb.normalize_drug(name).name == generic == seed.item.name and partner == correct
    assert any(i.severity == "high" for i in kb.interactions([generic, correct]))
    assert all(kb.interactions([generic, w]) == [] for w in wrong)


CHECKS = {
    ("knowledge", "icd10"): _check_knowledge_icd10,
    ("knowledge", "drugs"): _check_knowledge_drugs,
    ("knowledge", "hpo"): _check_knowledge_hpo,
    ("knowledge", "interactions"): _check_knowledge_interactions,
    ("reasoning", "icd10"): _check_reasoning_icd10,
    ("reasoning", "drugs"): _check_reasoning_drugs,
    ("reasoning", "hpo"): _check_reasoning_hpo,
    ("reasoning", "interactions"): _check_reasoning_interactions,
}


# --- tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("capability, source", CASES, ids=[f"{c}-{s}" for c, s in CASES])
def test_records_are_valid_and_verify(built, capability, source):
    rows = built[capability, source]
    assert len(rows) >= MIN_BUILT.get((capability, source), 18), f"only {len(rows)} of {N_SEEDS} seeds built"
    for _, seed, record in rows:
        assert CapabilityRecord.model_validate_json(record.model_dump_json()) == record
        assert record.capability.value == capability
        assert record.messages[0].content == ANSWER_SYSTEM_PROMPT and record.messages[-1].role == "user"
        assert record.provenance.source.startswith(f"mkgsg:{capability}:")
        assert record.reference.splitlines()[-1].startswith("Answer: ")
        verdict = verify_record(record, record.reference)
        assert verdict.score == 1.0, (record.id, {k: v.reason for k, v in verdict.checks.items()})
        answer = record.verification.answer
        if answer.kind == "option":
            assert list(answer.options) == ["A", "B", "C", "D"]
            assert len({normalize(t) for t in answer.options.values()}) == 4


@pytest.mark.parametrize("capability, source", CASES, ids=[f"{c}-{s}" for c, s in CASES])
def test_answers_rederived_from_knowledge_base(kb, built, capability, source):
    for _, seed, record in built[capability, source]:
        CHECKS[capability, source](kb, seed, record)


@pytest.mark.parametrize("capability, source", CASES, ids=[f"{c}-{s}" for c, s in CASES])
def test_deterministic_given_rng(kb, built, capability, source):
    builder = MODULES[capability].BUILDERS[source]
    for i, seed, record in built[capability, source][:5]:
        again = builder(seed, kb, random.Random(i))
        assert again.model_dump_json() == record.model_dump_json()


@pytest.mark.parametrize("capability, source", CASES, ids=[f"{c}-{s}" for c, s in CASES])
def test_correct_option_positions_vary(built, capability, source):
    letters = [r.verification.answer.value for _, _, r in built[capability, source] if r.verification.answer.kind == "option"]
    if capability == "reasoning" and source == "icd10":
        assert letters == []  # the chapter is a named entity
        return
    assert len(set(letters)) >= 2, f"every correct option is {letters[:1]}"


@pytest.mark.parametrize("capability, source", CASES, ids=[f"{c}-{s}" for c, s in CASES])
def test_question_wording_varies(built, capability, source):
    openings = {" ".join(r.messages[-1].content.split()[:2]) for _, _, r in built[capability, source]}
    assert len(openings) >= 2


def test_lipitor_is_atorvastatin(kb):
    drug = kb.normalize_drug("Lipitor")
    seed = Seed("drugs", drug.drugbank_id, drug)
    kinds = set()
    for i in range(12):
        record = knowledge.BUILDERS["drugs"](seed, kb, random.Random(i))
        kinds.add(_kind(record))
        _check_knowledge_drugs(kb, seed, record)
        if _kind(record) == "brand-to-generic":
            assert "Lipitor" in record.messages[-1].content and record.verification.answer.value == "atorvastatin"
            assert verify_record(record, "Answer: Atorvastatin").score == 1.0
            assert verify_record(record, "Answer: Lipitor").score == 0.0
    assert kinds == {"brand-to-generic", "brand-to-generic-mc", "generic-to-brand-mc"}


def test_marfan_phenotypes_lead_to_marfan(kb):
    marfan = kb.disease("OMIM:154700")
    seed = Seed("hpo", marfan.id, marfan)
    built = []
    for i in range(6):
        try:
            built.append(reasoning.BUILDERS["hpo"](seed, kb, random.Random(i)))
        except Rejected as rejection:
            assert rejection.reason == "ambiguous-disease"
    assert built, "no phenotype subset singled out Marfan syndrome"
    for record in built:
        assert record.verification.reasoning.chain[-1] == "Marfan syndrome"
        ranking = kb.diseases_for_phenotypes(record.provenance.hpo, limit=2, sources=("OMIM",))
        assert ranking[0].disease.id == "OMIM:154700" and ranking[0].score > ranking[1].score


def _first(items, predicate):
    return next(item for item in items if predicate(item))


@pytest.mark.parametrize(
    "capability, source, reason",
    [("knowledge", "drugs", "no-brand-or-alias"), ("knowledge", "hpo", "too-few-phenotypes"),
     ("reasoning", "hpo", "too-few-phenotypes"), ("reasoning", "interactions", "too-few-partners"),
     ("reasoning", "drugs", "no-interactions"), ("knowledge", "interactions", "not-high-priority")],
    ids=["drug-without-names", "disease-few-phenotypes", "reasoning-few-phenotypes", "pair-few-partners",
         "drug-without-interactions", "low-priority-pair"],
)
def test_rejections_name_their_reason(kb, capability, source, reason):
    if reason == "no-brand-or-alias":
        item = _first(kb.iter_drugs(), lambda d: not knowledge.other_names(kb, d)[0])
    elif reason == "too-few-phenotypes":
        item = _first(kb.iter_diseases("OMIM"), lambda d: len(kb.disease_phenotypes(d)) == 2)
    elif reason == "too-few-partners":
        partners = knowledge.high_partners(kb)
        # Every high-priority pair has a side with 3 partners; a low-priority pair of rarer drugs has not.
        item = _first(kb.iter_interaction_pairs("low"),
                      lambda p: len(partners.get(p.drug_a, ())) < 3 and len(partners.get(p.drug_b, ())) < 3)
    elif reason == "not-high-priority":
        item = next(kb.iter_interaction_pairs("low"))
    else:
        item = kb.normalize_drug("Lipitor")  # brands, but no ONC high-priority partner
    seed = Seed(source, getattr(item, "id", None) or getattr(item, "drugbank_id", None) or "pair", item)
    with pytest.raises(Rejected) as caught:
        MODULES[capability].BUILDERS[source](seed, kb, random.Random(0))
    assert caught.value.reason == reason


@pytest.mark.parametrize("source, kind", [("icd10", "code-check"), ("interactions", "interaction-check")])
def test_yes_no_checks_are_true_and_false_alike(kb, source, kind):
    # Many rng draws over one seed: about half of the checks say yes, so the data teaches no prior for either
    # word (PubMedQA's yes/no questions are scored by that prior when a model cannot read the abstract).
    seeds = _seeds(kb, "knowledge", source)[:4]
    checks = []
    for i in range(300):
        try:
            record = knowledge.BUILDERS[source](seeds[i % len(seeds)], kb, random.Random(1000 + i))
        except Rejected:
            continue
        if _kind(record) == kind:
            checks.append(record)
            assert record.verification.answer.kind == "label" and set(record.verification.answer.options) == {"yes", "no"}
            assert record.messages[-1].content.endswith("Answer yes or no.")
            wrong = "no" if record.verification.answer.value == "yes" else "yes"
            assert verify_record(record, f"Answer: {wrong}").score == 0.0
    answers = [r.verification.answer.value for r in checks]
    assert len(checks) >= 30 and 0.35 <= answers.count("yes") / len(answers) <= 0.65, answers
