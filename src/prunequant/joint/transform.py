"""The joint transform, no training: attach h(w) + soft quantizers (:func:`attach_joint_`), calibrate feature-map
ranges, harden the soft choices to the targets (:func:`harden_`) and turn every joint layer into a plain quantized,
pruned layer (:func:`finalize_`)."""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..core.checks import check_weight
from ..core.cost import act_quantizer_state_bits
from ..core.targets import weight_key
from ..errors import ConfigError, LayerError
from ..pruning.analytic import (
    AnalyticThreshold,
    AnalyticThresholdConfig,
    attach_analytic_thresholds_,
    harden_masks_,
)
from ..pruning.base import apply_mask_, finalize_masks_, get_mask, prunable_modules
from ..quantization.base import ActFakeQuant, attach_input_quant
from ..training.fit import batch_input
from .config import JointConfig
from .controller import fill_budget_, repair_bits_, snap_beta_, snap_sparsity_
from .costs import JointLayer, fixed_param_bits, floor_storage_bits, hard_costs, measure_macs_
from .plugin import unique_mixtures
from .quantizers import SoftMixActQuant, SoftMixWeightQuant


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
                    out.append(JointLayer(weight_key(name, pname), name, module, pname, p, aq))
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
            x = batch_input(b)
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
        layer = weight_key(name, pname)
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
        dim = 0 if config.granularity == "channel" else None
        floor = fixed_bits + sum(floor_storage_bits(r, SoftMixWeightQuant(
            config.weight_bits, config.schemes, dim=dim,
            mix_channels=r.shape[0] if config.mix_granularity == "channel" else None,
            scale_channels=r.shape[0] if dim == 0 else 1)) for r in raws)
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
        layers.append(JointLayer(weight_key(name, pname), name, module, pname, wq, aqs.get(id(module))))
    for l in layers:
        l.wq.refresh_breakpoints_(l.hard_masked(), l.name)
    # what the finalized feature-map quantizers store (ActFakeQuant: one fp32 scale + its zero point) is charged
    # like the report charges it, so the hard size measure equals the report's rows
    fixed_bits += len(aqs) * act_quantizer_state_bits(ActFakeQuant(8, signed=False, scale=1.0))
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
        l.wq.refresh_breakpoints_(l.hard_masked(), l.name)
    info["measures"] = hard_costs(layers, fixed_bits)
    return info


@torch.no_grad()
def _plain_weight_quant(l: JointLayer, w: Tensor) -> nn.Module:
    return l.wq.fixed_quantizer(w, l.name)


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


def finalize_joint_layers_(model: nn.Module) -> nn.Module:
    """:func:`finalize_` when ``model`` has joint layers, else nothing (the registered finalizer)."""
    if joint_layers(model):
        finalize_(model)
    return model
