"""ConText-style assertion rules (negated, hypothetical, other experiencer, historical) on spaCy.

Why not medspaCy itself: medspaCy 1.3.1 (the newest release) requires spaCy < 3.8 on Python 3.11;
spaCy 3.7 needs thinc 8.2, whose wheels are built against numpy 1 and fail to import beside the
numpy 2 the stack needs (pandas and ml_dtypes require numpy >= 2; thinc 8.2 raises "numpy.dtype
size changed"). So this module applies the ConText algorithm (Harkema et al., J Biomed Inform
2009: trigger phrases with a direction and a category, scopes cut at sentence ends and
termination terms, pseudo-triggers that cancel a trigger they overlap) with spaCy 3.8's own
rule-based Matcher over a blank English pipeline: no model download, nothing learned.

A "target" is any character span the caller found (drug mentions from the knowledge base's
dictionary, symptom phrases); `assert_spans` says how each one is qualified.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

Category = Literal["NEGATED", "HYPOTHETICAL", "FAMILY", "HISTORICAL", "PSEUDO", "TERMINATE"]
Direction = Literal["FORWARD", "BACKWARD", "BIDIRECTIONAL", "TERMINATE", "PSEUDO"]

# (phrase, category, direction). FORWARD triggers qualify targets after them, BACKWARD before them.
# Written for clinicians' questions and model answers about drugs and symptoms.
RULES: tuple[tuple[str, Category, Direction], ...] = (
    # negation: the drug or symptom is ruled out, stopped, absent or denied
    *((p, "NEGATED", "FORWARD") for p in (
        "no", "not", "never", "without", "avoid", "avoiding", "avoided", "do not", "don't", "dont", "does not",
        "doesn't", "should not", "shouldn't", "must not", "cannot", "can't", "won't", "stop", "stopping",
        "discontinue", "discontinued", "discontinuing", "hold", "holding", "withhold", "withholding",
        "instead of", "rather than", "contraindicated", "allergic to", "allergy to", "allergies to",
        "denies", "denied", "negative for", "free of", "absence of", "no longer", "refrain from", "never give",
        "no sign of", "no signs of", "no evidence of", "resolved", "nor")),
    *((p, "NEGATED", "BACKWARD") for p in (
        "is contraindicated", "are contraindicated", "should be avoided", "must be avoided", "is not recommended",
        "are not recommended", "should be stopped", "should be discontinued", "is not advised", "not advised",
        "is to be avoided", "denied", "resolved", "has resolved", "ruled out", "is unsafe", "is not safe")),
    # hypothetical: proposed, conditional, future or asked about, not a fact about this patient now
    *((p, "HYPOTHETICAL", "FORWARD") for p in (
        "if", "if we were to", "were we to", "in case", "in case of", "should you", "what if", "suppose",
        "supposing", "unless", "whether", "if ever", "ever get", "ever develop", "hypothetically")),
    # another person's drug or symptom
    *((p, "FAMILY", "BIDIRECTIONAL") for p in (
        "mother", "father", "mom", "mum", "dad", "brother", "sister", "grandmother", "grandfather", "grandma",
        "grandpa", "uncle", "aunt", "cousin", "family history", "his family", "her family", "relative")),
    # past, not current
    *((p, "HISTORICAL", "FORWARD") for p in (
        "history of", "h/o", "previously", "prior", "past", "used to take", "years ago", "in the past")),
    *((p, "HISTORICAL", "BACKWARD") for p in ("years ago", "months ago", "as a child", "in the past")),
    # pseudo-triggers: contain a trigger word but do not negate or qualify
    *((p, "PSEUDO", "PSEUDO") for p in (
        "do not hesitate", "don't hesitate", "not hesitate", "not only", "no reason not to", "not contraindicated",
        "no contraindication", "no contraindications", "not a contraindication", "no longer contraindicated",
        "nothing prevents", "not to forget", "do not forget", "don't forget", "not stop", "never stop", "no doubt",
        "not without", "if needed", "if necessary", "if tolerated", "as needed",
        # a relative's belongings ("her mum's pills") do not make the relative the one affected
        *(f"{r}'s" for r in ("mother", "father", "mom", "mum", "dad", "brother", "sister", "grandmother",
                              "grandfather", "grandma", "grandpa", "uncle", "aunt", "cousin")))),
    # termination: a new clause starts, so the trigger's scope ends here
    *((p, "TERMINATE", "TERMINATE") for p in (
        "but", "however", "although", "though", "yet", "except", "instead", "which", "whereas", "while",
        "and start", "and use", "and give", "and switch", "and add", "and begin", "and continue", "then start",
        "then give", "switch to", "prefer", "because", "since", "he takes", "she takes", "he is on", "she is on",
        "currently on", "currently takes",
        # "and" + a new subject or verb starts a new clause
        "and i", "and i've", "and ive", "and i have", "and he", "and she", "and they", "and has", "and have",
        "and is", "and was")),
)
MAX_SCOPE = 8  # tokens; ConText's default window, long enough for "do not under any circumstances give"
_VERB_TERMINATORS = {"use", "start", "give", "add", "begin", "continue", "try", "recommend", "prescribe", "choose",
                     "prefer", "switch to", "takes", "taking", "is on", "on", "now", "currently"}


@dataclass(frozen=True)
class Assertion:
    start: int  # character offsets of the target, as given
    end: int
    negated: bool = False
    hypothetical: bool = False
    family: bool = False
    historical: bool = False
    cues: tuple[str, ...] = ()  # the trigger phrases that applied, for the finding's reason

    @property
    def affirmed(self) -> bool:
        """True when the target is asserted of this patient, now, without negation."""
        return not (self.negated or self.family or self.historical)


@functools.cache
def _pipeline():
    """A blank English pipeline with a sentencizer and a Matcher of the RULES (loads offline)."""
    import spacy
    from spacy.matcher import PhraseMatcher

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    matcher = PhraseMatcher(nlp.vocab, attr="LOWER")
    meta: dict[str, tuple[str, str, str]] = {}
    for i, (phrase, category, direction) in enumerate(RULES):
        key = f"r{i}"
        meta[key] = (phrase, category, direction)
        matcher.add(key, [nlp.make_doc(phrase)])
    return nlp, matcher, meta


def load() -> None:
    """Build the pipeline now (raises if spaCy is missing: callers fail closed)."""
    _pipeline()


def _triggers(doc, matcher, meta, vocab):
    found = []
    for match_id, start, end in matcher(doc):
        phrase, category, direction = meta[vocab.strings[match_id]]
        found.append((start, end, phrase, category, direction))
    pseudo = [(s, e) for s, e, _, c, _ in found if c == "PSEUDO"]
    # A trigger inside a pseudo-trigger ("not" in "do not hesitate") or inside a longer trigger of the
    # same category ("if" in "if we were to") does not count on its own.
    kept = []
    for s, e, phrase, category, direction in found:
        if category == "PSEUDO":
            continue
        if any(ps <= s and e <= pe for ps, pe in pseudo):
            continue
        if any((s2 <= s and e <= e2) and (e2 - s2) > (e - s) and c2 == category
               for s2, e2, _, c2, _ in found if (s2, e2) != (s, e)):
            continue
        kept.append((s, e, phrase, category, direction))
    return kept


def _blocked(doc, a: int, b: int, terminators: list[tuple[int, int, str]], target_tokens: tuple[int, int]) -> bool:
    """Is there a termination term, or a clause break, between token a and token b?"""
    for s, e, phrase in terminators:
        if a <= s and e <= b and not (target_tokens[0] <= s < target_tokens[1]):
            return True
    return any(doc[i].text in (";", ",") and phrase_is_clause(doc, i) for i in range(a, b))


def phrase_is_clause(doc, i: int) -> bool:
    # A comma ends a negation's scope only when a verb-like word follows ("avoid X, give Y");
    # lists ("no aspirin, ibuprofen or naproxen") keep the scope.
    return doc[i].text == ";" or (i + 1 < len(doc) and doc[i + 1].lower_ in _VERB_TERMINATORS)


def assert_spans(text: str, spans: list[tuple[int, int]]) -> list[Assertion]:
    """One Assertion per (start, end) character span of `text`, in the same order."""
    nlp, matcher, meta = _pipeline()
    doc = nlp(text)
    triggers = _triggers(doc, matcher, meta, nlp.vocab)
    terminators = [(s, e, p) for s, e, p, c, _ in triggers if c == "TERMINATE"]
    out = []
    for start, end in spans:
        span = doc.char_span(start, end, alignment_mode="expand")
        if span is None:
            out.append(Assertion(start, end))
            continue
        sent = span.sent
        flags: dict[str, bool] = {}
        cues: list[str] = []
        for s, e, phrase, category, direction in triggers:
            if category == "TERMINATE" or s < sent.start or e > sent.end:
                continue
            if span.start <= s < span.end:
                continue  # the target's own words are not a trigger for it
            applies = False
            if direction in ("FORWARD", "BIDIRECTIONAL") and e <= span.start:
                applies = span.start - e <= MAX_SCOPE and not _blocked(doc, e, span.start, terminators,
                                                                        (span.start, span.end))
            if not applies and direction in ("BACKWARD", "BIDIRECTIONAL") and s >= span.end:
                applies = s - span.end <= MAX_SCOPE and not _blocked(doc, span.end, s, terminators,
                                                                      (span.start, span.end))
            if applies:
                flags[category] = True
                cues.append(f"{category.lower()}:{phrase}")
        out.append(Assertion(start, end, negated=flags.get("NEGATED", False),
                             hypothetical=flags.get("HYPOTHETICAL", False), family=flags.get("FAMILY", False),
                             historical=flags.get("HISTORICAL", False), cues=tuple(cues)))
    return out
