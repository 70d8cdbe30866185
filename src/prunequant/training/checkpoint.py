"""Training checkpoints: safetensors (tensors) + JSON (everything else), written atomically.

A checkpoint holds the model state, the optimizer and scheduler state, the RNG state, each plugin's state and the
loop position (epoch, step within epoch, global step), which is all that an exact resume needs.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ..errors import StorageError
from ..storage import load_state, save_state

_NAME = "ckpt-{step:08d}.safetensors"
_PAT = re.compile(r"ckpt-(\d{8})\.safetensors$")


def _split(prefix: str, obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Move tensors out of a nested structure into ``tensors``; return the JSON-able remainder."""
    if isinstance(obj, torch.Tensor):
        key = prefix
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[_split(f"{prefix}.k{i}", k, tensors), _split(f"{prefix}.{i}", v, tensors)]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        return {"__tuple__" if isinstance(obj, tuple) else "__list__":
                [_split(f"{prefix}.{i}", v, tensors) for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise StorageError(f"cannot store object of type {type(obj).__name__} at {prefix} in a checkpoint")


def _join(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {_join(k, tensors): _join(v, tensors) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            return [_join(v, tensors) for v in obj["__list__"]]
        if "__tuple__" in obj:
            return tuple(_join(v, tensors) for v in obj["__tuple__"])
    return obj


def save_checkpoint(directory: str | Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Write ``state`` (nested dicts/lists of tensors and scalars) as checkpoint ``step``; keep the newest ``keep``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    meta = _split("s", state, tensors)
    path = directory / _NAME.format(step=step)
    save_state(tensors, {"checkpoint": meta, "step": step}, path)
    for old in sorted(p for p in directory.iterdir() if _PAT.search(p.name))[:-keep]:
        old.unlink(missing_ok=True)
    return path


def latest_checkpoint(directory: str | Path) -> Path | None:
    directory = Path(directory)
    if not directory.is_dir():
        return None
    found = sorted(p for p in directory.iterdir() if _PAT.search(p.name))
    return found[-1] if found else None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    tensors, meta = load_state(path)
    if "checkpoint" not in meta:
        raise StorageError(f"{path}: not a prunequant training checkpoint (no 'checkpoint' metadata)")
    return _join(meta["checkpoint"], tensors)
