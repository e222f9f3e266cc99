"""The benchmark registry and running one benchmark against one model."""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from training.evaluate import benchmarks as bm
from training.evaluate.degeneration import degeneration, degeneration_rates
from training.evaluate.lm import LanguageModel
from training.evaluate.report import BenchmarkResult

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES = Path(__file__).resolve().parent / "samples"


def shared_data_dir() -> Path:
    """`$BALANCEDBIO_DATA`, else the workspace's `../shared/data` beside the repository."""
    return Path(os.environ.get("BALANCEDBIO_DATA") or REPO_ROOT.parent / "shared" / "data")


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    kind: str  # "multiple_choice" | "ifeval" | "capabilities"
    description: str
    full_data: str  # the published file, relative to the shared data folder
    sample_data: str  # the small sample bundled with the project, relative to `samples/`
    reader: Callable[[Path], list]
    max_new_tokens: int


def _read_ifeval(path: Path) -> list:
    from training.evaluate.ifeval import load_ifeval

    return load_ifeval(path)


def _read_capabilities(path: Path) -> list:
    from training.records import load_records

    return load_records(path)


BENCHMARKS: dict[str, BenchmarkSpec] = {s.name: s for s in (
    BenchmarkSpec("medqa", "multiple_choice", "MedQA USMLE 4-option (jsonl: question, options, answer_idx)",
                  "benchmarks/medqa_us_4options_test_sample20.jsonl", "medqa_us_4options_test_sample20.jsonl", bm.read_medqa, 16),
    BenchmarkSpec("medmcqa", "multiple_choice", "MedMCQA (jsonl: question, opa..opd, cop 1-4)",
                  "benchmarks/medmcqa_dev.jsonl", "medmcqa_dev_sample.jsonl", bm.read_medmcqa, 16),
    BenchmarkSpec("pubmedqa", "multiple_choice", "PubMedQA PQA-L (ori_pqal.json; test split from test_ground_truth.json beside it)",
                  "benchmarks/ori_pqal.json", "pubmedqa/ori_pqal.json", bm.read_pubmedqa, 16),
    BenchmarkSpec("mmlu_medical", "multiple_choice", "MMLU's six medical subjects (headerless CSV, a file or their folder)",
                  "benchmarks/mmlu_medical_test_sample", "mmlu_medical_test_sample", bm.read_mmlu, 16),
    BenchmarkSpec("ifeval", "ifeval", "IFEval (input_data.jsonl: key, prompt, instruction_id_list, kwargs)",
                  "benchmarks/ifeval_input_data.jsonl", "ifeval_input_data_sample.jsonl", _read_ifeval, 512),
    BenchmarkSpec("capabilities", "capabilities", "the four capability scores over capability-tagged JSONL (training.records)",
                  "", "capabilities_fixture.jsonl", _read_capabilities, 256),
)}


def benchmark_spec(name: str) -> BenchmarkSpec:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {sorted(BENCHMARKS)}")
    return BENCHMARKS[name]


def default_data(name: str, sample: bool = False) -> Path:
    """The published file in the shared data folder, or the project's bundled sample of it."""
    spec = benchmark_spec(name)
    if sample or not spec.full_data:
        return SAMPLES / spec.sample_data
    return shared_data_dir() / spec.full_data


# Hub copies whose rows have the published file's fields, so the same reader reads them.
HUB_JSONL = {"medqa": "test", "medmcqa": "validation", "ifeval": "train"}


def from_hub(name: str, dataset: str) -> Path:
    """Fetch a benchmark by hub dataset name (`hub:ORG/NAME[@SPLIT]`, e.g. `hub:google/IFEval`) into the
    cache as JSONL in the published format. Only for benchmarks whose hub rows keep the file's fields."""
    if name not in HUB_JSONL:
        raise bm.BenchmarkFileError(f"{name} cannot be read from the hub (its hub copies change the format); "
                                    f"pass --data with the published file. Hub-readable: {sorted(HUB_JSONL)}")
    from datasets import load_dataset

    from training.models import cache_dir

    dataset, _, split = dataset.partition("@")
    try:
        rows = load_dataset(dataset, split=split or HUB_JSONL[name])
    except Exception as e:  # datasets raises many kinds (ConnectionError, DatasetNotFoundError, ValueError)
        raise bm.BenchmarkFileError(f"cannot load {dataset!r} from the hub ({type(e).__name__}); "
                                    "when offline, pass --data with the downloaded file") from None
    path = cache_dir() / "benchmarks" / f"{name}-{dataset.replace('/', '--')}-{split or HUB_JSONL[name]}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def run_benchmark(lm: LanguageModel, name: str, data: Path | str | None = None, limit: int | None = None, seed: int = 0,
                  modes=("loglik", "generate"), max_new_tokens: int | None = None,
                  predictions_path: Path | None = None, ids: list[str] | None = None,
                  label: str | None = None) -> BenchmarkResult:
    """Score `lm` on one benchmark file; per-item predictions go to `predictions_path` as JSONL.
    `label` names the result in place of the benchmark (e.g. two capability test sets in one report)."""
    spec = benchmark_spec(name)
    if isinstance(data, str) and data.startswith("hub:"):
        data = from_hub(name, data.removeprefix("hub:"))
    data = Path(data) if data else default_data(name)
    if not data.exists():
        raise bm.BenchmarkFileError(f"{data}: not found; pass --data with {spec.description}")
    items = spec.reader(data)
    if ids is not None:
        items = select_ids(items, ids, data)
    items = bm.sample(items, limit, seed)
    if not items:
        raise bm.BenchmarkFileError(f"{data}: holds no items")
    new_tokens = max_new_tokens or spec.max_new_tokens
    random.seed(seed)
    started = time.perf_counter()
    if spec.kind == "multiple_choice":
        from training.evaluate.multiple_choice import item_scores, score_multiple_choice

        metrics, preds = score_multiple_choice(lm, items, modes, new_tokens)
        rows = [vars(p) for p in preds]
        per_item = item_scores(preds, metrics["modes"])
    elif spec.kind == "ifeval":
        metrics, rows = _score_ifeval(lm, items, new_tokens)
        per_item = {level: {str(r["key"]): float(all(r[kind])) for r in rows}
                    for level, kind in (("prompt_level_strict_acc", "strict"), ("prompt_level_loose_acc", "loose"))}
    else:
        from training.evaluate.capabilities import score_capabilities

        metrics, verdicts = score_capabilities(lm, items, new_tokens)
        rows = [{"id": v.id, "capability": v.capability, "score": v.score, "method": v.method, "parsed": v.parsed,
                 "completion": v.completion, "degeneration": v.degeneration,
                 "checks": {k: {"score": c.score, "reason": c.reason} for k, c in v.checks.items()}} for v in verdicts]
        per_item = {}
        for v in verdicts:
            per_item.setdefault(v.capability, {})[v.id] = v.score
    wall = time.perf_counter() - started
    if predictions_path:
        predictions_path.parent.mkdir(parents=True, exist_ok=True)
        with predictions_path.open("w") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return BenchmarkResult(benchmark=label or name, kind=spec.kind, data=str(data), n=len(items), metrics=metrics,
                           wall_time_s=round(wall, 2), items=per_item)


def item_key(item) -> str:
    return str(getattr(item, "id", None) or getattr(item, "key"))


def select_ids(items: list, ids: list[str], data: Path) -> list:
    """The items named in `ids` (a saved subset, so every run scores the same questions), in file order."""
    wanted = set(ids)
    chosen = [item for item in items if item_key(item) in wanted]
    missing = wanted - {item_key(item) for item in chosen}
    if missing:
        raise bm.BenchmarkFileError(f"{data}: {len(missing)} of the {len(wanted)} requested item ids are not in the "
                                    f"file (e.g. {sorted(missing)[:3]}); is --ids for this benchmark's file?")
    return chosen


def read_ids(path: Path | str) -> list[str]:
    """One item id a line; blank lines and lines starting with # are skipped."""
    path = Path(path)
    if not path.is_file():
        raise bm.BenchmarkFileError(f"{path}: no such id list; pass --ids with a file of one item id a line")
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def _score_ifeval(lm: LanguageModel, items: list, max_new_tokens: int) -> tuple[dict, list[dict]]:
    from training.evaluate.ifeval import aggregate, ensure_checkers_ready, score_response

    ensure_checkers_ready()
    prompts = [lm.chat_prompt([{"role": "user", "content": item.prompt}]) for item in items]
    responses = lm.generate(prompts, max_new_tokens)
    results = [score_response(item, response) for item, response in zip(items, responses)]
    metrics = {"n": len(items), **aggregate(results)}
    user_prompts = [item.prompt for item in items]
    metrics["degeneration"] = degeneration_rates(responses, user_prompts)
    rows = [{"key": item.key, "response": response, "strict": r.strict, "loose": r.loose,
             "degeneration": vars(degeneration(response, item.prompt))}
            for item, response, r in zip(items, responses, results)]
    return metrics, rows
