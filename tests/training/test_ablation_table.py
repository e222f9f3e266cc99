"""The ablation table's verdict: a difference smaller than one test record is reported as noise."""

from __future__ import annotations

import pytest

from training.ablation import verdict

VERDICTS = [
    # name, capability-aware mean, plain mean, records per capability, expected phrase
    ("within-one-record-is-noise", 0.073, 0.042, 8, "No difference beyond noise"),
    ("equal-is-noise", 0.097, 0.097, 6, "No difference beyond noise"),
    ("clear-win", 0.40, 0.20, 50, "Capability-aware GRPO beats plain GRPO"),
    ("clear-loss", 0.10, 0.30, 50, "does not beat plain GRPO"),
]


@pytest.mark.parametrize("aware, plain, n, phrase", [v[1:] for v in VERDICTS], ids=[v[0] for v in VERDICTS])
def test_verdict_names_noise_and_real_differences(aware, plain, n, phrase):
    text = verdict(aware, plain, n)
    assert phrase in text and f"{aware:.3f} vs {plain:.3f}" in text
