"""The two baselines the joint method is compared with, in the same code path (same quantizers, report, io):

* :class:`MagnitudeQATConfig` - global magnitude pruning, then fixed-bit quantization-aware training: every
  layer at ``wbits`` weights / ``abits`` feature maps with straight-through rounding (the joint quantizers with a
  single candidate), masks fixed.
* :class:`AnalyticPWLQConfig` - sequential: analytic-threshold self-pruning (with its fine-tune), then PWLQ
  post-training quantization of the pruned model (:class:`~prunequant.quantization.PWLQConfig`).

Both take a ``sparsity`` or a ``target_size_bytes``; for a size the sparsity is found by bisection on the
report's storage formula for magnitude masks at the given bits (:func:`sparsity_for_size`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from .. import registry
from ..analysis.report import storage_bits
from ..core.targets import weight_key
from ..errors import ConfigError
from ..pruning.analytic import AnalyticPruningResult, AnalyticThresholdConfig, fit_analytic_
from ..pruning.base import global_sparsity, prunable_modules
from ..pruning.magnitude import apply_magnitude_masks_, magnitude_masks
from ..quantization import PWLQConfig
from ..quantization.base import check_bits
from ..training import Fit, Trainer, evaluate, phase_config, resolve_device
from ..training.fit import first_batches
from .config import JointConfig
from .costs import fixed_param_bits
from .transform import attach_joint_, finalize_, finalize_joint_layers_, harden_


def _check_common(cfg) -> None:
    """Validation shared by both baseline configs: one size target, bit widths, granularity."""
    _check_target(cfg.sparsity, cfg.target_size_bytes)
    check_bits(cfg.wbits, "wbits")
    if cfg.abits is not None:
        check_bits(cfg.abits, "abits")
    if cfg.granularity not in ("tensor", "channel"):
        raise ConfigError(f"granularity must be 'tensor' or 'channel', got {cfg.granularity!r}")


def _check_target(sparsity: float | None, size: float | None) -> None:
    if (sparsity is None) == (size is None):
        raise ConfigError("give exactly one of sparsity or target_size_bytes")
    if sparsity is not None and not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"sparsity must be in [0, 1), got {sparsity}")
    if size is not None and not (math.isfinite(size) and size > 0):
        raise ConfigError(f"target_size_bytes must be a finite number > 0, got {size}")


@torch.no_grad()
def size_at_sparsity(model: nn.Module, sparsity: float, wbits: int, state_bits_per_row: int = 64,
                     granularity: str = "tensor", include=None, exclude=None) -> float:
    """Bytes the report would count after global magnitude pruning to ``sparsity`` and ``wbits``-bit weights
    (quantizer state: ``state_bits_per_row`` per scale row; rows = channels or 1 per tensor)."""
    masks = magnitude_masks(model, sparsity, "global", include, exclude)
    total, ids = 0, set()
    for name, module, pname in prunable_modules(model, include, exclude):
        w = getattr(module, pname).detach()
        raw = module.parametrizations[pname].original if parametrize.is_parametrized(module, pname) \
            else getattr(module, pname)
        ids.add(id(raw))
        rows = w.shape[0] if granularity == "channel" and w.dim() > 1 else 1
        total += storage_bits(w * masks[weight_key(name, pname)], wbits, rows * state_bits_per_row)
    return (total + fixed_param_bits(model, ids)) / 8


def sparsity_for_size(model: nn.Module, target_bytes: float, wbits: int, state_bits_per_row: int = 64,
                      granularity: str = "tensor", include=None, exclude=None, iters: int = 30) -> float:
    """Smallest global magnitude sparsity whose report size at ``wbits`` is <= ``target_bytes``."""
    if size_at_sparsity(model, 0.999, wbits, state_bits_per_row, granularity, include, exclude) > target_bytes:
        raise ConfigError(f"{target_bytes:.0f} bytes are out of reach at {wbits} bits by pruning alone")
    lo, hi = 0.0, 0.999
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if size_at_sparsity(model, mid, wbits, state_bits_per_row, granularity, include, exclude) > target_bytes:
            lo = mid
        else:
            hi = mid
    return hi


def _need_fit(fit: Fit | None, what: str) -> Fit:
    if fit is None:
        raise ConfigError(f"{what} trains: give fit=Fit(train, ...) or train=")
    return fit


@dataclass
class MagnitudeQATResult:
    """What :func:`qat_after_magnitude_` returns."""

    sparsity: float
    history: list[dict[str, Any]] = field(default_factory=list)
    val_metric: float | None = None


@dataclass
class AnalyticPWLQResult:
    """What :func:`analytic_then_pwlq_` returns: the sparsity, both stages' results and the final metric."""

    sparsity: float
    pruning: AnalyticPruningResult
    quantization: Any
    val_metric: float | None = None


@dataclass
class MagnitudeQATConfig:
    """Baseline: global magnitude pruning to ``sparsity`` (or to ``target_size_bytes`` at ``wbits``), then
    ``epochs`` of fixed-bit QAT (straight-through rounding, dynamic max scales, ``granularity`` scales; cosine lr
    schedule unless ``Fit.train_config`` says otherwise)."""

    sparsity: float | None = None
    target_size_bytes: float | None = None
    wbits: int = 4
    abits: int | None = 4
    granularity: str = "tensor"
    epochs: int = 10
    finalize: bool = True
    include: Sequence[str | type] | None = None
    exclude: Sequence[str | type] | None = None

    def __post_init__(self):
        _check_common(self)
        if self.epochs < 0:
            raise ConfigError(f"epochs must be >= 0, got {self.epochs}")


@registry.register_handler(MagnitudeQATConfig, verb="prune_quantize", finalize=finalize_joint_layers_, order=10)
def qat_after_magnitude_(model: nn.Module, config: MagnitudeQATConfig, fit: Fit | None = None) -> MagnitudeQATResult:
    """Prune by magnitude, then fixed-bit QAT on ``fit``'s data."""
    fit = _need_fit(fit, "MagnitudeQATConfig")
    s = config.sparsity
    if s is None:
        s = sparsity_for_size(model, config.target_size_bytes, config.wbits, 64, config.granularity,
                              config.include, config.exclude)
    apply_magnitude_masks_(model, s, "global", config.include, config.exclude)
    jc = JointConfig(weight_bits=(config.wbits,), act_bits=(config.abits or 8,), quantize_acts=config.abits is not None,
                     granularity=config.granularity, prune=False, epochs=0, finetune_epochs=config.epochs,
                     include=config.include, exclude=config.exclude)
    base = fit.base(schedule="cosine")
    calib = first_batches(fit.train, 4)
    device = resolve_device(base.device)
    model.to(device)
    calib = [tuple(t.to(device) for t in b) for b in calib]
    layers, fixed_bits, _ = attach_joint_(model, jc, calib, calib[0][0][:1])
    harden_(model, layers=layers, fixed_bits=fixed_bits)
    out = MagnitudeQATResult(sparsity=s)
    if config.epochs > 0:
        out.history = Trainer(model, phase_config(base, config.epochs, "qat"), loss_fn=fit.loss_fn,
                              metric=fit.metric).fit(fit.train, fit.val)
    if config.finalize:
        finalize_(model)
    if fit.val is not None:
        out.val_metric = evaluate(model, fit.val, fit.metric, device=device)
    return out


@dataclass
class AnalyticPWLQConfig:
    """Baseline: analytic-threshold pruning to ``sparsity`` (or the sparsity that meets ``target_size_bytes`` at
    ``wbits`` under magnitude masks) with ``prune_epochs`` + ``finetune_epochs``, then PWLQ post-training
    quantization (``wbits`` weights, ``abits`` feature maps; ``granularity``; no BN folding or bias correction by
    default, because their per-channel state would dominate a size budget of a few kB)."""

    sparsity: float | None = None
    target_size_bytes: float | None = None
    wbits: int = 4
    abits: int | None = 4
    granularity: str = "tensor"
    prune_epochs: int = 20
    finetune_epochs: int = 10
    bias_correction: bool = False
    fold_bn: bool = False
    include: Sequence[str | type] | None = None
    exclude: Sequence[str | type] | None = None

    def __post_init__(self):
        _check_common(self)


@registry.register_handler(AnalyticPWLQConfig, verb="prune_quantize")
def analytic_then_pwlq_(model: nn.Module, config: AnalyticPWLQConfig, fit: Fit | None = None) -> AnalyticPWLQResult:
    """Analytic pruning (with its fine-tune) on ``fit``'s data, then PWLQ PTQ calibrated on the training data."""
    fit = _need_fit(fit, "AnalyticPWLQConfig")
    s = config.sparsity
    if s is None:
        s = sparsity_for_size(model, config.target_size_bytes, config.wbits, 64, config.granularity,
                              config.include, config.exclude)
    s = min(max(s, 1e-3), 0.99)
    pr = fit_analytic_(model, AnalyticThresholdConfig(target_sparsity=s, epochs=config.prune_epochs,
                                                      finetune_epochs=config.finetune_epochs, finalize=True,
                                                      include=config.include, exclude=config.exclude), fit)
    skip = tuple(s for s in (config.exclude or ()) if isinstance(s, str))  # excluded layers stay fp32 here too
    qcfg = PWLQConfig(wbits=config.wbits, abits=config.abits, scheme="pwlq", granularity=config.granularity,
                      bias_correction=config.bias_correction, fold_bn=config.fold_bn,
                      quantize_pool_inputs=False, skip=skip)
    qr = registry.handler_for(qcfg, "quantize").fn(model, qcfg, calibration_data=fit.train)
    out = AnalyticPWLQResult(sparsity=global_sparsity(model, config.include, config.exclude), pruning=pr,
                             quantization=qr)
    if fit.val is not None:
        out.val_metric = evaluate(model, fit.val, fit.metric)
    return out
