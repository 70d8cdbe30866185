"""Fidelity of a compressed model against its fp32 self, per layer and at the output, on a few real inputs.

:meth:`FidelityProbe.record` runs the float model once on up to ``max_samples`` inputs and keeps, for every
compressible layer, its inputs and outputs and the model output. After compression, :meth:`FidelityProbe.compare`
measures

* **at the output**: cosine and relative error ``||y_c - y|| / ||y||`` of the model output (end to end);
* **per layer, local**: each layer is fed its *recorded float input* (its input quantizer, if any, still
  applies) so the number is that layer's own error, not the error it inherits from the layers before it;
* **per layer, cumulative**: the same layer's output in a plain forward of the compressed model.

A layer whose output goes straight into a BatchNorm is compared at the BatchNorm's output, so folding the norm
into the layer (as quantization does) is not counted as an error. :func:`warn_if_low` logs a warning naming the
worst layers when the output cosine or a layer's local cosine falls below the threshold.
"""
from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ..errors import ConfigError
from .nested import first_tensor
from .targets import Selector, compressible_weights, unsupported_layers
from .tracing import split_example_input

__all__ = ["DEFAULT_COSINE_THRESHOLD", "FidelityProbe", "FidelityReport", "LayerFidelity", "run_checked",
           "skipped_layers", "take_samples", "warn_if_low"]

log = logging.getLogger("prunequant")

DEFAULT_COSINE_THRESHOLD = 0.98
_NORMS = (nn.modules.batchnorm._BatchNorm,)


OUTPUT_EXACT = 0.999  # output cosine at or above which per-layer dips alone do not warn


@dataclass
class LayerFidelity:
    """One layer: ``cosine`` / ``rel_error`` of its own (local) error; ``cumulative_*`` in the full forward."""

    name: str
    cosine: float
    rel_error: float
    cumulative_cosine: float
    cumulative_rel_error: float


@dataclass
class FidelityReport:
    """Compressed vs fp32 on ``samples`` inputs: model-output cosine / relative error and per-layer numbers."""

    output_cosine: float
    output_rel_error: float
    layers: list[LayerFidelity] = field(default_factory=list)
    samples: int = 0
    threshold: float = DEFAULT_COSINE_THRESHOLD

    def worst(self, n: int = 3) -> list[LayerFidelity]:
        """The ``n`` layers with the lowest local cosine."""
        return sorted(self.layers, key=lambda r: r.cosine)[:n]

    @property
    def ok(self) -> bool:
        """True when the output cosine meets the threshold and so does every layer's local cosine; a layer's local
        dip is not a failure while the model output stays at cosine >= ``OUTPUT_EXACT`` (the error never reaches
        the output, e.g. a gate saturating or a branch the next layer ignores)."""
        if self.output_cosine < self.threshold:
            return False
        return self.output_cosine >= OUTPUT_EXACT or all(r.cosine >= self.threshold for r in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        worst = ", ".join(f"{r.name} (cos {r.cosine:.4f}, rel.err {r.rel_error:.3g})" for r in self.worst())
        return (f"output cosine {self.output_cosine:.4f}, relative error {self.output_rel_error:.3g} on "
                f"{self.samples} calibration inputs; worst layers: {worst or '-'}")


def _cos_rel(ref: Tensor, got: Tensor) -> tuple[float, float]:
    a, b = ref.detach().double().reshape(-1), got.detach().double().reshape(-1).to(ref.device)
    na, nb = float(a.norm()), float(b.norm())
    diff = float((a - b).norm())
    if na == 0.0:
        return (1.0 if nb == 0.0 else 0.0), (0.0 if diff == 0.0 else math.inf)
    cos = float(a @ b) / (na * nb) if nb > 0 else 0.0
    return cos, diff / na



def _shapes(obj: Any) -> list:
    """Shapes of the tensors in ``obj`` (nested tuples/lists), in order."""
    if isinstance(obj, Tensor):
        return [tuple(obj.shape)]
    if isinstance(obj, (tuple, list)):
        return [s for o in obj for s in _shapes(o)]
    return []


def _clone(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.detach().clone()
    if isinstance(obj, PackedSequence):
        return obj
    if isinstance(obj, tuple):
        return tuple(_clone(o) for o in obj)
    if isinstance(obj, list):
        return [_clone(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    return obj


def take_samples(data: Any, max_samples: int = 32) -> Any:
    """Model inputs from ``data`` for the fidelity check, without consuming any random state.

    ``data``: a Tensor (its first ``max_samples`` rows, as calibration splits it), a map-style Dataset or a
    DataLoader over one (first ``max_samples`` items, collated with the loader's ``collate_fn``; the sampler is
    not touched, so shuffling order and RNG stay as they were), a tuple / dict example input (as is), or an
    iterable of batches (its first batch, as is). ``(input, target)`` pairs give the input.
    """
    if isinstance(data, Tensor):
        return data[:max_samples]
    if isinstance(data, dict):
        return data
    loader = data if isinstance(data, torch.utils.data.DataLoader) else None
    dataset = loader.dataset if loader is not None else data
    if isinstance(dataset, torch.utils.data.Dataset) and not isinstance(dataset, torch.utils.data.IterableDataset) \
            and hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"):
        n = min(max_samples, len(dataset))
        if n == 0:
            raise ConfigError("fidelity check: the dataset is empty")
        collate = loader.collate_fn if loader is not None else torch.utils.data.default_collate
        batch = collate([dataset[i] for i in range(n)])
    elif isinstance(data, tuple) and data and all(isinstance(v, Tensor) for v in data):
        return data  # positional example inputs
    else:
        batch = next(iter(data))
    if isinstance(batch, dict):
        return batch
    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    return batch


def _to(x: Any, device: torch.device) -> Any:
    if isinstance(x, (Tensor, PackedSequence)):
        return x.to(device)
    if isinstance(x, tuple):
        return tuple(_to(v, device) for v in x)
    if isinstance(x, list):
        return [_to(v, device) for v in x]
    if isinstance(x, dict):
        return {k: _to(v, device) for k, v in x.items()}
    return x


class FidelityProbe:
    """Float reference of a model on a few inputs; compare the compressed model against it later.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> x = torch.randn(16, 8)
        >>> probe = FidelityProbe.record(model, x)
        >>> with torch.no_grad():
        ...     _ = model[0].weight.mul_(1.01)
        >>> rep = probe.compare(model)
        >>> rep.output_cosine > 0.99, [r.name for r in rep.layers]
        (True, ['0', '2'])
    """

    def __init__(self, inputs: Any, layers: list[str], points: dict[str, str], ref_inputs: dict, ref_outputs: dict,
                 ref_output: Tensor, samples: int):
        self.inputs, self.layers, self.points = inputs, layers, points
        self.ref_inputs, self.ref_outputs, self.ref_output, self.samples = ref_inputs, ref_outputs, ref_output, samples

    @classmethod
    @torch.no_grad()
    def record(cls, model: nn.Module, data: Any, *, max_samples: int = 32) -> FidelityProbe:
        """Run the float ``model`` on up to ``max_samples`` inputs taken from ``data`` (see :func:`take_samples`)."""
        inputs = take_samples(data, max_samples)
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        inputs = _to(inputs, device)
        named = dict(model.named_modules())
        layers = list(dict.fromkeys(r.name for r in compressible_weights(model)))
        producer: dict[int, str] = {}
        points = {n: n for n in layers}
        ref_inputs: dict[str, list] = defaultdict(list)
        ref_outputs: dict[str, list] = defaultdict(list)
        handles = []

        def pre(name):
            def hook(mod, args, kwargs):
                ref_inputs[name].append((_clone(args), _clone(kwargs)))
            return hook

        def post(name):
            def hook(mod, args, out):
                t = first_tensor(out)
                if t is not None:
                    producer[id(t)] = name
                    ref_outputs[name].append(t.detach().clone())
            return hook

        def norm_pre(name):
            def hook(mod, args):
                src = producer.get(id(args[0])) if args and isinstance(args[0], Tensor) else None
                if src is not None and points.get(src) == src:
                    points[src] = name
            return hook

        try:
            for n in layers:
                handles.append(named[n].register_forward_pre_hook(pre(n), with_kwargs=True))
                handles.append(named[n].register_forward_hook(post(n)))
            norms = [n for n, m in named.items() if isinstance(m, _NORMS)]
            for n in norms:
                handles.append(named[n].register_forward_pre_hook(norm_pre(n)))
                handles.append(named[n].register_forward_hook(post(n)))
            ref_output = _run(model, inputs)
        finally:
            for h in handles:
                h.remove()
        samples = _batch_len(inputs)
        return cls(inputs, [n for n in layers if n in ref_inputs], points, dict(ref_inputs),
                   dict(ref_outputs), ref_output, samples)

    @torch.no_grad()
    def compare(self, model: nn.Module, threshold: float = DEFAULT_COSINE_THRESHOLD) -> FidelityReport:
        """Measure the (compressed) ``model`` against the recorded float reference."""
        named = dict(model.named_modules())
        watched = {self.points[n] for n in self.layers if self.points[n] in named}
        outs: dict[str, list] = defaultdict(list)
        handles = []

        def post(name):
            def hook(mod, args, out):
                t = first_tensor(out)
                if t is not None:
                    outs[name].append(t.detach())
            return hook

        try:  # 1. plain forward: model output and cumulative per-layer outputs
            handles = [named[p].register_forward_hook(post(p)) for p in watched]
            out = _run(model, self.inputs)
        finally:
            for h in handles:
                h.remove()
        cumulative = {p: v for p, v in outs.items()}
        outs = defaultdict(list)
        calls: dict[str, int] = defaultdict(int)

        def substitute(name):
            def hook(mod, args, kwargs):
                i = calls[name]
                calls[name] += 1
                recorded = self.ref_inputs[name]
                # a channel-pruned layer takes fewer channels than its float original: keep its own input
                if i < len(recorded) and _shapes(recorded[i][0]) == _shapes(args):
                    return _clone(recorded[i][0]), _clone(recorded[i][1])
                return None
            return hook

        handles = []
        try:  # 2. every layer fed its float input: local per-layer error
            for n in self.layers:
                if n in named:
                    handles.append(named[n].register_forward_pre_hook(substitute(n), with_kwargs=True, prepend=True))
            handles += [named[p].register_forward_hook(post(p)) for p in watched]
            _run(model, self.inputs)
        finally:
            for h in handles:
                h.remove()
        rows = []
        for n in self.layers:
            p = self.points[n]
            ref = self.ref_outputs.get(p)
            if not ref or p not in outs or p not in cumulative:
                continue
            k = min(len(ref), len(outs[p]), len(cumulative[p]))
            if not _cat(ref, k).numel() == _cat(outs[p], k).numel() == _cat(cumulative[p], k).numel():
                continue  # output channels removed (structured pruning): no element-wise comparison
            cos, rel = _cos_rel(_cat(ref, k), _cat(outs[p], k))
            ccos, crel = _cos_rel(_cat(ref, k), _cat(cumulative[p], k))
            rows.append(LayerFidelity(n, cos, rel, ccos, crel))
        ocos, orel = _cos_rel(self.ref_output, first_tensor(out))
        return FidelityReport(output_cosine=ocos, output_rel_error=orel, layers=rows, samples=self.samples,
                              threshold=threshold)


def _cat(ts: list[Tensor], k: int) -> Tensor:
    return torch.cat([t.reshape(-1) for t in ts[:k]])


def _batch_len(x: Any) -> int:
    t = first_tensor(x if not isinstance(x, dict) else list(x.values()))
    return int(t.shape[0]) if t is not None and t.dim() else 1


def _run(model: nn.Module, inputs: Any) -> Tensor:
    was = model.training
    model.eval()
    device = next((p.device for p in model.parameters()), None)
    if device is not None:
        inputs = _to(inputs, device)
    try:
        args, kwargs = split_example_input(inputs)
        out = first_tensor(model(*args, **kwargs))
    finally:
        model.train(was)
    if out is None:
        raise ConfigError(f"fidelity check: {type(model).__name__} returned no tensor")
    return out.detach().clone()


def warn_if_low(report: FidelityReport, what: str) -> bool:
    """Log a warning naming the worst layers if ``report`` falls below its threshold; True if it warned."""
    if report.ok:
        return False
    log.warning("%s: fidelity below %.3f cosine against the fp32 model: %s", what, report.threshold,
                report.summary())
    return True


def fidelity_data(options: dict[str, Any]) -> Any | None:
    """The inputs a verb's keyword options carry, for the fidelity check (None when there are none)."""
    for key in ("calibration_data", "calibration", "example_input"):
        if options.get(key) is not None:
            return options[key]
    fit = options.get("fit")
    return getattr(fit, "train", None) if fit is not None else None


def skipped_layers(model: nn.Module, config: Any) -> dict[str, str]:
    """Layers ``config`` selects (its ``include`` / ``exclude`` / ``types`` / ``skip`` fields, where it has them)
    that no method can compress, with the reason (see :func:`prunequant.core.targets.unsupported_layers`)."""
    fields = {f: getattr(config, f, None) for f in ("include", "exclude", "types", "skip")}
    if isinstance(fields["include"], Sequence) and not isinstance(fields["include"], str) \
            and len(fields["include"]) == 0:
        return {}
    return unsupported_layers(model, Selector.of(**fields))


def run_checked(what: str, model: nn.Module, config: Any, run, data: Any, check: bool | float = True) -> Any:
    """Run ``run()`` (a compression verb), then list what it could not handle and check it against fp32.

    * ``result.skipped_layers``: ``{layer: reason}`` for layers the config selects but no method compresses
      (e.g. ``nn.Embedding``, ``nn.ConvTranspose2d``, a custom module's raw parameter); a warning lists them.
    * ``result.fidelity``: when ``data`` is given, a :class:`FidelityReport` against the float model recorded on
      up to 32 inputs of ``data`` before ``run()``; :func:`warn_if_low` warns below the threshold. ``check``:
      False skips the check, a float sets the cosine threshold. Attach-only results (training plugins) carry
      ``skipped_layers`` but are not checked: nothing is compressed yet.
    """
    skipped = skipped_layers(model, config)
    probe = None
    if check is not False and data is not None:
        threshold = DEFAULT_COSINE_THRESHOLD if check is True else float(check)
        if not 0.0 < threshold <= 1.0:
            raise ConfigError(f"fidelity threshold must be in (0, 1], got {check!r}")
        try:
            probe = FidelityProbe.record(model, data)
        except Exception as e:  # noqa: BLE001 - the method reports its own input errors; the check is best effort
            log.info("%s: fidelity check skipped (the float reference could not be recorded: %s)", what, e)
    result = run()
    if skipped:
        log.warning("%s: %d layer(s) left uncompressed: %s", what, len(skipped),
                    "; ".join(f"{n or '(model)'}: {r}" for n, r in skipped.items()))
    _set(result, "skipped_layers", skipped)
    if probe is not None and not hasattr(result, "on_step_end"):
        report = probe.compare(model, threshold)
        _set(result, "fidelity", report)
        warn_if_low(report, what)
    return result


def _set(result: Any, name: str, value: Any) -> None:
    try:
        setattr(result, name, value)
    except (AttributeError, TypeError):  # a result type that takes no attributes (e.g. None)
        pass
