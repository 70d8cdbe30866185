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

Granularity (:func:`calibrate_act_quantizers`, ``act_granularity`` on the configs): one range per tensor (above),
one scale per input channel (per-channel min / max times a clipping ratio searched on output error), dynamic
per-row scales (``"token"``), or ``"auto"``: per-channel only where it lowers the layer's output error by at least
:data:`CHANNEL_MIN_GAIN` both on the calibration data and on held-out calls (per-channel ranges fitted on half the
stored calls, measured on the other half). docs/calibration.md has the formulas and measurements.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..core.nested import first_tensor
from ..core.quantizer import ACT_GRANULARITIES, ActFakeQuant, act_channel_dim
from ..errors import ConfigError, LayerError, ShapeError

log = logging.getLogger(__name__)

CALIBRATION_METHODS = ("auto", "topk_median", "percentile", "minmax", "mse")
ESTIMATORS = ("minmax", "percentile", "topk_median", "mse")
_OBSERVED = ("minmax", "percentile", "topk_median")
CLIP_GRID = 16                   # clipping ratios tried by "auto" (geometric, 1 down to 1/64 of the range)
MSE_GRID = 64                    # clipping ratios tried by "mse" (linear in (0, 1])
_MAX_SAMPLE_VALUES = 1 << 16     # values kept per layer for the "mse" search (an even subsample)
_MAX_STORED_ELEMENTS = 1 << 20   # input elements kept per layer for the output-error search (4 MB fp32)
ACT_GRANULARITY_CHOICES = ACT_GRANULARITIES + ("auto",)
CHANNEL_RATIOS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2)  # per-channel / per-row clipping ratios searched
CHANNEL_MIN_GAIN = 0.1           # granularity "auto": per-channel only if it cuts the layer's output error by 10%


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



_BATCH_FIRST = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@torch.no_grad()
def _output_errors(module: nn.Module, inputs: _LayerInputs, quantize_all) -> Tensor:
    """Squared output error of ``module`` for each candidate quantization of its input, summed over the stored
    calls; ``quantize_all(x)`` returns the candidates stacked, ``(R, *x.shape)``.

    Linear / Conv layers run all candidates in one call (stacked along the batch dimension); other layers
    (recurrent, custom) run once per candidate."""
    errs = None
    for args, kwargs in inputs.calls:
        x, rest = args[0], args[1:]
        ref = first_tensor(module(x, *rest, **kwargs))
        if ref is None:
            continue
        q = quantize_all(x)  # (R, *x.shape)
        if errs is None:
            errs = torch.zeros(q.shape[0], dtype=torch.float64)
        if isinstance(module, _BATCH_FIRST) and not rest and not kwargs and x.dim() >= 2:
            chunk = max(1, (1 << 24) // max(1, ref.numel()))
            for i in range(0, q.shape[0], chunk):
                qi = q[i:i + chunk]
                out = module(qi.reshape(-1, *x.shape[1:])).reshape(qi.shape[0], *ref.shape)
                errs[i:i + chunk] += (out - ref.unsqueeze(0)).double().square().flatten(1).sum(1).cpu()
        else:
            for i in range(q.shape[0]):
                out = first_tensor(module(q[i], *rest, **kwargs))
                errs[i] += float((out - ref).double().square().sum())
    return errs if errs is not None else torch.zeros(0, dtype=torch.float64)


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
    errs = _output_errors(module, inputs, lambda x: fake_quant_grid(x, ranges, bits))
    best = int(errs.argmin())
    return RangeChoice(names[best], ranges[best], {n: float(e) for n, e in zip(names, errs)})


# --------------------------------------------------------------------------------------------- granularity
class _ChannelStats:
    """Per-channel running min / max of one input stream along its channel dimension (vectorized)."""

    def __init__(self, dim: int):
        self.dim = dim
        self.lo: Tensor | None = None
        self.hi: Tensor | None = None
        self.ok = True  # False once two calls disagree on the channel count (then per-channel is impossible)

    @torch.no_grad()
    def observe(self, x: Tensor) -> None:
        if not self.ok or x.numel() == 0:
            return
        d = self.dim if self.dim >= 0 else x.dim() + self.dim
        if not 0 <= d < x.dim():
            self.ok = False
            return
        flat = x.detach().movedim(d, 0).reshape(x.shape[d], -1).float()
        lo, hi = flat.amin(1).cpu(), flat.amax(1).cpu()
        if self.lo is None:
            self.lo, self.hi = lo, hi
        elif self.lo.shape != lo.shape:
            self.ok = False
        else:
            self.lo, self.hi = torch.minimum(self.lo, lo), torch.maximum(self.hi, hi)


def _channel_quants(stats: _ChannelStats, bits: int, signed: bool, ratios) -> list[ActFakeQuant]:
    return [ActFakeQuant.from_channel_ranges(stats.lo.double() * float(r), stats.hi.double() * float(r), bits,
                                             stats.dim, signed=signed) for r in ratios]


def _token_quants(dim: int, bits: int, signed: bool, ratios) -> list[ActFakeQuant]:
    return [ActFakeQuant(bits, signed, None, granularity="token", channel_dim=dim, ratio=float(r)) for r in ratios]


def _stack(quants: list[ActFakeQuant]):
    return lambda x: torch.stack([q(x) for q in quants])


@dataclass
class ActCalibration:
    """What calibration chose for one layer input.

    ``quant``: the :class:`ActFakeQuant` to attach; ``granularity``: ``"tensor"``, ``"channel"`` or ``"token"``;
    ``estimator``: the per-tensor estimator (or ``"channel-minmax x0.8"`` / ``"token x1.0"``: the clipping ratio
    applied to every channel's / row's range); ``range``: the per-tensor range (for channel/token the observed
    min / max); ``errors``: squared output error of each candidate on the calibration data (``auto`` only)."""

    quant: ActFakeQuant
    granularity: str
    estimator: str
    range: tuple[float, float]
    errors: dict[str, float] = field(default_factory=dict)


@torch.no_grad()
def calibrate_act_quantizers(model: nn.Module, modules: dict[str, nn.Module], data, *, method: str = "auto",
                             granularity: str = "tensor", k: int = 10, percentile: float = 99.99,
                             batch_size: int = 32, max_batches: int | None = None,
                             bits: int | dict[str, int] = 8) -> dict[str, ActCalibration]:
    """Run ``model`` over ``data`` and build an activation quantizer for the first input of each module.

    Args:
        model: the float model (run in eval mode; the mode is restored).
        modules: ``{name: module}`` whose first input gets an activation quantizer.
        data: a Tensor, Dataset, DataLoader or iterable of input batches.
        method: the per-tensor range estimator, one of :data:`CALIBRATION_METHODS`.
        granularity: one of :data:`ACT_GRANULARITIES`: ``"tensor"`` (one range), ``"channel"`` (one scale per
            input channel, :func:`~prunequant.core.quantizer.act_channel_dim`), ``"token"`` (dynamic per-row
            scales) or ``"auto"``: per-channel only where it lowers the layer's output error on the calibration
            data by at least :data:`CHANNEL_MIN_GAIN` relative to the best per-tensor range. With ``method="auto"``
            (or granularity ``"auto"``) the per-channel / per-token clipping ratio is searched on output error
            (:data:`CHANNEL_RATIOS`); otherwise it is 1 (per-channel min / max, per-row max).
        k, percentile, batch_size, max_batches: as in :func:`calibrate_ranges`.
        bits: activation bits (one value, or per module name).

    Returns:
        ``{module name: ActCalibration}``; modules that never saw a plain Tensor input are left out.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
        >>> cal = calibrate_act_quantizers(model, {"1": model[1]}, torch.randn(64, 4), granularity="channel")
        >>> cal["1"].quant.scale.shape
        torch.Size([8])
    """
    if method not in CALIBRATION_METHODS:
        raise ConfigError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
    if granularity not in ACT_GRANULARITY_CHOICES:
        raise ConfigError(f"activation granularity must be one of {ACT_GRANULARITY_CHOICES}, got {granularity!r}")
    estimators = _OBSERVED + ("mse",) if method == "auto" else (method,)
    bits_of = (lambda n: bits[n]) if isinstance(bits, dict) else (lambda n: bits)  # noqa: E731
    observers = {name: {e: RangeObserver(e, k, percentile, bits_of(name)) for e in estimators} for name in modules}
    search = method == "auto" or granularity == "auto"
    stored = {name: _LayerInputs() for name in modules} if search else {}
    chan = {name: _ChannelStats(act_channel_dim(m)) for name, m in modules.items()} \
        if granularity in ("channel", "auto") else {}
    minmax = {name: RangeObserver("minmax") for name in modules} if granularity != "tensor" else {}
    handles = []

    def make_hook(name: str):
        def hook(_module, args, kwargs):
            if args and isinstance(args[0], Tensor):
                for obs in observers[name].values():
                    obs.observe(args[0])
                if name in minmax:
                    minmax[name].observe(args[0])
                if name in chan:
                    chan[name].observe(args[0])
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
    out: dict[str, ActCalibration] = {}
    for name in seen:
        b, module = bits_of(name), modules[name]
        ratios = CHANNEL_RATIOS if search else (1.0,)
        if granularity == "token":
            lo, hi = minmax[name].range()
            quants = _token_quants(act_channel_dim(module), b, lo < 0, ratios)
            errs = _output_errors(module, stored[name], _stack(quants)) if len(quants) > 1 else torch.zeros(1)
            i = int(errs.argmin())
            out[name] = ActCalibration(quants[i], "token", f"token x{ratios[i]:g}", (lo, hi),
                                       {f"token x{r:g}": float(e) for r, e in zip(ratios, errs)} if search else {})
            continue
        if method == "auto":
            choice = choose_range(module, stored[name], {e: observers[name][e].range() for e in estimators}, b)
            t_est, t_range, errors = choice.estimator, choice.range, dict(choice.errors)
        else:
            t_est, t_range, errors = method, observers[name][method].range(), {}
        tensor_cal = ActCalibration(ActFakeQuant.from_range(*t_range, b), "tensor", t_est, t_range, errors)
        if granularity == "tensor":
            out[name] = tensor_cal
            continue
        st = chan[name]
        if not st.ok or st.lo is None:
            log.warning("layer '%s': its inputs change their channel count between calls; per-channel activation "
                        "scales are impossible, it keeps one per-tensor range", name)
            out[name] = tensor_cal
            continue
        lo, hi = minmax[name].range()
        quants = _channel_quants(st, b, lo < 0, ratios)
        c_errs = _output_errors(module, stored[name], _stack(quants)) if search else torch.zeros(1)
        i = int(c_errs.argmin())
        c_names = [f"channel-minmax x{r:g}" for r in ratios]
        errors.update({n: float(e) for n, e in zip(c_names, c_errs)} if search else {})
        chan_cal = ActCalibration(quants[i], "channel", c_names[i], (float(st.lo.min()), float(st.hi.max())), errors)
        if granularity == "channel":
            out[name] = chan_cal
            continue
        # auto: per-channel only where it measurably lowers this layer's output error, in-sample and held out
        t_err = float(_output_errors(module, stored[name], _stack([tensor_cal.quant]))[0]) if method != "auto" \
            else errors[t_est]
        tensor_cal.errors = errors
        better = float(c_errs[i]) < (1.0 - CHANNEL_MIN_GAIN) * t_err
        if better:
            held = _held_out_errors(module, stored[name], tensor_cal.quant, st.dim, b, lo < 0, ratios[i])
            if held is not None:
                errors["held-out tensor"], errors["held-out channel"] = held
                better = held[1] < (1.0 - CHANNEL_MIN_GAIN) * held[0]
        out[name] = chan_cal if better else tensor_cal
    return out


def _halves(inputs: _LayerInputs) -> tuple[_LayerInputs, _LayerInputs] | None:
    """The stored calls split in two (alternate calls, or one call's batch split in half), or ``None``."""
    calls = inputs.calls
    if len(calls) >= 2:
        return _LayerInputs(calls[0::2]), _LayerInputs(calls[1::2])
    if len(calls) == 1:
        (args, kwargs), = calls
        x = args[0]
        if len(args) == 1 and not kwargs and x.dim() >= 2 and x.shape[0] >= 2:
            h = x.shape[0] // 2
            return _LayerInputs([((x[:h],), {})]), _LayerInputs([((x[h:],), {})])
    return None


@torch.no_grad()
def _held_out_errors(module: nn.Module, inputs: _LayerInputs, tensor_quant: ActFakeQuant, dim: int, bits: int,
                     signed: bool, ratio: float) -> tuple[float, float] | None:
    """Output errors ``(per-tensor, per-channel)`` with the per-channel ranges fitted on one half of the stored
    calls and measured on the other (both ways): per-channel min / max fit their calibration values exactly
    (nothing is clipped in-sample), so an in-sample comparison favours them even on i.i.d. Gaussian inputs."""
    halves = _halves(inputs)
    if halves is None:
        return None
    t_err = c_err = 0.0
    for fit, test in (halves, halves[::-1]):
        st = _ChannelStats(dim)
        for args, _ in fit.calls:
            st.observe(args[0])
        if not st.ok or st.lo is None:
            return None
        q = _channel_quants(st, bits, signed, (ratio,))[0]
        try:
            errs = _output_errors(module, test, _stack([tensor_quant, q]))
        except ShapeError:
            return None
        t_err, c_err = t_err + float(errs[0]), c_err + float(errs[1])
    return t_err, c_err


@torch.no_grad()
def calibrate_ranges(model: nn.Module, modules: dict[str, nn.Module], data, *, method: str = "auto",
                     k: int = 10, percentile: float = 99.99, batch_size: int = 32,
                     max_batches: int | None = None, bits: int | dict[str, int] = 8,
                     choices: dict[str, RangeChoice] | None = None) -> dict[str, tuple[float, float]]:
    """Run ``model`` over ``data`` and return ``{name: (lo, hi)}`` of the first input of each module that
    received a Tensor input (one per-tensor range each; :func:`calibrate_act_quantizers` for per-channel /
    per-token scales).

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
    cal = calibrate_act_quantizers(model, modules, data, method=method, granularity="tensor", k=k,
                                   percentile=percentile, batch_size=batch_size, max_batches=max_batches, bits=bits)
    if choices is not None and method == "auto":
        for name, c in cal.items():
            choices[name] = RangeChoice(c.estimator, c.range, c.errors)
    return {name: c.range for name, c in cal.items()}
