"""Curation: every record is checked before it is kept, and every drop has a counted reason.

1. self-verification: the reference answer passes the project's own rule verifiers;
2. ontology validation: every source id the record cites exists in the knowledge base, and every
   safety fact (a forbidden drug) is re-derived from it;
3. near-duplicates: the same facts asked again, or the same prompt text, are dropped;
4. benchmark leakage: a record sharing a word n-gram with any benchmark file is dropped.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from training.evaluate.capabilities import verify_record
from training.records import CapabilityRecord
from training.rewards.answers import normalize
from training.rewards.constraints import validate_constraint_spec

# --- self-verification and ontology validation -------------------------------------------------


def self_check(record: CapabilityRecord) -> str | None:
    """Reason the reference fails its own verification spec, or None."""
    for spec in record.verification.constraints:
        try:
            validate_constraint_spec(spec)
        except ValueError:
            return f"uncheckable-constraint:{spec.id}"
    verdict = verify_record(record, record.reference)
    failed = sorted(name for name, check in verdict.checks.items() if not check.passed)
    return f"reference-fails:{'+'.join(failed) or 'score'}" if verdict.score < 1.0 else None


def ontology_check(record: CapabilityRecord, kb) -> str | None:
    """Reason a cited id or safety fact is not in the knowledge base, or None."""
    p = record.provenance
    if not all(_icd10_known(kb, code) for code in p.icd10):
        return "unknown-icd10-code"
    if any(kb.drug_by_drugbank_id(i) is None for i in p.drugbank):
        return "unknown-drugbank-id"
    try:
        for hpo_id in p.hpo:
            kb.phenotype(hpo_id)
        for disease_id in p.diseases:
            kb.disease(disease_id)
    except ValueError:
        return "unknown-hpo-or-disease-id"
    safety = record.verification.safety
    if safety:
        # Every drug the case names (its medications among them): a forbidden "interaction" drug
        # must have an ONC high-priority interaction with one of them.
        named = sorted({m.drug.name for m in kb.find_drugs(record.messages[-1].content)})
        for forbidden in safety.forbidden:
            if forbidden.reason == "interaction" and not any(
                    i.severity == "high" for i in kb.interactions([forbidden.drug, *named])
                    if forbidden.drug in (i.drug_a, i.drug_b)):
                return "forbidden-drug-not-an-onc-interaction"
    return None


def _icd10_known(kb, code: str) -> bool:
    # icd10_description knows codes, blocks ("E08-E13") and chapters, all of which records cite.
    try:
        kb.icd10_description(code)
        return True
    except ValueError:
        return False


# --- near-duplicates ---------------------------------------------------------------------------


class DuplicateFilter:
    """Drops a record that asks the same facts as a kept one, or repeats a kept prompt's text."""

    def __init__(self) -> None:
        self._facts: set[str] = set()
        self._texts: set[str] = set()

    def reason(self, record: CapabilityRecord) -> str | None:
        answer = record.verification.answer
        constraints = sorted((c.model_dump(mode="json") for c in record.verification.constraints), key=lambda c: c["id"])
        facts = json.dumps([record.capability.value, answer.value if answer else "", constraints,
                            record.provenance.model_dump(mode="json", exclude={"source", "seed"})], sort_keys=True)
        text = normalize(record.messages[-1].content)
        if facts in self._facts:
            return "near-duplicate-facts"
        if text in self._texts:
            return "duplicate-prompt"
        self._facts.add(facts)
        self._texts.add(text)
        return None


# --- benchmark leakage -------------------------------------------------------------------------


def _ngrams(text: str, n: int) -> set[int]:
    words = normalize(text).split()
    # 8-byte digests keep the index of ~a million n-grams at a few tens of MB.
    return {int.from_bytes(hashlib.blake2b(" ".join(words[i:i + n]).encode(), digest_size=8).digest(), "big")
            for i in range(len(words) - n + 1)}


def _benchmark_texts(path: Path):
    """Every question, option, context and prompt string of a benchmark file, whatever its format."""
    if path.suffix == ".csv":
        yield from path.read_text(encoding="utf-8").splitlines()
        return
    raw = path.read_text(encoding="utf-8")
    docs = [json.loads(line) for line in raw.splitlines() if line.strip()] if path.suffix == ".jsonl" else [json.loads(raw)]

    def strings(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for v in value.values():
                yield from strings(v)
        elif isinstance(value, list):
            for v in value:
                yield from strings(v)

    for doc in docs:
        yield from strings(doc)


@dataclass
class LeakageIndex:
    """Word n-grams of benchmark files; `overlap` names the first benchmark a text shares one with."""

    n: int
    files: list[str] = field(default_factory=list)
    grams: dict[int, str] = field(default_factory=dict)
    hits: Counter = field(default_factory=Counter)

    @classmethod
    def build(cls, paths: list[Path], n: int = 10) -> "LeakageIndex":
        index = cls(n=n)
        for root in paths:
            files = sorted(p for p in Path(root).rglob("*") if p.suffix in (".json", ".jsonl", ".csv")) \
                if Path(root).is_dir() else [Path(root)]
            for file in files:
                index.files.append(str(file))
                for text in _benchmark_texts(file):
                    for gram in _ngrams(text, n):
                        index.grams.setdefault(gram, file.name)
        return index

    def overlap(self, record: CapabilityRecord) -> str | None:
        text = "\n".join(m.content for m in record.messages if m.role == "user") + "\n" + record.reference
        for gram in _ngrams(text, self.n):
            if gram in self.grams:
                self.hits[self.grams[gram]] += 1
                return self.grams[gram]
        return None
