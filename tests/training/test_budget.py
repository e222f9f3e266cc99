"""The SFT/GRPO budget callback: what each clock counts, and what travels in a checkpoint."""

import time

import pytest

from training.config import RunConfig
from training.trainers import WallClockBudget


def _spent_while_sleeping(clock: str, seconds: float = 0.3) -> float:
    budget = WallClockBudget(1.0, clock=clock)
    budget.on_train_begin(None, None, None)
    time.sleep(seconds)
    return budget._tick()


def test_cpu_clock_does_not_count_time_the_process_waits():
    # A neighbour's job holding the cores looks, to this process, like waiting: the CPU clock
    # must not spend the budget on it, the wall clock must.
    assert _spent_while_sleeping("cpu") < 0.1
    assert _spent_while_sleeping("wall") >= 0.3


def test_cpu_clock_counts_work_done():
    budget = WallClockBudget(1.0, clock="cpu")
    budget.on_train_begin(None, None, None)
    start = time.process_time()
    while time.process_time() - start < 0.4:
        pass
    assert budget._tick() > 0.1  # 0.4 CPU s over at most a few threads


@pytest.mark.parametrize("clock", ["cpu", "wall"])
def test_budget_stops_training_once_spent_and_keeps_its_clock_in_the_checkpoint(clock):
    from transformers import TrainerControl, TrainerState

    budget = WallClockBudget(1.0, spent_s=59.99, clock=clock)
    budget.on_train_begin(None, None, None)
    while not budget.on_step_end(None, TrainerState(global_step=7), TrainerControl()).should_training_stop:
        pass
    assert budget.stopped_at == 7 and budget.summary()["clock"] == clock
    state = budget.state()
    assert state["args"] == {"budget_minutes": 1.0, "clock": clock} and state["attributes"]["spent_s"] >= 60


@pytest.mark.parametrize("field, value, message", [
    ("budget_clock", "gpu", "--budget_clock 'gpu': use one of cpu, wall"),
])
def test_config_refuses_an_unknown_budget_clock(field, value, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(**{field: value})


def test_budget_refuses_an_unknown_clock():
    with pytest.raises(ValueError, match="clock 'process': use one of cpu, wall"):
        WallClockBudget(1.0, clock="process")
