"""MKGSG instruction-following tasks: a question about one knowledge-base fact under 1-3 verifiable
constraints, with a reference answer built to satisfy every one of them.

The content of a question (an ICD-10-CM code, a disease's HPO features, a drug's names, an ONC
interaction pair) becomes a `Topic`: KB facts as sentences, sections, a JSON object. A *layout*
(prose, bullets, numbered list, sections, JSON, paragraphs, yes/no) shapes them and *modifiers*
(case, commas, title, postscript, end phrase, keywords, lengths...) decorate them; the constraint
kwargs that depend on the text (word counts, keyword frequencies) are read off the finished
reference. Every record is re-checked with `check_constraints`, so a combination that cannot be met
is redrawn, never shipped. Prompts state constraints in our own words: copying IFEval's sentences
would share n-grams with the benchmark and be dropped by the leakage filter.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Any, Callable

from training.mkgsg.base import Builder, Rejected, Seed, record_id
from training.mkgsg.integration import join
from training.mkgsg.topics import TOPICS, Topic
from training.records import CapabilityRecord, ChatMessage, ConstraintSpec, Provenance, VerificationSpec
from training.rewards.constraints import check_constraints, validate_constraint_spec


# --- constraints: layouts shape the facts, modifiers decorate them -------------------------------

REPEAT = "combination:repeat_prompt"
_JSON = frozenset({"json", "json_fields", "json_both"})
# Layouts and their draw weights; the three JSON variants share about one share between them.
_LAYOUTS = {"prose": 2, "bullets": 2, "numbered": 2, "sections": 2, "ifeval_sections": 1, "paragraphs": 1,
            "first_word": 1, "two": 1, "json": 0.5, "json_fields": 0.75, "json_both": 0.5, "constrained": 1}
_LAYOUT_IDS = {"bullets": ("detectable_format:number_bullet_lists",), "numbered": ("clinical:numbered_plan",),
               "sections": ("clinical:soap_sections",), "ifeval_sections": ("detectable_format:multiple_sections",),
               "paragraphs": ("length_constraints:number_paragraphs",),
               "first_word": ("length_constraints:nth_paragraph_first_word",), "two": ("combination:two_responses",),
               "json": ("detectable_format:json_format",), "json_fields": ("clinical:json_fields",),
               "json_both": ("detectable_format:json_format", "clinical:json_fields"),
               "constrained": ("detectable_format:constrained_response",)}
_F = frozenset
# modifier -> (layouts it cannot decorate, modifiers it cannot join). Why: JSON must stay parseable;
# the yes/no phrases and "Section N" are case-sensitive; a repeated request carries its own commas,
# quotes and forbidden words; bullets' leading "*" would swallow a highlight's opening asterisk.
# Not drawn: language:response_language (the KB's facts are English only).
_MODIFIERS: dict[str, tuple[frozenset, frozenset]] = {
    "punctuation:no_comma": (_JSON, _F({REPEAT})),
    "change_case:english_lowercase": (_JSON | {"constrained", "ifeval_sections"},
                                      _F({"change_case:english_capital", "change_case:capital_word_frequency"})),
    "change_case:english_capital": (_JSON | {"constrained"}, _F({"change_case:english_lowercase"})),
    "change_case:capital_word_frequency": (_F(), _F({"change_case:english_lowercase"})),
    "detectable_format:title": (_JSON, _F()),
    "startend:quotation": (_JSON, _F({REPEAT})),
    "startend:end_checker": (_JSON, _F()),
    "detectable_content:postscript": (_JSON, _F()),
    "detectable_content:number_placeholders": (_JSON, _F()),
    "detectable_format:number_highlighted_sections": (_JSON | {"bullets"}, _F()),
    "keywords:existence": (_F(), _F()),
    "keywords:forbidden_words": (_F(), _F({REPEAT})),
    "keywords:frequency": (_F(), _F()),
    "keywords:letter_frequency": (_F(), _F()),
    "length_constraints:number_words": (_F(), _F()),
    "length_constraints:number_sentences": (_F(), _F()),
    REPEAT: (_JSON | {"paragraphs", "first_word", "two", "constrained"},
             _F({"punctuation:no_comma", "startend:quotation", "keywords:forbidden_words"})),
}
_END_PHRASES = ("End of summary.", "That is all for now.", "Please confirm with the source.",
                "Let me know if you need more detail.", "Source checked.")
_FORBIDDEN = ("cure", "guarantee", "miracle", "definitely", "obviously", "basically", "simply", "literally")
_COMMON = {"which", "their", "there", "these", "those", "about", "other", "false"}  # not worth a keyword
_ATTEMPTS = 6


@dataclass
class _Draft:
    layout: str
    mods: list[str]
    facts: list[str]
    p: dict[str, Any]  # every random choice, drawn up front so the text-derived kwargs are pure


def _fits(layout: str, topic: Topic, facts: list[str]) -> bool:
    if layout in ("sections", "ifeval_sections"):
        return len(topic.sections) >= 2
    if layout == "constrained":
        return topic.yes_no is not None
    return layout in ("prose", *_JSON) or len(facts) >= 2


def _draw(topic: Topic, rng: random.Random) -> _Draft:
    facts = list(topic.facts)
    if len(facts) > 2:  # the first fact names the subject; keep it and some of the rest, in order
        keep = sorted(rng.sample(range(1, len(facts)), rng.randint(min(2, len(facts) - 1), len(facts) - 1)))
        facts = [facts[0], *(facts[i] for i in keep)]
    layouts = [lay for lay in _LAYOUTS if _fits(lay, topic, facts)]
    layout = rng.choices(layouts, weights=[_LAYOUTS[lay] for lay in layouts])[0]
    fixed = len(_LAYOUT_IDS.get(layout, ()))
    want = max(rng.choice((1, 2, 2, 3, 3)) - fixed, 1 if layout == "prose" else 0)
    mods: list[str] = []
    for m in rng.sample(sorted(_MODIFIERS), len(_MODIFIERS)):
        if len(mods) < want and layout not in _MODIFIERS[m][0] and not any(
                x in _MODIFIERS[m][1] or m in _MODIFIERS[x][1] for x in mods):
            mods.append(m)
    keys = list(topic.fields)
    p = {"question": rng.choice(topic.questions), "style": rng.randint(0, 1), "relation": rng.choice(("less than", "at least")),
         "slack": rng.randint(1, 3), "margin": rng.choice((0.1, 0.2, 0.3)), "end_phrase": rng.choice(_END_PHRASES),
         "marker": rng.choice(("P.S.", "P.P.S")), "placeholders": rng.randint(1, 2), "letter": rng.choice("aeinorst"),
         "forbidden": rng.sample(_FORBIDDEN, len(_FORBIDDEN)), "n_forbidden": rng.randint(1, 2),
         "groups": rng.randint(2, min(4, len(facts))), "nth": rng.random(), "indent": rng.choice((None, 2)),
         "fence": rng.random() < 0.3, "lo": rng.randint(0, 1), "hi": rng.choice((0, 1, 2, None)),
         "fields": sorted(rng.sample(keys, rng.randint(2, min(4, len(keys)))), key=keys.index),
         "spliter": "SECTION" if "change_case:english_capital" in mods else rng.choice(("Section", "SECTION")),
         "word_pick": rng.random(), "n_keywords": rng.randint(1, 2)}
    return _Draft(layout, mods, facts, p)


def _highlight(text: str, terms: tuple[str, ...]) -> str:
    for term in terms:
        if m := re.search(rf"(?<![\w*]){re.escape(term)}(?![\w*])", text):
            text = f"{text[:m.start()]}*{term}*{text[m.end():]}"
    return text


def _body(topic: Topic, d: _Draft) -> str:
    """The layout's text, then its decorations (everything but the repeat, the case and the quotes)."""
    f, lay = d.facts, d.layout
    if lay in _JSON:
        obj = topic.fields if lay == "json" else {k: topic.fields[k] for k in d.p["fields"]}
        text = json.dumps(obj, indent=d.p["indent"], ensure_ascii=False)
        return f"```json\n{text}\n```" if d.p["fence"] else text
    n = d.p["groups"]
    groups = [" ".join(f[i * len(f) // n:(i + 1) * len(f) // n]) for i in range(n)]
    text = {"prose": lambda: " ".join(f), "bullets": lambda: "\n".join(f"* {x}" for x in f),
            "numbered": lambda: "\n".join(f"{i}. {x}" for i, x in enumerate(f, 1)),
            "sections": lambda: "\n".join(f"{h}: {t}" for h, t in topic.sections),
            "ifeval_sections": lambda: "\n".join(f"{d.p['spliter']} {i}\n{h}: {t}"
                                                 for i, (h, t) in enumerate(topic.sections, 1)),
            "paragraphs": lambda: "\n\n***\n\n".join(groups), "first_word": lambda: "\n\n".join(groups),
            "two": lambda: f"{f[0]}\n******\n{' '.join(f)}",
            "constrained": lambda: f"My answer is {topic.yes_no[1]}. {topic.yes_no[2]}"}[lay]()
    m = d.mods
    if "detectable_format:number_highlighted_sections" in m:
        text = _highlight(text, topic.highlights)
    parts = [f"<<{topic.title}>>"] if "detectable_format:title" in m else []
    parts.append(text)
    if "detectable_content:number_placeholders" in m:
        parts.append("Reviewed by [reviewer] on [date].")
    if "detectable_content:postscript" in m:
        parts.append(f"{d.p['marker']} {topic.note}")
    if "startend:end_checker" in m:
        parts.append(d.p["end_phrase"])
    text = "\n".join(parts)
    return text.replace(", ", "; ").replace(",", ";") if "punctuation:no_comma" in m else text


def _finish(body: str, d: _Draft, request: str) -> str:
    text = f"{request}\n{body}" if REPEAT in d.mods else body
    if "change_case:english_lowercase" in d.mods:
        text = text.lower()
    elif "change_case:english_capital" in d.mods:
        text = text.upper()
    return f'"\n{text}"' if "startend:quotation" in d.mods else text


# The checkers' own ways of counting, so a derived threshold means what the checker will measure.


def _first_word(paragraph: str) -> str:
    word = paragraph.strip().split()[0].lstrip("'").lstrip('"')
    return re.split(r"[.,?!'\"]", word, maxsplit=1)[0].lower()


def _count(kind: str, ref: str, arg: str = "") -> int:
    from if_verifiable.ifeval import instructions_util as util

    if kind == "words":
        return util.count_words(ref)
    if kind == "sentences":
        return util.count_sentences(ref)
    if kind == "capitals":
        return sum(w.isupper() for w in util.nltk.word_tokenize(ref))
    if kind == "highlights":
        return sum(bool(h.strip("*").strip()) for h in re.findall(r"\*[^\n\*]*\*", ref)) + sum(
            bool(h[2:-2].strip()) for h in re.findall(r"\*\*[^\n\*]*\*\*", ref))
    if kind == "paragraphs":
        parts = re.split(r"\s?\*\*\*\s?", ref)
        return len(parts) - (not parts[0].strip()) - (len(parts) > 1 and not parts[-1].strip())
    return len(re.findall(arg, ref, flags=re.IGNORECASE))  # a keyword or a letter


def _threshold(count: int, d: _Draft) -> dict[str, Any]:
    """A threshold the count meets: "at least" a little below it, else "fewer than" a little above."""
    relation = d.p["relation"] if count - d.p["slack"] + 1 >= 1 else "less than"
    return {"relation": relation, "n": count + d.p["slack"] if relation == "less than" else count - d.p["slack"] + 1}


def _derive(mod: str, ref: str, d: _Draft, request: str) -> dict[str, Any] | None:
    """The kwargs of a modifier, read off the finished reference where they depend on it."""
    p = d.p
    if mod in ("keywords:frequency", "keywords:letter_frequency", "length_constraints:number_sentences",
               "change_case:capital_word_frequency"):
        kind, arg = {"keywords:frequency": ("keyword", p["keyword"]), "keywords:letter_frequency": ("letter", p["letter"]),
                     "length_constraints:number_sentences": ("sentences", ""),
                     "change_case:capital_word_frequency": ("capitals", "")}[mod]
        t = _threshold(_count(kind, ref, arg), d)
        return {"keywords:frequency": lambda: {"keyword": arg, "frequency": t["n"], "relation": t["relation"]},
                "keywords:letter_frequency": lambda: {"letter": arg, "let_frequency": t["n"], "let_relation": t["relation"]},
                "length_constraints:number_sentences": lambda: {"num_sentences": t["n"], "relation": t["relation"]},
                "change_case:capital_word_frequency": lambda: {"capital_frequency": t["n"],
                                                               "capital_relation": t["relation"]}}[mod]()
    if mod == "length_constraints:number_words":
        n = _count("words", ref)
        margin = max(5, int(n * p["margin"]))
        if p["relation"] == "at least" and n - margin >= 10:
            return {"num_words": (n - margin) // 5 * 5, "relation": "at least"}
        return {"num_words": (n + margin + 4) // 5 * 5, "relation": "less than"}
    if mod == "detectable_format:number_highlighted_sections":
        n = _count("highlights", ref)
        return {"num_highlights": max(1, n - p["slack"] + 1)} if n else None
    if mod == "keywords:forbidden_words":
        absent = [w for w in p["forbidden"] if not re.search(rf"\b{w}\b", ref, flags=re.IGNORECASE)]
        return {"forbidden_words": absent[:p["n_forbidden"]]} if absent else None
    return {"startend:end_checker": {"end_phrase": p["end_phrase"]}, "keywords:existence": {"keywords": p["keywords"]},
            "detectable_content:postscript": {"postscript_marker": p["marker"]},
            "detectable_content:number_placeholders": {"num_placeholders": p["placeholders"]},
            REPEAT: {"prompt_to_repeat": request}}.get(mod, {})


def _specs(topic: Topic, d: _Draft, ref: str, request: str) -> list[ConstraintSpec] | None:
    p, k, kwargs = d.p, len(d.facts), []
    lay = {"bullets": {"num_bullets": k},
           "numbered": {"min_items": max(1, k - p["lo"]), "max_items": None if p["hi"] is None else k + p["hi"]},
           "sections": {"sections": [h for h, _ in topic.sections]},
           "ifeval_sections": {"section_spliter": p["spliter"], "num_sections": len(topic.sections)},
           "paragraphs": {"num_paragraphs": _count("paragraphs", ref)},
           "json_fields": {"fields": p["fields"], "types": {f: _json_type(topic.fields[f]) for f in p["fields"]}}}
    lay["json_both"] = lay["json_fields"]
    if d.layout == "first_word":
        paragraphs = re.split(r"\n\n", ref)
        count = sum(bool(x.strip()) for x in paragraphs)
        starts = [(i, w) for i, x in enumerate(paragraphs[:count], 1) if re.fullmatch(r"[a-z]+", w := _first_word(x))]
        if not starts:
            return None
        nth, word = starts[int(p["nth"] * len(starts))]
        lay["first_word"] = {"num_paragraphs": count, "nth_paragraph": nth, "first_word": word}
    ids = _LAYOUT_IDS.get(d.layout, ())
    for i in ids:
        kwargs.append({} if i == "detectable_format:json_format" else lay.get(d.layout, {}))
    for m in d.mods:
        derived = _derive(m, ref, d, request)
        if derived is None:
            return None
        kwargs.append({key: v for key, v in derived.items() if v is not None})
    return [ConstraintSpec(id=i, kwargs=kw) for i, kw in zip([*ids, *d.mods], kwargs)]


def _json_type(value: Any) -> str:
    return {bool: "boolean", int: "number", list: "array", dict: "object"}.get(type(value), "string")


def _quoted(words: list[str], last: str = "and") -> str:
    return join([f'"{w}"' for w in words], last)


_REL = {"at least": "at least", "less than": "fewer than"}
# How each constraint is said in a prompt, in our own words (see the module docstring); a tuple
# holds alternative phrasings, picked by the draft's style.
_SAY: dict[str, Callable[[dict], str | tuple[str, ...]]] = {
    "punctuation:no_comma": lambda k: ("Do not use a single comma anywhere in your reply.", "Write without any commas."),
    "change_case:english_lowercase": lambda k: ("Write the whole reply in English using lowercase letters only.",
                                                "Use English and no capital letters at all."),
    "change_case:english_capital": lambda k: ("Write the whole reply in English using capital letters only.",
                                              "Use English and put every letter in upper case."),
    "detectable_format:title": lambda k: ("Give the reply a title wrapped in double angular brackets, like <<title>>.",
                                          "Start with a title inside double angular brackets, for example <<summary>>."),
    "startend:quotation": lambda k: ("Enclose the entire reply in double quotation marks.",
                                     "Put your whole reply between double quotes."),
    "combination:two_responses": lambda k: "Give two different answers, a brief one and a fuller one, separated by a "
                                           "line of six asterisks (******).",
    "detectable_format:json_format": lambda k: "Reply with valid JSON only (a ```json code fence is fine).",
    "detectable_format:constrained_response": lambda k: 'Begin with exactly one of "My answer is yes.", "My answer is '
        'no." or "My answer is maybe." and then add one sentence of explanation.',
    REPEAT: lambda k: "Before you answer, copy my request above word for word (leaving out this last sentence), then "
                      "give your answer.",
    "clinical:json_fields": lambda k: "Reply with a JSON object only, with the keys "
                                      + join([f'"{f}" ({k["types"][f]})' for f in k["fields"]]) + ".",
    "clinical:numbered_plan": lambda k: "Present the answer as a numbered list (1., 2., ...) of "
                                        + (f"{k['min_items']} to {k['max_items']}" if k.get("max_items")
                                           else f"at least {k['min_items']}") + " items.",
    "clinical:soap_sections": lambda k: f"Organise the answer under the headings {join(k['sections'])}, in that order, "
        f"each section starting on a new line with its heading and a colon (such as '{k['sections'][0]}:').",
    "detectable_format:number_bullet_lists": lambda k: f"Format the answer as exactly {k['num_bullets']} markdown "
                                                       "bullet points, each line starting with '* '.",
    "detectable_format:multiple_sections": lambda k: f"Split the answer into {k['num_sections']} sections, each opened "
        f"by a line '{k['section_spliter']} 1', '{k['section_spliter']} 2' and so on.",
    "length_constraints:number_paragraphs": lambda k: f"Write exactly {k['num_paragraphs']} paragraphs, separated by "
                                                      "lines that hold only three asterisks (***).",
    "length_constraints:nth_paragraph_first_word": lambda k: f"Write exactly {k['num_paragraphs']} paragraphs "
        f"separated by blank lines, and begin paragraph {k['nth_paragraph']} with the word \"{k['first_word']}\".",
    "startend:end_checker": lambda k: f'End the reply with the exact phrase "{k["end_phrase"]}" and write nothing after it.',
    "detectable_content:postscript": lambda k: f"Close with a postscript that begins with {k['postscript_marker']}",
    "detectable_content:number_placeholders": lambda k: f"Include at least {k['num_placeholders']} placeholder(s) in "
                                                        "square brackets, such as [date].",
    "detectable_format:number_highlighted_sections": lambda k: f"Highlight at least {k['num_highlights']} key "
                                                               "phrase(s) with single asterisks, like *key phrase*.",
    "keywords:existence": lambda k: f"Make sure the reply contains the word(s) {_quoted(k['keywords'])}.",
    "keywords:forbidden_words": lambda k: f"Do not use the word(s) {_quoted(k['forbidden_words'], 'or')}.",
    "keywords:frequency": lambda k: f'Use the word "{k["keyword"]}" {_REL[k["relation"]]} {k["frequency"]} times.',
    "keywords:letter_frequency": lambda k: f'The letter "{k["letter"]}" must appear {_REL[k["let_relation"]]} '
                                           f'{k["let_frequency"]} times.',
    "length_constraints:number_words": lambda k: (f"Keep the reply under {k['num_words']} words."
                                                  if k["relation"] == "less than" else
                                                  f"Write at least {k['num_words']} words."),
    "length_constraints:number_sentences": lambda k: f"Use {_REL[k['relation']]} {k['num_sentences']} sentences.",
    "change_case:capital_word_frequency": lambda k: "Use words written entirely in capitals (codes and abbreviations "
        f"count) {_REL[k['capital_relation']]} {k['capital_frequency']} times.",
}


def _say(spec: ConstraintSpec, style: int) -> str:
    said = _SAY[spec.id](spec.kwargs)
    return said if isinstance(said, str) else said[style % len(said)]


def _assemble(topic: Topic, d: _Draft) -> tuple[str, str, list[ConstraintSpec]] | None:
    """(prompt, reference, specs) once the text-derived kwargs and the prompt agree, and the reference
    passes every check; None when this draw cannot be met. A repeated request contains the other
    constraints' descriptions, whose numbers come from the reference: iterate to a fixed point
    (word counts do not move, since a number is one word whatever its value)."""
    body = _body(topic, d)
    words = sorted({w.lower() for w in re.findall(r"[A-Za-z]{5,}", body)} - _COMMON) or ["answer"]
    pick = int(d.p["word_pick"] * len(words))
    d.p["keyword"] = words[pick]
    d.p["keywords"] = sorted({words[pick], words[(pick + len(words) // 2) % len(words)]})[:d.p["n_keywords"]]
    question = topic.yes_no[0] if d.layout == "constrained" else d.p["question"]
    request = question
    specs = _specs(topic, d, _finish(body, d, request), request)
    for _ in range(4):
        if specs is None:
            return None
        request = " ".join([question, *(_say(s, d.p["style"]) for s in specs if s.id != REPEAT)])
        reference = _finish(body, d, request)
        again = _specs(topic, d, reference, request)
        if again == specs:
            break
        specs = again
    else:
        return None
    prompt = f"{request} {_say(ConstraintSpec(id=REPEAT), 0)}" if REPEAT in d.mods else request
    try:
        for spec in specs:
            validate_constraint_spec(spec)
    except ValueError:
        return None
    return (prompt, reference, specs) if check_constraints(reference, specs, prompt).score == 1.0 else None


def build_instruction(seed: Seed, kb, rng: random.Random) -> CapabilityRecord:
    from training.evaluate.ifeval import ensure_checkers_ready

    ensure_checkers_ready()  # the counts below use the checkers' own tokenizers
    topic = TOPICS[seed.source](seed.item, kb, rng)
    for _ in range(_ATTEMPTS):
        draft = _draw(topic, rng)
        made = _assemble(topic, draft)
        if made:
            prompt, reference, specs = made
            provenance = dict(topic.provenance)
            if draft.layout == "constrained" and len(topic.yes_no) > 3:
                provenance["drugbank"] = [*provenance.get("drugbank", []), *topic.yes_no[3]]
            return CapabilityRecord(
                id=record_id("instruction", seed, prompt), capability="instruction",
                messages=[ChatMessage(role="user", content=prompt)], reference=reference,
                verification=VerificationSpec(constraints=specs),
                provenance=Provenance(source=f"mkgsg:instruction:{topic.kind}", **provenance))
    raise Rejected("constraints-unsatisfiable", f"no constraint set drawn for {seed.key} fitted in {_ATTEMPTS} tries")


BUILDERS: dict[str, Builder] = {source: build_instruction for source in TOPICS}
