"""Channel-pruning recipes: analytic gates or MAC-budget rounds, then physical removal and fine-tuning.

``prune_channels_analytic_`` and ``prune_channels_mac_budget_`` are what ``prune_(model, AnalyticThresholdConfig(
granularity="channel", ...))`` and ``prune_(model, MacBudgetConfig(granularity="channel", ...))`` run; they can be
called directly too.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ...errors import ConfigError
from ...training import TrainConfig, Trainer, evaluate
from ...training.fit import Fit
from ...training.fit import example_input as _example_from
from .analytic import ChannelAnalyticPlugin, attach_channel_gates_, detach_channel_gates_
from .calibrate import calibration_inputs, group_sensitivity, recalibrate_batchnorm_
from .costs import CostModel, StructuredTarget
from .groups import ChannelGraph, build_channel_graph
from .mac_budget import plan_for_target
from .shrink import remove_channels_

log = logging.getLogger("prunequant.pruning.structured")

__all__ = ["StructuredResult", "finalize_channels_", "prune_channels_analytic_", "prune_channels_mac_budget_",
           "target_from_config"]


@dataclass
class StructuredResult:
    """What a channel-pruning recipe returns. Costs are those of the shrunk model (``report()`` counts)."""

    method: str
    target: str
    dense_params: int
    dense_macs: int
    params: int | None = None
    macs: int | None = None
    mac_reduction: float | None = None
    param_reduction: float | None = None
    removed: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    plugin: ChannelAnalyticPlugin | None = None
    info: dict[str, Any] = field(default_factory=dict)


def target_from_config(config: Any) -> StructuredTarget:
    """The budget of a config: ``mac_reduction`` first, then ``target_params``, then ``target_sparsity``."""
    mr = getattr(config, "mac_reduction", None)
    if mr is not None:
        return StructuredTarget("macs", mr)
    tp = getattr(config, "target_params", None)
    if tp is not None:
        return StructuredTarget("params", tp)
    ts = getattr(config, "target_sparsity", None)
    if ts is not None:
        return StructuredTarget("sparsity", ts)
    raise ConfigError(f"{type(config).__name__} with granularity='channel' needs mac_reduction, target_params or "
                      "target_sparsity")


def _example(example_input: Any, fit: Fit | None) -> Any:
    if example_input is not None:
        return example_input
    return _example_from(fit.train if fit is not None else None, "channel pruning")


def _phase(base: TrainConfig, epochs: int, lr: float | None = None) -> TrainConfig:
    kw: dict[str, Any] = {"epochs": epochs, "checkpoint_dir": None}
    if lr is not None:
        kw["lr"] = lr
    return dataclasses.replace(base, **kw)


def _fill(result: StructuredResult, params: int, macs: int) -> None:
    """Record the shrunk model's costs (exact: :meth:`CostModel.plan_costs` of the plan that was removed)."""
    result.params, result.macs = params, macs
    result.mac_reduction = 1.0 - result.macs / result.dense_macs
    result.param_reduction = 1.0 - result.params / result.dense_params


def prune_channels_analytic_(model: nn.Module, config: Any, fit: Fit | None = None, *, example_input: Any = None,
                             total_steps: int | None = None,
                             ignore: Sequence[nn.Module | str] = ()) -> StructuredResult | ChannelAnalyticPlugin:
    """Analytic channel pruning, in place.

    Without ``fit``: gates are attached and the :class:`ChannelAnalyticPlugin` is returned for the user's own
    loop (``total_steps``: the optimizer steps you will train for, setting the setpoint ramp and α annealing);
    then call :func:`finalize_channels_` (or ``prunequant.finalize_``). With ``fit``: ``config.epochs`` with learned
    gates, snap to the target, removal, ``config.finetune_epochs`` of fine-tuning of the shrunk model.

    Args:
        model: the model (no parametrizations yet).
        config: an ``AnalyticThresholdConfig`` (``granularity="channel"``): ``alpha_init``, ``beta_init``,
            ``function``, ``threshold_lr``, ``dual_lr``, ``penalty_weight``, ``target_ramp``, ``alpha_max_ratio``,
            ``alpha_anneal``, ``learn_alpha``, ``epochs``, ``finetune_epochs``, ``include``/``exclude`` and the target
            (``mac_reduction``, ``target_params`` or ``target_sparsity``).
        fit: data, loss, metric and TrainConfig (:class:`prunequant.training.Fit`).
        example_input: an input of deployment shape (default: one sample of ``fit.train``).
        ignore: modules (or names) whose output channels must stay.

    Returns:
        :class:`StructuredResult` with ``fit``, else the plugin.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from prunequant.pruning import AnalyticThresholdConfig
        >>> m = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
        >>> plugin = prune_channels_analytic_(m, AnalyticThresholdConfig(granularity="channel", target_sparsity=0.5),
        ...                                   example_input=torch.randn(1, 8))
        >>> _ = finalize_channels_(m)
        >>> m[0].out_features
        16
    """
    target = target_from_config(config)
    example = _example(example_input, fit)
    graph = build_channel_graph(model, example, ignore=ignore, include=_names(config.include),
                                exclude=_names(config.exclude) or ())
    costs = CostModel(graph)
    result = StructuredResult("analytic-channel", repr(target), costs.dense_params, costs.dense_macs,
                              skipped=list(graph.skipped))
    gates = attach_channel_gates_(graph, config.alpha_init, config.beta_init, config.function)
    spe = fit.steps_per_epoch() if fit is not None else None
    steps = config.epochs * spe if spe else total_steps
    plugin = ChannelAnalyticPlugin(gates, costs, target, threshold_lr=config.threshold_lr, dual_lr=config.dual_lr,
                                   penalty_weight=config.penalty_weight, target_ramp=config.target_ramp,
                                   alpha_max_ratio=config.alpha_max_ratio, alpha_anneal=config.alpha_anneal,
                                   learn_alpha=config.learn_alpha, total_steps=steps)
    result.plugin = plugin
    model.prunequant_channel_plugin = [plugin]  # for finalize_channels_ (list: not a submodule)
    if fit is None:
        return plugin
    base = fit.base(lr=1e-3)
    if config.epochs > 0:
        tr = Trainer(model, _phase(base, config.epochs), loss_fn=fit.loss_fn, plugins=[plugin], metric=fit.metric)
        result.history = [{"phase": "prune", **h} for h in tr.fit(fit.train, fit.val)]
    finalize_channels_(model, result=result)
    _recalibrate(model, fit, config.bn_recalibration, result)
    if config.finetune_epochs > 0:
        ft = Trainer(model, _phase(base, config.finetune_epochs), loss_fn=fit.loss_fn, metric=fit.metric)
        result.history += [{"phase": "finetune", **h} for h in ft.fit(fit.train, fit.val)]
    if fit.val is not None:
        result.info["val_metric"] = evaluate(model, fit.val, fit.metric)
    return result


def finalize_channels_(model: nn.Module, result: StructuredResult | None = None) -> nn.Module:
    """Snap the attached channel gates to their target, bake them and physically remove the pruned channels.

    A no-op on a model without channel gates. Returns the (shrunk, plain) model.
    """
    holder = getattr(model, "prunequant_channel_plugin", None)
    if not holder:
        return model
    plugin: ChannelAnalyticPlugin = holder[0]
    graph: ChannelGraph = plugin.gates.graph[0]
    factor, plan = plugin.snap()
    params, macs = plugin.costs.plan_costs(plan)
    detach_channel_gates_(model, bake=True)
    del model.prunequant_channel_plugin
    if graph.dg is None or graph.model is not model:  # a copy of the model: its own graph
        graph = build_channel_graph(model, graph.example_input, check=False, include=[g.name for g in graph.groups])
    removed = remove_channels_(graph, plan)
    if result is not None:
        result.removed = removed
        result.info["snap_factor"] = factor
        _fill(result, params, macs)
        log.info("analytic-channel: removed %d channels in %d groups; MACs %d -> %d (%.1f%% less)",
                 sum(removed.values()), len(removed), result.dense_macs, result.macs, 100 * result.mac_reduction)
    return model


def _recalibrate(model: nn.Module, fit: Fit | None, samples: int, result: StructuredResult) -> None:
    """Re-estimate BatchNorm statistics after a removal (see :func:`~.calibrate.recalibrate_batchnorm_`)."""
    inputs = calibration_inputs(fit.train if fit is not None else None, samples)
    n = recalibrate_batchnorm_(model, inputs)
    if n:
        result.info["bn_recalibrated"] = result.info.get("bn_recalibrated", 0) + n


def _names(sel: Any) -> list[str] | None:
    if sel is None:
        return None
    out = [s for s in sel if isinstance(s, str)]
    if len(out) != len(list(sel)):
        raise ConfigError("channel pruning selects groups by root-layer name patterns (strings) only")
    return out


def _round_targets(target: StructuredTarget, rounds: int, schedule: str) -> list[StructuredTarget]:
    r = target.value
    if schedule == "linear":
        vals = [r * (i + 1) / rounds for i in range(rounds)]
    else:
        vals = [1.0 - (1.0 - r) ** ((i + 1) / rounds) for i in range(rounds)]
    return [StructuredTarget(target.kind, v) for v in vals]


def prune_channels_mac_budget_(model: nn.Module, config: Any, fit: Fit | None = None, *, example_input: Any = None,
                               ignore: Sequence[nn.Module | str] = (), finetune_epochs: int = 0) -> StructuredResult:
    """MAC-budget channel pruning, in place: ``config.rounds`` of (plan → remove → retrain ``retrain_epochs``),
    the real-MAC targets of the rounds following ``config.schedule``, then ``finetune_epochs`` more.

    Without ``fit`` the rounds run back to back with no retraining (one-shot pruning to the target).

    Args:
        model: the model (no parametrizations).
        config: a ``MacBudgetConfig`` (``granularity="channel"``): ``mac_reduction`` (or ``target_params`` /
            ``target_sparsity``), ``allowance`` (``"mac_share"`` / ``"macs_per_weight"``), ``allowance_power``,
            ``allowance_clip``, ``channel_error``, ``channel_sensitivity``, ``bn_recalibration``,
            ``max_pruned["default"]``, ``rounds``, ``schedule``, ``retrain_epochs``, ``retrain_lr``, ``tolerance``,
            ``include``/``exclude``.

    Returns:
        :class:`StructuredResult` (``info["rounds"]``: per-round eps0 and achieved reduction).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from prunequant.pruning import MacBudgetConfig
        >>> m = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
        >>> r = prune_channels_mac_budget_(m, MacBudgetConfig(granularity="channel", mac_reduction=0.5),
        ...                                example_input=torch.randn(1, 8))
        >>> abs(r.mac_reduction - 0.5) <= 0.01
        True
    """
    target = target_from_config(config)
    example = _example(example_input, fit)
    include, exclude = _names(config.include), _names(config.exclude) or ()
    graph = build_channel_graph(model, example, ignore=ignore, include=include, exclude=exclude)
    costs0 = CostModel(graph)
    result = StructuredResult("mac-budget-channel", repr(target), costs0.dense_params, costs0.dense_macs,
                              skipped=list(graph.skipped))
    if target.kind == "params":
        target = StructuredTarget("sparsity", 1.0 - target.value / costs0.dense_params)
    base = fit.base(lr=config.retrain_lr) if fit is not None else None
    rounds_info = []
    max_pruned = config.max_fraction("default") if hasattr(config, "max_fraction") else 0.95
    names = [g.name for g in graph.groups]
    sens_inputs = calibration_inputs(fit.train if fit is not None else None, config.channel_sensitivity)
    if config.channel_sensitivity and not sens_inputs:
        log.info("mac-budget-channel: no training data, allowances from MACs only (no group sensitivity)")
    for i, t in enumerate(_round_targets(target, config.rounds, config.schedule)):
        if i > 0:
            graph = build_channel_graph(model, example, ignore=ignore, check=False, include=names)
        costs = CostModel(graph)
        # the round's target is relative to the original dense model: rescale to the current one
        cur_dense = costs.dense_macs if t.kind == "macs" else costs.dense_params
        orig = costs0.dense_macs if t.kind == "macs" else costs0.dense_params
        rel = 1.0 - (1.0 - t.value) * orig / cur_dense
        if rel <= 0:
            continue
        sens = group_sensitivity(graph, sens_inputs) if sens_inputs else None
        plan, info = plan_for_target(costs, StructuredTarget(t.kind, rel), power=config.allowance_power,
                                     clip=config.allowance_clip, max_pruned=max_pruned,
                                     tolerance=min(config.tolerance, 0.005), error=config.channel_error,
                                     sensitivity=sens, rule=config.allowance)
        params, macs = costs.plan_costs(plan)
        removed = remove_channels_(graph, plan)
        _recalibrate(model, fit, config.bn_recalibration, result)
        for k, v in removed.items():
            result.removed[k] = result.removed.get(k, 0) + v
        _fill(result, params, macs)
        rounds_info.append({"round": i + 1, "eps0": info["eps0"], "mac_reduction": result.mac_reduction,
                            "param_reduction": result.param_reduction, "sensitivity": sens})
        log.info("mac-budget-channel round %d: eps0=%.4g, MACs -%.1f%%, params -%.1f%%", i + 1, info["eps0"],
                 100 * result.mac_reduction, 100 * result.param_reduction)
        if fit is not None and config.retrain_epochs > 0:
            tr = Trainer(model, _phase(base, config.retrain_epochs, config.retrain_lr), loss_fn=fit.loss_fn,
                         metric=fit.metric)
            result.history += [{"phase": f"round{i + 1}", **h} for h in tr.fit(fit.train, fit.val)]
    if fit is not None and finetune_epochs > 0:
        ft = Trainer(model, _phase(base, finetune_epochs), loss_fn=fit.loss_fn, metric=fit.metric)
        result.history += [{"phase": "finetune", **h} for h in ft.fit(fit.train, fit.val)]
    result.info["rounds"] = rounds_info
    if fit is not None and fit.val is not None:
        result.info["val_metric"] = evaluate(model, fit.val, fit.metric)
    return result


def _register() -> None:
    from ...registry import register_finalizer

    # channel gates are snapped and removed before masks are baked (20) and quantizers are baked (30)
    register_finalizer(finalize_channels_, order=15)


_register()
