"""Training plugins in a Hugging Face ``transformers.Trainer`` (optional extra ``[hf]``)::

    plugin = prune_(model, AnalyticThresholdConfig(target_sparsity=0.5), total_steps=args.max_steps)
    trainer = transformers.Trainer(model, args, train_dataset=ds, callbacks=[PluginCallback(plugin)])
    trainer.train()
    finalize_(model)

What each hook does in the HF loop:

* ``on_train_begin``: the plugins' parameter groups (e.g. α/β with their own learning rate, no weight decay) move
  into the Trainer's optimizer (:func:`~prunequant.training.plugin.claim_param_groups_`).
* ``on_step_begin``: the plugins' loss term for the step about to run is back-propagated into the (freshly zeroed)
  gradients, so the optimizer step sees ``∇(task loss + plugin.loss)``, clipped together as usual.
* ``on_step_end``: ``plugin.on_step_end(model, state.global_step)`` (controllers, schedules).
* ``on_epoch_end``: ``plugin.on_epoch_end``; its columns go to ``state.log_history``.
"""
from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from .plugin import TrainPlugin, claim_param_groups_


class PluginCallback(TrainerCallback):
    """Drives prunequant :class:`~prunequant.training.TrainPlugin` s from a Hugging Face ``Trainer``.

    Args:
        *plugins: the plugins (e.g. what ``prune_(model, config)`` returned).
        claim_param_groups: move the plugins' parameter groups into the Trainer's optimizer at the start.
    """

    def __init__(self, *plugins: TrainPlugin, claim_param_groups: bool = True):
        self.plugins = list(plugins)
        self.claim_param_groups = claim_param_groups
        self.groups_added = 0

    def on_train_begin(self, args, state, control, model=None, optimizer=None, lr_scheduler=None,
                       **kwargs: Any):
        for p in self.plugins:
            p.on_train_begin(model)
        if self.claim_param_groups and optimizer is not None:
            self.groups_added = claim_param_groups_(optimizer, model, self.plugins, [lr_scheduler])

    def on_step_begin(self, args, state, control, model=None, **kwargs: Any):
        step = state.global_step + 1
        terms = [t for t in (p.loss(model, step) for p in self.plugins) if t is not None]
        extra = sum(terms) if terms else None
        if getattr(extra, "requires_grad", False):
            extra.backward()

    def on_step_end(self, args, state, control, model=None, **kwargs: Any):
        for p in self.plugins:
            p.on_step_end(model, state.global_step)

    def on_epoch_end(self, args, state, control, model=None, **kwargs: Any):
        logs: dict[str, Any] = {"epoch": state.epoch, "step": state.global_step}
        for p in self.plugins:
            extra = p.on_epoch_end(model, max(int(round(state.epoch or 0)) - 1, 0), logs)
            if extra:
                logs.update(extra)
        state.log_history.append({k: v for k, v in logs.items() if isinstance(v, (int, float))})
