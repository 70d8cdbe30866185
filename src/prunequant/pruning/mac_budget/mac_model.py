"""How many MACs each prunable weight costs, by the rules of :mod:`prunequant.analysis.macs`.

``analysis.report`` counts effective MACs as ``sum(nnz(W[rows]) * uses) + activation-only MACs``. Pruning a weight
therefore removes exactly its ``uses`` from the report's effective MACs. :func:`weight_uses` records those
``uses`` per weight element (rows of an attention ``in_proj_weight`` may differ) with one forward pass, so the
planner predicts the report's number exactly; the handler still checks it against the report every round.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ...core.tracing import trace_layers


@torch.no_grad()
def weight_uses(model: nn.Module, example_input: Any, targets: list[tuple[str, nn.Module, str]]) -> list[Tensor]:
    """Per target ``(module_name, module, param_name)``: a float64 tensor shaped like the weight holding the MACs
    each element takes part in for one forward of ``example_input`` (0 for weights never used).

    The forward is traced by :func:`prunequant.core.tracing.trace_layers`, the same tracer the report uses."""
    found = trace_layers(model, example_input).weight_uses()
    out = []
    for name, module, pname in targets:
        w = getattr(module, pname)
        u = torch.zeros(w.shape, dtype=torch.float64)
        for rows, n in found.get((name, pname), {}).items():
            if rows is None:
                u += n
            else:
                u[rows[0]:rows[1]] += n
        out.append(u)
    return out
