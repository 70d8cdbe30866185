"""Activation range calibration: observers on layer inputs, run over calibration batches, and a per-layer choice
of the range estimator by the error it causes at the layer's output.

Estimators (per observed tensor; batch values are then combined):

* ``"topk_median"`` (paper default, k = 10): the median of the k largest and of the k smallest values of each
  batch, averaged over batches (the reference code's ``act_clip_bounds``).
* ``"percentile"``: the ``percentile`` and ``100 - percentile`` quantiles of each batch, averaged over batches.
* ``"minmax"``: the global minimum and maximum.
* ``"mse"``: the clipping range that minimises the mean squared quantization error of the input itself,
  searched over a grid of clipping ratios of the min-max range (vectorized over the grid).
* ``"auto"`` (default): per activation quantizer, the range with the least **output** error of the layer it
  feeds: ``|| layer(q(x)) - layer(x) ||^2`` on the stored calibration inputs, over the four estimators above
  and a grid of clipping ratios. The layer's weights decide which input errors matter: outlier channels that
  meet small weights are clipped, outliers that carry signal are kept. Ties keep the earlier candidate.

A lower bound >= 0 (e.g. after ReLU) gives an unsigned quantizer on [0, r_u]; otherwise symmetric
(:meth:`ActFakeQuant.from_range`).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, LayerError, ShapeError

CALIBRATION_METHODS = ("auto", "topk_median", "percentile", "minmax", "mse")
ESTIMATORS = ("minmax", "percentile", "topk_median", "mse")
_OBSERVED = ("minmax", "percentile", "topk_median")
CLIP_GRID = 16                   # clipping ratios tried by "auto" (geometric, 1 down to 1/64 of the range)
MSE_GRID = 64                    # clipping ratios tried by "mse" (linear in (0, 1])
_MAX_SAMPLE_VALUES = 1 << 16     # values kept per layer for the "mse" search (an even subsample)
_MAX_STORED_ELEMENTS = 1 << 20   # input elements kept per layer for the output-error search (4 MB fp32)


class RangeObserver:
    """Collects per-batch range statistics of one tensor stream (``minmax``, ``percentile``, ``topk_median``;
    ``mse`` also keeps a subsample of the values for the clipping search)."""

    def __init__(self, method: str = "topk_median", k: int = 10, percentile: float = 99.99, bits: int = 8):
        if method not in ESTIMATORS:
            raise ConfigError(f"calibration method must be one of {ESTIMATORS}, got {method!r}")
        if method == "topk_median" and (not isinstance(k, int) or k < 1):
            raise ConfigError(f"top-k calibration needs an integer k >= 1, got {k!r}")
        if method == "percentile" and not 50.0 < float(percentile) <= 100.0:
            raise ConfigError(f"percentile must be in (50, 100], got {percentile!r}")
        self.method, self.k, self.percentile, self.bits = method, k, float(percentile), bits
        self.lows: list[float] = []
        self.highs: list[float] = []
        self.values: list[Tensor] = []
        self._gen = torch.Generator().manual_seed(0)

    @torch.no_grad()
    def observe(self, x: Tensor) -> None:
        flat = x.detach().reshape(-1).float()
        n = flat.numel()
        if n == 0:
            return
        if not bool(torch.isfinite(flat).all()):
            raise LayerError("non-finite activation values seen during calibration")
        if self.method in ("minmax", "mse"):
            lo, hi = flat.min(), flat.max()
            if self.method == "mse":  # a uniform random subsample (own generator: the global RNG is untouched)
                per_batch = _MAX_SAMPLE_VALUES // 4
                if n > per_batch:
                    idx = torch.randint(n, (per_batch,), generator=self._gen).to(flat.device)
                    flat = flat[idx]
                self.values.append(flat.cpu())
        elif self.method == "topk_median":
            k = min(self.k, n)
            hi = torch.quantile(flat.topk(k).values, 0.5)
            lo = -torch.quantile((-flat).topk(k).values, 0.5)
        else:
            k_hi = min(n, max(1, round(n * self.percentile / 100.0)))
            k_lo = min(n, max(1, n - k_hi + 1))
            hi, lo = flat.kthvalue(k_hi).values, flat.kthvalue(k_lo).values
        self.lows.append(float(lo))
        self.highs.append(float(hi))

    def range(self) -> tuple[float, float]:
        if not self.lows:
            raise LayerError("observer saw no data")
        if self.method == "minmax":
            return min(self.lows), max(self.highs)
        if self.method == "mse":
            values = torch.cat(self.values)
            if values.numel() > _MAX_SAMPLE_VALUES:
                values = values[torch.randint(values.numel(), (_MAX_SAMPLE_VALUES,), generator=self._gen)]
            return mse_range(values, min(self.lows), max(self.highs), self.bits)
        return sum(self.lows) / len(self.lows), sum(self.highs) / len(self.highs)


def _clipped_candidates(lo: float, hi: float, ratios: Tensor) -> list[tuple[float, float]]:
    """Ranges ``ratio * (lo, hi)`` (unsigned ranges keep lo, signed ones shrink symmetrically)."""
    if lo >= 0:
        return [(lo, float(r) * hi) for r in ratios]
    bound = max(abs(lo), abs(hi))
    return [(-float(r) * bound, float(r) * bound) for r in ratios]


@torch.no_grad()
def fake_quant_grid(x: Tensor, ranges: list[tuple[float, float]], bits: int) -> Tensor:
    """``x`` fake-quantized with every range at once: shape ``(len(ranges), *x.shape)``.

    Same arithmetic as :meth:`ActFakeQuant.from_range` + ``forward`` (unsigned ``[0, hi]`` when ``lo >= 0``,
    else symmetric signed), vectorized over the ranges.
    """
    lo = torch.tensor([r[0] for r in ranges], dtype=torch.float64)
    hi = torch.tensor([r[1] for r in ranges], dtype=torch.float64)
    signed = lo < 0
    levels = 2 ** bits - 1
    bound = torch.maximum(lo.abs(), hi.abs())
    span = torch.where(hi > 0, hi, torch.ones_like(hi))
    scale = torch.where(signed, 2 * bound / levels, span / levels).clamp(min=1e-30).to(torch.float32)
    qmin = torch.where(signed, torch.full_like(lo, -(2 ** (bits - 1))), torch.zeros_like(lo)).to(torch.float32)
    qmax = torch.where(signed, torch.full_like(lo, 2 ** (bits - 1) - 1), torch.full_like(lo, levels)).to(torch.float32)
    shape = (-1,) + (1,) * x.dim()
    s, a, b = scale.reshape(shape).to(x.device), qmin.reshape(shape).to(x.device), qmax.reshape(shape).to(x.device)
    xf = x.to(torch.float32).unsqueeze(0)
    return (torch.round(xf / s).clamp(a, b) * s).to(x.dtype)


@torch.no_grad()
def mse_range(values: Tensor, lo: float, hi: float, bits: int, grid: int = MSE_GRID) -> tuple[float, float]:
    """The clipping range among ``ratio * (lo, hi)``, ratio in ``(0, 1]``, with the least mean squared
    quantization error of ``values`` (vectorized over the grid, chunked to bound memory)."""
    ratios = torch.linspace(1.0, 1.0 / grid, grid)
    ranges = _clipped_candidates(lo, hi, ratios)
    errs = []
    chunk = max(1, (1 << 24) // max(1, values.numel()))
    for i in range(0, len(ranges), chunk):
        q = fake_quant_grid(values, ranges[i:i + chunk], bits)
        errs.append((q - values.unsqueeze(0)).square().sum(dim=tuple(range(1, q.dim()))).double())
    return ranges[int(torch.cat(errs).argmin())]


def iter_batches(data, batch_size: int = 32, max_batches: int | None = None) -> Iterator[Tensor]:
    """Yield input tensors from a Tensor (split into ``batch_size`` chunks), a TensorDataset/DataLoader or any
    iterable of tensors / (input, target) tuples."""
    if data is None:
        raise ConfigError("activation quantization needs calibration_data (a Tensor or an iterable of batches)")
    if isinstance(data, Tensor):
        if data.dim() == 0 or data.shape[0] == 0:
            raise ShapeError(f"calibration tensor must have a non-empty batch dimension, got {tuple(data.shape)}")
        source: Iterable = data.split(batch_size)
    elif isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
        source = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    else:
        source = data
    count = 0
    for batch in source:
        if max_batches is not None and count >= max_batches:
            break
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(x, Tensor):
            raise ShapeError(f"calibration batch must be a Tensor or (input, ...) tuple, got {type(x).__name__}")
        count += 1
        yield x
    if count == 0:
        raise ConfigError("calibration_data yielded no batches")


@dataclass
class _LayerInputs:
    """Calls of one layer kept for the output-error search: ``(args, kwargs)`` with detached tensors."""

    calls: list[tuple[tuple, dict]] = field(default_factory=list)
    elements: int = 0

    def keep(self, args: tuple, kwargs: dict) -> None:
        n = args[0].numel()
        if self.elements + n > _MAX_STORED_ELEMENTS and self.calls:
            return
        self.calls.append((tuple(a.detach().clone() if isinstance(a, Tensor) else a for a in args),
                           {k: v.detach().clone() if isinstance(v, Tensor) else v for k, v in kwargs.items()}))
        self.elements += n


def _first_tensor(out: Any) -> Tensor | None:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)):
        for o in out:
            t = _first_tensor(o)
            if t is not None:
                return t
    return None


_BATCH_FIRST = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@torch.no_grad()
def _output_errors(module: nn.Module, inputs: _LayerInputs, ranges: list[tuple[float, float]],
                   bits: int) -> Tensor:
    """Squared output error of ``module`` for each input range, summed over the stored calls.

    Linear / Conv layers run all ranges in one call (ranges stacked along the batch dimension); other layers
    (recurrent, custom) run once per range."""
    errs = torch.zeros(len(ranges), dtype=torch.float64)
    for args, kwargs in inputs.calls:
        x, rest = args[0], args[1:]
        ref = _first_tensor(module(x, *rest, **kwargs))
        if ref is None:
            continue
        q = fake_quant_grid(x, ranges, bits)  # (R, *x.shape)
        if isinstance(module, _BATCH_FIRST) and not rest and not kwargs and x.dim() >= 2:
            chunk = max(1, (1 << 24) // max(1, ref.numel()))
            for i in range(0, len(ranges), chunk):
                qi = q[i:i + chunk]
                out = module(qi.reshape(-1, *x.shape[1:])).reshape(qi.shape[0], *ref.shape)
                errs[i:i + chunk] += (out - ref.unsqueeze(0)).double().square().flatten(1).sum(1).cpu()
        else:
            for i in range(len(ranges)):
                out = _first_tensor(module(q[i], *rest, **kwargs))
                errs[i] += float((out - ref).double().square().sum())
    return errs


@dataclass
class RangeChoice:
    """The range ``auto`` chose for one layer input, and the output error of each candidate estimator."""

    estimator: str
    range: tuple[float, float]
    errors: dict[str, float]


@torch.no_grad()
def choose_range(module: nn.Module, inputs: _LayerInputs, candidates: dict[str, tuple[float, float]],
                 bits: int, grid: int = CLIP_GRID) -> RangeChoice:
    """The candidate range (estimators + clipping grid of the widest one) with the least output error."""
    names = list(candidates)
    ranges = [candidates[n] for n in names]
    lo = min(r[0] for r in ranges)
    hi = max(r[1] for r in ranges)
    ratios = torch.logspace(0, -6, grid, base=2.0)[1:]  # 1/2**(6i/(g-1)); ratio 1 is minmax, already in
    for r, rng in zip(ratios, _clipped_candidates(lo, hi, ratios)):
        names.append(f"clip{float(r):.3f}")
        ranges.append(rng)
    errs = _output_errors(module, inputs, ranges, bits)
    best = int(errs.argmin())
    return RangeChoice(names[best], ranges[best], {n: float(e) for n, e in zip(names, errs)})


@torch.no_grad()
def calibrate_ranges(model: nn.Module, modules: dict[str, nn.Module], data, *, method: str = "auto",
                     k: int = 10, percentile: float = 99.99, batch_size: int = 32,
                     max_batches: int | None = None, bits: int | dict[str, int] = 8,
                     choices: dict[str, RangeChoice] | None = None) -> dict[str, tuple[float, float]]:
    """Run ``model`` over ``data`` and return ``{name: (lo, hi)}`` of the first input of each module that
    received a Tensor input.

    Args:
        model: the float model (run in eval mode; the mode is restored).
        modules: ``{name: module}`` whose first input gets an activation quantizer.
        data: a Tensor, Dataset, DataLoader or iterable of input batches.
        method: one of :data:`CALIBRATION_METHODS` (see the module docstring); ``"auto"`` needs the stored inputs
            and runs each layer a few more times on them.
        k, percentile: parameters of ``topk_median`` and ``percentile``.
        batch_size, max_batches: how ``data`` is split / capped.
        bits: activation bits (one value, or per module name) - the ``mse`` and ``auto`` searches need them.
        choices: if given, filled with the :class:`RangeChoice` of every layer (``auto`` only).

    Returns:
        ``{module name: (lo, hi)}``; modules that never saw a plain Tensor input are left out.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> ranges = calibrate_ranges(model, {"2": model[2]}, torch.randn(64, 4), method="auto", bits=8)
        >>> lo, hi = ranges["2"]; lo >= 0 and hi > 0
        True
    """
    if method not in CALIBRATION_METHODS:
        raise ConfigError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
    estimators = _OBSERVED + ("mse",) if method == "auto" else (method,)
    bits_of = (lambda n: bits[n]) if isinstance(bits, dict) else (lambda n: bits)  # noqa: E731
    observers = {name: {e: RangeObserver(e, k, percentile, bits_of(name)) for e in estimators} for name in modules}
    stored = {name: _LayerInputs() for name in modules} if method == "auto" else {}
    handles = []

    def make_hook(name: str):
        def hook(_module, args, kwargs):
            if args and isinstance(args[0], Tensor):
                for obs in observers[name].values():
                    obs.observe(args[0])
                if name in stored:
                    stored[name].keep(args, kwargs)
        return hook

    for name, mod in modules.items():
        handles.append(mod.register_forward_pre_hook(make_hook(name), with_kwargs=True))
    was_training = model.training
    model.eval()
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        for x in iter_batches(data, batch_size, max_batches):
            model(x.to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    # modules that never saw a plain Tensor input (unused, or fed a PackedSequence) are left out
    seen = [name for name in modules if observers[name][estimators[0]].lows]
    if method != "auto":
        return {name: observers[name][method].range() for name in seen}
    out = {}
    for name in seen:
        cands = {e: observers[name][e].range() for e in estimators}
        choice = choose_range(modules[name], stored[name], cands, bits_of(name))
        if choices is not None:
            choices[name] = choice
        out[name] = choice.range
    return out
