"""The objects every guardrail returns, and the fail-closed wrapper around every check.

A check that raises must never look like "no warnings" (HealthChain's counter-example): the
wrapper turns any exception into a critical `safety_check_unavailable` finding and tells the
listeners (serving wires them to Prometheus), so the failure is both visible and counted.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, Field, field_validator

log = logging.getLogger(__name__)

Severity = Literal["info", "warning", "critical"]
SUMMARY_MAX = 140  # a Finding's summary becomes a CDS Hooks card summary (spec: < 140 characters)


class Finding(BaseModel):
    """One thing a guardrail noticed; becomes a CDS card or a FHIR DetectedIssue."""

    kind: str  # allergy | interaction | contraindication | dose | diagnostic_certainty | emergency | ...
    severity: Severity
    summary: str = Field(max_length=SUMMARY_MAX)
    detail: str = ""
    evidence: list[str] = Field(default_factory=list)  # source ids, never patient identifiers
    suggested_action: str = ""

    @field_validator("summary", mode="before")
    @classmethod
    def _shorten(cls, value: str) -> str:
        # Builders compose summaries from drug names of any length; cut rather than fail.
        value = str(value)
        return value if len(value) <= SUMMARY_MAX else value[: SUMMARY_MAX - 1] + "…"


class InputCheck(BaseModel):
    findings: list[Finding] = Field(default_factory=list)
    escalation: str | None = None  # set => answer with this text and do not call the model
    redacted_question: str | None = None  # the question with identifiers replaced, for the model


# --- listeners (metrics) --------------------------------------------------------------------------
# clinical/ imports nothing of monitoring/ (DESIGN: packages depend downward), so serving registers
# a listener that forwards to its Prometheus counters.
_finding_listeners: list[Callable[[Finding], None]] = []
_error_listeners: list[Callable[[str], None]] = []


def add_listeners(on_finding: Callable[[Finding], None] | None = None,
                  on_error: Callable[[str], None] | None = None) -> None:
    if on_finding is not None and on_finding not in _finding_listeners:
        _finding_listeners.append(on_finding)
    if on_error is not None and on_error not in _error_listeners:
        _error_listeners.append(on_error)


def _notify(findings: list[Finding]) -> None:
    for finding in findings:
        for listener in _finding_listeners:
            try:
                listener(finding)
            except Exception:  # a broken metrics backend must not break a safety answer
                log.exception("guardrail finding listener failed")


def unavailable(check: str, exc: BaseException | None = None, what: str = "") -> Finding:
    """The critical finding that stands in for a check that could not run."""
    reason = f"{type(exc).__name__}" if exc is not None else (what or "unknown reason")
    for listener in _error_listeners:
        try:
            listener(check)
        except Exception:
            log.exception("guardrail error listener failed")
    return Finding(
        kind="safety_check_unavailable",
        severity="critical",
        summary=f"Safety check unavailable: {check}",
        detail=f"The {check} check could not run ({reason}); its result is unknown, not negative. "
               f"Treat this answer or order as unchecked.",
        evidence=[f"guardrail:{check}"],
        suggested_action="Verify allergies, interactions and contraindications manually before acting.",
    )


def fail_closed(check: str):
    """Decorator: a check returning list[Finding] that can never fail silently."""

    def wrap(fn: Callable[..., list[Finding]]):
        @functools.wraps(fn)
        def run(*args, **kwargs) -> list[Finding]:
            try:
                findings = list(fn(*args, **kwargs))
            except Exception as exc:
                # No arguments in the log: they may hold patient text.
                log.error("guardrail %s failed: %s", check, type(exc).__name__)
                findings = [unavailable(check, exc)]
            _notify(findings)
            return findings

        return run

    return wrap
