"""Emergency red flags in a clinician's or patient's text, with context.

Three steps, each a small rule with a reason:
1. spelling: words within one edit of a red-flag keyword are read as that keyword ("seziure",
   "unresponsve", "chest pian"), because urgent text is typed fast;
2. red-flag phrases (below), each naming the emergency it suggests;
3. context: a phrase that is negated ("denies chest pain"), hypothetical ("if he ever gets"),
   another person's ("his father had"), historical ("history of anaphylaxis") is not a current
   emergency (ConText rules, clinical.guardrails.context); nor is a knowledge question that names an
   emergency without describing a person ("antidote for acetaminophen overdose").

Evaluated on clinical/guardrails_eval/data/emergency_questions.jsonl (written before these rules;
its held-out half was never used to tune them): see docs/guardrails.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from clinical.guardrails.context import assert_spans

_KEYWORDS = ("suicidal", "suicide", "seizure", "seizures", "unresponsive", "unconscious", "overdose", "overdosed",
             "breathe", "breathing", "speech", "anaphylaxis", "anaphylactic", "bleeding", "convulsion", "collapsed",
             "swelling", "drooping", "slurred", "tablets", "vomiting", "coughing", "radiating", "crushing", "pain")


def _within_one_edit(a: str, b: str) -> bool:
    """Damerau-Levenshtein distance <= 1 (one insertion, deletion, substitution or transposition)."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la == lb:
        diff = [i for i in range(la) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if la < lb else (b, a)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1:]


def normalise(text: str) -> str:
    """Lower-case text with near-miss spellings of red-flag keywords corrected."""
    def fix(m: re.Match) -> str:
        word = m.group(0)
        if len(word) < 4:
            return word
        for key in _KEYWORDS:
            # Four-letter words only by transposition ("pian"): one edit is too loose for them.
            if (len(word) >= 6 or sorted(word) == sorted(key)) and _within_one_edit(word, key):
                return key
        return word
    return re.sub(r"[a-z]+", fix, text.lower())


_CHEST = r"(chest (pain|pressure|tightness|discomfort)|tight chest|pain in (the|his|her|my) chest|elephant (sitting )?on (his|her|my) chest)"
_FEATURE = (r"(radiat\w*|spread\w*|going into|into (the |his |her |my )?(left )?(arm|jaw|back)|arm|jaw|sweat\w*|diaphore\w*|"
            r"clammy|nause\w*|vomit\w*|short(ness)? of breath|breathless|crushing|tearing|sudden\w*|severe|faint\w*)")
RED_FLAGS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((why, re.compile(p)) for why, p in (
    ("chest pain with features of acute coronary syndrome or dissection",
     rf"crushing (substernal |central )?(chest )?(pain|pressure)|{_CHEST}[^.;]{{0,60}}\b{_FEATURE}|{_FEATURE}[^.;]{{0,30}}{_CHEST}|heart attack (symptoms )?(right )?now"),
    ("cardiac arrest or unresponsive patient",
     r"\bno pulse|\bcollapsed\b|\bunresponsive\b|\bunconscious\b|(won'?t|can'?t|cannot|not) (wake|waking)|"
     r"passed out|(not|isn'?t|stopped|isnt) breathing|\b(lips|face) (are |is )?(turning )?blue|turning blue"),
    ("severe breathing difficulty",
     r"(can'?t|cannot|unable to|struggling to|hard to) breathe?\b|gasping|choking|short(ness)? of breath at rest|"
     r"severe short(ness)? of breath|single words|(can'?t|cannot) finish a sentence|sats? (of )?[5-8]\d ?%"),
    ("anaphylaxis",
     r"\banaphyla\w*|throat (is )?(closing|swelling|tight)|(tongue|lips?|face)( and (lips|face|tongue))? (is |are )?swelling|"
     r"swelling of the (throat|tongue|lips)|hives[^.;]{0,60}(wheez\w*|bp (is )?dropping|faint)"),
    ("stroke signs",
     r"face (is )?drooping|facial droop|drooping on one side|slurred speech|sudden (weakness|numbness)|"
     r"can'?t find (his|her|my) words|arm went numb|worst headache|thunderclap|lost (the )?vision"),
    ("suicide or self-harm risk",
     r"suicid\w*|kill (my|him|her|them)sel(f|ves)|end(ing)? (it all|my life|his life|her life)|wants? to die|"
     r"(don'?t|doesn'?t) want to wake up|better off without me|goodbye letters?|stockpil\w*|"
     r"(saving|hoarding|storing) (up )?(my |his |her )?(pills|tablets|meds|medication|\w+ (pills|tablets)|oxycodone|opioids)|"
     r"plan to overdose|cut (his|her|my|their) wrists|self[- ]harm"),
    ("overdose or poisoning",
     r"\boverdos\w*|whole (bottle|pack|box)|took (\d+|all|a handful|too many|double)|swallowed|"
     r"drank (some )?(bleach|antifreeze|\w+ cleaner)|ate [^.;]{0,30}(tablets|pills)|handful of pills|poison\w*"),
    ("severe bleeding",
     r"(vomiting|coughing( up)?) (large amounts of )?blood|(severe|heavy|uncontrolled|massive) bleeding|"
     r"blood spurting|(bleed|bleeding)( \w+)? (won'?t|wont|will not|doesn'?t) stop|soaking pads|"
     r"black tarry stools[^.;]{0,40}faint\w*|coughing blood"),
    ("prolonged or repeated seizure",
     r"(seizure|fitting|convulsion)\w*[^.;]{0,40}(going|lasting|won'?t stop|wont stop|right now|non ?stop|\d+ min|still shaking)|"
     r"status epilepticus|not waking between|fitting non ?stop"),
    ("sepsis, meningitis or another time-critical illness",
     r"stiff neck[^.;]{0,60}(rash|fever)|rash that doesn'?t fade|bp (of )?[5-8]\d/|floppy|mottled|"
     r"sugar (is )?[1-4]\d\b|rigid (belly|abdomen)|flashing lights|testic\w* pain came on suddenly|"
     r"burned over|hit (his|her|my) head[^.;]{0,40}(vomit\w*|sleepy|drowsy)|fruity breath|potassium (of )?[7-9]\.\d|"
     r"wide qrs|coughing (up )?blood and breathless"),
))

_PERSON = re.compile(r"\b(my|i|i'?m|i'?ve|me|we|our|he|she|his|him|her|hers|they|the patient|this patient|my patient|pt|"
                     r"son|daughter|wife|husband|child|baby|toddler|newborn|infant|dad|mum|mom|boy|girl|man|woman|"
                     r"\d+ ?(yo|y/o|year old|[mf]))\b")
_URGENT = re.compile(r"\b(now|right now|tonight|just|ago|currently|since|started|this (morning|evening))\b")
_KNOWLEDGE_START = re.compile(
    r"^\s*(what|which|how|why|when|is|are|can|does|do|should|explain|define|describe|list|name|mechanism|"
    r"signs|antidote|treatment|management|manage|dose|dosing|differential|pathophysiology|causes|risk|"
    r"teaching|features|role|first[- ]line)\b")


@dataclass(frozen=True)
class EmergencyResult:
    emergency: bool
    reason: str  # why, in words (the red flag, or why a red flag found did not count)
    red_flag: str | None = None


def is_knowledge_question(text: str) -> bool:
    """A question about medicine in general: asks what/how/which and describes no person or timing."""
    t = text.lower()
    return bool(_KNOWLEDGE_START.search(t)) and not _PERSON.search(t) and not _URGENT.search(t)


def detect_emergency(text: str) -> EmergencyResult:
    """Is `text` describing a current emergency? Raises if the context pipeline cannot load."""
    norm = normalise(text)
    hits = [(why, m) for why, pattern in RED_FLAGS for m in pattern.finditer(norm)]
    if not hits:
        return EmergencyResult(False, "no red-flag phrase")
    if is_knowledge_question(norm):
        return EmergencyResult(False, f"knowledge question naming {hits[0][0]}")
    assertions = assert_spans(norm, [(m.start(), m.end()) for _, m in hits])
    skipped = []
    for (why, m), a in zip(hits, assertions):
        if a.negated or a.hypothetical or a.family or a.historical:
            skipped.append(f"{why} ({', '.join(a.cues)})")
            continue
        return EmergencyResult(True, f"red flag: {why}", red_flag=why)
    return EmergencyResult(False, "red flags only in context: " + "; ".join(skipped))
