"""One registry of verifiable instruction constraints: IFEval's 25 ids and this project's clinical formats.

`check_constraint` answers one `ConstraintSpec` with a `VerifierResult` (1.0 or 0.0 and why);
`check_constraints` scores the fraction satisfied and names each failure, which is the
instruction-following reward. IFEval ids are checked strictly by Google's checkers through
`if_verifiable` (never reimplemented here); the clinical ids are small pure functions below.
A spec that cannot be checked (unknown id, missing or bad kwargs) is a data error: it raises
`ValueError` rather than scoring 0, so it is fixed instead of silently lowering a reward.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from if_verifiable.common import evaluate_instructions
from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

from training.records import ConstraintSpec
from training.rewards import VerifierResult

__all__ = ["CONSTRAINTS", "check_constraint", "check_constraints", "validate_constraint_spec"]

Kwargs = Mapping[str, Any]


@dataclass(frozen=True)
class Constraint:
    """A registry entry: its checker, its kwarg names, and a check of kwarg values."""

    check: Callable[[str, Kwargs, str], VerifierResult]  # (response, kwargs, prompt)
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    validate: Callable[[Kwargs], None] = lambda kwargs: None  # raises ValueError


def _fail(reason: str) -> VerifierResult:
    return VerifierResult(0.0, reason)


def _ok(reason: str) -> VerifierResult:
    return VerifierResult(1.0, reason)


# --- IFEval ids, through if_verifiable ---


def _ifeval_checker(instruction_id: str, kwargs: Kwargs) -> tuple[Any, str]:
    """Build the checker as evaluate_instructions does; return it with its description."""
    checker = INSTRUCTION_DICT[instruction_id](instruction_id)
    try:
        description = checker.build_description(**kwargs)
    except (TypeError, ValueError, KeyError, re.error) as e:
        raise ValueError(
            f"constraint {instruction_id!r}: the IFEval checker rejects kwargs {dict(kwargs)}: {e!r}"
        ) from e
    return checker, description


def _check_ifeval(instruction_id: str) -> Callable[[str, Kwargs, str], VerifierResult]:
    def check(response: str, kwargs: Kwargs, prompt: str) -> VerifierResult:
        # Lazy import: the evaluation package may import the rewards, not the other way round at load.
        from training.evaluate.ifeval import ensure_checkers_ready

        ensure_checkers_ready()
        _, description = _ifeval_checker(instruction_id, kwargs)  # also turns bad kwargs into ValueError
        results, _ = evaluate_instructions(response, [instruction_id], [dict(kwargs)], prompt, INSTRUCTION_DICT)
        if not results:  # if_verifiable returns nothing for an empty (or thinking-only) response
            return _fail("empty response")
        if results[0].strict_pass:
            return _ok(f"followed: {description.strip()}")
        return _fail(f"not followed: {description.strip()}")

    return check


def _validate_ifeval(instruction_id: str) -> Callable[[Kwargs], None]:
    def validate(kwargs: Kwargs) -> None:
        from training.evaluate.ifeval import ensure_checkers_ready

        ensure_checkers_ready()
        checker, _ = _ifeval_checker(instruction_id, kwargs)
        try:  # some kwargs only fail when checked (a keyword that is a bad regex, a count given as text)
            checker.check_following("A probe response. It has two sentences.")
        except (TypeError, ValueError, re.error) as e:
            raise ValueError(f"constraint {instruction_id!r}: kwargs {dict(kwargs)} break the checker: {e!r}") from e

    return validate


def _ifeval_entry(instruction_id: str) -> Constraint:
    # Every argument is required: given None, an IFEval checker draws a random value instead.
    keys = tuple(INSTRUCTION_DICT[instruction_id](instruction_id).get_instruction_args_keys())
    return Constraint(check=_check_ifeval(instruction_id), required=keys, validate=_validate_ifeval(instruction_id))


# --- clinical:soap_sections ---

SOAP = ("Subjective", "Objective", "Assessment", "Plan")


def _heading_pattern(name: str) -> re.Pattern[str]:
    # "Subjective:", "## Subjective", "**Subjective**", "**Subjective:** text"; the name must be
    # followed by a colon or end the line, so prose like "Subjective findings..." is not a heading.
    marks = r"[ \t]*[*_]{0,2}[ \t]*"
    return re.compile(
        rf"^[ \t]*(?:#{{1,6}})?{marks}{re.escape(name)}{marks}(?::|$)[*_]{{0,2}}(?P<rest>.*)$", re.IGNORECASE
    )


def _has_text(text: str) -> bool:
    return bool(re.sub(r"[\s*_#:\-]", "", text))


def _check_soap(response: str, kwargs: Kwargs, prompt: str) -> VerifierResult:
    names = list(kwargs.get("sections", SOAP))
    patterns = [_heading_pattern(n) for n in names]
    content: dict[int, list[str]] = defaultdict(list)
    order: list[int] = []  # section indices in order of first appearance
    current = None
    for line in response.splitlines():
        hit = next(((i, m) for i, p in enumerate(patterns) if (m := p.match(line))), None)
        if hit is None:
            if current is not None:
                content[current].append(line)
            continue
        current, match = hit
        content[current].append(match.group("rest"))
        if current not in order:
            order.append(current)
    missing = [names[i] for i in range(len(names)) if i not in order]
    if missing:
        return _fail(f"missing section(s) {missing}; each needs a heading line such as '{missing[0]}:'")
    if order != sorted(order):
        return _fail(f"sections out of order: found {[names[i] for i in order]}, expected {names}")
    empty = [names[i] for i in order if not _has_text("\n".join(content[i]))]
    if empty:
        return _fail(f"empty section(s) {empty}")
    return _ok(f"sections {names} present in order, each with content")


def _validate_soap(kwargs: Kwargs) -> None:
    sections = kwargs.get("sections", SOAP)
    names_ok = isinstance(sections, (list, tuple)) and all(isinstance(s, str) and s.strip() for s in sections)
    if not sections or not names_ok:
        raise ValueError("constraint 'clinical:soap_sections': `sections` must be a non-empty list of section names")
    if len({s.strip().lower() for s in sections}) != len(sections):
        raise ValueError(f"constraint 'clinical:soap_sections': duplicate names in `sections` {list(sections)}")


# --- clinical:json_fields ---

_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),  # JSON true is not a number
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "boolean": lambda v: isinstance(v, bool),
}
_FENCE = re.compile(r"^```[ \t]*(?:json)?[ \t]*\n?(?P<body>.*?)\n?```$", re.DOTALL | re.IGNORECASE)


def _json_type_name(value: Any) -> str:
    return next((name for name, test in _JSON_TYPES.items() if test(value)), "null")


def _check_json_fields(response: str, kwargs: Kwargs, prompt: str) -> VerifierResult:
    text = response.strip()
    if fenced := _FENCE.match(text):  # a ```json fence is allowed, as in IFEval's json_format
        text = fenced.group("body").strip()
    try:
        data = json.loads(text)
    except ValueError as e:
        return _fail(f"response is not valid JSON ({e})")
    if not isinstance(data, dict):
        return _fail(f"response is a JSON {_json_type_name(data)}, not an object")
    missing = [f for f in kwargs["fields"] if f not in data]
    if missing:
        return _fail(f"missing field(s) {missing}")
    wrong = [
        f"{key!r} is {_json_type_name(data[key])}, expected {kind}"
        for key, kind in kwargs.get("types", {}).items()
        if not _JSON_TYPES[kind](data[key])
    ]
    if wrong:
        return _fail("wrong type(s): " + "; ".join(wrong))
    return _ok(f"JSON object with fields {list(kwargs['fields'])}")


def _validate_json_fields(kwargs: Kwargs) -> None:
    fields, types = kwargs["fields"], kwargs.get("types", {})
    if not isinstance(fields, (list, tuple)) or not fields or not all(isinstance(f, str) and f for f in fields):
        raise ValueError("constraint 'clinical:json_fields': `fields` must be a non-empty list of key names")
    if not isinstance(types, Mapping):
        raise ValueError("constraint 'clinical:json_fields': `types` must map a field to a type name")
    bad = {k: v for k, v in types.items() if v not in _JSON_TYPES}
    if bad:
        raise ValueError(f"constraint 'clinical:json_fields': unknown type(s) {bad}; use one of {sorted(_JSON_TYPES)}")
    stray = sorted(set(types) - set(fields))
    if stray:
        raise ValueError(f"constraint 'clinical:json_fields': `types` names {stray}, which are not in `fields`")


# --- clinical:numbered_plan ---

_ITEM = re.compile(r"^[ \t]*(\d{1,3})[.)][ \t]+\S", re.MULTILINE)


def _check_numbered_plan(response: str, kwargs: Kwargs, prompt: str) -> VerifierResult:
    numbers = [int(n) for n in _ITEM.findall(response)]
    if not numbers:
        return _fail("no numbered list (items are lines starting '1.' or '1)' followed by text)")
    if numbers[0] != 1:
        return _fail(f"numbering starts at {numbers[0]}, not 1")
    runs: list[list[int]] = []  # a new list starts wherever numbering restarts at 1
    for n in numbers:
        if n == 1:
            runs.append([1])
        elif n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            return _fail(f"numbering is not consecutive: {runs[-1][-1]} is followed by {n}")
    # The plan closes a clinical note, so with several lists the last one is the plan.
    count = len(runs[-1])
    lo, hi = kwargs["min_items"], kwargs.get("max_items")
    which = "the plan" if len(runs) == 1 else f"the last of {len(runs)} numbered lists"
    if count < lo:
        return _fail(f"{which} has {count} item(s); needs at least {lo}")
    if hi is not None and count > hi:
        return _fail(f"{which} has {count} items; allows at most {hi}")
    return _ok(f"{which} has {count} consecutively numbered items")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _validate_numbered_plan(kwargs: Kwargs) -> None:
    lo, hi = kwargs["min_items"], kwargs.get("max_items")
    if not _is_count(lo):
        raise ValueError(f"constraint 'clinical:numbered_plan': `min_items` must be an integer >= 1, got {lo!r}")
    if hi is not None and (not _is_count(hi) or hi < lo):
        raise ValueError(f"constraint 'clinical:numbered_plan': `max_items` must be an int >= min_items, got {hi!r}")


# --- The registry and its entry points ---

_CLINICAL: dict[str, Constraint] = {
    "clinical:soap_sections": Constraint(_check_soap, optional=("sections",), validate=_validate_soap),
    "clinical:json_fields": Constraint(
        _check_json_fields, required=("fields",), optional=("types",), validate=_validate_json_fields
    ),
    "clinical:numbered_plan": Constraint(
        _check_numbered_plan, required=("min_items",), optional=("max_items",), validate=_validate_numbered_plan
    ),
}

CONSTRAINTS: dict[str, Constraint] = {**{iid: _ifeval_entry(iid) for iid in sorted(INSTRUCTION_DICT)}, **_CLINICAL}


def _valid_ids_text() -> str:
    families: dict[str, list[str]] = defaultdict(list)
    for cid in CONSTRAINTS:
        family, name = cid.split(":", 1)
        families[family].append(name)
    return "; ".join(f"{family}:{{{','.join(sorted(names))}}}" for family, names in sorted(families.items()))


def _lookup(constraint_id: str) -> Constraint:
    entry = CONSTRAINTS.get(constraint_id)
    if entry is None:
        close = difflib.get_close_matches(constraint_id, CONSTRAINTS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown constraint {constraint_id!r}{hint}; valid ids are {_valid_ids_text()}")
    return entry


def _checked_kwargs(spec: ConstraintSpec) -> tuple[Constraint, dict[str, Any]]:
    """The entry and the spec's kwargs (nulls dropped, as IFEval does), after a check of their names."""
    entry = _lookup(spec.id)
    kwargs = {k: v for k, v in spec.kwargs.items() if v is not None}
    missing = [k for k in entry.required if k not in kwargs]
    if missing:
        raise ValueError(f"constraint {spec.id!r} needs kwarg(s) {missing}; got {sorted(kwargs)}")
    unknown = sorted(set(kwargs) - set(entry.required) - set(entry.optional))
    if unknown:
        accepted = list(entry.required + entry.optional) or "none"
        raise ValueError(f"constraint {spec.id!r} does not take kwarg(s) {unknown}; it accepts {accepted}")
    return entry, kwargs


def validate_constraint_spec(spec: ConstraintSpec) -> None:
    """Raise ValueError unless the spec's id is known and its kwargs are usable (no response needed)."""
    entry, kwargs = _checked_kwargs(spec)
    entry.validate(kwargs)


def check_constraint(response: str, spec: ConstraintSpec, prompt: str = "") -> VerifierResult:
    """1.0 if the response satisfies the constraint, else 0.0; the reason says what was found."""
    entry, kwargs = _checked_kwargs(spec)
    if spec.id in _CLINICAL:  # cheap; IFEval kwargs are checked when the checker is built
        entry.validate(kwargs)
    return entry.check(response, kwargs, prompt)


def check_constraints(response: str, specs: Sequence[ConstraintSpec], prompt: str = "") -> VerifierResult:
    """Score = fraction of constraints satisfied; the reason names each failed one and why."""
    if not specs:
        raise ValueError("no constraints to check; an instruction task needs at least one ConstraintSpec")
    results = [check_constraint(response, spec, prompt) for spec in specs]
    failed = [f"{spec.id}: {r.reason}" for spec, r in zip(specs, results) if not r.passed]
    passed = len(specs) - len(failed)
    summary = f"{passed}/{len(specs)} constraints satisfied"
    if failed:
        summary += "; failed: " + " | ".join(failed)
    return VerifierResult(passed / len(specs), summary)
