r"""The data model of structured pruning: a :class:`ChannelGraph` of :class:`ChannelGroup`\ s (channels removed
together), each a list of :class:`Member` tensor dimensions. Built by :mod:`.groups`, acted on by :mod:`.shrink`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

__all__ = ["ChannelGraph", "ChannelGroup", "Member"]


@dataclass
class Member:
    """One tensor dimension of a group: ``module``'s output channels (``kind="out"``: weight/bias rows, BatchNorm
    entries) or input channels (``kind="in"``: weight columns). ``idx[i]`` is a channel index of the module,
    ``root[i]`` the group channel it belongs to (several module indices can share one group channel after
    flatten)."""

    name: str
    module: nn.Module
    kind: str
    idx: Tensor
    root: Tensor


@dataclass
class ChannelGroup:
    """Channels that are removed together. ``name`` is the root layer (the first producer)."""

    name: str
    size: int
    members: list[Member]
    root_module: nn.Module
    handler: Any = None

    @property
    def producers(self) -> list[Member]:
        return [m for m in self.members if m.kind == "out"]

    @property
    def layer_names(self) -> list[str]:
        seen: list[str] = []
        for m in self.members:
            if m.name not in seen:
                seen.append(m.name)
        return seen


@dataclass
class ChannelGraph:
    """The prunable channel groups of ``model`` for ``example_input``; ``skipped`` lists what is left unpruned."""

    model: nn.Module
    example_input: Any
    groups: list[ChannelGroup]
    skipped: list[str] = field(default_factory=list)
    dg: Any = None

    def group(self, name: str) -> ChannelGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(f"no channel group {name!r}; groups: {[g.name for g in self.groups]}")
