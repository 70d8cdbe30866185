"""``prune_quantize_(model, JointConfig(...), train=loader)``: attach h(w) + soft quantizers, train weights, α, β
and both sets of logits jointly, harden (argmax bits, repair to the targets, hard masks), fine-tune with the
choices fixed, and :func:`finalize_` to plain quantized, pruned layers."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from rich.console import Console
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.utils.data import DataLoader

from ..analysis.report import storage_bits
from ..api import register_handler
from ..errors import ConfigError, LayerError
from ..pruning.analytic import (
    AnalyticThreshold,
    AnalyticThresholdConfig,
    AnalyticThresholdPlugin,
    attach_analytic_thresholds_,
    harden_masks_,
)
from ..pruning.base import apply_mask_, check_weight, finalize_masks_, get_mask, prunable_modules
from ..quantization.base import MIN_BITS, ActFakeQuant, attach_input_quant
from ..quantization.pwlq import PWLQWeightQuant
from ..quantization.uniform import UniformWeightQuant
from ..training import TrainConfig, Trainer, accuracy, evaluate
from .config import JointConfig
from .controller import fill_budget_, repair_bits_, snap_beta_, snap_sparsity_
from .costs import JointLayer, fixed_param_bits, hard_costs, measure_macs_
from .plugin import JointPlugin, layer_table, rich_table, unique_mixtures
from .quantizers import ChannelBitsWeightQuant, SoftMixActQuant, SoftMixWeightQuant


@dataclass
class JointResult:
    """What :func:`prune_quantize_joint_` returns."""

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


def _analytic_config(config: JointConfig) -> AnalyticThresholdConfig:
    return AnalyticThresholdConfig(
        target_sparsity=config.target_sparsity, penalty="soft_l0",
        penalty_weight=float(config.loss_weights.get("sparsity", 0.0)), alpha_init=config.alpha_init,
        beta_init=config.beta_init, alpha_anneal=config.alpha_anneal, min_density=config.min_density,
        epochs=config.epochs, threshold_lr=config.threshold_lr, target_ramp=config.target_ramp,
        include=config.include, exclude=config.exclude)


def joint_layers(model: nn.Module) -> list[JointLayer]:
    """Every weight of ``model`` carrying a :class:`SoftMixWeightQuant` (MACs unknown: 0)."""
    out = []
    for name, module in model.named_modules():
        plists = getattr(module, "parametrizations", None)
        if plists is None:
            continue
        aq = module._modules.get("input_quant")
        aq = aq if isinstance(aq, SoftMixActQuant) else None
        for pname in list(plists.keys()):
            for p in plists[pname]:
                if isinstance(p, SoftMixWeightQuant):
                    out.append(JointLayer(f"{name}.{pname}" if name else pname, name, module, pname, p, aq))
    return out


@torch.no_grad()
def calibrate_(model: nn.Module, batches: Iterable, device: str | torch.device = "cpu") -> int:
    """Initialize feature-map ranges: forward ``batches`` with the model in eval mode (BN statistics untouched)
    and only the feature-map quantizers observing. Returns the number of batches used."""
    aqs = [m for m in model.modules() if isinstance(m, SoftMixActQuant)]
    was = model.training
    model.eval()
    for a in aqs:
        a.train()
    n = 0
    try:
        for b in batches:
            x = b[0] if isinstance(b, (tuple, list)) else b
            model(x.to(device))
            n += 1
    finally:
        model.train(was)
    return n


def attach_joint_(model: nn.Module, config: JointConfig, calibration: Iterable,
                  example_input: Any) -> tuple[list[JointLayer], int, list[tuple]]:
    """Put h(w) (if ``config.prune``) and a :class:`SoftMixWeightQuant` on every selected weight, a
    :class:`SoftMixActQuant` at every selected module's input; calibrate ranges and count MACs.

    Returns (layers, bits of the parameters that stay fp32, analytic-threshold items)."""
    selected = prunable_modules(model, config.include, config.exclude)
    if not selected:
        raise LayerError(f"{type(model).__name__}: no layers selected (include={config.include}, "
                         f"exclude={config.exclude})")
    raws = []
    for name, module, pname in selected:
        layer = f"{name}.{pname}" if name else pname
        if parametrize.is_parametrized(module, pname) and any(
                isinstance(p, SoftMixWeightQuant) for p in module.parametrizations[pname]):
            raise LayerError(f"layer '{layer}' already carries a joint quantizer; finalize it first")
        w = getattr(module, pname).detach()
        check_weight(w, layer)
        if w.dim() < 1:
            raise LayerError(f"layer '{layer}': weight is 0-d")
        raws.append(module.parametrizations[pname].original if parametrize.is_parametrized(module, pname)
                    else getattr(module, pname))
    fixed_bits = fixed_param_bits(model, {id(r) for r in raws})
    if config.target_size_bytes is not None:
        bmin = max(MIN_BITS, min(b for b in config.weight_bits if b > 0))
        floor = fixed_bits + sum(storage_bits(torch.zeros_like(r), bmin, 64 * (r.shape[0] if config.granularity ==
                                                                                 "channel" else 1)) for r in raws)
        if config.target_size_bytes < floor / 8:
            raise ConfigError(f"target_size_bytes {config.target_size_bytes:.0f} is out of reach: the parameters left "
                              f"in fp32 (biases, norms, excluded layers) and the per-tensor index/quantizer state "
                              f"alone take {floor / 8:.0f} bytes")
    items = attach_analytic_thresholds_(model, _analytic_config(config)) if config.prune else []
    layers, aqs = [], {}
    for name, module, pname in selected:
        w = getattr(module, pname).detach()
        dim = 0 if config.granularity == "channel" else None
        wq = SoftMixWeightQuant(config.weight_bits, config.schemes, dim=dim,
                                mix_channels=w.shape[0] if config.mix_granularity == "channel" else None,
                                scale_channels=w.shape[0] if dim == 0 else 1, init=config.logit_init).to(w.device)
        parametrize.register_parametrization(module, pname, wq)
        if config.quantize_acts and id(module) not in aqs:
            aq = SoftMixActQuant(config.act_bits, init=config.logit_init, momentum=config.act_momentum).to(w.device)
            attach_input_quant(module, aq)
            aqs[id(module)] = aq
        layers.append(JointLayer(f"{name}.{pname}" if name else pname, name, module, pname, wq, aqs.get(id(module))))
    for l in layers:
        if "pwlq" in l.wq.schemes:
            l.wq.refresh_breakpoints_(l.hard_masked(), l.name)
    device = next(iter(raws)).device
    if aqs and calibrate_(model, calibration, device) == 0:
        raise ConfigError("no calibration batch for the feature-map quantizers")
    measure_macs_(model, layers, example_input)
    return layers, fixed_bits, items


@torch.no_grad()
def _zero_removed_(layers: list[JointLayer]) -> None:
    """Make the hard mask drop layers/channels whose chosen weight bit-width is 0."""
    for l in layers:
        cb = l.channel_bits()
        if not bool((cb == 0).any()):
            continue
        m = get_mask(l.module, l.pname)
        if m is None:  # no mask to extend: zero the weights (the 0-bit quantizer gives them no gradient)
            l.raw[cb == 0] = 0.0
            continue
        keep = m.hard_mask(l.raw).clone()
        keep[cb == 0] = False
        apply_mask_(l.module, l.pname, keep, layer_name=l.name)


@torch.no_grad()
def harden_(model: nn.Module, config: JointConfig | None = None, layers: list[JointLayer] | None = None,
            fixed_bits: int | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Freeze every mixture at its argmax and make masks hard (|w| > β). With ``config`` (and its targets):
    lower bits greedily until the bit targets hold, snap β to the sparsity target (counting the weights the
    quantizer rounds to zero), scale β by one common factor so size/BOP targets hold (with ``config.fill_budget``
    and no sparsity target also downwards, using the budget), lower bits if still needed, then
    (``config.fill_budget``) raise bits while every target still holds. Layers
    or channels at 0 bits get an all-zero mask. Returns what was done."""
    layers = layers if layers is not None else joint_layers(model)
    if not layers:
        raise LayerError(f"{type(model).__name__}: no joint quantizers to harden")
    if fixed_bits is None:
        fixed_bits = fixed_param_bits(model, {id(l.raw) for l in layers})
    for m in unique_mixtures(layers):
        if not m.hard:
            m.harden_()
    info: dict[str, Any] = {}
    if config is not None:
        targets = config.targets()
        info["repair_bits"] = repair_bits_(layers, targets, fixed_bits, config.tol, ("wbits", "abits"), log)
        if config.target_sparsity is not None:
            info["sparsity_snap"] = snap_sparsity_(layers, config.target_sparsity, fixed_bits, config.min_density)
        info["beta_snap"] = snap_beta_(layers, targets, fixed_bits, config.tol, min_density=config.min_density,
                                       shrink=config.fill_budget and config.target_sparsity is None)
        info["repair_size"] = repair_bits_(layers, targets, fixed_bits, config.tol, ("size_bytes", "bops"), log)
        if config.fill_budget:
            ms = None if config.target_sparsity is None else config.target_sparsity - 0.005
            info["fill"] = fill_budget_(layers, targets, fixed_bits, ms, log)
    harden_masks_(model)
    _zero_removed_(layers)
    for l in layers:
        if "pwlq" in l.wq.schemes:
            l.wq.refresh_breakpoints_(l.hard_masked(), l.name)
    info["measures"] = hard_costs(layers, fixed_bits)
    return info


@torch.no_grad()
def _plain_weight_quant(l: JointLayer, w: Tensor) -> nn.Module:
    wq, mix = l.wq, l.wq.mixture
    if mix.per_channel:
        return ChannelBitsWeightQuant.from_weight(w, mix.current_bits().long(), dim=wq.dim, name=l.name)
    i = int(mix.current())
    b = mix.bits[i]
    if b == 0:  # removed layer: all-zero weight, stored at the smallest width
        return UniformWeightQuant.from_weight(w, MIN_BITS, symmetric=True, dim=wq.dim, name=l.name)
    if wq.schemes[i] == "pwlq":
        m, p = wq.pwlq_params(w, i)
        return PWLQWeightQuant(b, p, m, variant=wq.variant, dim=wq.dim)
    return UniformWeightQuant.from_weight(w, b, symmetric=True, dim=wq.dim, name=l.name)


@torch.no_grad()
def finalize_(model: nn.Module) -> nn.Module:
    """Turn every joint layer into a plain quantized, pruned layer (DEVELOPING.md representation).

    Not yet hardened mixtures/masks are hardened at their argmax and |w| > β first. Then masks are baked into
    the weights (exact zeros), each :class:`SoftMixWeightQuant` is replaced by the fixed-precision
    :class:`~prunequant.quantization.uniform.UniformWeightQuant` / :class:`~prunequant.quantization.pwlq.
    PWLQWeightQuant` (or :class:`ChannelBitsWeightQuant`) that computes the same values, and each
    :class:`SoftMixActQuant` by an :class:`~prunequant.quantization.base.ActFakeQuant` with the same scale.
    The finalized model's outputs equal the hardened soft model's exactly (eval mode).
    """
    layers = joint_layers(model)
    if not layers:
        raise LayerError(f"{type(model).__name__}: no joint quantizers to finalize")
    if any(not m.hard for m in unique_mixtures(layers)) or any(isinstance(l.mask, AnalyticThreshold) for l in layers):
        harden_(model, layers=layers)
    finalize_masks_(model)
    for l in layers:
        plist = l.module.parametrizations[l.pname]
        i = next(k for k, p in enumerate(plist) if p is l.wq)
        plist[i] = _plain_weight_quant(l, plist.original.detach())
    done = set()
    for l in layers:
        if l.aq is None or id(l.module) in done:
            continue
        done.add(id(l.module))
        b = l.aq.bits
        attach_input_quant(l.module, ActFakeQuant(b, signed=l.aq.signed, scale=l.aq.scale(b).detach().clone()))
    return model


def _phase_config(base: TrainConfig, epochs: int, sub: str, lr: float | None) -> TrainConfig:
    ckpt = str(Path(base.checkpoint_dir) / sub) if base.checkpoint_dir else None
    kw = {"lr": lr} if lr is not None else {}
    return dataclasses.replace(base, epochs=epochs, checkpoint_dir=ckpt, **kw)


def _calibration_batches(train: DataLoader | None, n: int = 4):
    if train is None:
        return []
    out = []
    for b in train:
        out.append(b)
        if len(out) >= n:
            break
    return out


@register_handler(JointConfig, finalize=finalize_)
def prune_quantize_joint_(model: nn.Module, config: JointConfig, train: DataLoader | None = None,
                          val: DataLoader | None = None, train_config: TrainConfig | None = None,
                          loss_fn: Callable = F.cross_entropy, metric: Callable = accuracy,
                          example_input: Any = None, calibration: Iterable | None = None,
                          console: Console | None = None, total_steps: int | None = None) -> JointResult:
    """Jointly prune and mixed-precision quantize ``model`` in place.

    Without ``train``: only attach (needs ``calibration`` batches and ``example_input``); train with
    ``result.plugin`` in your own :class:`~prunequant.training.Trainer` (``total_steps``: the optimizer steps you
    will train for, which set the target ramp and the τ / α schedules), then :func:`harden_` and
    :func:`finalize_`. With ``train``: ``config.epochs`` soft joint epochs, hardening to the targets,
    ``config.finetune_epochs`` with fixed choices, then (``config.finalize``) :func:`finalize_`.
    ``train_config`` supplies optimizer, seed, device, checkpoints (epochs are overridden; its lr is used for
    the weights, else ``config.lr``; the fine-tune uses ``config.finetune_schedule``).
    """
    calib = list(calibration) if calibration is not None else _calibration_batches(train)
    if example_input is None:
        if not calib:
            raise ConfigError("prune_quantize_(JointConfig) needs train=, calibration= or example_input=")
        first = calib[0]
        example_input = (first[0] if isinstance(first, (tuple, list)) else first)[:1]
    if not calib:
        calib = [(example_input,)]
    base = train_config or TrainConfig(progress=False)
    lr = None if train_config is not None else config.lr
    device = base.device if base.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    calib = [tuple(t.to(device) if isinstance(t, Tensor) else t for t in (b if isinstance(b, (tuple, list)) else (b,)))
             for b in calib]
    example_input = example_input.to(device) if isinstance(example_input, Tensor) else example_input
    layers, fixed_bits, items = attach_joint_(model, config, calib, example_input)
    steps = config.epochs * len(train) if train is not None else total_steps
    pruning = AnalyticThresholdPlugin(items, _analytic_config(config), total_steps=steps) if items else None
    plugin = JointPlugin(layers, config, fixed_bits, steps, pruning)
    result = JointResult(plugin=plugin, layers=layers, fixed_bits=fixed_bits)
    if train is None:
        return result
    console = console or Console(stderr=True)
    log = console.print if config.verbose else None
    if config.epochs > 0:
        trainer = Trainer(model, _phase_config(base, config.epochs, "soft", lr), loss_fn=loss_fn, plugins=[plugin],
                          metric=metric, console=console)
        result.history = [{"phase": "soft", **h} for h in trainer.fit(train, val)]
    if val is not None:
        result.val_metric_soft = evaluate(model, val, metric, device=device)
    result.harden_info = harden_(model, config, layers, fixed_bits, log)
    if val is not None:
        result.val_metric_hard = evaluate(model, val, metric, device=device)
    if config.verbose:
        console.print(rich_table(layer_table(layers), "joint: hardened (argmax bits, repaired to the targets)"))
    if config.finetune_epochs > 0:
        ft_plugin = JointPlugin(layers, config, fixed_bits, hard=True)
        ft_base = dataclasses.replace(base, schedule=config.finetune_schedule)
        ft = Trainer(model, _phase_config(ft_base, config.finetune_epochs, "finetune", lr), loss_fn=loss_fn,
                     plugins=[ft_plugin], metric=metric, console=console)
        result.history += [{"phase": "finetune", **h} for h in ft.fit(train, val)]
    result.measures = hard_costs(layers, fixed_bits)
    result.table = layer_table(layers)
    if config.finalize:
        finalize_(model)
    if val is not None:
        result.val_metric_final = evaluate(model, val, metric, device=device)
    return result
