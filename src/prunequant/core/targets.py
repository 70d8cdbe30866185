"""Which weights a config selects: one :class:`Selector` for include / exclude / skip / types.

Every method (pruning, quantization, joint) and every reader (report, export) names a compressed weight the same
way: ``weight_key(module_name, param_name)`` (``"features.0.weight"``, ``"lstm.weight_hh_l0"``).
"""
from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from torch import nn

from ..errors import ConfigError, UnsupportedModuleError

__all__ = [
    "SUPPORTED_TYPES",
    "Selector",
    "WeightRef",
    "compressible_weights",
    "name_matches",
    "set_submodule",
    "unsupported_layers",
    "weight_key",
    "weight_names",
]

SUPPORTED_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.LSTM, nn.GRU, nn.LSTMCell, nn.GRUCell, nn.MultiheadAttention,
)
_CELLS = (nn.RNNCell, nn.LSTMCell, nn.GRUCell)
_RNN_WEIGHT_PREFIXES = ("weight_ih_l", "weight_hh_l", "weight_hr_l")


def weight_key(module_name: str, param_name: str) -> str:
    """The dotted name of a weight: ``"conv1.weight"``, or just ``param_name`` for the root module."""
    return f"{module_name}.{param_name}" if module_name else param_name


def weight_names(module: nn.Module) -> list[str]:
    """Names of the compressible weight tensors a supported module owns directly ([] for other modules)."""
    if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
        return ["weight"]
    if isinstance(module, (nn.LSTM, nn.GRU)):
        return [n for n in module._flat_weights_names if n.startswith(_RNN_WEIGHT_PREFIXES)]
    if isinstance(module, _CELLS):
        return ["weight_ih", "weight_hh"]
    if isinstance(module, nn.MultiheadAttention):
        # out_proj is a Linear child and is listed on its own.
        if module._qkv_same_embed_dim:
            return ["in_proj_weight"]
        return ["q_proj_weight", "k_proj_weight", "v_proj_weight"]
    return []


def _is_pattern(s: str) -> bool:
    return any(c in s for c in "*?[")


def name_matches(name: str, patterns: Iterable[str | type], module: nn.Module | None = None) -> bool:
    """True if ``name`` equals or ``fnmatch``-matches a string pattern, or ``module`` is an instance of a type."""
    for s in patterns:
        if isinstance(s, type):
            if module is not None and isinstance(module, s):
                return True
        elif name == s or fnmatch.fnmatchcase(name, s):
            return True
    return False


@dataclass(frozen=True)
class Selector:
    """Which modules a config targets.

    ``include``: module names (exact or ``fnmatch`` patterns such as ``"features.*"``) or module types; empty
    means every module. ``exclude``: the same, removed after ``include`` (a config's ``skip`` is an exclude).
    ``types``: restrict the module types considered (must be :data:`SUPPORTED_TYPES` subclasses for
    :func:`compressible_weights`); empty means all supported types.

    Example:
        >>> from torch import nn
        >>> sel = Selector.of(include=["features.*"], exclude=[nn.Conv1d])
        >>> sel.matches("features.0", nn.Linear(2, 2)), sel.matches("head", nn.Linear(2, 2))
        (True, False)
    """

    include: tuple = ()
    exclude: tuple = ()
    types: tuple = ()

    @classmethod
    def of(cls, include: Sequence[str | type] | None = None, exclude: Sequence[str | type] | None = None,
           types: Sequence[type[nn.Module]] | None = None, skip: Sequence[str] | None = None) -> Selector:
        """Build a selector from a config's fields (``None`` = not set; ``skip`` joins ``exclude``)."""
        for what, v in (("include", include), ("exclude", exclude), ("types", types), ("skip", skip)):
            if isinstance(v, (str, type)):
                raise ConfigError(f"{what} must be a list of names/patterns or types, got a single {v!r}")
        return cls(tuple(include or ()), tuple(exclude or ()) + tuple(skip or ()), tuple(types or ()))

    def matches(self, name: str, module: nn.Module) -> bool:
        """True if ``module`` (called ``name`` in its model) is selected."""
        if self.types and not isinstance(module, self.types):
            return False
        if self.include and not name_matches(name, self.include, module):
            return False
        return not name_matches(name, self.exclude, module)


class WeightRef(NamedTuple):
    """One compressible weight: ``module.<param_name>`` of the module called ``name``; ``key`` = dotted name."""

    name: str
    module: nn.Module
    param_name: str
    key: str


def compressible_weights(model: nn.Module, selector: Selector | None = None,
                         supported: tuple[type[nn.Module], ...] = SUPPORTED_TYPES) -> list[WeightRef]:
    """Every compressible weight of ``model`` the ``selector`` selects, in ``named_modules`` order.

    Args:
        model: the model to walk.
        selector: which modules to consider (``None``: all supported modules).
        supported: the module types a method can handle.

    Returns:
        A list of :class:`WeightRef`.

    Raises:
        UnsupportedModuleError: ``selector.types`` names a type outside ``supported``, or ``include`` names
            (exactly) a module that cannot be compressed.
        ConfigError: ``include`` names (exactly) a module that does not exist.

    Example:
        >>> from torch import nn
        >>> m = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> [r.key for r in compressible_weights(m, Selector.of(exclude=["2"]))]
        ['0.weight']
    """
    sel = selector or Selector()
    allowed = tuple(sel.types) if sel.types else supported
    bad = [t for t in allowed if not (isinstance(t, type) and issubclass(t, supported))]
    if bad:
        raise UnsupportedModuleError(
            f"unsupported module type(s): {', '.join(getattr(t, '__name__', str(t)) for t in bad)}; "
            f"supported: {', '.join(t.__name__ for t in supported)}")
    named = dict(model.named_modules())
    for s in sel.include:
        if isinstance(s, str) and not _is_pattern(s):
            if s not in named:
                raise ConfigError(f"include: no module named '{s}' in {type(model).__name__}")
            if not isinstance(named[s], allowed):
                raise UnsupportedModuleError(
                    f"include: module '{s}' ({type(named[s]).__name__}) cannot be compressed; supported: "
                    f"{', '.join(t.__name__ for t in allowed)}")
    out: list[WeightRef] = []
    for name, module in named.items():
        if not isinstance(module, allowed) or "parametrizations" in name.split("."):
            continue
        if sel.include and not name_matches(name, sel.include, module):
            continue
        if name_matches(name, sel.exclude, module):
            continue
        for p in weight_names(module):
            out.append(WeightRef(name, module, p, weight_key(name, p)))
    return out


def unsupported_layers(model: nn.Module, selector: Selector | None = None,
                       supported: tuple[type[nn.Module], ...] = SUPPORTED_TYPES) -> dict[str, str]:
    """Layers a config selects but a method cannot compress, with the reason: ``{module name: reason}``.

    A layer counts when it owns a floating-point parameter with two or more dimensions (a weight matrix or
    kernel) and its type is not in ``supported``; modules inside a supported module (``out_proj`` of attention)
    are covered by it. Methods list these as skipped instead of leaving them in fp32 silently.

    Example:
        >>> from torch import nn
        >>> reasons = unsupported_layers(nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2)))
        >>> list(reasons), reasons["0"].split(" (")[0]
        (['0'], 'Embedding is not supported')
    """
    sel = selector or Selector()
    if sel.types:  # only the listed (supported) types were asked for
        return {}
    covered: set[str] = set()
    out: dict[str, str] = {}
    names = ", ".join(t.__name__ for t in supported)
    for name, module in model.named_modules():
        if "parametrizations" in name.split(".") or any(name.startswith(c + ".") for c in covered):
            continue
        if isinstance(module, supported):
            covered.add(name)
            continue
        if not any(p.dim() >= 2 and p.is_floating_point() for p in module.parameters(recurse=False)):
            continue
        if sel.include and not name_matches(name, sel.include, module):
            continue
        if name_matches(name, sel.exclude, module):
            continue
        out[name] = f"{type(module).__name__} is not supported (supported: {names}); left in floating point"
    return out


def set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the submodule called ``name`` (dotted) in ``model`` by ``new``.

    Example:
        >>> from torch import nn
        >>> m = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
        >>> set_submodule(m, "1", nn.Identity()); type(m[1]).__name__
        'Identity'
    """
    if not name:
        raise ConfigError("set_submodule: cannot replace the model itself (empty name)")
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if child not in parent._modules:
        raise ConfigError(f"set_submodule: no module named '{name}' in {type(model).__name__}")
    setattr(parent, child, new)
