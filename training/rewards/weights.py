"""Per-capability normalisation and dynamic hybrid weights for the capability-aware reward.

Both keep running statistics per (capability, component), so a capability whose components happen
to score on a wider spread (the reward model, say) cannot dominate the mixed signal, and weights
follow what each capability still has to learn rather than a fixed recipe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from training.records import Capability
from training.rewards.hybrid import BASE_WEIGHTS, ROUTING

DEFAULT_TARGETS: dict[str, float] = {"answer": 0.9, "reasoning": 0.8, "constraints": 0.9, "safety": 1.0,
                                     "model": 0.8}


@dataclass
class RunningStat:
    """An exponential moving mean and variance; the first observation sets both."""

    momentum: float = 0.9
    mean: float = 0.0
    var: float = 0.0
    count: int = 0

    def update(self, values: list[float]) -> None:
        if not values:
            return
        batch_mean = sum(values) / len(values)
        batch_var = sum((v - batch_mean) ** 2 for v in values) / len(values)
        if self.count == 0:
            self.mean, self.var = batch_mean, batch_var
        else:
            m = self.momentum
            self.var = m * self.var + (1 - m) * batch_var + m * (1 - m) * (batch_mean - self.mean) ** 2
            self.mean = m * self.mean + (1 - m) * batch_mean
        self.count += len(values)

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var, 0.0))


@dataclass
class CapabilityNormalizer:
    """Standardises each component's scores within a capability with that pair's running statistics.

    The floor on the standard deviation stops a component that is (nearly) constant within a
    capability, e.g. safety when no draft names a forbidden drug, from being blown up into noise.
    """

    momentum: float = 0.9
    std_floor: float = 0.1
    stats: dict[tuple[str, str], RunningStat] = field(default_factory=dict)

    def update(self, capability: str, component: str, values: list[float]) -> None:
        self.stats.setdefault((capability, component), RunningStat(self.momentum)).update(values)

    def normalize(self, capability: str, component: str, value: float) -> float:
        stat = self.stats.get((capability, component))
        if stat is None:
            return value
        return (value - stat.mean) / max(stat.std, self.std_floor)


@dataclass
class HybridWeights:
    """Weights of the reward components inside each capability, summing to 1 per capability.

    `static` keeps BASE_WEIGHTS. `dynamic` moves each capability's weights a step `rate` towards a
    mix proportional to base weight x (how far the component's running score lags its target +
    `slack`), so a component that already meets its target keeps some weight (the slack) but the
    lagging ones get more. A floor keeps every routed component in play.
    """

    mode: str = "dynamic"
    targets: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TARGETS))
    rate: float = 0.3
    slack: float = 0.05
    floor: float = 0.05
    momentum: float = 0.9
    components: tuple[str, ...] | None = None  # restrict to these (e.g. no reward model available)
    running: dict[tuple[str, str], RunningStat] = field(default_factory=dict)
    weights: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in ("static", "dynamic"):
            raise ValueError(f"weights mode {self.mode!r} is not known; use 'static' or 'dynamic'")
        if not 0.0 < self.rate <= 1.0:
            raise ValueError(f"rate {self.rate} must lie in (0, 1]; 0.3 moves weights a third of the way per step")
        for capability in Capability:
            routed = self.routed(capability.value)
            if self.floor * len(routed) >= 1.0:
                raise ValueError(f"floor {self.floor} x {len(routed)} components leaves no room to move; lower it")
            self.weights[capability.value] = _normalized({c: BASE_WEIGHTS[c] for c in routed})

    def routed(self, capability: str) -> tuple[str, ...]:
        routed = ROUTING[Capability(capability)]
        return tuple(c for c in routed if self.components is None or c in self.components)

    def observe(self, capability: str, component: str, scores: list[float]) -> None:
        self.running.setdefault((capability, component), RunningStat(self.momentum)).update(scores)

    def lag(self, capability: str, component: str) -> float:
        stat = self.running.get((capability, component))
        if stat is None or stat.count == 0:
            return 0.0
        return max(0.0, self.targets.get(component, 1.0) - stat.mean)

    def step(self) -> None:
        """Move the weights after a batch has been observed (no-op for static weights)."""
        if self.mode == "static":
            return
        for capability, current in self.weights.items():
            desired = _normalized({c: BASE_WEIGHTS[c] * (self.lag(capability, c) + self.slack) for c in current})
            moved = {c: (1 - self.rate) * current[c] + self.rate * desired[c] for c in current}
            self.weights[capability] = _with_floor(moved, self.floor)

    def state_dict(self) -> dict:
        return {"weights": self.weights,
                "running": {f"{k[0]}/{k[1]}": vars(v) for k, v in self.running.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.weights = {k: dict(v) for k, v in state["weights"].items()}
        self.running = {tuple(k.split("/", 1)): RunningStat(**v) for k, v in state["running"].items()}


def _normalized(values: dict[str, float]) -> dict[str, float]:
    total = sum(values.values())
    if total <= 0:
        return {k: 1.0 / len(values) for k in values}
    return {k: v / total for k, v in values.items()}


def _with_floor(weights: dict[str, float], floor: float) -> dict[str, float]:
    # Raise the ones below the floor, take the difference proportionally from the rest.
    low = {k for k, v in weights.items() if v < floor}
    if not low:
        return _normalized(weights)
    rest = _normalized({k: v for k, v in weights.items() if k not in low})
    spare = 1.0 - floor * len(low)
    return {k: floor if k in low else spare * rest[k] for k in weights}
