"""Draw the mutation check's sample and summarise its results per target (docs/mutation.md).

    python scripts/mutation_sample.py draw      # prints the mutant names to pass to `mutmut run`
    python scripts/mutation_sample.py report    # per target: killed, timeout, survived, no tests, score

Reads mutmut's work folder (`mutants/*.meta`, written by `mutmut run`). A target whose mutants are too
many to run in the time at hand is sampled uniformly at random without replacement, from its sorted
mutant names with a fixed seed, so that the same sample is drawn again from the same source:
`random.Random(15).sample(names, drawn)[:used]`. `random.sample` returns its picks in selection order,
so any prefix of a draw is itself a uniform random sample; a target whose run had to be cut short uses
a prefix of its first draw. The score of a sample carries its 95% Wilson interval. A target in HELD_OUT
also gets a second sample, drawn from the mutants outside the first, to score tests that were written
against the first sample's survivors on mutants they were not written against.
"""

from __future__ import annotations

import json
import random
import sys
from collections import Counter
from pathlib import Path

from scipy.stats import binomtest

SEED = 15  # issue 15
# target -> (path prefix of its mutated files, mutants drawn (None: all, in a seeded random order), prefix used)
TARGETS = {
    "training/rewards": ("training/rewards/", 150, 150),
    "clinical/guardrails": ("clinical/guardrails/", 150, 150),
    "training/evaluate/multiple_choice.py": ("training/evaluate/multiple_choice.py", None, 100),
}
# target -> size of a second sample, drawn after the tests were written against the first one's
# survivors, from the mutants not in the first: its score is the one not fitted to the tests.
HELD_OUT = {"clinical/guardrails": 300}
HELD_OUT_SEED = SEED + 1
# mutmut 3.8's exit codes (mutmut.stats.status_by_exit_code), folded into the report's four outcomes
OUTCOME = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests",
           36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", None: "not run"}


def mutants_by_target(root: Path = Path("mutants")) -> dict[str, dict[str, int | None]]:
    found: dict[str, dict[str, int | None]] = {t: {} for t in TARGETS}
    for meta in sorted(root.rglob("*.py.meta")):
        source = meta.relative_to(root).as_posix()[: -len(".meta")]
        for target, (prefix, _, _) in TARGETS.items():
            if source.startswith(prefix):
                found[target].update(json.loads(meta.read_text())["exit_code_by_key"])
    return found


def sample(target: str, names: list[str]) -> list[str]:
    _, drawn, used = TARGETS[target]
    names = sorted(names)
    return random.Random(SEED).sample(names, drawn or len(names))[:used]


def held_out(target: str, names: list[str]) -> list[str]:
    if target not in HELD_OUT:
        return []
    rest = sorted(set(names) - set(sample(target, names)))
    return random.Random(HELD_OUT_SEED).sample(rest, HELD_OUT[target])


def draw() -> list[str]:
    return [n for target, codes in mutants_by_target().items()
            for n in sample(target, list(codes)) + held_out(target, list(codes))]


def report() -> str:
    rows = ["| target | mutants | run | killed | timeout | survived | no tests | score (killed+timeout)/run | 95% Wilson |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    by_target = mutants_by_target()  # reads every .meta file: once
    samples = [(target, codes, sample(target, list(codes))) for target, codes in by_target.items()]
    samples += [(f"{target} (held out)", codes, held_out(target, list(codes)))
                for target, codes in by_target.items() if target in HELD_OUT]
    for target, codes, drawn in samples:
        counts = Counter(OUTCOME.get(codes[n], f"other({codes[n]})") for n in drawn)
        run = len(drawn) - counts["not run"]
        caught = counts["killed"] + counts["timeout"]
        if run:
            ci = binomtest(caught, run).proportion_ci(method="wilson")
            score, interval = f"{caught}/{run} = {caught / run:.1%}", f"{ci.low:.1%} to {ci.high:.1%}"
        else:
            score, interval = "-", "-"
        others = {k: v for k, v in counts.items() if k not in ("killed", "timeout", "survived", "no tests", "not run")}
        rows.append(f"| {target} | {len(codes)} | {run} | {counts['killed']} | {counts['timeout']} | "
                    f"{counts['survived']} | {counts['no tests']} | {score} | {interval} |"
                    + (f" other: {others}" if others else ""))
    return "\n".join(rows)


def not_killed() -> list[str]:
    out = []
    for target, codes in mutants_by_target().items():
        for n in sample(target, list(codes)) + held_out(target, list(codes)):
            if OUTCOME.get(codes[n]) in ("survived", "no tests", "not run"):
                out.append(f"{OUTCOME.get(codes[n])}\t{n}")
    return out


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "report"
    if command == "draw":
        print("\n".join(draw()))
    elif command == "report":
        print(report())
    elif command == "survivors":
        print("\n".join(not_killed()))
    else:
        sys.exit(f"unknown command {command!r}; use draw, report or survivors")
