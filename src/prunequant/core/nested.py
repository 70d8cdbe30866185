"""The first tensor of a nested module output (the one walk used by MAC counting, fidelity and calibration)."""
from __future__ import annotations

from typing import Any

from torch import Tensor
from torch.nn.utils.rnn import PackedSequence


def first_tensor(obj: Any) -> Tensor | None:
    """The first tensor in ``obj``: a Tensor itself, a PackedSequence's data, a Hugging Face output's ``logits``,
    else depth-first through dicts (in insertion order), tuples and lists; None when there is none.

    Example:
        >>> import torch
        >>> first_tensor(({"a": torch.ones(2)}, torch.zeros(1))).tolist()
        [1.0, 1.0]
    """
    if isinstance(obj, Tensor):
        return obj
    if isinstance(obj, PackedSequence):
        return obj.data
    logits = getattr(obj, "logits", None)  # Hugging Face ModelOutput
    if isinstance(logits, Tensor):
        return logits
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (tuple, list)):
        for o in obj:
            t = first_tensor(o)
            if t is not None:
                return t
    return None
