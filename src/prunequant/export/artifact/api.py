"""Packed compressed artifact: ``export(model, path)`` / ``load_compressed(path)`` / ``read_artifact(path)``.

Exactness: :func:`export` decodes every tensor again through the same code path :func:`load_compressed` uses and
refuses (:class:`~prunequant.errors.LayerError`) to write a tensor whose rebuilt value is not bit-identical to the
model's effective tensor, so a loaded artifact's forward equals the in-memory fake-quant model's forward exactly.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ...errors import LayerError, StorageError, UnsupportedModuleError
from .codec import EntryReport, decode_all, effective_tensors, encode_float, encode_quantized
from .container import Payload, read_container, write_container

__all__ = ["ExportResult", "export", "load_compressed", "read_artifact"]


@dataclass
class ExportResult:
    """Summary of an :func:`export`: file size, payload size, the exact-bit lower bound and per-entry rows."""

    path: str
    file_bytes: int
    payload_bytes: int
    theoretical_bytes: float
    fp32_bytes: int
    entries: list[EntryReport] = field(default_factory=list)

    @property
    def size_ratio(self) -> float:
        """File bytes over the fp32 bytes of the same tensors (dense, 4 bytes each)."""
        return self.file_bytes / self.fp32_bytes if self.fp32_bytes else float("nan")

    @property
    def overhead(self) -> float:
        """File bytes over the exact-bit size of the stored streams, minus one (header + byte padding)."""
        return self.file_bytes / self.theoretical_bytes - 1 if self.theoretical_bytes else float("nan")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(size_ratio=self.size_ratio, overhead=self.overhead)
        return d


@torch.no_grad()
def export(model: nn.Module, path: str | Path, *, check: bool = True) -> ExportResult:
    """Write ``model``'s compressed form to ``path`` and return its size summary.

    Args:
        model: a pruned and/or quantized model. Quantized weights must still carry their weight quantizer
            (export before baking the quantizers, or the weights are stored as floats).
        path: the file to write (atomically).
        check: decode every tensor again and raise :class:`LayerError` if any differs from the model's
            effective tensor (default on).

    Returns:
        An :class:`ExportResult` (file bytes, payload bytes, per-tensor :class:`EntryReport` rows).

    Example:
        >>> import torch, tempfile, os
        >>> from torch import nn
        >>> from prunequant import quantize_
        >>> from prunequant.quantization import PWLQConfig
        >>> model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
        >>> _ = quantize_(model, PWLQConfig(wbits=4, abits=None))
        >>> res = export(model, os.path.join(tempfile.mkdtemp(), "m.pq"))
        >>> res.file_bytes < res.fp32_bytes
        True
    """
    if not isinstance(model, nn.Module):
        raise UnsupportedModuleError(f"export expects an nn.Module, got {type(model).__name__}")
    from ...io import act_quant_specs, layer_bits

    path = Path(path)
    payload = Payload()
    entries: dict[str, dict] = {}
    reports: list[EntryReport] = []
    tensors = effective_tensors(model)
    for key, (t, quant, qin) in tensors.items():
        before = payload.size
        if quant is not None:
            e, r = encode_quantized(key, t, quant, qin, payload)
        else:
            e, r = encode_float(key, t, payload)
        r.nbytes = payload.size - before
        entries[key] = e
        reports.append(r)
    config = getattr(model, "config", None)
    try:
        json.dumps(config)
    except (TypeError, ValueError):
        config = None
    layout = {"items": payload.items, "entries": entries, "act": act_quant_specs(model), "bits": layer_bits(model)}
    blob = payload.tensor()
    if check:
        decoded = decode_all(layout, blob, str(path))
        for key, (t, _, _) in tensors.items():
            if not torch.equal(decoded[key].to(t.dtype), t.detach().cpu()):
                diff = (decoded[key].double() - t.detach().cpu().double()).abs().max()
                raise LayerError(f"layer '{key}': the stored form does not rebuild the effective tensor exactly "
                                 f"(max abs diff {float(diff):.3g}); refusing to write {path}")
    header = {"model": {"class": f"{type(model).__module__}.{type(model).__qualname__}", "config": config},
              "layers": {r.name: [r.kind, r.format, r.bits, r.nnz, r.numel] for r in reports
                         if r.kind in ("quantized", "sparse")}}
    write_container(path, blob, layout, header)
    fp32 = sum(r.fp32_nbytes for r in reports)
    return ExportResult(str(path), path.stat().st_size, payload.size, payload.info_bits / 8, fp32, reports)


def read_artifact(path: str | Path) -> tuple[dict[str, Tensor], dict]:
    """Verify and decode an artifact: ``(plain state dict, metadata)``. Raises :class:`StorageError` naming the
    file for a missing, truncated, tampered, foreign or other-version file."""
    path = Path(path)
    payload, layout, meta = read_container(path)
    return decode_all(layout, payload, str(path)), {**meta, **layout}


def load_compressed(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Rebuild a runnable model from an artifact written by :func:`export`.

    Args:
        path: the artifact.
        model: a plain model of the same architecture; by default it is built from the stored ``model.config``
            (:func:`prunequant.models.build_from_config`).

    Returns:
        The model in eval mode: weights are the decoded floats (exactly the exported model's effective weights),
        activation quantizers re-attached, bit widths set as ``prunequant_wbits``/``prunequant_abits``.

    Example:
        >>> import torch, tempfile, os
        >>> from torch import nn
        >>> from prunequant.export import export, load_compressed
        >>> model = nn.Sequential(nn.Linear(4, 2))
        >>> p = os.path.join(tempfile.mkdtemp(), "m.pq")
        >>> _ = export(model, p)
        >>> m2 = load_compressed(p, nn.Sequential(nn.Linear(4, 2)))
        >>> torch.equal(m2[0].weight, model[0].weight)
        True
    """
    from ...io import apply_layer_bits_, restore_act_quants_

    path = Path(path)
    state, meta = read_artifact(path)
    if model is None:
        from ...models import build_from_config

        model = build_from_config((meta.get("model") or {}).get("config"), str(path))
    elif not isinstance(model, nn.Module):
        raise UnsupportedModuleError(f"load_compressed: model must be an nn.Module, got {type(model).__name__}")
    if any(parametrize.is_parametrized(m) for m in model.modules()):
        raise StorageError(f"{path}: load_compressed needs a plain model (no parametrizations)")
    from ...core.resize import resize_to_state_dict_

    resize_to_state_dict_(model, state)  # a channel-pruned model is smaller than its constructor's
    restore_act_quants_(model, meta.get("act", {}), str(path))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise StorageError(f"{path}: stored tensors do not fit {type(model).__name__}: {e}") from e
    apply_layer_bits_(model, meta.get("bits", {}))
    model.prunequant_artifact = {"path": str(path), "version": meta["pq"]}
    return model.eval()
