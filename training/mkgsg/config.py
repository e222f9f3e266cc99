"""MKGSG's settings, TRL-style: a dataclass with help text and cross-field checks that say how to fix."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from training.records import Capability

CAPABILITIES = tuple(c.value for c in Capability)


@dataclass
class MKGSGConfig:
    """Medical Knowledge-Grounded Synthetic Generation."""

    n: int = field(default=2000, metadata={"help": "Validated records to write, split evenly over the capabilities."})
    seed: int = field(default=0, metadata={"help": "Seed: the same seed writes the same bytes."})
    out: str = field(default="runs/mkgsg", metadata={"help": "Output folder for the splits, pairs, stats and data card."})
    capabilities: str = field(default=",".join(CAPABILITIES), metadata={
        "help": f"Comma-separated capabilities to generate; any of {', '.join(CAPABILITIES)}."})
    val_fraction: float = field(default=0.1, metadata={"help": "Share of seed facts held out for validation."})
    test_fraction: float = field(default=0.1, metadata={"help": "Share of seed facts held out for test."})
    leakage_ngram: int = field(default=10, metadata={
        "help": "Word n-gram length of the benchmark leakage check: a record sharing one n-gram with a benchmark is dropped."})
    benchmarks: list[str] = field(default_factory=list, metadata={
        "help": "Benchmark files or folders to check for leakage, besides $BALANCEDBIO_DATA/benchmarks and the bundled samples."})
    answerability: bool = field(default=False, metadata={
        "help": "Keep only items the base model answers when shown the reference reasoning (Source2Synth's filter; slow)."})
    answerability_model: str = field(default="smollm2-135m", metadata={"help": "Model for --answerability."})
    max_attempts_factor: int = field(default=6, metadata={
        "help": "Give up on a capability after target x this many construction attempts."})

    def __post_init__(self) -> None:
        if self.n < len(self.capability_list):
            raise ValueError(f"--n {self.n} is below one record per capability; use at least {len(self.capability_list)}")
        unknown = [c for c in self.capability_list if c not in CAPABILITIES]
        if unknown or not self.capability_list:
            raise ValueError(f"unknown capability {unknown}; choose from {', '.join(CAPABILITIES)}")
        if not (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1):
            raise ValueError("--val_fraction and --test_fraction must be in [0, 1) and leave some data for training")
        if self.leakage_ngram < 5:
            raise ValueError(f"--leakage_ngram {self.leakage_ngram} would flag ordinary clinical phrases; use 8 to 13")
        missing = [b for b in self.benchmarks if not Path(b).exists()]
        if missing:
            raise ValueError(f"--benchmarks path(s) not found: {missing}")

    @property
    def capability_list(self) -> list[str]:
        return [c.strip() for c in self.capabilities.split(",") if c.strip()]

    def targets(self) -> dict[str, int]:
        """Records per capability: n split evenly, the remainder to the first capabilities."""
        caps = self.capability_list
        base, extra = divmod(self.n, len(caps))
        return {c: base + (i < extra) for i, c in enumerate(caps)}

    def benchmark_paths(self) -> list[Path]:
        from training.evaluate.runner import SAMPLES, shared_data_dir

        shared = shared_data_dir() / "benchmarks"
        # Without the shared folder, the bundled extracts stand in (not the capability fixture: it is ours).
        found = [shared] if shared.is_dir() else sorted(
            p for p in SAMPLES.rglob("*") if p.suffix in (".json", ".jsonl", ".csv") and "capabilities" not in p.name)
        return [*found, *map(Path, self.benchmarks)]

    def public_dict(self) -> dict:
        """The settings that shape the data (not where it is written)."""
        return {k: v for k, v in asdict(self).items() if k != "out"}
