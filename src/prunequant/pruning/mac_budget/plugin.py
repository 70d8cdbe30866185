"""MAC-budget pruning inside any training loop: one prune round now, then one every ``every`` optimizer steps
until the schedule is done; the loop's own training between rounds is the retraining."""
from __future__ import annotations

from typing import Any

from torch import nn

from ...training import TrainPlugin
from .config import MacBudgetConfig
from .transform import MacBudgetPruner


class MacBudgetPlugin(TrainPlugin):
    """Runs :class:`MacBudgetPruner` rounds from ``on_step_end(model, step)``.

    The first round is applied when the plugin is built (so build it before the optimizer); round ``r`` (r >= 2)
    at step ``(r - 1) * every``. ``result`` holds every round's record. Masks are FixedMask buffers in the model
    state; the plugin state holds only the round count, so resume from a checkpoint re-applies no round twice.

    Args:
        model: the model to prune.
        config: the method config (``rounds``, ``mac_reduction`` ...; ``retrain_epochs`` is not used here).
        example_input: one model input that MACs are counted for.
        every: optimizer steps of retraining between rounds.
    """

    name = "mac_budget"

    def __init__(self, model: nn.Module, config: MacBudgetConfig, example_input: Any, every: int,
                 verbose: bool = False):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.pruner = MacBudgetPruner(model, config, example_input, verbose)
        self.every = int(every)
        self.pruner.log_round(self.pruner.prune_round())

    @property
    def result(self):
        return self.pruner.result

    def on_step_end(self, model: nn.Module, step: int) -> None:
        if step % self.every == 0 and step // self.every >= self.pruner.round and not self.pruner.done:
            self.pruner.log_round(self.pruner.prune_round())

    def on_epoch_end(self, model: nn.Module, epoch: int, logs: dict) -> dict | None:
        r = self.pruner.result
        return {"mac_reduction": r.reduction, "sparsity": r.sparsity, "rounds": self.pruner.round}

    def state_dict(self) -> dict[str, Any]:
        return {"rounds": self.pruner.round}
