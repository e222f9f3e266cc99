"""`python -m training.evaluate`: score a model on one benchmark, or compare reports.

    python -m training.evaluate --model smollm2-135m --benchmark medmcqa --data PATH --limit 50
    python -m training.evaluate --compare runs/eval/a runs/eval/b --out runs/eval/compare
        (two reports of the same items: paired difference B - A, 95% paired-bootstrap interval and
        McNemar's p per metric, significant ones marked; comparison.json holds them)
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from training.cli import parse_config
from training.evaluate.runner import BENCHMARKS

_BENCHMARK_HELP = "; ".join(f"{name}: {spec.description}" for name, spec in BENCHMARKS.items())


@dataclass
class EvalConfig:
    """Evaluation of one model on one benchmark."""

    model: str = field(default="smollm2-135m", metadata={
        "help": "Embedded model name (smollm2-135m), a local model folder, or a hub name (must be cached when offline)."})
    benchmark: str | None = field(default=None, metadata={
        "help": f"Benchmark to run. {_BENCHMARK_HELP}.", "choices": sorted(BENCHMARKS)})
    data: str | None = field(default=None, metadata={
        "help": "Path of the benchmark file in its original format, or hub:ORG/NAME[@SPLIT] for a hub copy with the "
                "same fields (medqa, medmcqa, ifeval; needs the hub). Default: the published file under "
                "$BALANCEDBIO_DATA (../shared/data), or the bundled sample with --sample."})
    sample: bool = field(default=False, metadata={"help": "Use the small sample of the benchmark bundled with the project."})
    limit: int | None = field(default=None, metadata={"help": "Evaluate a seeded random subset of this many items."})
    seed: int = field(default=0, metadata={"help": "Seed for --limit's subset and anything random."})
    ids: str | None = field(default=None, metadata={
        "help": "File of item ids (one a line) to evaluate, e.g. docs/baseline/medmcqa_ids.txt: a fixed subset every "
                "run scores alike, so two reports can be compared item by item."})
    label: str | None = field(default=None, metadata={
        "help": "Name of the result in the report in place of the benchmark's (e.g. capabilities_unseen, "
                "capabilities_trained_anew); --compare pairs results by this name."})
    modes: str = field(default="loglik,cloze,circular,generate", metadata={
        "help": "Multiple-choice scoring, comma-separated: loglik (the option letter's log-likelihood), cloze (each "
                "option's text after the question: acc and character-normalised acc_norm), circular (letter "
                "log-likelihood under every rotation of the options; right only if all rotations are), generate "
                "(answer read from generated text)."})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "Generation budget; default per benchmark (16 multiple choice, 512 IFEval, 256 capabilities)."})
    engine: str = field(default="auto", metadata={
        "help": "Generation engine: auto (the ONNX Runtime engine when an export of --model exists, else PyTorch), "
                "torch, or onnx; log-likelihood then runs on PyTorch. onnx-all scores log-likelihood on the export "
                "too: use it for a quantised variant (--onnx_dir EXPORT/int8), whose weights PyTorch does not have.",
        "choices": ["auto", "torch", "onnx", "onnx-all"]})
    onnx_dir: str | None = field(default=None, metadata={
        "help": "ONNX export folder to generate with (default: the cached export of --model, or RUN/onnx)."})
    threads: int | None = field(default=None, metadata={
        "help": "ONNX Runtime threads (default: $BALANCEDBIO_ORT_THREADS or all cores)."})
    batch_tokens: int = field(default=4096, metadata={"help": "Padded tokens per forward batch (memory vs speed)."})
    out: str | None = field(default=None, metadata={
        "help": "Output folder for report.json, report.md, chart.png, predictions.jsonl. Default: runs/eval/<model>-<benchmark>-<time>."})
    compare: list[str] = field(default_factory=list, metadata={
        "help": "Instead of evaluating, compare these report folders (or report.json files) side by side; with two "
                "reports of the same items, also their paired difference B - A per metric (interval, McNemar p)."})

    def __post_init__(self) -> None:
        if not self.compare and self.benchmark is None:
            raise ValueError("--benchmark is required (or --compare REPORT ...); see --help for the list")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"--limit must be a positive number of items, got {self.limit}")
        bad = set(self.mode_list) - {"loglik", "cloze", "circular", "generate"}
        if bad or not self.mode_list:
            raise ValueError(f"--modes takes a comma-separated subset of loglik,cloze,circular,generate; got {self.modes!r}")
        if self.data and self.sample:
            raise ValueError("--data and --sample both name the data; pass only one")
        if self.batch_tokens < 64:
            raise ValueError(f"--batch_tokens {self.batch_tokens} is too small to hold one question; use 1024 or more")

    @property
    def mode_list(self) -> list[str]:
        return [m.strip() for m in self.modes.split(",") if m.strip()]


def main(argv: list[str] | None = None) -> int:
    config = parse_config(EvalConfig, argv, __doc__.split("\n")[0])

    from training.evaluate.report import EvalReport, compare

    if config.compare:
        from training.evaluate.stats import ItemMismatchError

        out = Path(config.out) if config.out else None
        try:
            print(compare([Path(p) for p in config.compare], out, seed=config.seed))
        except (ItemMismatchError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if out is not None:
            print(f"wrote {out}/comparison.md, comparison.png" + (", comparison.json" if len(config.compare) == 2 else ""))
        return 0

    from training.evaluate.benchmarks import BenchmarkFileError
    from training.evaluate.engines import load_for_eval
    from training.evaluate.runner import default_data, read_ids, run_benchmark
    from training.models import ModelUnavailableError

    out = Path(config.out or f"runs/eval/{Path(config.model).name}-{config.benchmark}-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        data = config.data or default_data(config.benchmark, sample=config.sample)
        lm = load_for_eval(config.model, config.engine, config.onnx_dir, config.threads, config.batch_tokens)
        result = run_benchmark(lm, config.benchmark, data, config.limit, config.seed, config.mode_list,
                               config.max_new_tokens, predictions_path=out / "predictions.jsonl",
                               ids=read_ids(config.ids) if config.ids else None, label=config.label)
    except (ModelUnavailableError, BenchmarkFileError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report = EvalReport(model=config.model, seed=config.seed, limit=config.limit, results=[result],
                        engine=getattr(lm, "engine", "torch"))
    report.write(out)
    print(report.markdown())
    print(f"wrote {out}/report.json, report.md, chart.png, predictions.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
