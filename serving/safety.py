"""One safety pipeline for every generation: control-token neutralising and the chat checks.

`/consult` runs serving.consult (input checks, model, output checks). `/v1/chat/completions` runs
the same checks through the same functions (`consult.prepare` per user message, `consult.finish`
on the answer), so an OpenAI-style client gets the same escalations and findings, reported in the
`balancedbio` extension field and the `X-BalancedBio-*` response headers.

Chat-template control tokens (`<|im_start|>`, `<|im_end|>`, `<|endoftext|>` and every special
token of the served tokenizer) in text a caller or a FHIR server supplied would become real
control tokens once templated: a question could close the user turn and open a system turn. They
are neutralised (the angle brackets replaced by look-alikes the tokenizer does not merge) before
templating, and their presence is a `prompt_injection` finding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from serving import consult as consult_pipeline

# ChatML's markers (SmolLM2 and Qwen use them) are neutralised even when a tokenizer does not list them.
CHATML_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
_LOOKALIKE = str.maketrans({"<": "\u2039", ">": "\u203a"})  # single angle quotation marks


def control_tokens(tokenizer: Any | None = None) -> tuple[str, ...]:
    """The ChatML markers plus the tokenizer's special and added special tokens, longest first."""
    tokens = set(CHATML_TOKENS)
    if tokenizer is not None:
        tokens.update(t for t in getattr(tokenizer, "all_special_tokens", []) or [] if isinstance(t, str))
        for token in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
            if getattr(token, "special", False):
                tokens.add(str(token.content if hasattr(token, "content") else token))
    return tuple(sorted((t for t in tokens if len(t) >= 2), key=len, reverse=True))


def _neutral(token: str) -> str:
    out = token.translate(_LOOKALIKE)
    return out if out != token else token[0] + "\u200b" + token[1:]  # no brackets: split with a zero-width space


def neutralise(text: str | None, tokens: tuple[str, ...]) -> tuple[str | None, list[str]]:
    """(text with every control token made inert, the tokens found) — a pure function."""
    if not text:
        return text, []
    found = [t for t in tokens if t in text]
    for token in found:
        text = text.replace(token, _neutral(token))
    return text, found


def control_token_finding(found: list[str], where: str) -> dict:
    names = ", ".join(sorted(set(found)))
    return {"kind": "prompt_injection", "severity": "warning",
            "summary": f"Chat-template control tokens in the {where} were neutralised",
            "detail": f"The {where} contained {names}; they were made inert before the prompt was built, "
                      "so they could not open or close a turn.",
            "evidence": sorted(set(found)),
            "suggested_action": "Check where this text came from; control tokens do not occur in clinical text."}


@dataclass
class ChatCheck:
    """What the guardrails made of a chat request: messages to template, escalation, findings."""
    messages: list[dict]
    checked: bool
    escalation: str | None = None
    consultation: consult_pipeline.Consultation | None = None
    findings: list = field(default_factory=list)  # input findings (objects or dicts)

    def report(self, output_findings: list[dict] | None = None) -> dict:
        """The `balancedbio` extension field of a chat completion."""
        findings = output_findings if output_findings is not None else [consult_pipeline._as_dict(f) for f in self.findings]
        return {"checked": self.checked, "escalated": self.escalation is not None, "findings": findings}

    def headers(self) -> dict[str, str]:
        kinds = sorted({consult_pipeline._as_dict(f).get("kind", "?") for f in self.findings})
        return {"X-BalancedBio-Checked": "true" if self.checked else "false",
                "X-BalancedBio-Escalated": "true" if self.escalation is not None else "false",
                "X-BalancedBio-Findings": str(len(self.findings)),
                "X-BalancedBio-Finding-Kinds": ",".join(kinds)}


def check_chat(messages: list[dict], tokens: tuple[str, ...], checked: bool) -> ChatCheck:
    """Neutralise control tokens in every message, then (when `checked`) run the consult input checks
    on each user message: the first escalation wins, identifiers are redacted as in /consult."""
    clean, found_any = [], []
    for m in messages:
        text, found = neutralise(m["content"], tokens)
        found_any += found
        clean.append({**m, "content": text})
    result = ChatCheck(messages=clean, checked=checked)
    if found_any:
        result.findings.append(control_token_finding(found_any, "messages"))
    if not checked:
        return result
    for m in clean:
        if m["role"] != "user":
            continue
        c = consult_pipeline.prepare(m["content"], None)
        result.findings.extend(c.findings)
        m["content"] = c.model_question or m["content"]
        result.escalation = result.escalation or c.escalation
        result.consultation = c
    if result.consultation is None:  # no user turn: the output checks still need a consultation
        result.consultation = consult_pipeline.Consultation(question="", patient_json=None)
    return result


def finish_chat(check: ChatCheck, answer: str) -> list[dict]:
    """Output checks on the answer (skipped for an escalation or an unchecked key); all findings as dicts."""
    if not check.checked:
        return [consult_pipeline._as_dict(f) for f in check.findings]
    c = check.consultation
    c.escalation = check.escalation
    c.findings = list(check.findings)  # every user turn's input findings, then the output ones
    return consult_pipeline.finish(c, answer)[0]
