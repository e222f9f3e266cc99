"""MKGSG end to end: seeds -> construction -> curation -> splits -> preference pairs -> files.

After Source2Synth's stages: seeds come from the knowledge base, each capability's builder makes
a record from a seed, curation keeps only records that verify, that the knowledge base confirms,
that are new, and that share nothing with a benchmark. Splits are by seed fact, so a fact seen in
training never reappears in validation or test.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from training.mkgsg.base import Rejected, Seed
from training.mkgsg.card import data_card
from training.mkgsg.config import MKGSGConfig
from training.mkgsg.curation import DuplicateFilter, LeakageIndex, ontology_check, self_check
from training.mkgsg.preferences import preference_pairs
from training.mkgsg.seeds import draw_seed
from training.records import CapabilityRecord, dump_records

SPLITS = ("train", "val", "test")


def builders(capabilities: list[str]) -> dict[str, dict]:
    """Each capability's builders by seed source; the module `training.mkgsg.<capability>` holds them."""
    return {c: importlib.import_module(f"training.mkgsg.{c}").BUILDERS for c in capabilities}


@dataclass
class Dataset:
    splits: dict[str, list[CapabilityRecord]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    pairs: dict[str, list[dict]] = field(default_factory=lambda: {"train": [], "val": []})
    kept: Counter = field(default_factory=Counter)  # (capability, source) -> records
    rejected: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))  # capability -> reason -> n
    attempts: Counter = field(default_factory=Counter)
    leakage: dict = field(default_factory=dict)
    asked_anew: dict = field(default_factory=dict)  # counts of the trained-facts-asked-anew test set

    @property
    def records(self) -> list[CapabilityRecord]:
        return [r for s in SPLITS for r in self.splits[s]]


def split_of(seed: Seed, config: MKGSGConfig) -> str:
    bucket = int(hashlib.sha1(f"{seed.source}|{seed.key}".encode()).hexdigest(), 16) % 10_000 / 10_000
    if bucket < config.test_fraction:
        return "test"
    return "val" if bucket < config.test_fraction + config.val_fraction else "train"


def generate(config: MKGSGConfig, kb=None, progress: bool = True) -> Dataset:
    from clinical.knowledge import get_knowledge_base

    kb = kb or get_knowledge_base()
    leakage = LeakageIndex.build(config.benchmark_paths(), config.leakage_ngram)
    data, duplicates, by_capability = Dataset(), DuplicateFilter(), builders(config.capability_list)
    targets = config.targets()
    bar = tqdm(total=sum(targets.values()), desc="mkgsg: validated records", disable=not progress, unit="rec")
    for capability, target in targets.items():
        table = by_capability[capability]
        sources = sorted(table)
        rng = random.Random(f"mkgsg|{config.seed}|{capability}")
        kept = 0
        while kept < target and data.attempts[capability] < target * config.max_attempts_factor:
            attempt = data.attempts[capability]
            data.attempts[capability] += 1
            seed = draw_seed(kb, sources[attempt % len(sources)], rng)
            # Each record has its own rng, so one builder's draws never shift another's output.
            try:
                record = table[seed.source](seed, kb, random.Random(f"{config.seed}|{capability}|{attempt}"))
            except Rejected as rejection:
                data.rejected[capability][f"construction:{rejection.reason}"] += 1
                continue
            record = _stamped(record, seed)
            reason = self_check(record) or ontology_check(record, kb)
            if reason is None:
                leaked = leakage.overlap(record)
                reason = f"benchmark-overlap:{leaked}" if leaked else duplicates.reason(record)
            if reason:
                data.rejected[capability][reason] += 1
                continue
            data.splits[split_of(seed, config)].append(record)
            data.kept[(capability, seed.source)] += 1
            kept += 1
            bar.update()
    bar.close()
    if config.answerability:
        _answerability_filter(data, config)
    for split in ("train", "val"):
        pair_rng = random.Random(f"mkgsg|{config.seed}|pairs|{split}")
        for record in data.splits[split]:
            data.pairs[split].extend(preference_pairs(record, pair_rng))
    data.leakage = {"ngram": leakage.n, "files": leakage.files, "indexed_ngrams": len(leakage.grams),
                    "dropped_by_benchmark": dict(sorted(leakage.hits.items()))}
    return data


def _stamped(record: CapabilityRecord, seed: Seed) -> CapabilityRecord:
    """Name the seed fact in the provenance, and give the record an id from its content: one fact
    can be drawn twice and asked two ways, and each record needs its own id."""
    content = json.dumps([m.content for m in record.messages] + [record.reference])
    digest = hashlib.sha1(content.encode()).hexdigest()[:12]
    return record.model_copy(update={
        "id": f"{record.capability.value}-{seed.source}-{digest}",
        "provenance": record.provenance.model_copy(update={"seed": f"{seed.source}:{seed.key}"})})


def _answerability_filter(data: Dataset, config: MKGSGConfig) -> None:
    """Source2Synth's filter: keep an item only when the base model, shown the reference reasoning
    as context, answers it correctly. Slow (one generation per record), so off by default."""
    from training.evaluate.lm import load_language_model
    from training.rewards.verifiers import verify_answer

    lm = load_language_model(config.answerability_model)
    for split in SPLITS:
        records = [r for r in data.splits[split] if r.verification.answer]
        prompts = [lm.chat_prompt([*[m.model_dump() for m in r.messages[:-1]],
                                   {"role": "user", "content": f"Context: {_context(r)}\n\n{r.messages[-1].content}"}])
                   for r in records]
        answers = lm.generate(prompts, max_new_tokens=64)
        unanswerable = {r.id for r, a in zip(records, answers) if not verify_answer(a, r.verification.answer).passed}
        for r in data.splits[split]:
            if r.id in unanswerable:
                data.rejected[r.capability.value]["unanswerable-by-base-model"] += 1
        data.splits[split] = [r for r in data.splits[split] if r.id not in unanswerable]


def _context(record: CapabilityRecord) -> str:
    return "\n".join(line for line in record.reference.splitlines() if not line.lower().startswith("answer"))


def write(data: Dataset, config: MKGSGConfig, out: Path) -> dict[str, Path]:
    """Write the splits, the preference pairs, stats.json and the data card; same seed, same bytes."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in SPLITS:
        paths[split] = out / f"{split}.jsonl"
        dump_records(data.splits[split], paths[split])
    for split, pairs in data.pairs.items():
        paths[f"preferences_{split}"] = out / f"preferences_{split}.jsonl"
        with paths[f"preferences_{split}"].open("w", encoding="utf-8") as f:
            for pair in pairs:
                f.write(json.dumps(pair, sort_keys=True, ensure_ascii=False) + "\n")
    paths["test_trained_anew"] = write_asked_anew(data, config, out)
    paths["stats"] = out / "stats.json"
    paths["stats"].write_text(json.dumps(stats(data, config), indent=2, sort_keys=True) + "\n")
    paths["card"] = out / "DATA_CARD.md"
    paths["card"].write_text(data_card(data, config))
    return paths


def write_asked_anew(data: Dataset, config: MKGSGConfig, out: Path) -> Path:
    """test_trained_anew.jsonl: train facts asked with new frames and distractor sets (training.mkgsg.anew)."""
    from training.mkgsg.anew import asked_anew

    records, counts = asked_anew(data.splits["train"], data.records, seed=config.seed)
    data.asked_anew = counts
    dump_records(records, out / "test_trained_anew.jsonl")
    return out / "test_trained_anew.jsonl"


def stats(data: Dataset, config: MKGSGConfig) -> dict:
    return {
        "config": config.public_dict(),
        "splits": {s: len(data.splits[s]) for s in SPLITS},
        "kept": {f"{c}/{s}": n for (c, s), n in sorted(data.kept.items())},
        "attempts": dict(sorted(data.attempts.items())),
        "rejected": {c: dict(sorted(r.items())) for c, r in sorted(data.rejected.items())},
        "pairs": {s: dict(sorted(Counter(p["corruption"] for p in pairs).items())) for s, pairs in data.pairs.items()},
        "leakage": {k: v for k, v in data.leakage.items() if k != "files"} | {"files": len(data.leakage["files"])},
        "test_trained_anew": data.asked_anew,
    }
