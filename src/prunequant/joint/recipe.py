"""The joint recipe: ``config.epochs`` of soft joint training (weights, α, β and both sets of logits), hardening to
the targets, ``config.finetune_epochs`` with the choices fixed, then (``config.finalize``) plain quantized, pruned
layers."""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Iterable

from torch import Tensor, nn

from ..errors import ConfigError
from ..pruning.analytic import AnalyticThresholdPlugin
from ..training import Fit, Trainer, evaluate, phase_config, resolve_device
from ..training.fit import batch_input, first_batches
from .config import JointConfig
from .costs import JointLayer, hard_costs
from .plugin import JointPlugin, format_table, layer_table
from .transform import _analytic_config, attach_joint_, finalize_, harden_

log = logging.getLogger("prunequant.joint")


@dataclass
class JointResult:
    """What the joint recipe returns (``plugin``: the soft-phase plugin; ``measures``: hard size/bits/BOPs/
    sparsity; ``table``: per-layer rows; ``harden_info``: what hardening did)."""

    plugin: JointPlugin
    layers: list[JointLayer]
    fixed_bits: int
    history: list[dict[str, Any]] = field(default_factory=list)
    table: list[dict[str, Any]] = field(default_factory=list)
    measures: dict[str, float] = field(default_factory=dict)
    harden_info: dict[str, Any] = field(default_factory=dict)
    val_metric_soft: float | None = None
    val_metric_hard: float | None = None
    val_metric_final: float | None = None


def prepare_joint_(model: nn.Module, config: JointConfig, calibration: Iterable | None, example_input: Any,
                   device: Any = "cpu", total_steps: int | None = None, verbose: bool = False) -> JointPlugin:
    """Attach the joint transform (calibrating feature-map ranges on ``calibration`` batches, counting MACs on
    ``example_input``, taken from the first calibration batch when None) and build the soft-phase plugin."""
    calib = list(calibration) if calibration is not None else []
    if example_input is None:
        if not calib:
            raise ConfigError("prune_quantize_(JointConfig) needs train=, calibration= or example_input=")
        first = batch_input(calib[0])
        example_input = first[:1]
    if not calib:
        calib = [(example_input,)]
    device = resolve_device(device)
    model.to(device)
    calib = [tuple(t.to(device) if isinstance(t, Tensor) else t for t in (b if isinstance(b, (tuple, list)) else (b,)))
             for b in calib]
    example_input = example_input.to(device) if isinstance(example_input, Tensor) else example_input
    layers, fixed_bits, items = attach_joint_(model, config, calib, example_input)
    pruning = AnalyticThresholdPlugin(items, _analytic_config(config), total_steps=total_steps) if items else None
    return JointPlugin(layers, config, fixed_bits, total_steps, pruning, verbose=verbose)


def fit_joint_(model: nn.Module, config: JointConfig, fit: Fit, example_input: Any = None,
               calibration: Iterable | None = None) -> JointResult:
    """Jointly prune and mixed-precision quantize ``model`` in place with the full schedule on ``fit``'s data.

    ``fit.train_config`` supplies optimizer, lr, seed, device, checkpoints (epochs are set per phase; the
    fine-tune uses ``config.finetune_schedule``). ``calibration``: feature-map calibration batches (default: the
    first 4 training batches).
    """
    base = fit.base()
    device = resolve_device(base.device)
    per_epoch = fit.steps_per_epoch()
    calib = list(calibration) if calibration is not None else first_batches(fit.train, 4)
    plugin = prepare_joint_(model, config, calib, example_input, device,
                            config.epochs * per_epoch if per_epoch else None, fit.verbose)
    layers, fixed_bits = plugin.layers, plugin.fixed_bits
    result = JointResult(plugin=plugin, layers=layers, fixed_bits=fixed_bits)
    if config.epochs > 0:
        trainer = Trainer(model, phase_config(base, config.epochs, "soft"), loss_fn=fit.loss_fn, plugins=[plugin],
                          metric=fit.metric)
        result.history = [{"phase": "soft", **h} for h in trainer.fit(fit.train, fit.val)]
    if fit.val is not None:
        result.val_metric_soft = evaluate(model, fit.val, fit.metric, device=device)
    result.harden_info = harden_(model, config, layers, fixed_bits, log.info if fit.verbose else None)
    if fit.val is not None:
        result.val_metric_hard = evaluate(model, fit.val, fit.metric, device=device)
    if fit.verbose:
        log.info("%s", format_table(layer_table(layers), "joint: hardened (argmax bits, repaired to the targets)"))
    if config.finetune_epochs > 0:
        ft_plugin = JointPlugin(layers, config, fixed_bits, hard=True, verbose=fit.verbose)
        ft_base = dataclasses.replace(base, schedule=config.finetune_schedule)
        ft = Trainer(model, phase_config(ft_base, config.finetune_epochs, "finetune"), loss_fn=fit.loss_fn,
                     plugins=[ft_plugin], metric=fit.metric)
        result.history += [{"phase": "finetune", **h} for h in ft.fit(fit.train, fit.val)]
    result.measures = hard_costs(layers, fixed_bits)
    result.table = layer_table(layers)
    if config.finalize:
        finalize_(model)
    if fit.val is not None:
        result.val_metric_final = evaluate(model, fit.val, fit.metric, device=device)
    return result
