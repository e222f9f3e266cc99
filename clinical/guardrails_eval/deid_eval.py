"""Recall of clinical.deid on hand-written sentences about people other than the patient.

data/deid_sentences.jsonl: 104 sentences written for this project (clinic-note style: relatives,
clinicians, carers, addresses, dates, phone numbers, e-mails, record numbers), each with the
identifier strings it holds. An identifier counts as found when no 3+ letter/digit run of it survives
de-identification (so "[NAME] Smith" is a miss). Over-redaction is measured on the same sentences:
the share of non-identifier words (4+ letters) that were removed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from clinical.deid import deidentify
from clinical.guardrails_eval.stats import wilson

SENTENCES = Path(__file__).with_name("data") / "deid_sentences.jsonl"


def _survives(identifier: str, output: str, text: str) -> bool:
    # Parts of the identifier that also occur elsewhere in the sentence ("portal" in a URL and in
    # "Lab portal login") cannot show a miss.
    rest = text.replace(identifier, " ")
    return any(part in output for part in re.findall(r"[A-Za-z0-9]{3,}", identifier) if part not in rest)


def evaluate(path: Path = SENTENCES) -> dict:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    found, total = Counter(), Counter()
    kept_words = all_words = 0
    misses = []
    for r in rows:
        out = deidentify(r["text"])
        for ident in r["identifiers"]:
            total[ident["type"]] += 1
            if _survives(ident["text"], out, r["text"]):
                misses.append({"id": r["id"], "type": ident["type"], "output": out})
            else:
                found[ident["type"]] += 1
        idents = " ".join(i["text"] for i in r["identifiers"])
        words = [w for w in re.findall(r"[A-Za-z]{4,}", r["text"]) if w not in idents]
        all_words += len(words)
        kept_words += sum(w in out for w in words)
    by_type = {t: {"found": found[t], "n": total[t], "recall": found[t] / total[t], "ci": wilson(found[t], total[t])}
               for t in sorted(total)}
    n, k = sum(total.values()), sum(found.values())
    return {"sentences": len(rows), "identifiers": n, "recall": k / n, "recall_ci": wilson(k, n), "by_type": by_type,
            "other_words_removed": 1 - kept_words / all_words, "other_words_n": all_words, "misses": misses}
