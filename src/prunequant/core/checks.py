"""The one set of input checks shared by pruning, quantization, export and the report."""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigError, LayerError

__all__ = ["MAX_BITS", "MIN_BITS", "check_bits", "check_weight"]

MIN_BITS, MAX_BITS = 2, 16


def _where(name: str) -> str:
    return name if name.startswith("layer ") else f"layer '{name}'"


def check_weight(w: Tensor, name: str = "tensor") -> None:
    """Raise :class:`LayerError` naming the layer if ``w`` is not a non-empty, finite floating-point tensor.

    Args:
        w: the tensor to check (a weight, or the tensor entering a quantizer).
        name: the layer or tensor name for the message (``"conv1.weight"``; ``"layer 'conv1'"`` is kept as is).

    Example:
        >>> import torch
        >>> check_weight(torch.ones(2, 2), "fc.weight")
        >>> check_weight(torch.tensor([float("nan")]), "fc.weight")
        Traceback (most recent call last):
        ...
        prunequant.errors.LayerError: layer 'fc.weight': 1 NaN/Inf value(s) (1 NaN, 0 Inf) in a tensor of shape (1,)
    """
    where = _where(name)
    if not isinstance(w, Tensor):
        raise LayerError(f"{where}: expected a torch.Tensor, got {type(w).__name__}")
    if w.numel() == 0:
        raise LayerError(f"{where}: weight is empty (shape {tuple(w.shape)})")
    if not w.is_floating_point():
        raise LayerError(f"{where}: expected a floating-point tensor, got {w.dtype}")
    bad = ~torch.isfinite(w)
    if bool(bad.any()):
        n_bad, n_nan = int(bad.sum()), int(torch.isnan(w).sum())
        raise LayerError(f"{where}: {n_bad} NaN/Inf value(s) ({n_nan} NaN, {n_bad - n_nan} Inf) in a tensor of "
                         f"shape {tuple(w.shape)}")


def check_bits(bits, what: str = "bits", lo: int = MIN_BITS, hi: int = MAX_BITS) -> int:
    """Return ``bits`` as int if it is an integer in ``[lo, hi]``, else raise :class:`ConfigError` naming ``what``.

    Example:
        >>> check_bits(4, "weight bits")
        4
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not lo <= bits <= hi:
        raise ConfigError(f"{what} must be an integer in [{lo}, {hi}], got {bits!r}")
    return bits
