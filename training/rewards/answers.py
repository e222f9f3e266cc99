"""Reading a model's final answer out of free text.

Shared by benchmark scoring (which option did the model pick?) and the capability verifiers
(did it name the right entity?). Small models answer in many shapes — "B", "(B) Aspirin",
"The answer is B.", "Answer: aspirin" — so extraction tries the explicit shapes first and only
then looks for an option's text; an answer it cannot read is reported as unparseable, never
guessed.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Sequence

_ANSWER_MARKER = re.compile(r"(?:final\s+answer|answer)\s*(?:is|:|-)?\s*", re.IGNORECASE)


def normalize(text: str) -> str:
    """Lowercase, accents and punctuation dropped, whitespace collapsed: for comparing names."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-z0-9.]+", " ", text.lower())
    return re.sub(r"\s+", " ", text.replace(".", " ")).strip()


def mentions(text: str, name: str) -> bool:
    """Whether `name` occurs in `text` as whole words, ignoring case and punctuation."""
    needle = normalize(name)
    return bool(needle) and re.search(rf"(?<![a-z0-9]){re.escape(needle)}(?![a-z0-9])", normalize(text)) is not None


def first_mention(text: str, names: Sequence[str]) -> int | None:
    """Character offset (in normalised text) of the earliest of `names`, or None."""
    haystack = normalize(text)
    offsets = []
    for name in names:
        needle = normalize(name)
        if needle:
            m = re.search(rf"(?<![a-z0-9]){re.escape(needle)}(?![a-z0-9])", haystack)
            if m:
                offsets.append(m.start())
    return min(offsets) if offsets else None


def final_answer_text(completion: str) -> str:
    """The part of a completion that states the answer: what follows the last "Answer:" marker
    (up to the end of its line), else the whole completion."""
    matches = list(_ANSWER_MARKER.finditer(completion))
    if not matches:
        return completion.strip()
    tail = completion[matches[-1].end():].strip()
    return tail.splitlines()[0].strip() if tail else ""


def extract_choice(completion: str, labels: Sequence[str], texts: Sequence[str] = ()) -> int | None:
    """Index of the option a completion picks, or None when it cannot be read unambiguously.

    `labels` are what the model is asked to answer with (option letters, or words like yes/no/maybe);
    `texts` are the options' contents, used only when no label can be read.
    """
    text = completion.strip()
    if not text:
        return None
    letters = all(len(label) == 1 and label.isalpha() for label in labels)
    if letters:
        alternatives = "".join(re.escape(label) for label in labels)
        patterns = (
            rf"(?:final\s+answer|answer|option|choice)\s*(?:is|:|-)?\s*(?:option\s*)?\(?([{alternatives}])\b(?!')",
            # A line that starts with the letter alone or "B." / "B)" / "B:"; not "A patient ...".
            rf"^\(?([{alternatives}])(?:[.):]|\s*$)",
            rf"\(([{alternatives}])\)",
        )
        for pattern in patterns:
            found = {m.group(1).upper() for m in re.finditer(pattern, text, re.IGNORECASE | re.MULTILINE)
                     if m.group(1).upper() in labels}
            if len(found) == 1:
                return list(labels).index(found.pop())
            if found:  # two different letters stated explicitly: ambiguous, not the first one
                return None
    else:
        stated = final_answer_text(text)
        for candidate in (stated, text):
            found = {i for i, label in enumerate(labels) if re.match(rf"\W*{re.escape(label)}\b", candidate, re.IGNORECASE)}
            if len(found) == 1:
                return found.pop()
        found = {i for i, label in enumerate(labels) if mentions(stated, label)}
        if len(found) == 1:
            return found.pop()
    # Last resort: the completion names exactly one option's text.
    named = {i for i, option in enumerate(texts) if len(normalize(option)) > 2 and mentions(text, option)}
    return named.pop() if len(named) == 1 else None
