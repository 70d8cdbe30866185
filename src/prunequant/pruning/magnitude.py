"""Magnitude-pruning baselines: global (one threshold over all layers), uniform rate (the same fraction in every
layer), a rate tuned to an effective-MAC reduction, and AGP gradual pruning (Zhu & Gupta 2017) as a TrainPlugin.

All masks are :class:`~prunequant.pruning.base.FixedMask` parametrizations attached with
:func:`~prunequant.pruning.base.apply_mask_`. Magnitudes are read from the *effective* weight (mask applied), so
weights pruned earlier stay pruned when the sparsity grows (gradual and iterative schedules).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..api import register_handler
from ..errors import ConfigError, LayerError
from ..training import TrainConfig, Trainer, TrainPlugin, accuracy
from .base import apply_mask_, check_weight, finalize_masks_, get_mask, global_sparsity, prunable_modules

SCOPES = ("global", "uniform")


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise ConfigError(f"{name} must be in [0, 1], got {value}")


@torch.no_grad()
def _targets(model: nn.Module, include, exclude) -> list[tuple[str, nn.Module, str, Tensor]]:
    """(layer, module, param, |effective weight|) for every prunable tensor; NaN/Inf -> LayerError."""
    out = []
    for name, module, pname in prunable_modules(model, include, exclude):
        layer = f"{name}.{pname}" if name else pname
        w = getattr(module, pname).detach()  # effective weight: existing masks applied
        check_weight(w, layer)
        out.append((layer, module, pname, w.abs()))
    if not out:
        raise LayerError(f"{type(model).__name__}: no prunable layers selected (include={include}, "
                         f"exclude={exclude})")
    return out


def _smallest_k_mask(mag: Tensor, k: int) -> Tensor:
    """Keep-mask that prunes exactly the ``k`` smallest entries of ``mag`` (ties broken by position)."""
    keep = torch.ones(mag.numel(), dtype=torch.bool, device=mag.device)
    if k > 0:
        idx = torch.sort(mag.reshape(-1), stable=True).indices[:k]
        keep[idx] = False
    return keep.reshape(mag.shape)


@torch.no_grad()
def magnitude_masks(model: nn.Module, sparsity: float, scope: str = "global",
                    include: Sequence[str | type] | None = None,
                    exclude: Sequence[str | type] | None = None) -> dict[str, Tensor]:
    """Keep-masks (keyed ``"module.param"``) pruning a fraction ``sparsity`` of the weights by magnitude.

    ``scope="global"``: the ``sparsity * total`` smallest magnitudes over all selected tensors (one sort).
    ``scope="uniform"``: ``round(sparsity * N_l)`` smallest in each tensor.
    """
    _check_fraction("sparsity", sparsity)
    if scope not in SCOPES:
        raise ConfigError(f"scope must be one of {SCOPES}, got {scope!r}")
    items = _targets(model, include, exclude)
    if scope == "uniform":
        return {layer: _smallest_k_mask(m, round(sparsity * m.numel())) for layer, _, _, m in items}
    flat = torch.cat([m.reshape(-1).float().cpu() for _, _, _, m in items])
    keep = _smallest_k_mask(flat, round(sparsity * flat.numel()))
    out, offset = {}, 0
    for layer, _, _, m in items:
        out[layer] = keep[offset:offset + m.numel()].reshape(m.shape).to(m.device)
        offset += m.numel()
    return out


@torch.no_grad()
def apply_magnitude_masks_(model: nn.Module, sparsity: float, scope: str = "global",
                           include: Sequence[str | type] | None = None,
                           exclude: Sequence[str | type] | None = None) -> dict[str, float]:
    """Prune ``model`` in place (FixedMask on every selected tensor); returns the sparsity per tensor."""
    masks = magnitude_masks(model, sparsity, scope, include, exclude)
    for name, module, pname in prunable_modules(model, include, exclude):
        layer = f"{name}.{pname}" if name else pname
        apply_mask_(module, pname, masks[layer], layer_name=layer)
    return {k: 1.0 - float(m.float().mean()) for k, m in masks.items()}


def effective_mac_reduction(model: nn.Module, example_input: Any, dense_macs: float | None = None) -> float:
    """1 - effective MACs / dense MACs, both as :func:`prunequant.analysis.report` counts them."""
    from ..analysis import report

    tot = report(model, example_input).total
    dense = tot.macs if dense_macs is None else dense_macs
    if not dense > 0:
        raise LayerError(f"{type(model).__name__}: the report counts no MACs")
    return 1.0 - float(tot.effective_macs) / float(dense)


@torch.no_grad()
def sparsity_for_mac_reduction(model: nn.Module, mac_reduction: float, example_input: Any, scope: str = "global",
                               include: Sequence[str | type] | None = None,
                               exclude: Sequence[str | type] | None = None, tol: float = 1e-4,
                               max_iter: int = 40) -> tuple[float, float]:
    """Bisect the magnitude-pruning rate whose masks give ``mac_reduction`` in the report (model untouched).

    Returns ``(sparsity, achieved_reduction)``: the smallest rate reaching the target (within ``tol`` on the rate).
    """
    _check_fraction("mac_reduction", mac_reduction)
    from ..analysis import report

    probe = copy.deepcopy(model)
    dense = float(report(probe, example_input).total.macs)

    probe_targets = prunable_modules(probe, include, exclude)

    def achieved(s: float) -> float:  # masks always from the untouched model's weights
        masks = magnitude_masks(model, s, scope, include, exclude)
        for name, module, pname in probe_targets:
            layer = f"{name}.{pname}" if name else pname
            apply_mask_(module, pname, masks[layer], layer_name=layer)
        return effective_mac_reduction(probe, example_input, dense)

    lo, hi = 0.0, 1.0
    top = achieved(hi)
    if top < mac_reduction:
        raise ConfigError(f"MAC reduction {mac_reduction:.4f} is unreachable by {scope} magnitude pruning of the "
                          f"selected layers (at most {top:.4f})")
    for _ in range(max_iter):
        if hi - lo <= tol:
            break
        mid = 0.5 * (lo + hi)
        if achieved(mid) >= mac_reduction:
            hi = mid
        else:
            lo = mid
    return hi, achieved(hi)


@dataclass
class MagnitudeConfig:
    """One-shot magnitude pruning (baseline). Give ``sparsity`` (fraction of prunable weights) or
    ``mac_reduction`` (fraction of effective MACs, rate found by bisection with the report; needs
    ``example_input``). ``scope``: "global" or "uniform". ``finetune_epochs`` with masks fixed if ``train`` is
    given; ``finalize`` bakes exact zeros."""

    sparsity: float | None = None
    mac_reduction: float | None = None
    scope: str = "global"
    include: Sequence[str] | None = None
    exclude: Sequence[str] = ()
    finetune_epochs: int = 0
    finalize: bool = False

    def __post_init__(self):
        if (self.sparsity is None) == (self.mac_reduction is None):
            raise ConfigError("MagnitudeConfig needs exactly one of sparsity or mac_reduction")
        _check_fraction("sparsity" if self.sparsity is not None else "mac_reduction",
                        self.sparsity if self.sparsity is not None else self.mac_reduction)
        if self.scope not in SCOPES:
            raise ConfigError(f"scope must be one of {SCOPES}, got {self.scope!r}")
        if self.finetune_epochs < 0:
            raise ConfigError(f"finetune_epochs must be >= 0, got {self.finetune_epochs}")


@register_handler(MagnitudeConfig, finalize=finalize_masks_)
def prune_magnitude_(model: nn.Module, config: MagnitudeConfig, train: DataLoader | None = None,
                     val: DataLoader | None = None, train_config: TrainConfig | None = None,
                     example_input: Any = None, loss_fn: Callable = F.cross_entropy,
                     metric: Callable = accuracy) -> dict[str, Any]:
    """Magnitude-prune ``model`` in place; returns ``{"sparsity", "layers", "mac_reduction"?, "history"}``."""
    s = config.sparsity
    out: dict[str, Any] = {}
    if config.mac_reduction is not None:
        if example_input is None:
            raise ConfigError("MagnitudeConfig(mac_reduction=...) needs example_input= to count MACs")
        s, red = sparsity_for_mac_reduction(model, config.mac_reduction, example_input, config.scope,
                                            config.include, config.exclude)
        out["mac_reduction"] = red
    out["layers"] = apply_magnitude_masks_(model, s, config.scope, config.include, config.exclude)
    out["sparsity"] = global_sparsity(model, config.include, config.exclude)
    if train is not None and config.finetune_epochs > 0:
        import dataclasses

        cfg = dataclasses.replace(train_config or TrainConfig(lr=1e-3, progress=False),
                                  epochs=config.finetune_epochs)
        out["history"] = Trainer(model, cfg, loss_fn=loss_fn, metric=metric).fit(train, val)
    if config.finalize:
        finalize_masks_(model)
    return out


def agp_sparsity(step: int, final_sparsity: float, start_step: int, end_step: int,
                 initial_sparsity: float = 0.0) -> float:
    """AGP schedule: s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0))^3, clamped to [t0, t1]."""
    if step <= start_step:
        return initial_sparsity if step == start_step else 0.0
    frac = min(1.0, (step - start_step) / max(end_step - start_step, 1))
    return final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - frac) ** 3


class AGPPlugin(TrainPlugin):
    """Gradual magnitude pruning during training: every ``frequency`` steps in [start_step, end_step] the masks
    are recomputed at the AGP sparsity for that step (``scope`` global or uniform).

    The constructor attaches a FixedMask (keeping the current non-zeros) to every selected tensor that has none,
    so build the plugin before the :class:`~prunequant.training.Trainer`: the masks are buffers in the model
    state and resume from checkpoints exactly; the plugin state holds the last applied sparsity.
    """

    name = "agp"

    def __init__(self, model: nn.Module, final_sparsity: float, end_step: int, start_step: int = 0,
                 frequency: int = 10, initial_sparsity: float = 0.0, scope: str = "global",
                 include: Sequence[str | type] | None = None, exclude: Sequence[str | type] | None = None):
        _check_fraction("final_sparsity", final_sparsity)
        _check_fraction("initial_sparsity", initial_sparsity)
        if not 0 <= start_step < end_step or frequency < 1:
            raise ConfigError(f"need 0 <= start_step < end_step and frequency >= 1 (got {start_step}, "
                              f"{end_step}, {frequency})")
        if scope not in SCOPES:
            raise ConfigError(f"scope must be one of {SCOPES}, got {scope!r}")
        self.final_sparsity, self.initial_sparsity = final_sparsity, initial_sparsity
        self.start_step, self.end_step, self.frequency = start_step, end_step, frequency
        self.scope, self.include, self.exclude = scope, include, exclude
        for layer, module, pname, mag in _targets(model, include, exclude):
            if get_mask(module, pname) is None:
                apply_mask_(module, pname, mag != 0, layer_name=layer)
        self.current = global_sparsity(model, include, exclude)

    def sparsity_at(self, step: int) -> float:
        return agp_sparsity(step, self.final_sparsity, self.start_step, self.end_step, self.initial_sparsity)

    def on_step_end(self, trainer, step: int) -> None:
        if step < self.start_step or step > self.end_step:
            return
        if (step - self.start_step) % self.frequency and step != self.end_step:
            return
        s = self.sparsity_at(step)
        if s > self.current:
            apply_magnitude_masks_(trainer.model, s, self.scope, self.include, self.exclude)
            self.current = s

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> dict | None:
        return {"sparsity": global_sparsity(trainer.model, self.include, self.exclude)}

    def state_dict(self) -> dict[str, Any]:
        return {"current": self.current}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.current = float(state["current"])
