"""What the trainer needs to know about a batch and a model output, whatever their form.

Batches may be ``(x, y, ...)`` tuples, dicts (Hugging Face style: the inputs as keywords, the targets under
``labels``/``label``/``y``/``target``/``targets``) or a bare input; outputs may be tensors, tuples (first element)
or ``ModelOutput``-like objects with ``.logits``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

LABEL_KEYS = ("labels", "label", "y", "target", "targets")


def split_batch(batch: Any) -> tuple[Any, Any]:
    """``(inputs, targets)`` of one batch (targets None when the batch has none)."""
    if isinstance(batch, Mapping):
        key = next((k for k in LABEL_KEYS if k in batch), None)
        inputs = {k: v for k, v in batch.items() if k != key}
        return inputs, (batch[key] if key is not None else None)
    if isinstance(batch, (tuple, list)):
        return batch[0], (batch[1] if len(batch) > 1 else None)
    return batch, None


def to_device(obj: Any, device: torch.device) -> Any:
    """Move tensors (also inside dicts, tuples and lists) to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def call_model(model: nn.Module, inputs: Any) -> Any:
    """``model(**inputs)`` for a dict of inputs, else ``model(inputs)``."""
    return model(**inputs) if isinstance(inputs, Mapping) else model(inputs)


def output_tensor(out: Any) -> torch.Tensor:
    """The prediction tensor of a model output: ``.logits`` (ModelOutput), ``["logits"]``, a tuple's first
    element, or the tensor itself."""
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, Mapping) and isinstance(out.get("logits"), torch.Tensor):
        return out["logits"]
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"cannot find the prediction tensor in a model output of type {type(out).__name__} "
                    f"(expected a Tensor, a tuple, or an object with .logits)")


def batch_size(batch: Any) -> int:
    inputs, _ = split_batch(batch)
    if isinstance(inputs, Mapping):
        inputs = next(v for v in inputs.values() if isinstance(v, torch.Tensor))
    return int(inputs.shape[0])
