"""Capability-aware GRPO on TRL's real trainer, with a 2-layer random model."""

from __future__ import annotations

import pytest
import torch

from training.evaluate.runner import SAMPLES
from training.grpo import CAPABILITIES, CapabilityGRPOConfig, CapabilityGRPOTrainer, _flat_grad, _select_rows
from training.records import load_records
from training.rewards.hybrid import reward_functions
from training.stages import grpo_dataset, tiny_model


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grpo")
    model = tiny_model(folder / "tiny")
    records = load_records(SAMPLES / "capabilities_fixture.jsonl")
    args = CapabilityGRPOConfig(output_dir=str(folder / "out"), bf16=False, report_to=[], use_cpu=True,
                                per_device_train_batch_size=16, num_generations=2, max_completion_length=8,
                                max_steps=1, shuffle_dataset=False, save_strategy="no", seed=0)
    from transformers import AutoTokenizer

    return CapabilityGRPOTrainer(model=model, reward_funcs=reward_functions(), args=args,
                                 train_dataset=grpo_dataset(records),
                                 processing_class=AutoTokenizer.from_pretrained(model))


def test_rows_carry_their_capability(trainer):
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    present = {CAPABILITIES[i] for i in inputs["capability_index"].tolist()}
    assert present == set(CAPABILITIES)


def test_capability_losses_add_up_to_the_plain_loss(trainer):
    # The claim PCGrad rests on: with TRL's dapo normalisation the per-capability losses sum to the
    # whole batch's loss, so their gradients sum to the plain gradient before any projection.
    model = trainer.model
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    torch.manual_seed(0)
    inputs["advantages"] = torch.randn_like(inputs["advantages"])  # a random model earns no reward signal
    params = [p for p in model.parameters() if p.requires_grad]
    model.zero_grad()
    trainer.compute_loss(model, inputs).backward()
    plain = _flat_grad(params).clone()
    model.zero_grad()
    widths = []
    for c in inputs["capability_index"].unique():
        rows = (inputs["capability_index"] == c).nonzero(as_tuple=True)[0]
        sub = _select_rows(inputs, rows)
        widths.append(sub["prompt_ids"].shape[1])
        trainer.compute_loss(model, sub).backward()
    # The short capabilities' rows lose the padding that only the long prompts needed, and the
    # gradients still add up: rotary positions make the cut invisible to the loss.
    assert min(widths) < inputs["prompt_ids"].shape[1] == max(widths)
    assert plain.norm() > 0
    assert torch.allclose(_flat_grad(params), plain, atol=1e-6, rtol=1e-4)
    model.zero_grad()


@pytest.mark.parametrize("rows_per_backward", [1, 3], ids=["one-row-a-pass", "three-rows-a-pass"])
def test_a_capabilitys_gradient_is_the_same_in_any_number_of_passes(trainer, rows_per_backward):
    # The memory cap (a few rows a pass) must not change the step: the gradient the optimizer sees
    # equals the one taken with each capability's rows in a single pass.
    model = trainer.model
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    torch.manual_seed(1)
    inputs["advantages"] = torch.randn_like(inputs["advantages"])
    params = [p for p in model.parameters() if p.requires_grad]
    steps = {}
    for rows in (rows_per_backward, inputs["completion_ids"].shape[0]):
        trainer.args.rows_per_backward = rows
        model.zero_grad()
        loss = trainer._pcgrad_backward(model, inputs)
        steps[rows] = (_flat_grad(params).clone(), float(loss))
    trainer.args.rows_per_backward = 1
    model.zero_grad()
    (split, split_loss), (whole, whole_loss) = steps.values()
    assert whole.norm() > 0 and split_loss == pytest.approx(whole_loss, rel=1e-4)
    assert torch.allclose(split, whole, atol=1e-6, rtol=1e-4)


def test_rewards_are_mixed_per_capability_and_weights_logged(trainer):
    trainer.model.train()  # as in training_step: rewards update the running state only in training
    trainer._metrics["train"].clear()
    trainer._buffered_inputs = None  # force a fresh generation instead of the buffered batch
    trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    logged = trainer._metrics["train"]
    for capability in CAPABILITIES:
        assert any(k.startswith(f"weights/{capability}/") for k in logged)
        assert any(k.startswith(f"components/{capability}/") for k in logged)
    assert "weights/knowledge/reasoning" not in logged  # not routed to knowledge


@pytest.mark.parametrize("kwargs, message", [
    ({"orthogonality": "pcgrad", "loss_type": "grpo"}, "loss_type='dapo'"),
    ({"weights": "learned"}, "'static' or 'dynamic'"),
    ({"orthogonality": "mgda"}, "'none' or 'pcgrad'"),
    ({"rows_per_backward": 0}, "at least 1"),
], ids=["pcgrad-needs-dapo", "unknown-weights", "unknown-orthogonality", "no-rows-a-pass"])
def test_config_errors_say_how_to_fix(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        CapabilityGRPOConfig(output_dir=str(tmp_path), bf16=False, report_to=[], **kwargs)
