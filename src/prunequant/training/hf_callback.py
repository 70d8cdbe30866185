"""Training plugins in a Hugging Face ``transformers.Trainer`` (optional extra ``[hf]``)::

    plugin = prune_(model, AnalyticThresholdConfig(target_sparsity=0.5), total_steps=args.max_steps)
    trainer = transformers.Trainer(model, args, train_dataset=ds)
    PluginCallback.attach(trainer, plugin)        # or Trainer(..., callbacks=[PluginCallback(plugin)])
    trainer.train()                               # later: trainer.train(resume_from_checkpoint=True)
    finalize_(model)

What each hook does in the HF loop:

* when the Trainer builds its optimizer (with :meth:`PluginCallback.attach`), else ``on_train_begin``: the plugins'
  parameter groups (e.g. α/β with their own learning rate, no weight decay) move into the Trainer's optimizer
  (:func:`~prunequant.training.plugin.claim_param_groups_`).
* ``on_step_begin``: the plugins' loss term for the step about to run is back-propagated into the (freshly zeroed)
  gradients, so the optimizer step sees ``∇(task loss + plugin.loss)``, clipped together as usual.
* ``on_step_end``: ``plugin.on_step_end(model, state.global_step)`` (controllers, schedules).
* ``on_epoch_end``: ``plugin.on_epoch_end``; its columns go to ``state.log_history``.
* ``on_save``: each plugin's ``state_dict()`` (controller state, schedules, gate factors) and the model's
  parametrization tensors (α/β, masks; not the weights, which the Trainer saves) are written next to the
  checkpoint as ``prunequant_plugins.safetensors`` (safetensors + JSON metadata, atomic, digest-checked).
* ``on_train_begin`` of a resumed run: that file is read from the checkpoint the Trainer resumes from and
  restored, so an interrupted run continues the pruning exactly where it stopped.

Resuming needs :meth:`PluginCallback.attach` when the plugins have their own parameter groups: the Trainer loads the
checkpoint's optimizer state (which has those groups) before any callback runs, so the groups must be added
when the optimizer is built.
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

from torch import Tensor, nn
from transformers import TrainerCallback

from ..errors import StorageError
from ..storage import load_state, save_state
from .checkpoint import _join, _split
from .plugin import TrainPlugin, claim_param_groups_

log = logging.getLogger(__name__)

STATE_FILE = "prunequant_plugins.safetensors"
_KIND = "hf-plugin-state"


def _parametrization_state(model: nn.Module) -> dict[str, Tensor]:
    """The model's parametrization tensors (thresholds, gates, masks, quantizer state), not the weights."""
    return {k: v for k, v in model.state_dict().items()
            if ".parametrizations." in f".{k}" and not k.endswith(".original")}


def save_plugin_state(path: str | Path, plugins: list[TrainPlugin], model: nn.Module | None, step: int) -> Path:
    """Write the plugins' ``state_dict()`` s and the model's parametrization tensors to one safetensors file (JSON
    structure in its header), atomically."""
    tensors: dict[str, Tensor] = {}
    meta = {"plugins": _split("p", [p.state_dict() for p in plugins], tensors), "step": int(step),
            "names": [type(p).__name__ for p in plugins]}
    if model is not None:
        for k, v in _parametrization_state(model).items():
            tensors[f"model.{k}"] = v
    return save_state(tensors, meta, path, kind=_KIND)


def load_plugin_state(path: str | Path, plugins: list[TrainPlugin], model: nn.Module | None) -> int:
    """Restore what :func:`save_plugin_state` wrote into ``plugins`` (and the model's parametrization tensors);
    returns the step it was saved at. :class:`StorageError` names the file when it does not fit."""
    tensors, meta = load_state(path)
    states = _join(meta.get("plugins"), tensors)
    if not isinstance(states, list) or len(states) != len(plugins):
        raise StorageError(f"{path}: holds the state of {meta.get('names')} but the callback drives "
                           f"{[type(p).__name__ for p in plugins]}")
    for p, s in zip(plugins, states):
        p.load_state_dict(s)
    if model is not None:
        own = _parametrization_state(model)
        stored = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        if set(stored) != set(own):
            missing, unexpected = sorted(set(own) - set(stored))[:5], sorted(set(stored) - set(own))[:5]
            raise StorageError(f"{path}: parametrization tensors do not match the model (missing {missing}, "
                               f"unexpected {unexpected})")
        state = model.state_dict()
        for k, v in stored.items():
            if state[k].shape != v.shape:
                raise StorageError(f"{path}: '{k}' has shape {tuple(v.shape)}, the model's is {tuple(state[k].shape)}")
            state[k].copy_(v.to(state[k].device, state[k].dtype))
    return int(meta.get("step", 0))


class PluginCallback(TrainerCallback):
    """Drives prunequant :class:`~prunequant.training.TrainPlugin` s from a Hugging Face ``Trainer``, and saves /
    restores their state with the Trainer's checkpoints.

    Args:
        *plugins: the plugins (e.g. what ``prune_(model, config)`` returned).
        claim_param_groups: move the plugins' parameter groups into the Trainer's optimizer.
        save_state: write the plugins' state next to every checkpoint the Trainer saves.
    """

    def __init__(self, *plugins: TrainPlugin, claim_param_groups: bool = True, save_state: bool = True):
        self.plugins = list(plugins)
        self.claim_param_groups = claim_param_groups
        self.save_state = save_state
        self.groups_added = 0
        self.resumed_from: str | None = None   # the plugin-state file restored at the start, if any
        self._claimed = False
        self._attached = False
        self._resume: str | bool | None = None

    @classmethod
    def attach(cls, trainer, *plugins: TrainPlugin, **kwargs: Any) -> PluginCallback:
        """Add a callback for ``plugins`` to ``trainer`` so that the plugins' parameter groups join the optimizer
        the moment the Trainer builds it (before a checkpoint's optimizer state is loaded on resume), and the
        checkpoint given to ``trainer.train(resume_from_checkpoint=...)`` is the one whose plugin state is restored.

        Example (``trainer`` a ``transformers.Trainer``, ``plugin`` from ``prune_``)::

            cb = PluginCallback.attach(trainer, plugin)
            trainer.train(resume_from_checkpoint=True)
        """
        cb = cls(*plugins, **kwargs)
        trainer.add_callback(cb)
        cb._attached = True
        create_optimizer, train = trainer.create_optimizer, trainer.train

        def create_optimizer_with_plugins(*args: Any, **kw: Any):
            opt = create_optimizer(*args, **kw)
            if cb.claim_param_groups and not cb._claimed and opt is not None:
                # a scheduler the user passed in (Trainer(optimizers=...)) already exists and is extended too
                cb.groups_added = claim_param_groups_(opt, trainer.model, cb.plugins,
                                                      [getattr(trainer, "lr_scheduler", None)])
                cb._claimed = True
            return opt

        def train_remembering_checkpoint(resume_from_checkpoint=None, *args: Any, **kw: Any):
            cb._resume = resume_from_checkpoint
            return train(resume_from_checkpoint, *args, **kw)

        trainer.create_optimizer = create_optimizer_with_plugins
        trainer.train = train_remembering_checkpoint
        return cb

    # -- checkpoints --------------------------------------------------------------------------------------
    def _resume_dir(self, args, state) -> Path | None:
        if self._resume is True:
            from transformers.trainer_utils import get_last_checkpoint

            found = get_last_checkpoint(args.output_dir)
            return Path(found) if found else None
        if isinstance(self._resume, (str, os.PathLike)):
            return Path(self._resume)
        if state.global_step > 0:  # resumed without attach(): the Trainer's own checkpoint naming
            return Path(args.output_dir) / f"checkpoint-{state.global_step}"
        return None

    def on_save(self, args, state, control, model=None, **kwargs: Any):
        if not self.save_state or not getattr(state, "is_world_process_zero", True):
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not folder.is_dir():
            log.warning("prunequant: checkpoint folder %s not found; plugin state not saved", folder)
            return
        save_plugin_state(folder / STATE_FILE, self.plugins, model, state.global_step)
        if self.groups_added and not self._attached:
            warnings.warn("prunequant PluginCallback: the plugins' optimizer groups were added at train begin; to "
                          "resume this run with resume_from_checkpoint, add the callback with "
                          "PluginCallback.attach(trainer, plugin) so the groups exist when the optimizer state "
                          "is loaded", stacklevel=2)

    # -- loop hooks ---------------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, optimizer=None, lr_scheduler=None,
                       **kwargs: Any):
        for p in self.plugins:
            p.on_train_begin(model)
        if self.claim_param_groups and not self._claimed and optimizer is not None:
            self.groups_added = claim_param_groups_(optimizer, model, self.plugins, [lr_scheduler])
            self._claimed = True
        folder = self._resume_dir(args, state)
        if folder is not None:
            path = folder / STATE_FILE
            if path.is_file():
                step = load_plugin_state(path, self.plugins, model)
                if step != state.global_step:
                    raise StorageError(f"{path}: saved at step {step}, but the Trainer resumes at step "
                                       f"{state.global_step}")
                self.resumed_from = str(path)
                log.info("prunequant: plugin state restored from %s (step %d)", path, step)
            elif state.global_step > 0:
                warnings.warn(f"prunequant PluginCallback: resuming at step {state.global_step} but {path} does not "
                              "exist; the plugins start from their initial state (the pruning schedule will not "
                              "match an uninterrupted run)", stacklevel=2)

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
