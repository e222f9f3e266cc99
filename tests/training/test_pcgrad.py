"""PCGrad between capability gradients, on vectors whose geometry is known."""

from __future__ import annotations

import pytest
import torch

from training.pcgrad import project_conflicting

CASES = [
    ("orthogonal-untouched", [[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]], 0),
    ("aligned-untouched", [[1.0, 1.0], [2.0, 0.5]], [[1.0, 1.0], [2.0, 0.5]], 0),
    ("opposed-both-projected", [[1.0, 1.0], [-1.0, 0.0]], [[0.0, 1.0], [-0.5, 0.5]], 2),
    ("zero-gradient-ignored", [[0.0, 0.0], [1.0, -1.0]], [[0.0, 0.0], [1.0, -1.0]], 0),
]


@pytest.mark.parametrize("name, grads, expected, conflicts", CASES, ids=[c[0] for c in CASES])
def test_projection(name, grads, expected, conflicts):
    surgery = project_conflicting([torch.tensor(g) for g in grads])
    for got, want in zip(surgery.projected, expected):
        assert got.tolist() == pytest.approx(want)
    assert surgery.conflicts == conflicts


def test_conflicting_pair_is_no_longer_conflicting_and_cosines_are_reported():
    torch.manual_seed(0)
    a = torch.randn(1000)
    b = -0.8 * a + 0.2 * torch.randn(1000)
    a_before, b_before = a.clone(), b.clone()
    surgery = project_conflicting([a, b])
    assert surgery.cos_before[(0, 1)] < -0.9
    assert surgery.cos_after[(0, 1)] >= -1e-6
    # The inputs are untouched (projected copies only), and the copies did change.
    assert torch.equal(a, a_before) and torch.equal(b, b_before)
    assert not torch.equal(surgery.projected[0], a) and not torch.equal(surgery.projected[1], b)


def test_needs_a_gradient():
    with pytest.raises(ValueError, match="at least one"):
        project_conflicting([])
