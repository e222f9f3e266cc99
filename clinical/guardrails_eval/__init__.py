"""The labelled guardrail evaluation set (cases.jsonl) and its precision/recall report.

    python -m clinical.guardrails_eval build      # rewrite cases.jsonl from the sources
    python -m clinical.guardrails_eval evaluate   # print the table (docs/guardrails.md holds it)
"""
