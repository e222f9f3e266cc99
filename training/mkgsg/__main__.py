"""`python -m training.mkgsg --n 2000 --seed 0 --out DIR`: knowledge-grounded synthetic data."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from training.cli import parse_config
from training.mkgsg.config import MKGSGConfig


def main(argv: list[str] | None = None) -> int:
    config = parse_config(MKGSGConfig, argv, __doc__.split("\n")[0])

    from clinical.knowledge import get_knowledge_base
    from training.mkgsg.pipeline import generate, stats, write

    kb = get_knowledge_base()
    started = time.perf_counter()
    kb.preload()
    loaded = time.perf_counter()
    data = generate(config, kb)
    generated = time.perf_counter()
    paths = write(data, config, Path(config.out))
    n = len(data.records)
    timing = {"knowledge_base_load_s": round(loaded - started, 1), "generation_s": round(generated - loaded, 1),
              "records": n, "records_per_minute": round(n / max(generated - loaded, 1e-9) * 60)}
    # Timing varies run to run, so it lives apart from the byte-identical data files.
    (Path(config.out) / "timing.json").write_text(json.dumps(timing, indent=2) + "\n")
    summary = stats(data, config)
    print(f"wrote {n} records {summary['splits']} and {sum(len(p) for p in data.pairs.values())} preference pairs to {config.out}")
    print(f"knowledge base loaded in {timing['knowledge_base_load_s']} s; generated {n} validated records in "
          f"{timing['generation_s']} s ({timing['records_per_minute']} per minute)")
    print(f"data card: {paths['card']}")
    short = [c for c, t in config.targets().items() if sum(v for (cap, _), v in data.kept.items() if cap == c) < t]
    if short:
        print(f"warning: fewer records than asked for {short}; see the rejections in the data card", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
