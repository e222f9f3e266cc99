"""Load every source and print what it cost: `python -m clinical.knowledge [source ...]`.

Run one source per process for clean memory figures; in one process, later sources share
modules earlier ones imported (the interactions source needs the drug dictionary loaded first).
"""

import argparse
import os
import sys

from clinical.knowledge import get_knowledge_base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sources", nargs="*", help="icd10, hpo, drugs, interactions (default: all)")
    args = parser.parse_args(argv)
    stats = get_knowledge_base().preload(args.sources or None)
    machine = f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    print(f"{'source':<14}{'seconds':>9}{'RSS delta MiB':>15}   ({machine})")
    for name, s in stats.items():
        rss = "n/a" if s.rss_delta_mb is None else f"{s.rss_delta_mb:.0f}"
        print(f"{name:<14}{s.seconds:>9.2f}{rss:>15}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
