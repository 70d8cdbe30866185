"""Hook points through which a compression method takes part in training, in any training loop.

The hooks receive the model and the global optimizer step, never a trainer object, so the project's
:class:`~prunequant.training.Trainer`, a plain PyTorch loop, a Hugging Face ``Trainer`` or Lightning can drive them::

    plugin = prune_(model, AnalyticThresholdConfig(target_sparsity=0.9), total_steps=steps)
    opt = torch.optim.Adam(param_groups(model, [plugin], lr=1e-3))
    for step, (x, y) in enumerate(loader, 1):
        loss = F.cross_entropy(model(x), y) + plugin.loss(model, step)
        opt.zero_grad(); loss.backward(); opt.step()
        plugin.on_step_end(model, step)
    finalize_(model)
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


class TrainPlugin:
    """Base class; override what the method needs. All hooks are optional.

    * ``param_groups(model)``: extra optimizer groups (e.g. thresholds with their own lr). Parameters listed here
      are removed from the default group (see :func:`param_groups`).
    * ``loss(model, step)``: an extra loss term added to the task loss (e.g. a sparsity penalty); a zero tensor
      when the method adds nothing, so ``task_loss + plugin.loss(model, step)`` always works.
    * ``on_train_begin(model)``, ``on_step_end(model, step)`` (after the optimizer step; ``step`` counts
      optimizer steps from 1), ``on_epoch_end(model, epoch, logs)``: controllers, schedules, logging;
      ``on_epoch_end`` may return a dict of extra log columns.
    * ``state_dict()`` / ``load_state_dict(d)``: controller state saved in checkpoints so resume is exact.
    """

    name: str = "plugin"

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        return []

    def loss(self, model: nn.Module, step: int) -> torch.Tensor:
        return torch.zeros(())

    def on_train_begin(self, model: nn.Module) -> None:
        pass

    def on_step_end(self, model: nn.Module, step: int) -> None:
        pass

    def on_epoch_end(self, model: nn.Module, epoch: int, logs: dict) -> dict | None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def param_groups(model: nn.Module, plugins: Iterable[TrainPlugin], **defaults: Any) -> list[dict[str, Any]]:
    """Optimizer groups for ``model`` with ``plugins``: the model's own trainable parameters first (with
    ``defaults``), then each plugin's groups; a parameter claimed by a plugin leaves the default group.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> groups = param_groups(nn.Linear(2, 2), [], lr=1e-3)
        >>> opt = torch.optim.Adam(groups)
    """
    groups, claimed = [], set()
    for p in plugins:
        for g in p.param_groups(model):
            params = [q for q in g["params"] if q.requires_grad]
            claimed.update(id(q) for q in params)
            groups.append({**g, "params": params})
    default = [q for q in model.parameters() if q.requires_grad and id(q) not in claimed]
    groups.insert(0, {"params": default, **defaults})
    return [g for g in groups if g["params"]]


def claim_param_groups_(optimizer: torch.optim.Optimizer, model: nn.Module, plugins: Iterable[TrainPlugin],
                        schedulers: Iterable[Any] = ()) -> int:
    """Give the plugins' parameters their own groups in an optimizer built elsewhere (a Hugging Face or Lightning
    trainer's): each plugin parameter leaves the group it is in and joins a new group with the plugin's settings
    (e.g. the thresholds' learning rate, no weight decay). Call before the first optimizer step; returns the
    number of groups added. Each learning-rate scheduler in ``schedulers`` is extended to the new groups (with a
    ``LambdaLR``-style scheduler, the first group's factor applies to them too)."""
    added = 0
    for p in plugins:
        for g in p.param_groups(model):
            params = [q for q in g["params"] if q.requires_grad]
            ids = {id(q) for q in params}
            if not params:
                continue
            for group in optimizer.param_groups:
                group["params"] = [q for q in group["params"] if id(q) not in ids]
            optimizer.add_param_group({**g, "params": params})
            new = optimizer.param_groups[-1]
            new.setdefault("initial_lr", new["lr"])
            for sch in schedulers:
                if sch is None or getattr(sch, "optimizer", None) is not optimizer:
                    continue
                sch.base_lrs.append(new["initial_lr"])
                if hasattr(sch, "lr_lambdas"):
                    sch.lr_lambdas.append(sch.lr_lambdas[0])
                if hasattr(sch, "_last_lr"):
                    sch._last_lr.append(new["lr"])
            added += 1
    return added
