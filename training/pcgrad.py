"""Gradient surgery between capabilities (PCGrad, Yu et al. 2020), as a pure function.

Each capability's policy gradient is projected off the others' wherever two conflict (negative
dot product): g_i -= (g_i . g_j / |g_j|^2) g_j. Projections use the *original* g_j (as in the
paper), in a fixed order so a run is reproducible. The cosines before and after are returned so
the trainer can log whether capabilities really interfere.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Surgery:
    projected: list[torch.Tensor]
    cos_before: dict[tuple[int, int], float]
    cos_after: dict[tuple[int, int], float]
    conflicts: int


def pairwise_cosines(grads: list[torch.Tensor]) -> dict[tuple[int, int], float]:
    norms = [g.norm() for g in grads]
    out = {}
    for i in range(len(grads)):
        for j in range(i + 1, len(grads)):
            denom = (norms[i] * norms[j]).item()
            out[(i, j)] = float(torch.dot(grads[i], grads[j]).item() / denom) if denom > 0 else 0.0
    return out


def project_conflicting(grads: list[torch.Tensor]) -> Surgery:
    """PCGrad over flat gradient vectors; returns projected copies (inputs are not modified)."""
    if not grads:
        raise ValueError("PCGrad needs at least one gradient")
    before = pairwise_cosines(grads)
    squared = [torch.dot(g, g) for g in grads]
    projected, conflicts = [], 0
    for i, g in enumerate(grads):
        p = g.clone()
        for j, other in enumerate(grads):
            if i == j or squared[j] == 0:
                continue
            dot = torch.dot(p, other)
            if dot < 0:
                p -= (dot / squared[j]) * other
                conflicts += 1
        projected.append(p)
    return Surgery(projected, before, pairwise_cosines(projected), conflicts)
