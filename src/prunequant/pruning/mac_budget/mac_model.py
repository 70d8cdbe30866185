"""How many MACs each prunable weight costs, by the rules of :mod:`prunequant.analysis.macs`.

``analysis.report`` counts effective MACs as ``sum(nnz(W[rows]) * uses) + activation-only MACs``. Pruning a weight
therefore removes exactly its ``uses`` from the report's effective MACs. :func:`weight_uses` records those
``uses`` per weight element (rows of an attention ``in_proj_weight`` may differ) with one forward pass, so the
planner predicts the report's number exactly; the handler still checks it against the report every round.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch import Tensor, nn

from ...analysis import macs as _macs
from ...errors import ShapeError


def _split_input(example_input: Any) -> tuple[tuple, dict]:
    if isinstance(example_input, Tensor):
        return (example_input,), {}
    if isinstance(example_input, (tuple, list)):
        return tuple(example_input), {}
    if isinstance(example_input, dict):
        return (), dict(example_input)
    raise ShapeError(f"example_input must be a Tensor, tuple or dict, got {type(example_input).__name__}")


@torch.no_grad()
def weight_uses(model: nn.Module, example_input: Any, targets: list[tuple[str, nn.Module, str]]) -> list[Tensor]:
    """Per target ``(module_name, module, param_name)``: a float64 tensor shaped like the weight holding the MACs
    each element takes part in for one forward of ``example_input`` (0 for weights never used)."""
    wanted = {(name, pname) for name, _, pname in targets}
    found: dict[tuple[str, str], list[tuple[tuple[int, int] | None, int]]] = defaultdict(list)
    handles = []

    def make_hook(name: str):
        def hook(module, a, kw, out):
            for wu in _macs.call_macs(module, a, kw, out).weights:
                sub, _, tname = wu.tensor.rpartition(".")
                owner = ".".join(p for p in (name, sub) if p)
                if (owner, tname) in wanted:
                    found[(owner, tname)].append((wu.rows, wu.uses))
        return hook

    for name, m in model.named_modules():
        if "parametrizations" in name.split("."):
            continue
        if _macs.is_known(m) and not isinstance(m, _macs.ZERO_MAC_TYPES):
            handles.append(m.register_forward_hook(make_hook(name), with_kwargs=True))
    args, kwargs = _split_input(example_input)
    was = model.training
    model.eval()
    try:
        model(*args, **kwargs)
    except (RuntimeError, ValueError, IndexError, TypeError, AssertionError) as e:
        raise ShapeError(f"{type(model).__name__}: example input does not fit the model: {e}") from e
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    out = []
    for name, module, pname in targets:
        w = getattr(module, pname)
        u = torch.zeros(w.shape, dtype=torch.float64)
        for rows, n in found.get((name, pname), []):
            if rows is None:
                u += n
            else:
                u[rows[0]:rows[1]] += n
        out.append(u)
    return out
