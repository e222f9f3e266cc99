"""Capability-aware GRPO: TRL's GRPOTrainer with capability routing, per-capability reward
normalisation, dynamic hybrid weights and PCGrad between capabilities.

What changes against plain TRL GRPO, and where:
- `_calculate_rewards`: TRL computes every component per row (None where a component is not
  routed to the row's capability). We then standardise each component within its capability and
  mix the components with that capability's current weights. The mixed contributions go back to
  TRL in the same (rows x components) shape with TRL's own weights set to 1, so TRL's group
  advantage and logging run unchanged. Raw component means are logged as `components/<cap>/<name>`
  and weights as `weights/<cap>/<name>`; TRL's `rewards/<name>/mean` then means the weighted,
  normalised contribution.
- `training_step` (orthogonality=pcgrad): the policy loss of each capability's rows is
  back-propagated separately, the flat gradients are projected with PCGrad, and their sum becomes
  the step's gradient. TRL's `dapo` loss normalises by the token count of the whole batch, so the
  per-capability losses add up to exactly the plain loss: with no conflict the step is the plain
  step. Cosines before and after projection are logged as `pcgrad/cos_before/<a>~<b>`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate.utils import gather_object
from trl import GRPOConfig, GRPOTrainer

from training.pcgrad import project_conflicting
from training.records import Capability
from training.rewards.weights import CapabilityNormalizer, HybridWeights

CAPABILITIES = tuple(c.value for c in Capability)
STATE_FILE = "capability_state.json"


@dataclass
class CapabilityGRPOConfig(GRPOConfig):
    """GRPOConfig plus the capability-aware switches (the ablation flips these)."""

    weights: str = field(default="dynamic", metadata={
        "help": "Hybrid weights inside each capability: 'static' (fixed base mix) or 'dynamic' (move towards "
                "components that lag their targets)."})
    orthogonality: str = field(default="pcgrad", metadata={
        "help": "'pcgrad' projects conflicting per-capability gradients; 'none' takes TRL's single backward pass."})
    weight_rate: float = field(default=0.3, metadata={"help": "How far dynamic weights move per step, in (0, 1]."})
    weight_floor: float = field(default=0.05, metadata={"help": "Minimum weight of every routed component."})
    rows_per_backward: int = field(default=1, metadata={
        "help": "Completions per forward/backward pass inside one capability's PCGrad gradient. Their gradients "
                "accumulate, so the gradient is the same at any value; smaller holds fewer activations (about 1 GB "
                "per 600-token row of the 135M model on CPU), larger uses a GPU better."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weights not in ("static", "dynamic"):
            raise ValueError(f"--weights {self.weights!r} is not known; use 'static' or 'dynamic'")
        if self.orthogonality not in ("none", "pcgrad"):
            raise ValueError(f"--orthogonality {self.orthogonality!r} is not known; use 'none' or 'pcgrad'")
        if self.rows_per_backward < 1:
            raise ValueError(f"--rows_per_backward {self.rows_per_backward} must be at least 1")
        if self.orthogonality == "pcgrad" and self.loss_type != "dapo":
            # Only a loss normalised over the whole batch splits into per-capability parts that add up.
            raise ValueError(f"pcgrad needs loss_type='dapo' (got {self.loss_type!r}); set --loss_type dapo")


class CapabilityGRPOTrainer(GRPOTrainer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.hybrid = HybridWeights(mode=self.args.weights, rate=self.args.weight_rate,
                                    floor=self.args.weight_floor, components=tuple(self.reward_func_names))
        self.normalizer = CapabilityNormalizer()
        self.reward_weights = torch.ones(len(self.reward_funcs), dtype=torch.float32)

    # ---- rewards -------------------------------------------------------------------------
    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        output["capability_index"] = torch.tensor([CAPABILITIES.index(x["capability"]) for x in inputs],
                                                  device=output["completion_ids"].device)
        return output

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        raw = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        capabilities = gather_object([x["capability"] for x in inputs])
        mode = "train" if self.model.training else "eval"
        mixed = torch.full_like(raw, math.nan)
        for capability in sorted(set(capabilities)):
            rows = torch.tensor([i for i, c in enumerate(capabilities) if c == capability], device=raw.device)
            weights = self.hybrid.weights[capability]
            for j, name in enumerate(self.reward_func_names):
                values = raw[rows, j]
                valid = ~torch.isnan(values)
                if name not in weights or not valid.any():
                    continue
                scores = values[valid].tolist()
                if mode == "train":
                    self.normalizer.update(capability, name, scores)
                    self.hybrid.observe(capability, name, scores)
                self._metrics[mode][f"components/{capability}/{name}"].append(sum(scores) / len(scores))
                normalized = [self.normalizer.normalize(capability, name, s) for s in scores]
                mixed[rows[valid], j] = weights[name] * torch.tensor(normalized, device=raw.device)
        if mode == "train":
            for capability, weights in self.hybrid.weights.items():
                for name, w in weights.items():
                    self._metrics[mode][f"weights/{capability}/{name}"].append(w)
            self.hybrid.step()
        return mixed

    # ---- gradient surgery -----------------------------------------------------------------
    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.args.orthogonality == "none":
            return super().training_step(model, inputs, num_items_in_batch)
        started = time.perf_counter()
        model.train()
        if hasattr(self.optimizer, "train") and callable(self.optimizer.train):
            self.optimizer.train()
        inputs = self._prepare_inputs(inputs)
        with self.compute_loss_context_manager():
            loss = self._pcgrad_backward(model, inputs)
        # GRPOTrainer.training_step's bookkeeping, which we bypass above.
        self._step += 1
        self._current_train_step_time += time.perf_counter() - started
        if self._step % self.current_gradient_accumulation_steps == 0:
            self._metrics["train"]["step_time"].append(self._current_train_step_time)
            self._current_train_step_time = 0.0
        return loss

    def _capabilities_present(self, index: torch.Tensor) -> list[int]:
        counts = torch.bincount(index, minlength=len(CAPABILITIES))
        if self.accelerator.num_processes > 1:
            # Every rank must run the same number of backward passes, or collectives would hang.
            counts = self.accelerator.reduce(counts, reduction="sum")
        return [c for c in range(len(CAPABILITIES)) if counts[c] > 0]

    def _pcgrad_backward(self, model, inputs) -> torch.Tensor:
        params = [p for p in model.parameters() if p.requires_grad]
        accumulated = [p.grad for p in params]  # earlier micro-batches of this optimizer step
        index = inputs["capability_index"]
        grads, names, total = [], [], torch.zeros((), device=index.device)
        for c in self._capabilities_present(index):
            rows = (index == c).nonzero(as_tuple=True)[0]
            local = rows.numel() > 0
            for p in params:
                p.grad = None
            # One capability's gradient, a few rows a pass: dapo divides every pass by the whole batch's
            # token count, so the passes' gradients add up to the capability's, and each pass holds the
            # activations of its own rows only (the long integration rows dominated the stage's memory).
            chunks = rows.split(self.args.rows_per_backward) if local else [torch.tensor([0], device=index.device)]
            with self.accelerator.no_sync(model):
                for chunk in chunks:
                    loss = self.compute_loss(model, _select_rows(inputs, chunk))
                    if not local:
                        loss = loss * 0.0  # keeps this rank in step with ranks that hold the capability
                    self.accelerator.backward(loss)
                    total = total + loss.detach()
            grads.append(_flat_grad(params))
            names.append(CAPABILITIES[c])
        surgery = project_conflicting(grads)
        combined = torch.stack(surgery.projected).sum(dim=0)
        if self.accelerator.num_processes > 1:
            combined = self.accelerator.reduce(combined, reduction="mean")
        _write_grad(params, combined, accumulated)
        self._log_surgery(names, surgery)
        return total

    def _log_surgery(self, names: list[str], surgery) -> None:
        metrics = self._metrics["train"]
        metrics["pcgrad/conflicts"].append(float(surgery.conflicts))
        for (i, j), cos in surgery.cos_before.items():
            metrics[f"pcgrad/cos_before/{names[i]}~{names[j]}"].append(cos)
            metrics[f"pcgrad/cos_after/{names[i]}~{names[j]}"].append(surgery.cos_after[(i, j)])

    # ---- checkpoints carry the running statistics, so a resumed run continues the same mix ------
    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial)) / f"checkpoint-{self.state.global_step}"
            state = {"hybrid": self.hybrid.state_dict(),
                     "normalizer": {f"{k[0]}/{k[1]}": vars(v) for k, v in self.normalizer.stats.items()}}
            (folder / STATE_FILE).write_text(json.dumps(state, indent=1))

    def load_capability_state(self, checkpoint: str | Path) -> bool:
        path = Path(checkpoint) / STATE_FILE
        if not path.exists():
            return False
        from training.rewards.weights import RunningStat

        state = json.loads(path.read_text())
        self.hybrid.load_state_dict(state["hybrid"])
        self.normalizer.stats = {tuple(k.split("/", 1)): RunningStat(**v) for k, v in state["normalizer"].items()}
        return True


def _select_rows(inputs: dict, rows: torch.Tensor) -> dict:
    """One capability's rows, with the left padding they all share cut off.

    TRL pads every prompt of the batch to the longest one, and the integration cases are three
    times longer than the rest, so most of a knowledge row is padding. Cutting the shared padding
    shifts each row's positions by the same constant, which rotary position embeddings do not see
    (attention depends on position differences only; every model here, Llama and Qwen2, uses
    them), so the losses are unchanged and the short capabilities' passes get much cheaper."""
    size = inputs["completion_ids"].shape[0]
    sub = {k: v.index_select(0, rows) if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == size else v
           for k, v in inputs.items()}
    used = sub["prompt_mask"].any(dim=0).nonzero()
    first = int(used[0]) if used.numel() else 0
    if first > 0:
        sub["prompt_ids"], sub["prompt_mask"] = sub["prompt_ids"][:, first:], sub["prompt_mask"][:, first:]
    return sub


def _flat_grad(params: list[torch.nn.Parameter]) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


def _write_grad(params, flat: torch.Tensor, accumulated) -> None:
    offset = 0
    for p, previous in zip(params, accumulated):
        n = p.numel()
        g = flat[offset:offset + n].view_as(p).to(p.dtype)
        p.grad = g if previous is None else previous + g
        offset += n
