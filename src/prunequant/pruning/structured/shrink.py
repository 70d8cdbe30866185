"""Zeroing and physically removing channels: the two views of one channel plan.

A *plan* maps a group name to the group channels to remove. :func:`zero_channels_` writes exact zeros into every
member slice (the "masked model"); :func:`remove_channels_` deletes the same slices through Torch-Pruning's
group pruning, so every coupled layer shrinks and the model stays an ordinary dense ``nn.Module`` whose outputs equal
the zeroed model's. :func:`~prunequant.core.resize.resize_to_state_dict_` (re-exported here) rebuilds the shapes
of a freshly constructed (dense) model so a saved shrunk state dict loads into it.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ...core.resize import resize_to_state_dict_  # noqa: F401 (moved to core; re-exported for old imports)
from ...errors import ConfigError
from .graph import ChannelGraph, ChannelGroup

log = logging.getLogger("prunequant.pruning.structured")

__all__ = ["check_plan", "remove_channels_", "resize_to_state_dict_", "zero_channels_"]

Plan = Mapping[str, Sequence[int]]


def check_plan(graph: ChannelGraph, plan: Plan) -> dict[str, list[int]]:
    """Validate ``plan`` against ``graph``: known groups, indices in range, at least one channel kept per group."""
    out: dict[str, list[int]] = {}
    names = {g.name: g for g in graph.groups}
    for name, idxs in plan.items():
        if name not in names:
            raise ConfigError(f"channel plan names unknown group {name!r}; groups: {sorted(names)}")
        g = names[name]
        ids = sorted({int(i) for i in idxs})
        if ids and (ids[0] < 0 or ids[-1] >= g.size):
            raise ConfigError(f"group {name!r}: channel index out of range [0, {g.size})")
        if len(ids) >= g.size:
            raise ConfigError(f"group {name!r}: cannot remove all {g.size} channels; keep at least one")
        if ids:
            out[name] = ids
    return out


def _member_positions(member, chans: Tensor) -> Tensor:
    return member.idx[torch.isin(member.root, chans)]


@torch.no_grad()
def zero_channels_(graph: ChannelGraph, plan: Plan) -> None:
    """Write exact zeros into every slice of the planned channels (producer rows and biases, BatchNorm affine
    entries, consumer columns). The model keeps its shape; its outputs equal those of :func:`remove_channels_`."""
    plan = check_plan(graph, plan)
    for g in graph.groups:
        if g.name not in plan:
            continue
        chans = torch.tensor(plan[g.name], dtype=torch.long)
        if g.handler == "heads":
            from .attention import zero_heads_

            zero_heads_(g.root_module, plan[g.name])
            continue
        for m in g.members:
            pos = _member_positions(m, chans)
            if pos.numel() == 0:
                continue
            mod = m.module
            if m.kind == "out":
                for pname in ("weight", "bias"):
                    p = getattr(mod, pname, None)
                    if isinstance(p, Tensor) and p.dim() >= 1 and p.shape[0] > int(pos.max()):
                        p.index_fill_(0, pos.to(p.device), 0.0)
            else:
                w = mod.weight
                w.index_fill_(1, pos.to(w.device), 0.0)


def remove_channels_(graph: ChannelGraph, plan: Plan) -> dict[str, int]:
    """Physically remove the planned channels from every coupled layer (Torch-Pruning group pruning).

    Returns the number of channels removed per group. ``graph`` is stale afterwards (rebuild it to prune more).
    """
    plan = check_plan(graph, plan)
    if graph.dg is None:
        raise ConfigError("this channel graph has no dependency graph (a probe copy); rebuild it")
    removed: dict[str, int] = {}
    heads = []
    for g in graph.groups:
        ids = plan.get(g.name)
        if not ids:
            continue
        if g.handler == "heads":
            heads.append((g, ids))  # after the graph-based groups: replacing a module invalidates the graph
            continue
        _prune_group(graph, g, ids)
        removed[g.name] = len(ids)
    from .attention import remove_heads_

    for g, ids in heads:
        remove_heads_(graph.model, g.name, ids)
        removed[g.name] = len(ids)
    return removed


def _prune_group(graph: ChannelGraph, g: ChannelGroup, ids: list[int]) -> None:
    grp = graph.dg.get_pruning_group(g.root_module, g.handler, idxs=list(ids))
    grp.prune()
