"""De-identification of free text: the patient's own identifiers, and other people's, before text
reaches the model, a response or storage.

Two layers, because they fail differently:
- the patient's own identifiers, read from the FHIR Patient resource (every name part, identifier,
  address part, telecom and birth date; clinical.phi.patient_phi_strings), removed by exact
  match wherever they appear: this cannot miss what the record holds;
- everyone else's names, addresses, dates and numbers, found by Presidio's analyzer
  (AnalyzerEngine with its own pattern recognisers for e-mail, phone, SSN, IP, URL and dates,
  our pattern recognisers for written dates, street addresses, record numbers and titled names,
  and a name-list recogniser over the US Census 1990 first-name list shipped in the `names`
  package). The NLP engine is a blank spaCy English pipeline (tokens only): nothing is
  downloaded, and no statistical NER runs. Recall is measured on a labelled set
  (clinical/guardrails_eval/data/deid_sentences.jsonl; docs/guardrails.md).

Dates in the patient summary become relative ("3 years ago"), which keeps the clinical meaning.
"""

from __future__ import annotations

import functools
import os
import re
from datetime import date

from clinical.phi import patient_phi_strings, scrub_text

PLACEHOLDER = {"PERSON": "[NAME]", "LOCATION": "[ADDRESS]", "DATE_TIME": "[DATE]", "PHONE_NUMBER": "[PHONE]",
               "EMAIL_ADDRESS": "[EMAIL]", "US_SSN": "[SSN]", "IP_ADDRESS": "[IP]", "URL": "[URL]", "MRN": "[MRN]",
               "PATIENT": "[PATIENT]"}
_MONTHS = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
_TITLES = r"(?:Dr|Doctor|Mr|Mrs|Ms|Miss|Mx|Prof|Professor|Nurse|Sister|Father|Rev)"
# Capitalised words that are not names even when the list says so (months, weekdays, clinical words).
_NOT_NAMES = {"may", "june", "april", "august", "march", "monday", "tuesday", "wednesday", "thursday", "friday",
              "saturday", "sunday", "will", "hope", "grace", "faith", "joy", "mark", "bill", "art", "young", "long",
              "page", "chase", "rose", "iris", "ivy", "lily", "angel", "precious", "dawn", "crystal", "summer",
              "autumn", "king", "major", "sterling", "ray", "don", "gene", "guy", "pat", "sandy", "rusty",
              "patient", "doctor", "nurse", "the", "and", "an", "ed", "er", "icu", "jo", "al", "lee", "mi"}


def _first_names() -> list[str]:
    import names  # US Census 1990 name lists (MIT-licensed package; the data is public domain)

    folder = os.path.dirname(names.__file__)
    out = []
    for file in ("dist.male.first", "dist.female.first"):
        with open(os.path.join(folder, file), encoding="utf-8") as fh:
            out += [line.split()[0].title() for line in fh if line.strip()]
    return sorted({n for n in out if len(n) >= 3 and n.lower() not in _NOT_NAMES})


@functools.cache
def _analyzer():
    """Presidio's AnalyzerEngine over a blank spaCy pipeline, with pattern and name-list recognisers."""
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        DateRecognizer,
        EmailRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UrlRecognizer,
        UsSsnRecognizer,
    )

    class BlankSpacyNlpEngine(SpacyNlpEngine):
        """Presidio's spaCy engine on `spacy.blank("en")`: tokens only, so no model is downloaded."""

        def load(self) -> None:
            import spacy

            self.nlp = {"en": spacy.blank("en")}

    import tldextract.tldextract

    # Presidio's e-mail and URL recognisers check domains with tldextract, which would fetch the
    # public-suffix list over the network; its bundled snapshot is enough and works offline.
    tldextract.tldextract.TLD_EXTRACTOR = tldextract.tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    engine = BlankSpacyNlpEngine(models=[{"lang_code": "en", "model_name": "blank"}])
    engine.load()
    registry = RecognizerRegistry(supported_languages=["en"])
    for recogniser in (EmailRecognizer(), PhoneRecognizer(), UsSsnRecognizer(), IpRecognizer(), UrlRecognizer(),
                       DateRecognizer()):
        registry.add_recognizer(recogniser)
    registry.add_recognizer(PatternRecognizer(supported_entity="DATE_TIME", name="WrittenDateRecognizer", patterns=[
        Pattern("month day, year", rf"\b{_MONTHS}\.? \d{{1,2}}(?:st|nd|rd|th)?,? \d{{4}}\b", 0.85),
        Pattern("day month year", rf"\b\d{{1,2}}(?:st|nd|rd|th)? (?:of )?{_MONTHS}\.?,? \d{{4}}\b", 0.85),
        Pattern("month year", rf"\b{_MONTHS}\.? \d{{4}}\b", 0.6),
        Pattern("numeric date", r"\b\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})\b", 0.7),
        Pattern("iso date", r"\b(?:19|20)\d{2}-\d{2}-\d{2}\b", 0.85),
        Pattern("month day", rf"\b(?:on|since|from|until|of) {_MONTHS}\.? \d{{1,2}}(?:st|nd|rd|th)?\b", 0.6),
    ]))
    registry.add_recognizer(PatternRecognizer(supported_entity="LOCATION", name="StreetAddressRecognizer", patterns=[
        Pattern("street address", r"\b\d{1,6}(?: [A-Z][a-z]+){1,3} (?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|"
                                  r"Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Circle|Highway|Hwy)\b\.?"
                                  r"(?:,? (?:Apt|Unit|Suite) \w+)?(?:,? [A-Z][a-z]+(?: [A-Z][a-z]+)?)?"
                                  r"(?:,? [A-Z]{2})?(?: \d{5}(?:-\d{4})?)?", 0.85),
        Pattern("zip code", r"\b[A-Z]{2} \d{5}(?:-\d{4})?\b", 0.7),
        Pattern("po box", r"\bP\.?O\.? Box \d+\b", 0.85),
    ], global_regex_flags=re.DOTALL))
    registry.add_recognizer(PatternRecognizer(supported_entity="MRN", name="RecordNumberRecognizer", patterns=[
        Pattern("record number", r"\b(?:MRN|medical record(?: number)?|record no\.?|patient id|NHS(?: number)?)"
                                 r"\s*[:#]?\s*[A-Z0-9-]{4,}\b", 0.9),
        Pattern("uuid", r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", 0.9),
    ]))
    registry.add_recognizer(PatternRecognizer(supported_entity="PERSON", name="TitledNameRecognizer", patterns=[
        Pattern("title + name", rf"\b{_TITLES}\.? (?:[A-Z]\.? )?[A-Z][a-zA-Z'-]+(?: [A-Z][a-zA-Z'-]+)?", 0.85),
        Pattern("name, relation", r"\b[A-Z][a-z]+ [A-Z][a-z]+(?=,? (?:her|his|the patient's) (?:husband|wife|son|daughter|"
                                  r"mother|father|sister|brother|partner|neighbour|neighbor|carer|caregiver))", 0.7),
    ], global_regex_flags=re.DOTALL))
    # Name list: case-sensitive (capitalised names only), with the next capitalised word taken as
    # the surname.
    first = "|".join(re.escape(n) for n in _first_names())
    registry.add_recognizer(PatternRecognizer(supported_entity="PERSON", name="CensusFirstNameRecognizer", patterns=[
        Pattern("first name + surname", rf"(?<![\w.])(?:{first})(?: [A-Z]\.)?(?: (?:Mc|Mac|O')?[A-Z][a-z]+(?:-[A-Z][a-z]+)?)?\b", 0.6),
    ], global_regex_flags=re.DOTALL))
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])


def load() -> None:
    """Build the analyzer now (raises if Presidio or spaCy is missing: callers fail closed)."""
    _analyzer()


def _own_terms(patient_resources: list[dict]) -> list[str]:
    """The patient's identifiers as search terms, longest first: the strings themselves, each name part
    alone, Synthea's digit-suffixed names without digits ("John823" -> "John"), and the birth date in
    the forms people write it."""
    terms: set[str] = set()
    for resource in patient_resources:
        for s in patient_phi_strings(resource):
            terms.add(s)
            stripped = re.sub(r"\d+$", "", s)
            if len(stripped) >= 2 and stripped != s and stripped.isalpha():
                terms.add(stripped)
        for name in resource.get("name", []) or []:
            for part in [*(name.get("given") or []), name.get("family") or ""]:
                part = re.sub(r"\d+$", "", str(part)).strip()
                if len(part) >= 2:
                    terms.add(part)
        born = resource.get("birthDate")
        if isinstance(born, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", born):
            d = date.fromisoformat(born)
            terms.update({f"{d.month}/{d.day}/{d.year}", f"{d.month:02d}/{d.day:02d}/{d.year}",
                          f"{d.day}/{d.month}/{d.year}", d.strftime("%B %-d, %Y"), d.strftime("%-d %B %Y"),
                          d.strftime("%b %-d, %Y")})
    return sorted((t for t in terms if len(t) >= 2), key=len, reverse=True)


def patient_resources(payload: dict | None) -> list[dict]:
    """The Patient resources in a FHIR payload (a Patient or a Bundle holding some)."""
    if not isinstance(payload, dict):
        return []
    if payload.get("resourceType") == "Patient":
        return [payload]
    return [e["resource"] for e in payload.get("entry") or []
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)
            and e["resource"].get("resourceType") == "Patient"]


def remove_own_identifiers(text: str, patient_payload: dict | None) -> str:
    """text with every identifier of the patient in `patient_payload` replaced by [PATIENT]."""
    for term in _own_terms(patient_resources(patient_payload)):
        text = re.sub(rf"(?<![\w]){re.escape(term)}(?![\w])", PLACEHOLDER["PATIENT"], text, flags=re.IGNORECASE)
    return text


# Eponyms: a name in "Wilson disease", "Bell palsy", "Barrett esophagus", "Stevens-Johnson syndrome"
# names a condition, not a person, and removing it would remove the clinical question.
_EPONYM_AFTER = re.compile(r"^(?:'s)?[ -]+(?:[A-Z][a-z]+ )?(disease|syndrome|palsy|o?esophagus|sign|score|criteria|test|"
                           r"phenomenon|ulcer|sarcoma|lymphoma|chorea|tumou?r|classification|scale|maneuver|manoeuvre|"
                           r"reflex|triad|fracture|node|cells?|procedure|operation|block|rule|formula|equation|"
                           r"thyroiditis|encephalopathy|neuralgia|contracture|anomaly|index)\b")


def _eponym(text: str, start: int, end: int) -> bool:
    return bool(_EPONYM_AFTER.match(text[end:])) or (start > 0 and text[start - 1] == "-")


def find_identifiers(text: str, threshold: float = 0.5) -> list[tuple[str, int, int]]:
    """(entity, start, end) of identifiers Presidio finds, not overlapping, in order."""
    results = _analyzer().analyze(text=text, language="en", score_threshold=threshold)
    results = [r for r in results if not (r.entity_type == "PERSON" and _eponym(text, r.start, r.end))]
    results = sorted(results, key=lambda r: (-(r.end - r.start), -r.score))
    taken: list[tuple[str, int, int]] = []
    for r in results:
        if any(r.start < e and s < r.end for _, s, e in taken):
            continue
        taken.append((r.entity_type, r.start, r.end))
    return sorted(taken, key=lambda t: t[1])


def deidentify(text: str, patient_payload: dict | None = None) -> str:
    """The patient's own identifiers, then anyone's names/addresses/dates/numbers, replaced by placeholders."""
    if not text:
        return text
    text = remove_own_identifiers(text, patient_payload)
    out, last = [], 0
    for entity, start, end in find_identifiers(text):
        if "[PATIENT]" in text[start:end] and entity == "PERSON":
            continue  # already removed; a name recogniser seeing "Mr [PATIENT]" adds nothing
        out += [text[last:start], PLACEHOLDER.get(entity, f"[{entity}]")]
        last = end
    out.append(text[last:])
    return scrub_text("".join(out))  # the older patterns (MRN-like numbers, UUIDs) as a last net


def _ago(then: date, today: date) -> str:
    days = (today - then).days
    if days < 0:
        return "in the future"
    if days < 14:
        return "today" if days == 0 else f"{days} day{'s' * (days != 1)} ago"
    if days < 60:
        return f"{days // 7} weeks ago"
    if days < 730:
        return f"{days // 30} months ago"
    return f"{days // 365} years ago"


def relative_dates(text: str, today: date | None = None) -> str:
    """ISO dates (YYYY-MM-DD, optionally with a time) in text replaced by "N days/weeks/months/years ago"."""
    today = today or date.today()

    def repl(m: re.Match) -> str:
        try:
            return _ago(date.fromisoformat(m.group(1)), today)
        except ValueError:
            return "[DATE]"
    return re.sub(r"\b(\d{4}-\d{2}-\d{2})(?:T[\d:.]+(?:Z|[+-]\d{2}:?\d{2})?)?\b", repl, text)
