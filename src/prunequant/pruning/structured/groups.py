"""Coupled channel groups of a model, found with Torch-Pruning's ``DependencyGraph``.

A *channel group* is a set of channels that must be removed together: the output channels of one or more producers
(conv/linear rows, the BatchNorm entries that follow them, every producer feeding the same residual addition,
depthwise convolutions), and the input channels of every consumer (conv/linear columns, through concatenations and
flatten -> linear). Torch-Pruning supplies the coupling; this module turns it into plain index tensors
(:class:`Member`), checks that removing a channel is exactly the same as zeroing it, and leaves every group it
cannot handle unpruned with a message naming the layers (``ChannelGraph.skipped``).

Importance, budgets and the removal plan are prunequant's own (see ``analytic.py`` and ``mac_budget.py``).
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ...errors import ConfigError, UnsupportedModuleError
from .graph import ChannelGraph, ChannelGroup, Member

log = logging.getLogger("prunequant.pruning.structured")

__all__ = ["ChannelGraph", "ChannelGroup", "Member", "build_channel_graph", "require_torch_pruning"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def require_torch_pruning():
    """Import ``torch_pruning`` or raise a clear error naming the extra that installs it."""
    try:
        import torch_pruning as tp
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise UnsupportedModuleError(
            "structured (channel) pruning needs Torch-Pruning's DependencyGraph: pip install 'prunequant[structured]' "
            "(torch-pruning>=1.6,<1.7)") from e
    return tp


def _forward(model: nn.Module, example_input: Any):
    if isinstance(example_input, dict):
        return model(**example_input)
    if isinstance(example_input, (tuple, list)):
        return model(*example_input)
    return model(example_input)


def _flat_outputs(out: Any) -> list[Tensor]:
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat_outputs(o)]
    return []


def _output_layers(model: nn.Module, example_input: Any) -> list[nn.Module]:
    """Leaf modules whose output tensor is (one of) the model's outputs: their channels must stay."""
    produced: dict[int, nn.Module] = {}
    hooks = []

    def record(mod, inp, out):
        for t in _flat_outputs(out):
            produced[id(t)] = mod

    for m in model.modules():
        if not list(m.children()):
            hooks.append(m.register_forward_hook(record))
    try:
        with torch.no_grad():
            out = _forward(model, example_input)
    finally:
        for h in hooks:
            h.remove()
    return [produced[id(t)] for t in _flat_outputs(out) if id(t) in produced]


def _member_ok(module: nn.Module, kind: str) -> str | None:
    """None if prunequant can zero/remove this member exactly, else the reason."""
    if isinstance(module, _CONV):
        if module.groups == 1:
            return None
        if module.groups == module.in_channels == module.out_channels and kind == "out":
            return None  # depthwise: removing an output channel removes the matching input channel too
        return f"grouped convolution ({module.groups} groups)"
    if isinstance(module, nn.Linear):
        return None
    if isinstance(module, _BN) and kind == "out":
        return None
    if isinstance(module, nn.PReLU) and module.num_parameters == 1:
        return None
    return type(module).__name__


def _is_tp_internal(module: Any, tp) -> bool:
    return not isinstance(module, nn.Module) or type(module).__module__.startswith(tp.__name__)


def _plain(idxs) -> list[int]:
    return [int(getattr(i, "idx", i)) for i in idxs]


def build_channel_graph(model: nn.Module, example_input: Any, *, ignore: Sequence[nn.Module | str] = (),
                        include: Sequence[str] | None = None, exclude: Sequence[str] = (),
                        check: bool = True) -> ChannelGraph:
    """Find the prunable channel groups of ``model`` (Torch-Pruning's ``DependencyGraph`` for the coupling).

    Groups whose channels reach the model output, that touch a layer prunequant cannot zero and remove exactly
    (LayerNorm, MultiheadAttention embeddings, grouped convolutions, unknown modules with parameters), or whose
    removal does not reproduce the zeroed model on ``example_input`` (``check``) are left out and listed in
    ``skipped`` with the layers they name.

    Args:
        model: the model (in place; not modified). Must carry no parametrizations.
        example_input: an input of deployment shape (Tensor, tuple of positional inputs or dict of keyword inputs).
        ignore: modules (or module names) whose output channels must stay.
        include / exclude: module-name patterns (fnmatch) selecting the *root* layers of groups to prune.
        check: verify on copies that removing one channel of every group equals zeroing it.

    Returns:
        :class:`ChannelGraph`.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> g = build_channel_graph(m, torch.randn(1, 4))
        >>> [(x.name, x.size) for x in g.groups]
        [('0', 8)]
    """
    import fnmatch

    tp = require_torch_pruning()
    if not isinstance(model, nn.Module):
        raise UnsupportedModuleError(f"expected a torch.nn.Module, got {type(model).__name__}")
    bad = [n for n, m in model.named_modules() if parametrize.is_parametrized(m)]
    if bad:
        raise ConfigError(f"channel pruning needs a model without parametrizations (finalize other methods first, "
                          f"or prune channels first); parametrized: {', '.join(bad[:5])}")
    names = {m: n for n, m in model.named_modules()}
    by_name = dict(model.named_modules())
    ignored: list[nn.Module] = []
    for x in ignore:
        if isinstance(x, str):
            if x not in by_name:
                raise ConfigError(f"ignore: no module named {x!r} in {type(model).__name__}")
            ignored.append(by_name[x])
        else:
            ignored.append(x)
    from .attention import HeadPrunedAttention, head_supported

    # the projections inside an already head-pruned attention are never roots of channel groups
    for m in model.modules():
        if isinstance(m, HeadPrunedAttention):
            ignored += [m.q_proj, m.k_proj, m.v_proj]
    was_training = model.training
    model.eval()
    try:
        outs = _output_layers(model, example_input)
        ignored += [m for m in outs if m not in ignored]
        dg = tp.DependencyGraph().build_dependency(model, example_inputs=example_input)
        raw_groups = list(dg.get_all_groups(ignored_layers=ignored, root_module_types=(*_CONV, nn.Linear)))
    finally:
        model.train(was_training)
    groups: list[ChannelGroup] = []
    skipped: list[str] = []
    for g in raw_groups:
        root_dep = g[0].dep
        root = root_dep.target.module
        rname = names.get(root, str(root_dep.target.name))
        if include is not None and not any(fnmatch.fnmatchcase(rname, p) for p in include):
            continue
        if any(fnmatch.fnmatchcase(rname, p) for p in exclude):
            continue
        members: list[Member] = []
        reasons: list[str] = []
        size = len(g[0][1])
        for dep, idxs in g:
            mod = dep.target.module
            if _is_tp_internal(mod, tp):
                continue
            if not list(mod.parameters(recurse=False)) and not list(mod.children()):
                continue  # parameter-free leaf (activation, pooling): nothing to remove
            kind = "out" if dg.is_out_channel_pruning_fn(dep.handler) else "in"
            why = _member_ok(mod, kind)
            mname = names.get(mod, str(dep.target.name))
            if why is not None:
                reasons.append(f"{mname} ({why})")
                continue
            # a full group lists each member's indices in group-channel order; after flatten -> linear each
            # channel expands to k consecutive entries (Torch-Pruning's root_idx is not offset-corrected there)
            plain = _plain(idxs)
            k = len(plain) // size
            if k < 1 or k * size != len(plain):
                reasons.append(f"{mname} (index mapping {len(plain)} -> {size} channels)")
                continue
            roots = [i // k for i in range(len(plain))]
            members.append(Member(mname, mod, kind, torch.tensor(plain, dtype=torch.long),
                                  torch.tensor(roots, dtype=torch.long)))
        if reasons:
            skipped.append(f"group '{rname}' ({size} channels) left unpruned: coupled to {', '.join(reasons)}")
            continue
        if not any(m.kind == "out" for m in members):
            continue
        groups.append(ChannelGroup(rname, size, members, root, root_dep.handler))
    # attention heads: one group per attention module (its model width stays; see attention.py)
    ignored_ids = {id(m) for m in ignored}
    for aname, m in model.named_modules():
        if not isinstance(m, (nn.MultiheadAttention, HeadPrunedAttention)) or id(m) in ignored_ids:
            continue
        if include is not None and not any(fnmatch.fnmatchcase(aname, p) for p in include):
            continue
        if any(fnmatch.fnmatchcase(aname, p) for p in exclude):
            continue
        why = head_supported(m)
        if why is not None:
            skipped.append(f"heads of '{aname}' left unpruned: {why}")
            continue
        ar = torch.arange(m.num_heads)
        groups.append(ChannelGroup(aname, m.num_heads, [Member(aname, m, "heads", ar, ar)], m, "heads"))
    graph = ChannelGraph(model, example_input, groups, skipped, dg)
    if check and groups:
        _check_groups(graph)
    for s in graph.skipped:
        log.info("structured pruning: %s", s)
    return graph


def _outputs_match(a: Any, b: Any) -> bool:
    ta, tb = _flat_outputs(a), _flat_outputs(b)
    if len(ta) != len(tb):
        return False
    for x, y in zip(ta, tb):
        if x.shape != y.shape:
            return False
        scale = float(x.detach().abs().max()) if x.numel() else 0.0
        if not torch.allclose(x, y, rtol=1e-4, atol=1e-5 * max(scale, 1.0)):
            return False
    return True


def _probe(graph: ChannelGraph, groups: list[ChannelGroup]) -> bool:
    """Zero channel 0 of each group on one copy, remove it on another; True if the outputs agree."""
    from .shrink import remove_channels_, zero_channels_

    plan = {g.name: [0] for g in groups}
    zeroed = copy.deepcopy(graph.model).eval()
    removed = copy.deepcopy(graph.model).eval()
    try:
        zgraph = _rebind(graph, zeroed, groups)
        zero_channels_(zgraph, plan)
        rgraph = build_channel_graph(removed, graph.example_input, check=False,
                                     include=[g.name for g in groups])
        remove_channels_(rgraph, plan)
        with torch.no_grad():
            return _outputs_match(_forward(zeroed, graph.example_input), _forward(removed, graph.example_input))
    except Exception as e:  # any failure means: not safe to prune this group
        log.debug("probe failed: %s", e)
        return False


def _rebind(graph: ChannelGraph, model: nn.Module, groups: list[ChannelGroup]) -> ChannelGraph:
    """The same groups pointing at the modules of ``model`` (a deep copy of ``graph.model``)."""
    by_name = dict(model.named_modules())
    new = [ChannelGroup(g.name, g.size, [Member(m.name, by_name[m.name], m.kind, m.idx, m.root) for m in g.members],
                        by_name[g.name], g.handler) for g in groups]
    return ChannelGraph(model, graph.example_input, new, list(graph.skipped), None)


def _check_groups(graph: ChannelGraph) -> None:
    if _probe(graph, graph.groups):
        return
    keep = []
    for g in graph.groups:
        if g.size > 1 and _probe(graph, [g]):
            keep.append(g)
        else:
            graph.skipped.append(f"group '{g.name}' ({g.size} channels) left unpruned: removing a channel does not "
                                 f"reproduce the zeroed model (layers {', '.join(g.layer_names)})")
    graph.groups = keep
