"""The capability record: one training or evaluation task, tagged with the capability it exercises.

This is the single schema shared by the synthetic data generator (MKGSG writes it), the rule
verifiers and rewards (they read its `verification` spec), and the evaluator (it scores the four
capabilities over files of it). A record carries everything needed to check an answer without
looking anything up again: the correct option or entity with its accepted synonyms, the entities
a sound reasoning chain must name, the instruction constraints with their arguments, and the
safety facts of the case.

Files are JSONL, one record per line. `load_records` reports the line and field of any problem.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA_VERSION = 1


class Capability(str, Enum):
    """The four capabilities of the BalancedBio paper, in our concrete reading (see DESIGN.md)."""

    KNOWLEDGE = "knowledge"
    REASONING = "reasoning"
    INSTRUCTION = "instruction"
    INTEGRATION = "integration"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str = Field(min_length=1)


class AnswerSpec(_Strict):
    """The final answer that counts as correct.

    `kind="option"`: `value` is the option letter and `options` maps letters to texts.
    `kind="entity"`: `value` is the canonical entity (drug, disease, code) and `accepted` lists the
    synonyms a verifier must also accept (brand names, ontology synonyms), already normalised
    through the knowledge base by whoever wrote the record.
    `kind="label"`: `value` is one of a closed label set given in `options` (e.g. yes/no/maybe).
    """

    kind: Literal["option", "entity", "label"]
    value: str = Field(min_length=1)
    accepted: list[str] = Field(default_factory=list)
    options: dict[str, str] | None = None

    @model_validator(mode="after")
    def _value_is_an_option(self) -> "AnswerSpec":
        if self.kind in ("option", "label"):
            if not self.options:
                raise ValueError(f"answer kind {self.kind!r} needs `options` (letter or label -> text)")
            if self.value not in self.options:
                raise ValueError(
                    f"answer value {self.value!r} is not one of the options {sorted(self.options)}; "
                    "set `value` to the key of the correct option"
                )
        return self


class ReasoningSpec(_Strict):
    """The knowledge path a sound answer walks, e.g. phenotypes -> disease -> drug.

    `chain` lists the intermediate entities in the order the reasoning must name them; `synonyms`
    maps an entity of the chain to other names that also count as naming it.
    """

    chain: list[str] = Field(min_length=1)
    synonyms: dict[str, list[str]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _synonyms_belong_to_chain(self) -> "ReasoningSpec":
        stray = sorted(set(self.synonyms) - set(self.chain))
        if stray:
            raise ValueError(f"synonyms given for entities not in the chain: {stray}; add them to `chain` or drop them")
        return self


class ConstraintSpec(_Strict):
    """One verifiable instruction: an IFEval instruction id (e.g. `punctuation:no_comma`) or a clinical
    format id of this project (`clinical:soap_sections`, `clinical:json_fields`, `clinical:numbered_plan`),
    with the keyword arguments its checker takes."""

    id: str = Field(pattern=r"^[a-z_]+:[a-z0-9_]+$")
    kwargs: dict[str, Any] = Field(default_factory=dict)


class ForbiddenDrug(_Strict):
    drug: str = Field(min_length=1, description="canonical drug name")
    names: list[str] = Field(default_factory=list, description="brands and synonyms that also name it")
    reason: Literal["allergy", "interaction", "contraindication"]
    evidence: str = Field(default="", description="source id, e.g. the interacting drug's DrugBank id")


class SafetySpec(_Strict):
    """Safety facts of a patient case: drugs an answer must not recommend."""

    forbidden: list[ForbiddenDrug] = Field(default_factory=list)


class VerificationSpec(_Strict):
    answer: AnswerSpec | None = None
    reasoning: ReasoningSpec | None = None
    constraints: list[ConstraintSpec] = Field(default_factory=list)
    safety: SafetySpec | None = None


class Provenance(_Strict):
    """Where the facts of a record come from, as source identifiers (never patient identifiers)."""

    source: str = Field(min_length=1, description="generator or file that produced the record")
    seed: str = Field(default="", description="the knowledge-base fact it was built from, e.g. 'hpo:OMIM:154700'")
    icd10: list[str] = Field(default_factory=list)
    hpo: list[str] = Field(default_factory=list)
    diseases: list[str] = Field(default_factory=list, description="OMIM:/ORPHA: ids")
    drugbank: list[str] = Field(default_factory=list)
    template: str = Field(default="", description="the question frame when not the builder's own, e.g. "
                          "'anew:recall' for the trained-facts-asked-anew test set (training.mkgsg.anew)")


# What each capability needs in its verification spec for its score to be computable.
_REQUIRED_PARTS: dict[Capability, tuple[str, ...]] = {
    Capability.KNOWLEDGE: ("answer",),
    Capability.REASONING: ("answer", "reasoning"),
    Capability.INSTRUCTION: ("constraints",),
    Capability.INTEGRATION: ("answer", "constraints"),
}


class CapabilityRecord(_Strict):
    schema_version: int = SCHEMA_VERSION
    id: str = Field(min_length=1)
    capability: Capability
    messages: list[ChatMessage] = Field(min_length=1, description="the prompt; ends with a user turn")
    reference: str = Field(min_length=1, description="a reference answer that passes every check")
    verification: VerificationSpec
    provenance: Provenance

    @model_validator(mode="after")
    def _complete_for_capability(self) -> "CapabilityRecord":
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(f"schema_version {self.schema_version} is not supported (this code reads {SCHEMA_VERSION})")
        if self.messages[-1].role != "user":
            raise ValueError("the last message must be the user's turn the model answers")
        missing = [p for p in _REQUIRED_PARTS[self.capability] if not getattr(self.verification, p)]
        if missing:
            raise ValueError(
                f"a {self.capability.value} record needs verification.{' and verification.'.join(missing)}"
            )
        return self


class RecordFileError(ValueError):
    """A capability JSONL file has a line that is not a valid record."""


def load_records(path: str | Path) -> list[CapabilityRecord]:
    """Read a capability JSONL file; fail on the first bad line, naming the line and the field."""
    path = Path(path)
    if not path.is_file():
        raise RecordFileError(f"{path}: no such file; pass a capability-tagged JSONL file")
    records, seen = [], set()
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = CapabilityRecord.model_validate_json(line)
            except ValidationError as e:
                first = e.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "record"
                raise RecordFileError(f"{path}:{lineno}: {where}: {first['msg']}") from None
            if record.id in seen:
                raise RecordFileError(f"{path}:{lineno}: duplicate id {record.id!r}; ids must be unique in a file")
            seen.add(record.id)
            records.append(record)
    return records


def dump_records(records: Iterable[CapabilityRecord], path: str | Path) -> int:
    """Write records as JSONL with sorted keys, so the same records give the same bytes."""
    n = 0
    with Path(path).open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record.model_dump(mode="json"), sort_keys=True, ensure_ascii=False) + "\n")
            n += 1
    return n
