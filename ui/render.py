"""What the clinician sees: the model banner, guardrail findings as cards, the history table.

Every string from the service or a patient file is HTML-escaped here: findings quote model output
and patient data, and the UI must not render either as markup.
"""

from __future__ import annotations

from html import escape

SEVERITY_STYLE = {  # border, background, label: red / amber / blue, readable in light and dark themes
    "critical": ("#c62828", "rgba(198,40,40,0.10)", "Critical"),
    "warning": ("#ef8f00", "rgba(239,143,0,0.12)", "Warning"),
    "info": ("#1565c0", "rgba(21,101,192,0.10)", "Info"),
}
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
HISTORY_COLUMNS = ["time", "question", "model", "findings", "feedback"]


def banner_html(models: list[dict]) -> str:
    """The served model and whether it is aligned; a base model is flagged loudly."""
    if not models:
        return '<div id="bb-banner" class="bb-banner bb-unknown">No model reported by the service.</div>'
    parts = []
    for m in models:
        aligned = m.get("aligned")
        version = escape(str(m.get("id", "unknown")))
        if aligned is False:
            parts.append(f'<div class="bb-banner bb-base" style="border-left:6px solid #c62828;padding:8px;'
                         f'background:rgba(198,40,40,0.10)"><b>Model {version}</b> · <code>aligned: false</code> — '
                         f'base model, not aligned by BalancedBio. Treat answers with extra caution.</div>')
        else:
            parts.append(f'<div class="bb-banner bb-aligned" style="border-left:6px solid #2e7d32;padding:8px;'
                         f'background:rgba(46,125,50,0.10)"><b>Model {version}</b> · <code>aligned: true</code></div>')
    return '<div id="bb-banner">' + "".join(parts) + "</div>"


def _card(finding: dict) -> str:
    severity = str(finding.get("severity", "info"))
    border, background, label = SEVERITY_STYLE.get(severity, SEVERITY_STYLE["info"])
    evidence = finding.get("evidence") or []
    evidence_html = "".join(f"<li><code>{escape(str(e))}</code></li>" for e in evidence)
    action = finding.get("suggested_action")
    return (
        f'<div class="bb-card bb-{escape(severity)}" data-kind="{escape(str(finding.get("kind", "")))}" '
        f'style="border-left:6px solid {border};background:{background};padding:8px 12px;margin:6px 0;border-radius:4px">'
        f'<div><b style="color:{border}">{label}</b> · <span class="bb-kind">{escape(str(finding.get("kind", "")))}</span></div>'
        f'<div class="bb-summary"><b>{escape(str(finding.get("summary", "")))}</b></div>'
        + (f'<div class="bb-detail">{escape(str(finding["detail"]))}</div>' if finding.get("detail") else "")
        + (f'<div class="bb-action">Suggested action: {escape(str(action))}</div>' if action else "")
        + (f'<details class="bb-evidence"><summary>Evidence ({len(evidence)})</summary><ul>{evidence_html}</ul></details>'
           if evidence else "")
        + "</div>"
    )


def findings_html(findings: list[dict], escalated: bool = False) -> str:
    """Cards, most severe first; an explicit "no findings" so an empty list is never ambiguous."""
    head = ('<div class="bb-escalated" style="font-weight:bold;color:#c62828">Escalated: the question was '
            'answered by the safety layer, not the model.</div>') if escalated else ""
    if not findings:
        return f'<div id="bb-findings">{head}<div class="bb-none">No guardrail findings for this answer.</div></div>'
    ordered = sorted(findings, key=lambda f: SEVERITY_ORDER.get(str(f.get("severity")), 3))
    return f'<div id="bb-findings">{head}' + "".join(_card(f) for f in ordered) + "</div>"


def history_rows(history: list[dict]) -> list[list[str]]:
    """The session's consults for a table; questions are cut short (they can be long)."""
    rows = []
    for h in history:
        question = h["question"] if len(h["question"]) <= 80 else h["question"][:79] + "…"
        rows.append([h["time"], question, h["model"], str(h["findings"]), h.get("feedback") or "—"])
    return rows
