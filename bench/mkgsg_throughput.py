"""MKGSG throughput: validated records per minute, after the knowledge base is loaded.

    .venv/bin/python bench/mkgsg_throughput.py [--n 2000]

Prints the knowledge-base load time apart from generation, and the rate against the issue's
target of 2,000 validated records a minute, as a ratio measured in this one run.
"""

from __future__ import annotations

import argparse
import time

from clinical.knowledge import get_knowledge_base
from training.mkgsg.config import MKGSGConfig
from training.mkgsg.pipeline import generate

TARGET_PER_MINUTE = 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    kb = get_knowledge_base()
    started = time.perf_counter()
    kb.preload()
    loaded = time.perf_counter()
    data = generate(MKGSGConfig(n=args.n, seed=args.seed), kb, progress=False)
    done = time.perf_counter()
    n = len(data.records)
    rate = n / (done - loaded) * 60
    attempts = sum(data.attempts.values())
    print(f"knowledge base load: {loaded - started:.1f} s")
    print(f"generation: {n} validated records from {attempts} attempts in {done - loaded:.1f} s")
    print(f"rate: {rate:,.0f} records/minute = {rate / TARGET_PER_MINUTE:.2f} x the 2,000/minute target")
    print(f"end to end including the load: {n / (done - started) * 60:,.0f} records/minute")


if __name__ == "__main__":
    main()
