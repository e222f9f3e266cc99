"""Readers for the real benchmark files, in their original formats, into one multiple-choice item.

Each reader takes the path of the file as it is published (see ../shared/data/README.md) and
fails with the file, the line and the field when something is off, so a wrong download or a
hand-edited file is caught before hours of evaluation.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

LETTERS = "ABCDEFGH"


class BenchmarkFileError(ValueError):
    """A benchmark file is missing or not in the format its benchmark publishes."""


@dataclass(frozen=True)
class MultipleChoiceItem:
    """One question with closed answer choices.

    `choices` are the labels a model answers with (option letters, or yes/no/maybe) and
    `choice_texts` what they stand for; `gold` indexes the correct one. `context` is reading
    material that precedes the question (PubMedQA's abstract).
    """

    id: str
    question: str
    choices: tuple[str, ...]
    choice_texts: tuple[str, ...]
    gold: int
    context: str = ""
    subject: str = ""

    @property
    def gold_label(self) -> str:
        return self.choices[self.gold]


@dataclass(frozen=True)
class Benchmark:
    name: str
    kind: str  # "multiple_choice" | "ifeval" | "capabilities"
    description: str
    default_data: str  # relative to the shared data folder
    reader: Callable[[Path], list] = field(repr=False)


def _jsonl(path: Path) -> list[tuple[int, dict]]:
    if not path.is_file():
        raise BenchmarkFileError(f"{path}: no such file; pass --data with the benchmark's original file")
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append((lineno, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise BenchmarkFileError(f"{path}:{lineno}: not JSON ({e.msg}); is this a JSONL file?") from None
    return rows


def _require(row: dict, keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise BenchmarkFileError(f"{where}: missing field(s) {missing}; found {sorted(row)}")


def read_medqa(path: Path) -> list[MultipleChoiceItem]:
    """MedQA (USMLE) jsonl: `question`, `options` {A..D(E)}, `answer_idx`."""
    items = []
    for lineno, row in _jsonl(path):
        where = f"{path}:{lineno}"
        _require(row, ("question", "options", "answer_idx"), where)
        letters = tuple(sorted(row["options"]))
        if row["answer_idx"] not in letters:
            raise BenchmarkFileError(f"{where}: answer_idx {row['answer_idx']!r} is not one of the options {letters}")
        items.append(MultipleChoiceItem(
            id=f"medqa-{lineno}", question=row["question"].strip(), choices=letters,
            choice_texts=tuple(str(row["options"][k]) for k in letters), gold=letters.index(row["answer_idx"]),
            subject=str(row.get("meta_info", "")),
        ))
    return items


def read_medmcqa(path: Path) -> list[MultipleChoiceItem]:
    """MedMCQA jsonl: `question`, `opa`..`opd`, `cop` 1-4 (the correct option), `subject_name`."""
    items = []
    for lineno, row in _jsonl(path):
        where = f"{path}:{lineno}"
        _require(row, ("question", "opa", "opb", "opc", "opd", "cop"), where)
        if row["cop"] not in (1, 2, 3, 4):
            raise BenchmarkFileError(f"{where}: cop must be 1-4 (the correct option), got {row['cop']!r}")
        items.append(MultipleChoiceItem(
            id=str(row.get("id") or f"medmcqa-{lineno}"), question=row["question"].strip(), choices=tuple("ABCD"),
            choice_texts=tuple(str(row[k]) for k in ("opa", "opb", "opc", "opd")), gold=row["cop"] - 1,
            subject=str(row.get("subject_name") or ""),
        ))
    return items


PUBMEDQA_LABELS = ("yes", "no", "maybe")


def read_pubmedqa(path: Path) -> list[MultipleChoiceItem]:
    """PubMedQA PQA-L `ori_pqal.json` (PMID -> QUESTION, CONTEXTS, final_decision). When the
    official `test_ground_truth.json` lies beside it, only its 500 test PMIDs are read."""
    if not path.is_file():
        raise BenchmarkFileError(f"{path}: no such file; pass --data with PubMedQA's ori_pqal.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BenchmarkFileError(f"{path}: not JSON ({e.msg}); expected PubMedQA's ori_pqal.json") from None
    split = path.with_name("test_ground_truth.json")
    pmids = list(json.loads(split.read_text()).keys()) if split.is_file() else list(data)
    items = []
    for pmid in pmids:
        if pmid not in data:
            raise BenchmarkFileError(f"{split}: PMID {pmid} of the test split is not in {path}")
        row = data[pmid]
        _require(row, ("QUESTION", "CONTEXTS", "final_decision"), f"{path}: PMID {pmid}")
        if row["final_decision"] not in PUBMEDQA_LABELS:
            raise BenchmarkFileError(f"{path}: PMID {pmid}: final_decision {row['final_decision']!r} is not yes/no/maybe")
        items.append(MultipleChoiceItem(
            id=f"pubmedqa-{pmid}", question=row["QUESTION"].strip(), choices=PUBMEDQA_LABELS,
            choice_texts=PUBMEDQA_LABELS, gold=PUBMEDQA_LABELS.index(row["final_decision"]),
            context="\n".join(row["CONTEXTS"]),
        ))
    return items


MMLU_MEDICAL_SUBJECTS = (
    "anatomy", "clinical_knowledge", "college_biology", "college_medicine", "medical_genetics", "professional_medicine",
)


def read_mmlu(path: Path) -> list[MultipleChoiceItem]:
    """MMLU headerless CSV (question, A, B, C, D, answer): one `<subject>_test.csv`, or a folder of them
    (then only the six medical subjects are read)."""
    if path.is_dir():
        files = [path / f"{s}_test.csv" for s in MMLU_MEDICAL_SUBJECTS if (path / f"{s}_test.csv").is_file()]
        if not files:
            raise BenchmarkFileError(f"{path}: holds none of the medical subjects' files ({MMLU_MEDICAL_SUBJECTS[0]}_test.csv, ...)")
    elif path.is_file():
        files = [path]
    else:
        raise BenchmarkFileError(f"{path}: no such file or folder; pass MMLU's <subject>_test.csv or its folder")
    items = []
    for file in files:
        subject = file.name.removesuffix("_test.csv")
        with file.open(encoding="utf-8", newline="") as f:
            for lineno, row in enumerate(csv.reader(f), 1):
                if len(row) != 6 or row[5] not in "ABCD" or not row[5]:
                    raise BenchmarkFileError(f"{file}:{lineno}: expected 6 columns (question, A, B, C, D, answer letter)")
                items.append(MultipleChoiceItem(
                    id=f"mmlu-{subject}-{lineno}", question=row[0].strip(), choices=tuple("ABCD"),
                    choice_texts=tuple(row[1:5]), gold="ABCD".index(row[5]), subject=subject,
                ))
    return items


def sample(items: list, limit: int | None, seed: int) -> list:
    """A seeded random subset, in the original order (stable across runs for a seed)."""
    if limit is None or limit >= len(items):
        return items
    if limit <= 0:
        raise ValueError(f"--limit must be positive, got {limit}")
    keep = set(random.Random(seed).sample(range(len(items)), limit))
    return [item for i, item in enumerate(items) if i in keep]
