"""Training plugins in a PyTorch Lightning ``Trainer`` (optional extra ``[lightning]``)::

    plugin = prune_(module.model, AnalyticThresholdConfig(target_sparsity=0.5), total_steps=max_steps)
    trainer = lightning.Trainer(max_steps=max_steps, callbacks=[PluginCallback(plugin)])
    trainer.fit(module, loader)
    finalize_(module.model)

What each hook does in the Lightning loop:

* ``on_fit_start`` (after ``configure_optimizers``, before a checkpoint's optimizer state is restored): the
  plugins' parameter groups move into that optimizer (:func:`~prunequant.training.plugin.claim_param_groups_`),
  so ``trainer.fit(..., ckpt_path=...)`` finds the groups the saved optimizer state has.
* ``on_train_start``: ``plugin.on_train_begin``, then a restored plugin state is applied again.
* ``on_before_optimizer_step``: the plugins' loss term is back-propagated into the accumulated gradients once
  per optimizer step (before Lightning clips them), so the step sees ``∇(task loss + plugin.loss)``.
* ``on_train_batch_end``: after each optimizer step, ``plugin.on_step_end(model, trainer.global_step)``.
* ``on_train_epoch_end``: ``plugin.on_epoch_end``; its columns are logged with ``pl_module.log``.
* ``state_dict`` / ``load_state_dict``: the plugins' controller state rides in Lightning checkpoints (thresholds,
  masks and gates are module parameters / buffers, saved with the LightningModule), so a run resumed with
  ``ckpt_path`` continues the pruning where it stopped.
"""
from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import Callback

from ..errors import StorageError
from .plugin import TrainPlugin, claim_param_groups_


class PluginCallback(Callback):
    """Drives prunequant :class:`~prunequant.training.TrainPlugin` s from a Lightning ``Trainer``.

    Args:
        *plugins: the plugins (e.g. what ``prune_(model, config)`` returned).
        claim_param_groups: move the plugins' parameter groups into the optimizer at the start.
    """

    def __init__(self, *plugins: TrainPlugin, claim_param_groups: bool = True):
        self.plugins = list(plugins)
        self.claim_param_groups = claim_param_groups
        self.groups_added = 0
        self._last_step = 0
        self._claimed = False
        self._restored: dict[str, Any] | None = None

    def on_fit_start(self, trainer, pl_module) -> None:
        if self.claim_param_groups and not self._claimed and trainer.optimizers:
            schedulers = [c.scheduler for c in getattr(trainer, "lr_scheduler_configs", [])]
            self.groups_added = claim_param_groups_(trainer.optimizers[0], pl_module, self.plugins, schedulers)
            self._claimed = True

    def on_train_start(self, trainer, pl_module) -> None:
        for p in self.plugins:
            p.on_train_begin(pl_module)
        self.on_fit_start(trainer, pl_module)  # no-op when on_fit_start claimed them already
        if self._restored is not None:  # a checkpoint's state wins over what on_train_begin set up
            self.load_state_dict(self._restored)
        self._last_step = trainer.global_step

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        terms = [t for t in (p.loss(pl_module, trainer.global_step + 1) for p in self.plugins) if t is not None]
        extra = sum(terms) if terms else None
        if getattr(extra, "requires_grad", False):
            extra.backward()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step != self._last_step:  # an optimizer step happened (not just an accumulation micro-batch)
            self._last_step = step
            for p in self.plugins:
                p.on_step_end(pl_module, step)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        logs: dict[str, Any] = {"epoch": trainer.current_epoch + 1, "step": trainer.global_step}
        for p in self.plugins:
            extra = p.on_epoch_end(pl_module, trainer.current_epoch, logs)
            if extra:
                logs.update(extra)
        for k, v in logs.items():
            if isinstance(v, (int, float)) and k not in ("epoch", "step"):
                pl_module.log(f"prunequant/{k}", float(v))

    def state_dict(self) -> dict[str, Any]:
        return {"plugins": [p.state_dict() for p in self.plugins], "last_step": self._last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if len(state_dict["plugins"]) != len(self.plugins):
            raise StorageError(f"the checkpoint holds the state of {len(state_dict['plugins'])} plugin(s), the "
                               f"callback drives {len(self.plugins)}")
        for p, s in zip(self.plugins, state_dict["plugins"]):
            p.load_state_dict(s)
        self._last_step = int(state_dict.get("last_step", 0))
        self._restored = state_dict
