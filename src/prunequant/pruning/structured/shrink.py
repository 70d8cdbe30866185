"""Zeroing and physically removing channels: the two views of one channel plan.

A *plan* maps a group name to the group channels to remove. :func:`zero_channels_` writes exact zeros into every
member slice (the "masked model"); :func:`remove_channels_` deletes the same slices through Torch-Pruning's
group pruning, so every coupled layer shrinks and the model stays an ordinary dense ``nn.Module`` whose outputs equal
the zeroed model's. :func:`resize_to_state_dict_` rebuilds the shapes of a freshly constructed (dense) model so a
saved shrunk state dict loads into it.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ...errors import ConfigError, ShapeError
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


# ---------------------------------------------------------------------------------------------------------------
# loading a shrunk state dict into a freshly built (dense) model


def _set_param(module: nn.Module, pname: str, shape: torch.Size) -> None:
    old = getattr(module, pname)
    new = torch.zeros(shape, dtype=old.dtype, device=old.device)
    if isinstance(old, nn.Parameter):
        setattr(module, pname, nn.Parameter(new, requires_grad=old.requires_grad))
    else:
        module.register_buffer(pname, new)


@torch.no_grad()
def resize_to_state_dict_(model: nn.Module, state: Mapping[str, Tensor]) -> list[str]:
    """Give every Conv/Linear/BatchNorm of ``model`` the shapes stored in ``state`` (a channel-pruned model's state
    dict), so ``model.load_state_dict(state)`` succeeds. Returns the names of the resized modules.

    Only channel counts change (kernel sizes, strides, etc. stay); a depthwise convolution stays depthwise.
    Raises :class:`ShapeError` naming the module for any other mismatch.
    """
    resized = []
    from .attention import HeadPrunedAttention

    for name, mod in list(model.named_modules()):  # head-pruned attention: rebuild with the stored head count
        pre = f"{name}." if name else ""
        if isinstance(mod, nn.MultiheadAttention) and pre + "q_proj.weight" in state:
            q = state[pre + "q_proj.weight"]
            new = HeadPrunedAttention(mod.embed_dim, q.shape[0] // mod.head_dim, mod.head_dim,
                                      bias=pre + "q_proj.bias" in state, dropout=float(mod.dropout),
                                      batch_first=bool(mod.batch_first)).to(q.dtype)
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, new)
            resized.append(name)
    for name, mod in model.named_modules():
        pre = f"{name}." if name else ""
        w = state.get(pre + "weight")
        if w is None or not hasattr(mod, "weight") or not isinstance(mod.weight, Tensor):
            continue
        if tuple(w.shape) == tuple(mod.weight.shape):
            continue
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            if tuple(w.shape[2:]) != tuple(mod.weight.shape[2:]):
                raise ShapeError(f"layer '{name}': stored kernel {tuple(w.shape)} does not fit "
                                 f"{tuple(mod.weight.shape)}")
            depthwise = mod.groups > 1 and mod.groups == mod.in_channels == mod.out_channels
            if depthwise:
                mod.out_channels = mod.in_channels = mod.groups = int(w.shape[0])
            elif mod.groups == 1:
                mod.out_channels, mod.in_channels = int(w.shape[0]), int(w.shape[1])
            else:
                raise ShapeError(f"layer '{name}': grouped convolution ({mod.groups} groups) cannot be resized")
        elif isinstance(mod, nn.Linear):
            mod.out_features, mod.in_features = int(w.shape[0]), int(w.shape[1])
        elif isinstance(mod, nn.modules.batchnorm._NormBase):
            mod.num_features = int(w.shape[0])
        elif isinstance(mod, nn.PReLU) and w.numel() == 1:
            continue
        else:
            raise ShapeError(f"layer '{name}' ({type(mod).__name__}): stored weight {tuple(w.shape)} does not fit "
                             f"{tuple(mod.weight.shape)} and cannot be resized")
        for pname, t in list(mod.named_parameters(recurse=False)) + list(mod.named_buffers(recurse=False)):
            s = state.get(pre + pname)
            if s is not None and t is not None and s.shape != t.shape:
                _set_param(mod, pname, s.shape)
        resized.append(name)
    if resized:
        log.info("resized %d layers to the stored channel counts: %s", len(resized), ", ".join(resized[:8]))
    return resized
