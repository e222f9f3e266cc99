"""What SFT trains on: each capability's records as often as --sft_passes says."""

from __future__ import annotations

from collections import Counter

import pytest

from training.records import load_records
from training.sft import repeated_by_capability

FIXTURE = "tests/data/capabilities_fixture.jsonl"  # two records per capability

PASSES = [
    # name, --sft_passes, expected records per capability
    ("once-by-default", {}, {"knowledge": 2, "reasoning": 2, "instruction": 2, "integration": 2}),
    ("whole-passes-repeat", {"knowledge": 3, "reasoning": 2},
     {"knowledge": 6, "reasoning": 4, "instruction": 2, "integration": 2}),
    ("a-fraction-keeps-a-share", {"integration": 0.5}, {"knowledge": 2, "reasoning": 2, "instruction": 2, "integration": 1}),
    ("whole-and-fraction", {"knowledge": 1.5}, {"knowledge": 3, "reasoning": 2, "instruction": 2, "integration": 2}),
    ("zero-drops-a-capability", {"instruction": 0}, {"knowledge": 2, "reasoning": 2, "integration": 2}),
]


@pytest.mark.parametrize("passes, expected", [c[1:] for c in PASSES], ids=[c[0] for c in PASSES])
def test_records_occur_as_often_as_their_capability_passes(passes, expected):
    records = load_records(FIXTURE)
    out = repeated_by_capability(records, passes, seed=0)
    assert Counter(r.capability.value for r in out) == expected
    # Repetition copies the capability's records; it never takes another capability's.
    assert {r.id for r in out} <= {r.id for r in records}
    for capability, count in expected.items():
        ids = Counter(r.id for r in out if r.capability.value == capability)
        assert max(ids.values()) - min(ids.values()) <= 1, f"{capability}: a record repeated more than its peers {ids}"


def test_the_fractional_share_is_the_seeds():
    records = load_records(FIXTURE)
    picks = {seed: [r.id for r in repeated_by_capability(records, {"integration": 0.5}, seed)] for seed in range(8)}
    assert picks[0] == [r.id for r in repeated_by_capability(records, {"integration": 0.5}, 0)]
    assert len({tuple(p) for p in picks.values()}) > 1, "every seed kept the same integration record"
