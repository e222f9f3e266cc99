"""ConText assertions (negated, hypothetical, other experiencer, historical) by medspaCy.

The engine is medspaCy's ConText component (`medspacy_context`, medspaCy 1.3.1; Eyre et al., AMIA
2021), an implementation of the ConText algorithm (Harkema et al., J Biomed Inform 2009): modifier
phrases with a category and a direction, scopes that end at the sentence end, at a termination
term or at the next modifier of the same category, pseudo-modifiers that win over the shorter
modifiers they overlap ("not" in "do not hesitate"), and a target never modified by its own words
(two medspaCy 1.3.1 behaviours are undone, see _medspacy_context). It runs on `spacy.blank("en")`
with spaCy's rule-based sentencizer: nothing is downloaded or learned.

What is ours: the rules below (RULES, CLAUSE_BREAKS, MAX_SCOPE), written for clinicians' questions
and model answers about drugs and symptoms, and used instead of medspaCy's default rule file, which
reads "Do not hesitate to start clarithromycin." as a negation. The targets are ours too: callers
pass character spans found by their own rule-based matchers (drug mentions from the knowledge base's
dictionary in mentions.py, red-flag phrases in emergency.py); they are handed to ConText as a span
group, because red-flag phrases may overlap, which `doc.ents` would not allow.

Installation: medspaCy declares spacy<3.8 on Python 3.11 but runs on the stack's spaCy 3.8, so it is
installed with --no-deps (deploy/medspacy-requirements.txt; the Makefile and the image's setup script).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Literal

Category = Literal["NEGATED", "HYPOTHETICAL", "FAMILY", "HISTORICAL", "PSEUDO", "TERMINATE"]
Direction = Literal["FORWARD", "BACKWARD", "BIDIRECTIONAL", "TERMINATE", "PSEUDO"]

_RELATIVES = ("mother", "father", "mom", "mum", "dad", "brother", "sister", "grandmother", "grandfather", "grandma",
              "grandpa", "uncle", "aunt", "cousin")

# (phrase, category, direction): FORWARD modifiers qualify targets after them, BACKWARD before them,
# BIDIRECTIONAL either side. Phrases are matched on lower-cased tokens. A phrase appears once: two
# rules on the same words would overlap, and medspaCy keeps only one of two overlapping matches.
RULES: tuple[tuple[str, Category, Direction], ...] = (
    # negation: the drug or symptom is ruled out, stopped, absent or denied
    *((p, "NEGATED", "FORWARD") for p in (
        "no", "not", "never", "without", "avoid", "avoiding", "avoided", "do not", "don't", "dont", "does not",
        "doesn't", "should not", "shouldn't", "must not", "cannot", "can't", "won't", "stop", "stopping",
        "discontinue", "discontinued", "discontinuing", "hold", "holding", "withhold", "withholding",
        "instead of", "rather than", "contraindicated", "allergic to", "allergy to", "allergies to",
        "denies", "negative for", "free of", "absence of", "no longer", "refrain from", "never give",
        "no sign of", "no signs of", "no evidence of", "nor")),
    *((p, "NEGATED", "BACKWARD") for p in (
        "is contraindicated", "are contraindicated", "should be avoided", "must be avoided", "is not recommended",
        "are not recommended", "should be stopped", "should be discontinued", "is not advised", "not advised",
        "is to be avoided", "has resolved", "ruled out", "is unsafe", "is not safe")),
    *((p, "NEGATED", "BIDIRECTIONAL") for p in ("denied", "resolved")),
    # hypothetical: proposed, conditional, future or asked about, not a fact about this patient now
    *((p, "HYPOTHETICAL", "FORWARD") for p in (
        "if", "if we were to", "were we to", "in case", "in case of", "should you", "what if", "suppose",
        "supposing", "unless", "whether", "if ever", "ever get", "ever develop", "hypothetically")),
    # another person's drug or symptom
    *((p, "FAMILY", "BIDIRECTIONAL") for p in (
        *_RELATIVES, "family history", "his family", "her family", "relative")),
    # past, not current
    *((p, "HISTORICAL", "FORWARD") for p in (
        "history of", "h/o", "previously", "prior", "past", "used to take")),
    *((p, "HISTORICAL", "BACKWARD") for p in ("months ago", "as a child")),
    *((p, "HISTORICAL", "BIDIRECTIONAL") for p in ("years ago", "in the past")),
    # pseudo-modifiers: contain a modifier's words but do not negate or qualify
    *((p, "PSEUDO", "PSEUDO") for p in (
        "do not hesitate", "don't hesitate", "not hesitate", "not only", "no reason not to", "not contraindicated",
        "no contraindication", "no contraindications", "not a contraindication", "no longer contraindicated",
        "nothing prevents", "not to forget", "do not forget", "don't forget", "not stop", "never stop", "no doubt",
        "not without", "if needed", "if necessary", "if tolerated", "as needed",
        # a relative's belongings ("her mum's pills") do not make the relative the one affected
        *(f"{r}'s" for r in _RELATIVES))),
    # termination: a new clause starts, so a modifier's scope ends here
    *((p, "TERMINATE", "TERMINATE") for p in (
        "but", "however", "although", "though", "yet", "except", "instead", "which", "whereas", "while",
        "and start", "and use", "and give", "and switch", "and add", "and begin", "and continue", "then start",
        "then give", "switch to", "prefer", "because", "since", "he takes", "she takes", "he is on", "she is on",
        "currently on", "currently takes",
        # "and" + a new subject or verb starts a new clause
        "and i", "and i've", "and ive", "and i have", "and he", "and she", "and they", "and has", "and have",
        "and is", "and was")),
)

# Punctuation that ends a clause, as token patterns (TERMINATE). A semicolon always does; a comma only
# when an instruction or a current-medication word follows ("avoid X, give Y", "no X, currently on Y"),
# because lists ("no aspirin, ibuprofen or naproxen") keep the negation.
_AFTER_COMMA = ("use", "start", "give", "add", "begin", "continue", "try", "recommend", "prescribe", "choose",
                "prefer", "switch to", "takes", "taking", "is on", "on", "now", "currently")
CLAUSE_BREAKS: tuple[tuple[str, list[dict]], ...] = (
    ("; (clause break)", [{"ORTH": ";"}]),
    *((f", {w} (clause break)", [{"ORTH": ","}, *({"LOWER": part} for part in w.split())]) for w in _AFTER_COMMA),
)

# Tokens after (FORWARD) or before (BACKWARD) a modifier that it can reach, within its sentence; the
# window of the original ConText, long enough for "do not under any circumstances give".
MAX_SCOPE = 8
_TARGETS = "balancedbio_targets"  # the span group the targets are put in


@dataclass(frozen=True)
class Assertion:
    start: int  # character offsets of the target, as given
    end: int
    negated: bool = False
    hypothetical: bool = False
    family: bool = False
    historical: bool = False
    cues: tuple[str, ...] = ()  # "category:phrase" of the modifiers that applied, for the finding's reason

    @property
    def affirmed(self) -> bool:
        """True when the target is asserted of this patient, now, without negation."""
        return not (self.negated or self.family or self.historical)


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Do token ranges [a0, a1) and [b0, b1) share a token?"""
    return a[0] < b[1] and b[0] < a[1]


def _medspacy_context():
    """The medspacy.context package, imported with two of medspaCy 1.3.1's side effects undone.

    1. medspacy.common.medspacy_matcher calls warnings.filterwarnings("ignore") when imported, which
       would hide every warning in the process: catch_warnings restores the filters afterwards.
    2. Its `tuple_overlaps(a, b)` is true only when b starts or ends inside a, so it misses a b that
       contains a. ConTextModifier uses it to let a termination term or a same-category modifier cut
       a scope, which then fails whenever the scope is shorter than the sentence (every rule here has
       max_scope): "history of anaphylaxis to penicillin years ago; which antibiotic" reached
       "antibiotic" across the semicolon and "which". And to keep a target's own words from qualifying
       it, which fails for a modifier inside the target ("stop" in the red flag "seizure won't stop for
       10 min"). The symmetric test is put in its place in that module only.
    """
    with warnings.catch_warnings():
        import medspacy.context  # also registers the "medspacy_context" pipeline factory
    medspacy.context.context_modifier.tuple_overlaps = _overlaps
    return medspacy.context


def context_rules():
    """RULES and CLAUSE_BREAKS as medspaCy ConTextRules (scope-limited where they modify)."""
    ConTextRule = _medspacy_context().ConTextRule
    rules = [ConTextRule(literal=phrase, category=category, direction=direction,
                         max_scope=None if direction in ("TERMINATE", "PSEUDO") else MAX_SCOPE)
             for phrase, category, direction in RULES]
    rules += [ConTextRule(literal=name, category="TERMINATE", direction="TERMINATE", pattern=pattern)
              for name, pattern in CLAUSE_BREAKS]
    return rules


@functools.cache
def _pipeline():
    """spacy.blank("en") + sentencizer + medspaCy ConText with our rules only (loads offline)."""
    import spacy

    rules = context_rules()
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    context = nlp.add_pipe("medspacy_context", config={
        "rules": None,  # not medspaCy's default file: ours only
        "input_span_type": "group", "span_group_name": _TARGETS,  # overlapping targets allowed
        "span_attrs": None,  # read from the graph's edges, not from Span._ flags
    })
    context.add(rules)
    return nlp


def load() -> None:
    """Build the pipeline now (raises if spaCy or medspaCy is missing: callers fail closed)."""
    _pipeline()


def assert_spans(text: str, spans: list[tuple[int, int]]) -> list[Assertion]:
    """One Assertion per (start, end) character span of `text`, in the same order."""
    from spacy.tokens import Span

    nlp = _pipeline()
    if not spans:
        return []
    doc = nlp.make_doc(text)
    targets: dict[tuple[int, int], Span] = {}  # token range -> span; repeated spans go in once
    token_ranges = []
    for start, end in spans:
        span = doc.char_span(start, end, alignment_mode="expand")
        key = None if span is None or not len(span) else (span.start, span.end)
        if key is not None:
            targets.setdefault(key, Span(doc, span.start, span.end, label="TARGET"))
        token_ranges.append(key)
    doc.spans[_TARGETS] = list(targets.values())
    doc = nlp(doc)
    modifiers: dict[tuple[int, int], list] = {}
    for target, modifier in doc._.context_graph.edges:
        modifiers.setdefault((target.start, target.end), []).append(modifier)
    out = []
    for (start, end), key in zip(spans, token_ranges):
        applied = sorted(modifiers.get(key, ()), key=lambda m: m.modifier_span)
        categories = {m.category for m in applied}
        out.append(Assertion(start, end, negated="NEGATED" in categories, hypothetical="HYPOTHETICAL" in categories,
                             family="FAMILY" in categories, historical="HISTORICAL" in categories,
                             cues=tuple(dict.fromkeys(f"{m.category.lower()}:{m.rule.literal}" for m in applied))))
    return out
