"""The one forward-hook tracer: what every layer computes for one example input.

:func:`trace_layers` runs one forward with a hook on every layer that has a MAC rule (see :mod:`.macs`) and
records, per module, its calls, the input/output shapes of the first call and its weight uses (which weight
rows took part in how many multiply-accumulates). The report, the MAC-budget planner and the joint cost model all
read MACs from this one trace, so they agree by construction. Inputs: a Tensor, a ``PackedSequence``, a tuple/list
of positional inputs or a dict of keyword inputs (:func:`split_example_input`).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ..errors import ShapeError
from . import macs as _macs

__all__ = ["LayerTrace", "Trace", "describe_input", "split_example_input", "trace_layers"]

_FORWARD_ERRORS = (RuntimeError, ValueError, IndexError, TypeError, AssertionError, KeyError)


def split_example_input(example_input: Any) -> tuple[tuple, dict]:
    """``(args, kwargs)`` for ``model(*args, **kwargs)`` from an example input.

    A Tensor or ``PackedSequence`` is one positional input, a non-empty tuple/list holds the positional inputs,
    a dict the keyword inputs. Anything else raises :class:`ShapeError` naming ``example_input``.

    Example:
        >>> import torch
        >>> args, kwargs = split_example_input({"x": torch.zeros(1)})
        >>> args, list(kwargs)
        ((), ['x'])
    """
    if isinstance(example_input, (Tensor, PackedSequence)):
        return (example_input,), {}
    if isinstance(example_input, (tuple, list)) and example_input:
        return tuple(example_input), {}
    if isinstance(example_input, dict) and example_input:
        return (), dict(example_input)
    raise ShapeError(f"example_input must be a Tensor, a PackedSequence, a non-empty tuple of positional inputs or "
                     f"a dict of keyword inputs, got {type(example_input).__name__}")


def describe_input(x: Any) -> Any:
    """JSON-able shape description of an input or output (shapes as lists, nested like the input)."""
    if isinstance(x, Tensor):
        return list(x.shape)
    if isinstance(x, PackedSequence):
        return {"PackedSequence": list(x.data.shape)}
    if isinstance(x, dict):
        return {k: describe_input(v) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return [describe_input(v) for v in x]
    return type(x).__name__


def batch_size(example_input: Any) -> int:
    """Leading dimension of the first tensor in ``example_input`` (1 if there is none)."""
    if isinstance(example_input, PackedSequence):
        return int(example_input.batch_sizes[0])
    if isinstance(example_input, Tensor):
        return max(1, int(example_input.shape[0])) if example_input.dim() else 1
    items = example_input.values() if isinstance(example_input, dict) else (
        example_input if isinstance(example_input, (tuple, list)) else ())
    for v in items:
        if isinstance(v, (Tensor, PackedSequence)):
            return batch_size(v)
    return 1


def _shape_of(owner: nn.Module, tname: str) -> torch.Size:
    plists = getattr(owner, "parametrizations", None)
    if plists is not None and tname in plists:
        return plists[tname].original.shape  # parametrizations keep the shape; avoids recomputing the chain
    return getattr(owner, tname).shape


def _rows_numel(shape: torch.Size, rows) -> int:
    n_rows = (rows[1] - rows[0]) if rows else (shape[0] if len(shape) else 1)
    return int(torch.Size(shape[1:]).numel()) * n_rows


@dataclass
class LayerTrace:
    """What one module computed during the traced forward.

    ``weight_uses[(owner, tensor, rows)]``: MACs per element of rows ``rows`` (None = all) of tensor ``tensor``
    of the module called ``owner``, summed over calls (an attention block records its ``out_proj`` child as
    owner). ``macs``: dense MACs summed over calls; ``macs_per_call`` one entry per call.
    """

    name: str
    module: nn.Module
    calls: int = 0
    input_shape: Any = None
    output_shape: Any = None
    weight_uses: dict = field(default_factory=lambda: defaultdict(int))
    activation_macs: int = 0
    macs_per_call: list[int] = field(default_factory=list)

    @property
    def macs(self) -> int:
        return sum(self.macs_per_call)


@dataclass
class Trace:
    """Result of :func:`trace_layers`: per-module records in forward-hook order of registration."""

    layers: dict[str, LayerTrace]
    modules: dict[str, nn.Module]
    flop_macs: dict[str, int] | None = None
    batch_size: int = 1

    def weight_uses(self) -> dict[tuple[str, str], dict[Any, int]]:
        """``{(owner module name, tensor name): {rows: uses}}`` over every traced module."""
        out: dict[tuple[str, str], dict[Any, int]] = defaultdict(lambda: defaultdict(int))
        for lt in self.layers.values():
            for (owner, tname, rows), n in lt.weight_uses.items():
                out[(owner, tname)][rows] += n
        return out

    def tensor_macs(self) -> dict[tuple[str, str], int]:
        """Dense MACs per weight tensor ``{(owner module name, tensor name): MACs}`` for the traced input."""
        out: dict[tuple[str, str], int] = defaultdict(int)
        for (owner, tname), per_rows in self.weight_uses().items():
            shape = _shape_of(self.modules[owner], tname)
            for rows, n in per_rows.items():
                out[(owner, tname)] += _rows_numel(shape, rows) * n
        return out

    def activation_macs(self) -> dict[str, int]:
        return {n: lt.activation_macs for n, lt in self.layers.items() if lt.activation_macs}


def default_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The modules the tracer hooks by default: every module with a MAC rule, except parametrization containers
    and the ``out_proj`` of an attention block (applied functionally by its parent, which counts it)."""
    named = {n: m for n, m in model.named_modules() if "parametrizations" not in n.split(".")}
    attn_children = {f"{n}.out_proj" if n else "out_proj" for n, m in named.items()
                     if isinstance(m, nn.MultiheadAttention)}
    return {n: m for n, m in named.items() if _macs.is_known(m) and n not in attn_children}


def trace_layers(model: nn.Module, example_input: Any, modules: Iterable[str | nn.Module] | None = None, *,
                 count_flops: bool = False) -> Trace:
    """Trace one forward of ``example_input`` through ``model`` (eval mode, no grad; the mode is restored).

    Args:
        model: any ``nn.Module``.
        example_input: Tensor, PackedSequence, tuple of positional inputs or dict of keyword inputs.
        modules: names or module objects to record (default: :func:`default_layers`); modules without a MAC
            rule are recorded with shapes and calls only.
        count_flops: also run ``torch.utils.flop_counter`` over the same forward (``Trace.flop_macs``: MACs per
            module name, children included in their parents), for layer types without a MAC rule.

    Returns:
        A :class:`Trace`.

    Raises:
        ShapeError: the input is of an unsupported type, or the forward fails (the message names the model and
            the input shape).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> t = trace_layers(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), torch.zeros(2, 4))
        >>> t.layers["0"].calls, t.layers["0"].macs, t.layers["0"].output_shape
        (1, 24, [2, 3])
    """
    args, kwargs = split_example_input(example_input)
    if modules is None:
        targets = default_layers(model)
    else:
        by_id = {id(m): n for n, m in model.named_modules()}
        named = dict(model.named_modules())
        targets = {}
        for m in modules:
            if isinstance(m, str):
                if m not in named:
                    raise ShapeError(f"trace_layers: no module named '{m}' in {type(model).__name__}")
                targets[m] = named[m]
            elif id(m) in by_id:
                targets[by_id[id(m)]] = m
            else:
                raise ShapeError(f"trace_layers: a {type(m).__name__} that is not part of {type(model).__name__}")
    layers = {n: LayerTrace(n, m) for n, m in targets.items()}

    def make_hook(name: str):
        def hook(module, a, kw, out):
            lt = layers[name]
            lt.calls += 1
            if lt.calls == 1:
                lt.input_shape = describe_input(a[0] if len(a) == 1 and not kw else
                                                {"args": a, "kwargs": kw} if kw else a)
                lt.output_shape = describe_input(out)
            if not _macs.is_known(module):
                lt.macs_per_call.append(0)
                return
            cm = _macs.call_macs(module, a, kw, out)
            total = cm.activation_macs
            for wu in cm.weights:
                sub, _, tname = wu.tensor.rpartition(".")
                owner_mod = module.get_submodule(sub) if sub else module
                owner = ".".join(p for p in (name, sub) if p)
                lt.weight_uses[(owner, tname, wu.rows)] += wu.uses
                total += _rows_numel(_shape_of(owner_mod, tname), wu.rows) * wu.uses
            lt.activation_macs += cm.activation_macs
            lt.macs_per_call.append(total)
        return hook

    handles = [m.register_forward_hook(make_hook(n), with_kwargs=True) for n, m in targets.items()]
    was_training = model.training
    model.eval()
    flops = None
    try:
        with torch.no_grad():
            if count_flops:
                flops = _macs.flop_counter_macs(model, lambda: model(*args, **kwargs))
            else:
                model(*args, **kwargs)
    except _FORWARD_ERRORS as e:
        raise ShapeError(f"{type(model).__name__}: example input of shape {describe_input(example_input)} does not "
                         f"fit the model: {e}") from e
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return Trace(layers=layers, modules=dict(model.named_modules()), flop_macs=flops,
                 batch_size=batch_size(example_input))
