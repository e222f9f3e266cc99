"""Per-capability normalisation and dynamic hybrid weights."""

from __future__ import annotations

import pytest

from training.rewards.weights import CapabilityNormalizer, HybridWeights, RunningStat


def test_static_weights_never_move():
    weights = HybridWeights(mode="static")
    before = {c: dict(w) for c, w in weights.weights.items()}
    weights.observe("reasoning", "reasoning", [0.0, 0.0])
    weights.step()
    assert weights.weights == before


@pytest.mark.parametrize("capability, lagging, keeping", [
    ("reasoning", "reasoning", "answer"),
    ("integration", "safety", "constraints"),
    ("instruction", "constraints", "model"),
], ids=["reasoning-path-lags", "integration-safety-lags", "instruction-constraints-lag"])
def test_dynamic_weights_move_towards_the_lagging_component(capability, lagging, keeping):
    weights = HybridWeights(mode="dynamic")
    start = dict(weights.weights[capability])
    for _ in range(5):
        weights.observe(capability, lagging, [0.0, 0.1])
        weights.observe(capability, keeping, [1.0, 1.0])
        weights.step()
    now = weights.weights[capability]
    assert now[lagging] > start[lagging]
    assert now[keeping] < start[keeping]
    assert sum(now.values()) == pytest.approx(1.0)
    assert min(now.values()) >= weights.floor - 1e-9


def test_only_available_components_get_weight():
    weights = HybridWeights(components=("answer", "reasoning", "constraints", "safety"))
    assert all("model" not in w for w in weights.weights.values())
    assert weights.weights["knowledge"] == {"answer": 1.0}


def test_state_round_trips_for_resume():
    a = HybridWeights()
    a.observe("knowledge", "answer", [0.2, 0.4])
    a.step()
    b = HybridWeights()
    b.load_state_dict(a.state_dict())
    assert b.weights == a.weights and b.lag("knowledge", "answer") == a.lag("knowledge", "answer")


def test_normalizer_puts_capabilities_of_different_spread_on_one_scale():
    norm = CapabilityNormalizer(std_floor=1e-6)
    wide, narrow = [0.0, 1.0, 0.0, 1.0], [0.45, 0.55, 0.45, 0.55]
    norm.update("knowledge", "model", wide)
    norm.update("reasoning", "model", narrow)
    z_wide = [norm.normalize("knowledge", "model", v) for v in wide]
    z_narrow = [norm.normalize("reasoning", "model", v) for v in narrow]
    assert z_wide == pytest.approx(z_narrow)


def test_constant_component_is_not_blown_up():
    norm = CapabilityNormalizer(std_floor=0.1)
    norm.update("integration", "safety", [1.0, 1.0, 1.0])
    assert norm.normalize("integration", "safety", 1.0) == 0.0
    assert abs(norm.normalize("integration", "safety", 0.0)) <= 10.0


def test_running_stat_tracks_a_shift():
    stat = RunningStat(momentum=0.5)
    stat.update([0.0, 0.0])
    stat.update([1.0, 1.0])
    assert stat.mean == pytest.approx(0.5) and stat.std > 0


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "adaptive"}, "'static' or 'dynamic'"),
    ({"rate": 0.0}, "must lie in"),
    ({"rate": 1.5}, "must lie in"),
    ({"floor": 0.3}, "lower it"),
], ids=["unknown-mode", "zero-rate", "rate-above-one", "floor-too-high"])
def test_bad_settings_say_how_to_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HybridWeights(**kwargs)


def test_lag_is_the_shortfall_below_the_components_target_and_zero_before_any_score():
    weights = HybridWeights(targets={"answer": 0.8})
    assert weights.lag("knowledge", "answer") == 0.0  # nothing observed yet: no lag, whatever the target
    weights.observe("knowledge", "answer", [0.5])
    weights.observe("knowledge", "reasoning", [0.25])
    assert weights.lag("knowledge", "answer") == pytest.approx(0.8 - 0.5)
    assert weights.lag("knowledge", "reasoning") == pytest.approx(1.0 - 0.25)  # no target given: 1.0
    weights.observe("reasoning", "answer", [0.9])
    assert weights.lag("reasoning", "answer") == 0.0  # above its target: no negative lag


def test_components_that_all_meet_their_targets_keep_the_base_mix():
    # No lag anywhere: every component's pull is its base weight x the slack, so the mix stays the base one.
    weights = HybridWeights(targets={"answer": 0.5, "reasoning": 0.5, "model": 0.5})
    start = dict(weights.weights["reasoning"])
    for component in start:
        weights.observe("reasoning", component, [1.0])
    weights.step()
    assert weights.weights["reasoning"] == pytest.approx(start)
    assert start == pytest.approx({"answer": 1.0 / 2.0, "reasoning": 0.7 / 2.0, "model": 0.3 / 2.0})


def test_running_stat_is_the_weighted_mixture_of_the_old_and_the_new_batch():
    stat = RunningStat(momentum=0.5)
    stat.update([0.0, 2.0])  # the first batch sets mean 1, variance 1
    assert (stat.mean, stat.var, stat.count) == (1.0, 1.0, 2)
    stat.update([4.0, 6.0])  # batch mean 5, variance 1
    # Mixture of the two, half each: mean 3; variance 0.5*1 + 0.5*1 + 0.5*0.5*(5-1)^2 = 5.
    assert (stat.mean, stat.var, stat.std, stat.count) == (3.0, 5.0, pytest.approx(5 ** 0.5), 4)
    stat.update([])  # an empty batch changes nothing
    assert (stat.mean, stat.var, stat.count) == (3.0, 5.0, 4)


def test_without_slack_and_with_nothing_lagging_the_weights_move_towards_an_even_mix():
    weights = HybridWeights(slack=0.0, rate=0.5, targets={"answer": 0.5})
    weights.observe("knowledge", "answer", [1.0])
    weights.observe("knowledge", "model", [1.0])
    weights.step()  # every pull is 0: the desired mix is the even one
    assert weights.weights["knowledge"] == pytest.approx({"answer": 0.5 * (1 / 1.3) + 0.25, "model": 0.5 * (0.3 / 1.3) + 0.25})
