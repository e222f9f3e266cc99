"""PHI minimisation: what may leave a FHIR payload, and scrubbing for text and logs.

The rule the rest of the stack relies on: a patient's name, identifiers, address, telecom and
exact birth date never reach the model prompt, the audit trail or a log line. clinical/fhir.py
keeps them out by construction (PatientContext has no field for them); this module holds the
pieces that work on free text, where construction cannot help:

- find_phi(text): spans that look like direct identifiers (HIPAA Safe Harbor categories that a
  pattern can catch: phone, e-mail, SSN, MRN-like numbers, full dates, URLs, IP addresses).
- scrub_text(text): the same spans replaced by a typed placeholder ("[PHONE]").
- PHIRedactingFilter: a logging.Filter that scrubs every record, for loggers that may see text
  typed by a clinician.
- patient_phi_strings(resource): the identifying strings a Patient resource holds; the PHI tests
  use it to prove none of them reaches a prompt or a log.

Reference: 45 CFR 164.514(b)(2) (the Safe Harbor list of 18 identifiers).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date

# Order matters: the first pattern to claim a span wins (an SSN is also a run of digits).
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("EMAIL", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    ("URL", re.compile(r"\bhttps?://\S+", re.IGNORECASE)),
    ("SSN", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
    ("PHONE", re.compile(r"(?<!\w)(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}\b")),
    ("IP", re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")),
    # A full calendar date (year, month and day): Safe Harbor allows the year alone.
    ("DATE", re.compile(r"\b(?:\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4})\b")),
    # Record numbers: "MRN 12345", "MRN: A123456", "medical record number 99812".
    ("MRN", re.compile(r"\b(?:MRN|medical record(?: number)?|record no\.?)\s*[:#]?\s*[A-Z0-9-]{4,}\b", re.IGNORECASE)),
    # A UUID is how Synthea and most servers identify a patient.
    ("ID", re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE)),
]


@dataclass(frozen=True)
class PHIMatch:
    kind: str  # "PHONE", "EMAIL", ...
    start: int
    end: int


def find_phi(text: str) -> list[PHIMatch]:
    """Spans of text that look like direct identifiers, in order, not overlapping."""
    if not text:
        return []
    taken: list[PHIMatch] = []
    for kind, pattern in _PATTERNS:
        for m in pattern.finditer(text):
            if any(m.start() < t.end and t.start < m.end() for t in taken):
                continue
            taken.append(PHIMatch(kind, m.start(), m.end()))
    return sorted(taken, key=lambda m: m.start)


def scrub_text(text: str) -> str:
    """text with every find_phi span replaced by [KIND]."""
    out, last = [], 0
    for m in find_phi(text):
        out.append(text[last : m.start])
        out.append(f"[{m.kind}]")
        last = m.end
    out.append(text[last:])
    return "".join(out)


class PHIRedactingFilter(logging.Filter):
    """Scrubs the formatted message of every record it sees; attach it to a handler or logger.

    The message is formatted here (args merged) so an identifier passed as a %s argument is
    caught too; the record then carries the scrubbed text and no args.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not drop the record
            message = str(record.msg)
        record.msg = scrub_text(message)
        record.args = None
        return True


# Loggers whose handlers see request text in a served deployment: the root, BentoML's and uvicorn's.
SERVICE_LOGGERS = ("", "bentoml", "bentoml.access", "uvicorn", "uvicorn.access", "uvicorn.error")


def install_log_redaction(logger_names=SERVICE_LOGGERS) -> int:
    """Put one PHIRedactingFilter on every handler of these loggers; returns how many handlers got one.

    Handler filters, not logger filters: a logger's filter does not run for records that reach its
    handlers from child loggers, and handlers are where every line is written. Idempotent."""
    redactor, added = PHIRedactingFilter(), 0
    for name in logger_names:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, PHIRedactingFilter) for f in handler.filters):
                handler.addFilter(redactor)
                added += 1
    return added


def age_in_years(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


# Safe Harbor: ages over 89 are aggregated into one category.
AGE_CAP = 90


def safe_harbor_age(age: int | None) -> int | None:
    return None if age is None else min(age, AGE_CAP)


def _walk_strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _walk_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _walk_strings(v)]
    return []


def patient_phi_strings(patient: dict) -> set[str]:
    """Identifying strings of one Patient resource (JSON): names, identifiers, address, telecom,
    birth date, its own id, and names and addresses tucked in extensions (Synthea puts the
    mother's maiden name and the birth place there)."""
    found: set[str] = set()
    for name in patient.get("name", []) or []:
        found.update(_walk_strings({k: v for k, v in name.items() if k in ("family", "given", "text")}))
    for ident in patient.get("identifier", []) or []:
        if ident.get("value"):
            found.add(ident["value"])
    for addr in patient.get("address", []) or []:
        found.update(_walk_strings({k: v for k, v in addr.items() if k in ("line", "city", "postalCode", "text")}))
    for tel in patient.get("telecom", []) or []:
        if tel.get("value"):
            found.add(tel["value"])
    for contact in patient.get("contact", []) or []:
        found.update(_walk_strings(contact.get("name", {})))
        for tel in contact.get("telecom", []) or []:
            if tel.get("value"):
                found.add(tel["value"])
    if patient.get("birthDate"):
        found.add(patient["birthDate"])
    if patient.get("id"):
        found.add(patient["id"])
    for ext in patient.get("extension", []) or []:
        if "valueString" in ext:
            found.add(ext["valueString"])
        if "valueAddress" in ext:
            found.update(_walk_strings({k: v for k, v in ext["valueAddress"].items() if k in ("line", "city")}))
    # Single letters and common words ("Mr.", "MA") would match everywhere and prove nothing.
    return {s.strip() for s in found if len(s.strip()) >= 3}
