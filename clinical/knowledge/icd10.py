"""ICD-10-CM from `simple_icd_10_cm` (the NCHS/CMS tabular list, April 2026 update, bundled offline).

Codes are accepted with or without the dot and in any case ("E11.9", "E119", "e11.9").
A "valid" code here is a diagnosis code (a category or a subcategory); chapters ("4") and
blocks ("E08-E13") still have descriptions, since ancestors include them, but are not codes
a clinician can assign.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Iterator
from types import ModuleType

from clinical.knowledge.loading import LazySource
from clinical.knowledge.models import Icd10Chapter, Icd10Code, KnowledgeError

RELEASE = "ICD-10-CM April 2026 (simple_icd_10_cm 1.5.0)"

_CHAPTER_TITLE = re.compile(r"^(?P<title>.*?)\s*\((?P<range>[A-Z0-9]{3}-[A-Z0-9]{3})\)$")


def _load() -> ModuleType:
    # The package parses its XML at import time (~2 s, ~180 MB), so importing it is the load.
    # It reads that XML through importlib.resources calls deprecated since Python 3.11; the
    # warnings are about its code, not ours, and would repeat in every test run.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import simple_icd_10_cm

    return simple_icd_10_cm


ICD10 = LazySource("icd10", _load)


def _clean(code: str) -> str:
    if not isinstance(code, str):
        raise KnowledgeError(f"An ICD-10-CM code must be a string like 'E11.9', got {type(code).__name__}: {code!r}.")
    return code.strip().upper().replace(" ", "")


def _unknown(code: str) -> KnowledgeError:
    return KnowledgeError(
        f"Unknown ICD-10-CM code {code!r}: it is not in the {RELEASE} tabular list. "
        f"Check it for typos (codes look like 'E11.9' or 'E119'); use is_valid_icd10() to test a code first."
    )


def _item(code: str) -> str:
    """The library's spelling of any tabular item (code, block or chapter), or KnowledgeError."""
    cm = ICD10.get()
    cleaned = _clean(code)
    if not cm.is_valid_item(cleaned):
        raise _unknown(code)
    # The library accepts "E119" but answers ancestor queries with dotted codes, so callers
    # comparing results need one spelling. (Its own add_dot scans the full code list on first use.)
    if len(cleaned) > 3 and cleaned[3] != "." and "-" not in cleaned:
        dotted = f"{cleaned[:3]}.{cleaned[3:]}"
        if cm.is_valid_item(dotted):
            return dotted
    return cleaned


def is_valid_icd10(code: str) -> bool:
    """True for an ICD-10-CM diagnosis code (category or subcategory), in either spelling."""
    cm = ICD10.get()
    try:
        cleaned = _clean(code)
    except KnowledgeError:
        return False
    return cm.is_valid_item(cleaned) and cm.is_category_or_subcategory(cleaned)


def normalize_icd10(code: str) -> str:
    """The dotted spelling of a valid code: 'e119' -> 'E11.9'."""
    if not is_valid_icd10(code):
        raise _unknown(code)
    return _item(code)


def icd10_description(code: str) -> str:
    """Description of a code, block or chapter: 'E11.9' -> 'Type 2 diabetes mellitus without complications'."""
    return ICD10.get().get_description(_item(code))


def icd10_ancestors(code: str) -> list[str]:
    """Ancestors, nearest first, ending with the chapter: 'E11.9' -> ['E11', 'E08-E13', '4']."""
    ancestors = ICD10.get().get_ancestors(_item(code))
    # A block holding a single category shares its name (C7A is both), which the library lists twice.
    deduped: list[str] = []
    for item in ancestors:
        if not deduped or deduped[-1] != item:
            deduped.append(item)
    return deduped


def _chapter_record(number: str) -> Icd10Chapter:
    description = ICD10.get().get_description(number)
    match = _CHAPTER_TITLE.match(description)
    if match is None:  # every 2026 chapter title ends in its range; keep going if one day one does not
        return Icd10Chapter(number=number, title=description, code_range="")
    return Icd10Chapter(number=number, title=match["title"], code_range=match["range"])


def icd10_chapter(code: str) -> Icd10Chapter:
    """The chapter holding a code: 'E11.9' -> chapter 4, 'Endocrine, nutritional and metabolic diseases'."""
    item = _item(code)
    cm = ICD10.get()
    if cm.is_chapter(item):
        return _chapter_record(item)
    return _chapter_record(icd10_ancestors(item)[-1])


@functools.cache
def _chapters() -> tuple[Icd10Chapter, ...]:
    cm = ICD10.get()
    return tuple(_chapter_record(c) for c in cm.get_all_codes() if cm.is_chapter(c))


def icd10_chapters() -> list[Icd10Chapter]:
    """The 22 chapters in tabular order."""
    return list(_chapters())


def icd10_code(code: str) -> Icd10Code:
    """The full record of one diagnosis code."""
    dotted = normalize_icd10(code)
    cm = ICD10.get()
    return Icd10Code(
        code=dotted,
        description=cm.get_description(dotted),
        chapter=icd10_ancestors(dotted)[-1],
        is_leaf=cm.is_leaf(dotted),
    )


def _chapter_number(chapter: int | str) -> str:
    key = str(chapter).strip().upper()
    for record in _chapters():
        if key in (record.number, record.code_range):
            return record.number
    raise KnowledgeError(
        f"Unknown ICD-10-CM chapter {chapter!r}. Use a chapter number 1-{len(_chapters())} "
        f"(e.g. 4 for {_chapters()[3].title}) or its code range (e.g. 'E00-E89')."
    )


def iter_icd10_codes(chapter: int | str | None = None, leaves_only: bool = False) -> Iterator[Icd10Code]:
    """Every diagnosis code in tabular order, optionally one chapter's, optionally leaves (billable) only."""
    # Resolved before the generator starts, so a bad chapter fails at the call, not at first next().
    chapters = [_chapter_number(chapter)] if chapter is not None else [c.number for c in _chapters()]
    return _codes_in(chapters, leaves_only)


def _codes_in(chapters: list[str], leaves_only: bool) -> Iterator[Icd10Code]:
    cm = ICD10.get()
    for number in chapters:
        seen: set[str] = set()  # single-category blocks would otherwise yield their category twice
        for code in cm.get_descendants(number):
            if code in seen or not cm.is_category_or_subcategory(code):
                continue
            seen.add(code)
            leaf = cm.is_leaf(code)
            if leaves_only and not leaf:
                continue
            yield Icd10Code(code=code, description=cm.get_description(code), chapter=number, is_leaf=leaf)
