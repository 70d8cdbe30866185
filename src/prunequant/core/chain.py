"""One accessor for the parametrization chain of a compressed weight.

A compressed weight is ``module.<param_name>`` with ``torch.nn.utils.parametrize`` parametrizations applied in
order to the raw parameter: zero or more masks (:class:`~prunequant.core.masks.MaskParametrization`), then at
most one weight quantizer (:class:`~prunequant.core.quantizer.WeightFakeQuant`). Export, the artifact writer,
plots and pruning read it through :class:`WeightChain` instead of walking ``module.parametrizations`` by hand.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..errors import LayerError, UnsupportedModuleError
from .masks import MaskParametrization
from .targets import weight_key

__all__ = ["WeightChain", "has_chain", "weight_chains"]


def _is_weight_quantizer(p: nn.Module) -> bool:
    from .quantizer import WeightFakeQuant  # lazy: the quantizer protocol module sits beside this one

    return isinstance(p, WeightFakeQuant)


def has_chain(module: nn.Module, param_name: str = "weight") -> bool:
    """True if ``module.<param_name>`` carries at least one parametrization."""
    return parametrize.is_parametrized(module, param_name)


class WeightChain:
    """The parametrization chain of ``module.<param_name>`` (also valid for a plain, unparametrized tensor).

    Attributes / methods:
        original: the raw stored Parameter (``parametrizations[name].original``, or the parameter itself).
        parametrizations: the chain in order (``[]`` when not parametrized).
        masks: the mask parametrizations in the chain.
        quantizer: the weight quantizer, or ``None``.
        input_of(p): the tensor entering parametrization ``p``.
        quant_input(): the tensor entering the quantizer (``original`` passed through the masks before it).
        effective(): the tensor the forward sees (``module.<param_name>``).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from torch.nn.utils import parametrize
        >>> from prunequant.core.masks import FixedMask
        >>> lin = nn.Linear(2, 2)
        >>> _ = parametrize.register_parametrization(lin, "weight", FixedMask(torch.eye(2, dtype=torch.bool)))
        >>> c = WeightChain(lin, "weight")
        >>> len(c.masks), c.quantizer is None, int(c.effective().count_nonzero()) <= 2
        (1, True, True)
    """

    def __init__(self, module: nn.Module, param_name: str = "weight", name: str = ""):
        if not hasattr(module, param_name):
            raise LayerError(f"layer '{name or type(module).__name__}' has no tensor '{param_name}'")
        self.module, self.param_name, self.name = module, param_name, name
        self.parametrized = has_chain(module, param_name)
        self.parametrizations: list[nn.Module] = (
            list(module.parametrizations[param_name]) if self.parametrized else [])

    @property
    def key(self) -> str:
        return weight_key(self.name, self.param_name)

    @property
    def original(self) -> Tensor:
        if self.parametrized:
            return self.module.parametrizations[self.param_name].original
        return getattr(self.module, self.param_name)

    @property
    def masks(self) -> list[MaskParametrization]:
        return [p for p in self.parametrizations if isinstance(p, MaskParametrization)]

    @property
    def mask(self) -> MaskParametrization | None:
        """The first mask, or ``None``."""
        ms = self.masks
        return ms[0] if ms else None

    @property
    def quantizer(self):
        qs = [p for p in self.parametrizations if _is_weight_quantizer(p)]
        if len(qs) > 1:
            raise UnsupportedModuleError(f"layer '{self.key}': two weight quantizers on one tensor "
                                         f"({type(qs[0]).__name__}, {type(qs[1]).__name__})")
        return qs[0] if qs else None

    def index(self, p: nn.Module) -> int:
        """Position of parametrization ``p`` in the chain."""
        for i, q in enumerate(self.parametrizations):
            if q is p:
                return i
        raise LayerError(f"layer '{self.key}': parametrization {type(p).__name__} is not on this tensor")

    def input_of(self, p: nn.Module | int) -> Tensor:
        """The tensor entering parametrization ``p`` (or the one at position ``p``)."""
        i = p if isinstance(p, int) else self.index(p)
        x = self.original
        for q in self.parametrizations[:i]:
            x = q(x)
        return x

    def quant_input(self) -> Tensor:
        """The (detached) tensor entering the weight quantizer; :class:`LayerError` if there is none."""
        q = self.quantizer
        if q is None:
            raise LayerError(f"layer '{self.key}': no weight quantizer on this tensor")
        with torch.no_grad():
            return self.input_of(q).detach()

    def effective(self) -> Tensor:
        """The tensor the forward uses (masked, fake-quantized), as ``module.<param_name>`` returns it."""
        return getattr(self.module, self.param_name)

    def __repr__(self) -> str:
        return f"WeightChain({self.key!r}, [{', '.join(type(p).__name__ for p in self.parametrizations)}])"


def weight_chains(model: nn.Module) -> Iterator[WeightChain]:
    """A :class:`WeightChain` for every parametrized tensor of ``model`` (module order, then tensor order)."""
    for name, module in model.named_modules():
        plists = getattr(module, "parametrizations", None)
        if plists is None or "parametrizations" in name.split("."):
            continue
        for pname in list(plists.keys()):
            yield WeightChain(module, pname, name)
