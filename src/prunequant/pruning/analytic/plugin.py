"""The analytic-threshold method as a TrainPlugin: α/β optimizer group, sparsity penalty, λ controller,
minimum-density projection and α annealing, with controller state in checkpoints."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ...training import TrainPlugin
from .config import AnalyticThresholdConfig
from .controller import SparsityController, clamp_alpha_, hard_sparsity, project_min_density_, snap_to_target_
from .parametrization import AnalyticThreshold


class AnalyticThresholdPlugin(TrainPlugin):
    """Drives the AnalyticThreshold parametrizations in ``items`` ((name, parametrization, raw weight) triples).

    In any training loop: ``loss = task_loss + plugin.loss(model, step)`` and, after each optimizer step,
    ``plugin.on_step_end(model, step)`` (``step`` from 1); put ``plugin.param_groups(model)`` in the optimizer.
    ``total_steps`` (steps of this training phase) sets the setpoint ramp and the α annealing; without it the
    setpoint is the target from the start and α is not annealed.
    """

    name = "analytic_threshold"

    def __init__(self, items: Sequence[tuple[str, AnalyticThreshold, Tensor]], config: AnalyticThresholdConfig,
                 total_steps: int | None = None):
        self.names = [n for n, _, _ in items]
        self.items = [(p, w) for _, p, w in items]
        self.config = config
        self.total_steps = total_steps
        self.n_total = sum(w.numel() for _, w in self.items)
        for p, _ in self.items:
            p.log_alpha.requires_grad_(config.learn_alpha)
        self.controller: SparsityController | None = None
        if config.target_sparsity is not None:
            ramp = int(config.target_ramp * total_steps) if total_steps else 0
            self.controller = SparsityController(config.target_sparsity, hard_sparsity(self.items), ramp,
                                                 config.dual_lr, config.penalty_weight,
                                                 config.dual_kp)
        self.sparsity = hard_sparsity(self.items)

    @property
    def lam(self) -> float:
        return self.controller.lam if self.controller is not None else self.config.penalty_weight

    # ------------------------------------------------------------------ hooks
    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        params = [p.log_beta for p, _ in self.items]
        if self.config.learn_alpha:
            params += [p.log_alpha for p, _ in self.items]
        return [{"params": params, "lr": self.config.threshold_lr, "weight_decay": 0.0}]

    def soft_density(self) -> Tensor:
        """Differentiable global density: mean of h over all prunable weights (gradient reaches the weights
        only with ``config.penalty_on_weights``)."""
        detach = not self.config.penalty_on_weights
        return sum(p.h(w.detach() if detach else w).sum() for p, w in self.items) / self.n_total

    def penalty(self) -> Tensor:
        if self.config.penalty == "soft_l0":
            return self.soft_density()
        return -torch.stack([((p.beta / p.ref_std) ** 2).mean() for p, _ in self.items]).mean()

    def loss(self, model: nn.Module, step: int) -> Tensor:
        lam = self.lam
        return torch.zeros(()) if lam == 0.0 else lam * self.penalty()

    def on_step_end(self, model: nn.Module, step: int) -> None:
        project_min_density_(self.items, self.config.min_density)
        if self.config.alpha_max_ratio is not None:
            clamp_alpha_(self.items, self.config.alpha_max_ratio)
        self.sparsity = hard_sparsity(self.items)
        if self.controller is not None:
            self.controller.update(step, self.sparsity)
        if self.config.alpha_anneal != 1.0 and self.total_steps:
            t = min(step / self.total_steps, 1.0)
            scale = self.config.alpha_anneal + (1 - self.config.alpha_anneal) * 0.5 * (1 + math.cos(math.pi * t))
            for p, _ in self.items:
                p.alpha_scale.fill_(scale)

    def on_epoch_end(self, model: nn.Module, epoch: int, logs: dict) -> dict | None:
        out = {"sparsity": self.sparsity, "lambda": self.lam}
        if self.controller is not None and "step" in logs:
            out["setpoint"] = self.controller.setpoint(int(logs["step"]))
        with torch.no_grad():
            out["soft_density"] = float(self.soft_density())
        return out

    def snap_to_target(self) -> float | None:
        """Scale every β by one common factor so the hard sparsity equals ``config.target_sparsity`` (call at the
        end of the soft phase, before hardening or :func:`prunequant.finalize_`); returns the factor."""
        if self.config.target_sparsity is None:
            return None
        factor = snap_to_target_(self.items, self.config.target_sparsity, self.config.min_density)
        self.sparsity = hard_sparsity(self.items)
        return factor

    def state_dict(self) -> dict[str, Any]:
        return {"controller": self.controller.state_dict() if self.controller is not None else None,
                "sparsity": self.sparsity}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.controller is not None and state.get("controller") is not None:
            self.controller.load_state_dict(state["controller"])
        self.sparsity = float(state.get("sparsity", self.sparsity))
