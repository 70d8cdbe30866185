"""Per-layer sensitivity, as AIMET and NNCF users know it: compress one layer at a time with a config and measure
what it costs.

For every module the config selects, a copy of the model gets the config restricted to that module alone (its
``include`` set to the module, or every other module put in ``skip``), the data-free transform runs (a training
plugin that can snap to its target, e.g. the analytic threshold, is snapped, so the layer sits exactly at the
config's target), the copy is finalized, and on ``data`` it is compared with the uncompressed model: the metric
and the output error (relative L2 error and cosine of the outputs). Layers are ranked by metric drop, then by output
error. With ``cumulative=True`` the layers are then compressed together greedily, least sensitive first, and the
metric after each addition is recorded (where a metric budget would stop).

:func:`plan_from_budget` turns the ranking into a config for a metric budget: starting from the whole config, it
moves the most sensitive layers to a fallback (``keep_8bit``, then ``skip`` for quantization; ``exclude`` for
pruning) one at a time, measuring each time, until the metric drop on the data is within ``max_drop``; the final
config is measured once more from scratch. A budget that cannot be met says so (``feasible=False``).
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


def _options(handler: registry.Handler, batches: list, calibration: Any = None) -> dict[str, Any]:
    """The data-free keyword options a handler can use, filled from ``calibration`` (a Tensor of inputs or a list
    of input batches), else from the inputs of ``batches``."""
    if calibration is None:
        inputs = [split_batch(b)[0] for b in batches]
    elif isinstance(calibration, torch.Tensor):
        inputs = [calibration]
    else:  # input batches, or (x, y) batches of a loader
        inputs = [split_batch(b)[0] if isinstance(b, (tuple, list, dict)) else b for b in calibration]
    opts: dict[str, Any] = {}
    if "calibration_data" in handler.options:
        opts["calibration_data"] = torch.cat(inputs) if all(isinstance(x, torch.Tensor) for x in inputs) else inputs
    if "calibration" in handler.options:
        opts["calibration"] = [(x,) for x in inputs]
    if "example_input" in handler.options:
        x = inputs[0]
        opts["example_input"] = x[:1] if isinstance(x, torch.Tensor) else x
    return opts


def _compress(model: nn.Module, config: Any, batches: list, calibration: Any = None) -> nn.Module:
    """A finalized copy of ``model`` compressed with ``config`` (data-free transform; plugins snapped)."""
    handler = registry.handler_for(config)
    m = copy.deepcopy(model)
    out = handler.fn(m, config, **_options(handler, batches, calibration))
    snap = getattr(out, "snap_to_target", None)
    if callable(snap):
        snap()
    api.finalize_(m)
    return m


def sensitivity(model: nn.Module, config: Any, data: Iterable, metric: Callable[..., float] = accuracy,
                max_batches: int | None = 8, cumulative: bool = False, calibration: Any = None) -> SensitivityResult:
    """Per-layer sensitivity of ``model`` to ``config``: each selected layer compressed alone, on ``data``.

    Args:
        model: the model (left unchanged; copies are compressed).
        config: a config whose transform needs no training data (``MagnitudeConfig``, ``PWLQConfig``,
            ``AnalyticThresholdConfig`` (thresholds snapped to its target), ...).
        data: batches ``(x, y)`` / dicts with labels (a ``DataLoader`` or a list); also the calibration data.
        metric: ``metric(outputs, targets) -> float``, higher is better (needs targets in ``data``).
        max_batches: batches of ``data`` used (None: all).
        cumulative: also compress the layers together, least sensitive first, recording the metric each time.
        calibration: calibration inputs for quantization configs (a Tensor, or a list of input batches); default:
            the inputs of ``data`` (pass training samples to keep calibration and measurement apart).

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
            m = _compress(model, _restrict(config, name, names), batches, calibration)
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
            m = _compress(model, _restrict_many(config, order[:k], names), batches, calibration)
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


FALLBACKS = ("keep_8bit", "skip", "exclude")


@dataclass
class BudgetPlan:
    """What :func:`plan_from_budget` chose and measured.

    ``config``: the config to use (the given one with ``keep_8bit`` / ``skip`` / ``exclude`` extended);
    ``feasible``: the metric drop of ``config``, measured from scratch on all of the data, is <= ``max_drop``
    *and* at least one layer is still compressed below the fallback; ``message`` says what happened either way.
    ``steps``: every greedy move (layer, fallback, metric drop after it), in order."""

    config: Any
    max_drop: float
    metric_name: str
    baseline_metric: float
    metric: float
    metric_drop: float
    feasible: bool
    message: str
    fallbacks: dict[str, list[str]] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    initial_metric_drop: float | None = None
    sensitivity: SensitivityResult | None = None

    @property
    def changes(self) -> dict[str, list[str]]:
        """``{"keep_8bit": [...], "skip": [...]}`` (or ``{"exclude": [...]}``): the layers moved, per fallback."""
        return {k: v for k, v in self.fallbacks.items() if v}

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("max_drop", "metric_name", "baseline_metric", "metric", "metric_drop",
                                           "feasible", "message", "fallbacks", "steps", "initial_metric_drop")}
        d["config"] = _config_dict(self.config)
        return d


def _fallbacks_for(config: Any, fallback: Any) -> tuple[str, ...]:
    names = {f.name for f in dataclasses.fields(config)} if dataclasses.is_dataclass(config) else set()
    if fallback is None:
        if "keep_8bit" in names:
            low = config.wbits < 8 or (getattr(config, "abits", None) is not None and config.abits < 8)
            fallback = ("keep_8bit", "skip") if low else ("skip",)
        elif "exclude" in names:
            fallback = ("exclude",)
        elif "skip" in names:
            fallback = ("skip",)
        else:
            fallback = ()
    fallback = (fallback,) if isinstance(fallback, str) else tuple(fallback)
    if not fallback:
        raise ConfigError(f"{type(config).__name__} has none of keep_8bit, skip, exclude: no per-layer fallback to "
                          f"plan a metric budget with")
    for f in fallback:
        if f not in FALLBACKS or f not in names:
            raise ConfigError(f"fallback {f!r} is not a field of {type(config).__name__}; "
                              f"available: {', '.join(x for x in FALLBACKS if x in names) or 'none'}")
    if "skip" in fallback and "exclude" in fallback:
        raise ConfigError("fallback: give skip or exclude (both leave a layer uncompressed), not both")
    return fallback


def _apply_fallbacks(config: Any, moved: dict[str, list[str]]) -> Any:
    """``config`` with the layers of ``moved[f]`` appended to its field ``f`` (a layer is in one fallback only)."""
    changes = {}
    for f, layers in moved.items():
        if layers:
            changes[f] = tuple(getattr(config, f, None) or ()) + tuple(layers)
    return dataclasses.replace(config, **changes) if changes else config


def plan_from_budget(model: nn.Module, config: Any, data: Iterable, metric: Callable[..., float] = accuracy,
                     max_drop: float = 0.01, fallback: str | tuple[str, ...] | None = None,
                     sensitivity_result: SensitivityResult | None = None, max_batches: int | None = None,
                     calibration: Any = None, search: str = "linear", refine: bool = True
                     ) -> tuple[Any, BudgetPlan]:
    """Per-layer choices for a metric budget: the config, with the most sensitive layers moved to a fallback, whose
    metric drop on ``data`` is at most ``max_drop`` (NNCF's accuracy control / AIMET's per-layer fallback).

    Starting from ``config`` on every layer, the layers are taken most sensitive first (the ranking of
    :func:`sensitivity`) and moved, one at a time, to the first fallback (``keep_8bit``: 8-bit weights and input
    activations), measuring the metric after each move, until the drop is within the budget. If every layer at
    the first fallback is still over budget, they are moved on to the next one (``skip``: float) in the same
    order. With ``refine`` each moved layer is then tried back once, last moved first, and stays back if the
    budget still holds. Pruning configs fall back to ``exclude`` (the layer stays dense). The chosen config is
    then built and measured once more from scratch on all of ``data``: the returned numbers are that
    measurement. Use a validation split as ``data``, never the test split.

    Args:
        model: the model (left unchanged).
        config: a config :func:`sensitivity` accepts.
        data: batches ``(x, y)`` with targets (the validation split).
        metric: ``metric(outputs, targets) -> float``, higher is better.
        max_drop: largest allowed ``baseline - metric`` (accuracy 0.01 = one point).
        fallback: fields to move layers to, in order (default: ``("keep_8bit", "skip")`` for quantization below
            8 bits, ``("skip",)`` at 8 bits, ``("exclude",)`` for pruning).
        sensitivity_result: a ranking computed before on the same data (saves recomputing it).
        max_batches: batches of ``data`` used for the greedy moves (None: all); the final check uses all.
        calibration: calibration inputs for quantization (default: the inputs of ``data``).
        search: ``"linear"`` (one layer more per measurement, as NNCF's accuracy control; up to 2·L
            measurements) or ``"bisect"`` (binary search on how many of the ranked layers move: about
            2·log2(L) measurements, for models with many layers; assumes the drop falls as layers move, and the
            final check measures the result either way).
        refine: once the budget holds, try returning each moved layer (last moved first) and keep it back if
            the budget still holds (one measurement per moved layer; removes layers moved on ties or noise).

    Returns:
        ``(config_for_the_budget, BudgetPlan)``. When the budget cannot be met (even with every layer at the last
        fallback but one, or a negative budget), ``plan.feasible`` is False, ``plan.message`` says why, and the
        returned config is the last one tried, with its measured drop: never presented as meeting the budget.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from prunequant.pruning import MagnitudeConfig
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
        >>> x = torch.randn(64, 4); data = [(x, model(x).argmax(1))]
        >>> cfg, plan = plan_from_budget(model, MagnitudeConfig(sparsity=0.5), data, max_drop=0.05)
        >>> plan.feasible == (plan.metric_drop <= 0.05)
        True
    """
    if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) or not math.isfinite(max_drop):
        raise ConfigError(f"max_drop must be a finite number (the largest allowed metric drop), got {max_drop!r}")
    fallbacks = _fallbacks_for(config, fallback)
    if search not in ("linear", "bisect"):
        raise ConfigError(f"search must be 'linear' or 'bisect', got {search!r}")
    all_batches = list(data)
    if not all_batches:
        raise ConfigError("plan_from_budget needs at least one batch of data")
    batches = all_batches if max_batches is None else all_batches[:max_batches]
    res = sensitivity_result
    if res is None:
        res = sensitivity(model, config, batches, metric, max_batches=None, calibration=calibration)
    order = [r.layer for r in res.layers if not r.skipped]
    if not order:
        raise ConfigError("no layer could be compressed alone: nothing to plan (see the sensitivity result)")
    y0, targets = _outputs(model, batches)
    if targets is None:
        raise ConfigError("plan_from_budget needs targets in data ((x, y) batches or dicts with labels)")
    base = float(metric(y0, targets))
    name = getattr(metric, "name", getattr(metric, "__name__", "metric"))

    def measure(cfg: Any, bs: list) -> float:
        y, t = _outputs(_compress(model, cfg, bs, calibration), bs)
        return float(metric(y, t))

    def state(level: int, k: int) -> dict[str, list[str]]:
        """Every layer at the fallback before ``level`` (none for the first), the ``k`` most sensitive at it."""
        moved = {f: [] for f in fallbacks}
        if level > 0:
            moved[fallbacks[level - 1]] = list(order[k:])
        moved[fallbacks[level]] = list(order[:k])
        return moved

    steps: list[dict[str, Any]] = []
    cache: dict[tuple[int, int], float] = {}

    def try_state(level: int, k: int) -> float:
        if (level, k) not in cache:
            cache[level, k] = base - measure(_apply_fallbacks(config, state(level, k)), batches)
            steps.append({"layer": order[k - 1], "fallback": fallbacks[level], "layers_moved": k,
                          "metric_drop": cache[level, k]})
        return cache[level, k]

    drop = base - measure(config, batches)
    initial = drop
    steps.append({"layer": None, "fallback": None, "layers_moved": 0, "metric_drop": drop})
    moved: dict[str, list[str]] = {f: [] for f in fallbacks}
    met = drop <= max_drop
    last = len(fallbacks) - 1
    met_level = -1
    for level in range(len(fallbacks)):
        if met:
            break
        met_level = level
        kmax = len(order) - 1 if level == last else len(order)  # every layer at the last fallback: not a plan
        if kmax < 1:
            break
        if search == "linear":
            for k in range(1, kmax + 1):
                moved = state(level, k)
                if try_state(level, k) <= max_drop:
                    met = True
                    break
        else:  # bisect on the number of layers moved (the drop is assumed to fall as more layers move)
            moved = state(level, kmax)
            if try_state(level, kmax) > max_drop:
                continue
            lo, hi = 1, kmax
            while lo < hi:
                mid = (lo + hi) // 2
                if try_state(level, mid) <= max_drop:
                    hi = mid
                else:
                    lo = mid + 1
            moved, met = state(level, hi), True
    if met and refine and met_level >= 0:
        # one pass back: a moved layer whose return (to the config, or to the previous fallback) keeps the
        # budget goes back; the ranking's ties and noise move layers that did not help
        f = fallbacks[met_level]
        prev = fallbacks[met_level - 1] if met_level > 0 else None
        for layer in reversed(list(moved[f])):
            trial = {g: [n for n in v if n != layer] for g, v in moved.items()}
            if prev is not None:
                trial[prev].append(layer)
            d = base - measure(_apply_fallbacks(config, trial), batches)
            steps.append({"layer": layer, "fallback": prev, "refine": True,
                          "layers_moved": sum(len(v) for v in trial.values()), "metric_drop": d})
            if d <= max_drop:
                moved = trial
    final_cfg = _apply_fallbacks(config, moved)
    # the check: the chosen config built again from scratch, on all of the data
    y0_all, t_all = (y0, targets) if batches is all_batches else _outputs(model, all_batches)
    base_all = float(metric(y0_all, t_all))
    value = measure(final_cfg, all_batches)
    final_drop = base_all - value
    feasible = met and final_drop <= max_drop
    n_moved = sum(len(v) for v in moved.values())
    desc = ", ".join(f"{f}: {', '.join(v)}" for f, v in moved.items() if v) or "no layer moved"
    if feasible:
        message = (f"budget met: {name} drop {final_drop:.4g} <= {max_drop:g} on {len(t_all)} samples with "
                   f"{n_moved} of {len(order)} layers moved ({desc})")
    elif met:
        message = (f"budget NOT met on all of the data: {name} drop {final_drop:.4g} > {max_drop:g} on "
                   f"{len(t_all)} samples (met on the first {len(batches)} batches only; {desc})")
    elif max_drop < 0 and initial > max_drop:
        message = (f"budget NOT met: max_drop={max_drop:g} asks for a better {name} than the uncompressed model; "
                   f"best found: drop {final_drop:.4g} ({desc})")
    else:
        message = (f"budget NOT met: {name} drop {final_drop:.4g} > {max_drop:g} even with every layer but "
                   f"{order[-1]!r} at {fallbacks[-1]} ({desc}); compress less (more bits, lower sparsity)")
    plan = BudgetPlan(config=final_cfg, max_drop=float(max_drop), metric_name=name, baseline_metric=base_all,
                      metric=value, metric_drop=final_drop, feasible=feasible, message=message,
                      fallbacks={f: list(v) for f, v in moved.items()}, steps=steps, initial_metric_drop=initial,
                      sensitivity=res)
    return final_cfg, plan


def compressed_copy(model: nn.Module, config: Any, data: Iterable | None = None, calibration: Any = None) -> nn.Module:
    """A finalized copy of ``model`` compressed with ``config`` the way :func:`sensitivity` and
    :func:`plan_from_budget` measure it (data-free transform, plugins snapped to their target, calibration on
    ``calibration`` or else the inputs of ``data``). ``model`` is left unchanged."""
    api._load_methods()
    batches = list(data) if data is not None else []
    if calibration is None and not batches:
        handler = registry.handler_for(config)
        if "calibration_data" in handler.options or "calibration" in handler.options:
            raise ConfigError(f"{type(config).__name__} needs calibration inputs: give data or calibration")
    return _compress(model, config, batches, calibration)
