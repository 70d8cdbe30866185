"""Per-layer sensitivity, as AIMET and NNCF users know it: compress one layer at a time with a config and measure
what it costs.

For every module the config selects, a copy of the model gets the config restricted to that module alone (its
``include`` set to the module, or every other module put in ``skip``), the data-free transform runs (a training
plugin that can snap to its target, e.g. the analytic threshold, is snapped, so the layer sits exactly at the
config's target), the copy is finalized, and on ``data`` it is compared with the uncompressed model: the metric
and the output error (relative L2 error and cosine of the outputs). Layers are ranked by metric drop, then by output
error. With ``cumulative=True`` the layers are then compressed together greedily, least sensitive first, and the
metric after each addition is recorded (where a metric budget would stop).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import api, registry
from ..core.targets import Selector, compressible_weights
from ..errors import ConfigError, PrunequantError
from ..training.batches import call_model, output_tensor, split_batch
from ..training.metrics import accuracy


@dataclass
class LayerSensitivity:
    """One module compressed alone. ``metric_drop`` = baseline metric − metric (higher = more sensitive);
    ``output_error`` = ‖y − y₀‖ / ‖y₀‖ over ``data``; ``skipped``: why the module could not be compressed alone."""

    layer: str
    params: int
    metric: float | None = None
    metric_drop: float | None = None
    output_error: float | None = None
    output_cosine: float | None = None
    skipped: str = ""


@dataclass
class SensitivityResult:
    """Per-layer sensitivities (most sensitive first) and, optionally, the greedy cumulative curve."""

    config: dict[str, Any]
    metric_name: str
    baseline_metric: float
    layers: list[LayerSensitivity] = field(default_factory=list)
    cumulative: list[dict[str, Any]] = field(default_factory=list)

    def ranking(self) -> list[str]:
        """Layer names, most sensitive first (skipped layers last)."""
        return [r.layer for r in self.layers]

    def layers_within(self, max_drop: float) -> list[str]:
        """The layers to compress for a metric budget: the longest greedy prefix (least sensitive first) of the
        cumulative curve whose metric drop stays <= ``max_drop``; every other layer is best left out (``skip`` /
        ``exclude``). Needs ``sensitivity(..., cumulative=True)``."""
        if not self.cumulative:
            raise ConfigError("layers_within needs the cumulative curve: call sensitivity(..., cumulative=True)")
        best: list[str] = []
        for row in self.cumulative:
            if row["metric_drop"] <= max_drop:
                best = list(row["layers"])
            else:
                break
        return best

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2))
        tmp.replace(path)
        return path


def _config_dict(config: Any) -> dict[str, Any]:
    out = {"type": type(config).__name__}
    if dataclasses.is_dataclass(config):
        for f in dataclasses.fields(config):
            v = getattr(config, f.name)
            if isinstance(v, (tuple, list)):
                v = [x.__name__ if isinstance(x, type) else x for x in v]
            out[f.name] = v if isinstance(v, (int, float, str, bool, list, dict, type(None))) else repr(v)
    return out


def _restrict(config: Any, module_name: str, all_modules: list[str]) -> Any:
    """``config`` limited to the module called ``module_name``."""
    names = {f.name for f in dataclasses.fields(config)} if dataclasses.is_dataclass(config) else set()
    if "include" in names:
        return dataclasses.replace(config, include=[module_name])
    if "skip" in names:
        others = tuple(n for n in all_modules if n != module_name)
        return dataclasses.replace(config, skip=tuple(getattr(config, "skip", ())) + others)
    raise ConfigError(f"{type(config).__name__} has neither include nor skip: it cannot be restricted to one layer")


def _restrict_many(config: Any, module_names: list[str], all_modules: list[str]) -> Any:
    names = {f.name for f in dataclasses.fields(config)}
    if "include" in names:
        return dataclasses.replace(config, include=list(module_names))
    keep = set(module_names)
    return dataclasses.replace(config, skip=tuple(getattr(config, "skip", ())) +
                               tuple(n for n in all_modules if n not in keep))


@torch.no_grad()
def _outputs(model: nn.Module, batches: list) -> tuple[torch.Tensor, torch.Tensor | None]:
    was = model.training
    model.eval()
    outs, ys = [], []
    try:
        for b in batches:
            inputs, targets = split_batch(b)
            outs.append(output_tensor(call_model(model, inputs)).detach().float().cpu())
            ys.append(targets)
    finally:
        model.train(was)
    ys_t = torch.cat(ys) if ys and all(isinstance(y, torch.Tensor) for y in ys) else None
    return torch.cat(outs), ys_t


def _options(handler: registry.Handler, batches: list) -> dict[str, Any]:
    """The data-free keyword options a handler can use, filled from ``batches``."""
    inputs = [split_batch(b)[0] for b in batches]
    opts: dict[str, Any] = {}
    if "calibration_data" in handler.options:
        opts["calibration_data"] = torch.cat(inputs) if all(isinstance(x, torch.Tensor) for x in inputs) else inputs
    if "calibration" in handler.options:
        opts["calibration"] = [(x,) for x in inputs]
    if "example_input" in handler.options:
        x = inputs[0]
        opts["example_input"] = x[:1] if isinstance(x, torch.Tensor) else x
    return opts


def _compress(model: nn.Module, config: Any, batches: list) -> nn.Module:
    """A finalized copy of ``model`` compressed with ``config`` (data-free transform; plugins snapped)."""
    handler = registry.handler_for(config)
    m = copy.deepcopy(model)
    out = handler.fn(m, config, **_options(handler, batches))
    snap = getattr(out, "snap_to_target", None)
    if callable(snap):
        snap()
    api.finalize_(m)
    return m


def sensitivity(model: nn.Module, config: Any, data: Iterable, metric: Callable[..., float] = accuracy,
                max_batches: int | None = 8, cumulative: bool = False) -> SensitivityResult:
    """Per-layer sensitivity of ``model`` to ``config``: each selected layer compressed alone, on ``data``.

    Args:
        model: the model (left unchanged; copies are compressed).
        config: a config whose transform needs no training data (``MagnitudeConfig``, ``PWLQConfig``,
            ``AnalyticThresholdConfig`` (thresholds snapped to its target), ...).
        data: batches ``(x, y)`` / dicts with labels (a ``DataLoader`` or a list); also the calibration data.
        metric: ``metric(outputs, targets) -> float``, higher is better (needs targets in ``data``).
        max_batches: batches of ``data`` used (None: all).
        cumulative: also compress the layers together, least sensitive first, recording the metric each time.

    Returns:
        A :class:`SensitivityResult` (JSON-able via ``to_dict()`` / ``to_json()``), most sensitive layer first.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from prunequant.pruning import MagnitudeConfig
        >>> from prunequant.training import neg_mse
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> x = torch.randn(32, 4); data = [(x, model(x).detach())]
        >>> res = sensitivity(model, MagnitudeConfig(sparsity=0.5), data, metric=neg_mse)
        >>> sorted(res.ranking())
        ['0', '2']
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"sensitivity needs a torch.nn.Module, got {type(model).__name__}")
    api._load_methods()
    registry.handler_for(config)  # unknown config -> ConfigError before any work
    batches = []
    for b in data:
        batches.append(b)
        if max_batches is not None and len(batches) >= max_batches:
            break
    if not batches:
        raise ConfigError("sensitivity needs at least one batch of data")
    sel = Selector.of(*(getattr(config, f, None) for f in ("include", "exclude", "types")),
                      skip=getattr(config, "skip", None))
    refs = compressible_weights(model, sel)
    modules: dict[str, int] = {}
    for r in refs:
        modules[r.name] = modules.get(r.name, 0) + getattr(r.module, r.param_name).numel()
    if not modules:
        raise ConfigError(f"{type(config).__name__} selects no compressible layer of {type(model).__name__}")
    y0, targets = _outputs(model, batches)
    if targets is None:
        raise ConfigError("sensitivity needs targets in data ((x, y) batches or dicts with labels) for the metric")
    base = float(metric(y0, targets))
    names = list(modules)
    rows = []
    for name in names:
        row = LayerSensitivity(layer=name, params=modules[name])
        try:
            m = _compress(model, _restrict(config, name, names), batches)
        except PrunequantError as e:
            row.skipped = str(e)
            rows.append(row)
            continue
        y, _ = _outputs(m, batches)
        row.metric = float(metric(y, targets))
        row.metric_drop = base - row.metric
        row.output_error = float((y - y0).norm() / y0.norm().clamp_min(1e-12))
        row.output_cosine = float(torch.nn.functional.cosine_similarity(y.flatten(), y0.flatten(), dim=0))
        rows.append(row)
    rows.sort(key=lambda r: (r.metric_drop is None, -(r.metric_drop or 0.0), -(r.output_error or 0.0)))
    result = SensitivityResult(config=_config_dict(config), metric_name=getattr(metric, "name", metric.__name__),
                               baseline_metric=base, layers=rows)
    if cumulative:
        order = [r.layer for r in reversed(rows) if not r.skipped]
        for k in range(1, len(order) + 1):
            m = _compress(model, _restrict_many(config, order[:k], names), batches)
            y, _ = _outputs(m, batches)
            v = float(metric(y, targets))
            result.cumulative.append({"layers": order[:k], "added": order[k - 1], "metric": v,
                                      "metric_drop": base - v,
                                      "output_error": float((y - y0).norm() / y0.norm().clamp_min(1e-12))})
    for r in result.layers:  # NaN-free JSON
        for k in ("metric", "metric_drop", "output_error", "output_cosine"):
            v = getattr(r, k)
            if v is not None and not math.isfinite(v):
                setattr(r, k, None)
                r.skipped = r.skipped or f"{k} is not finite"
    return result
