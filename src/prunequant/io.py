"""Safe storage: safetensors tensors + JSON metadata in one file, written atomically, verified on read.

File layout: an ordinary ``.safetensors`` file whose header ``__metadata__["prunequant"]`` holds one JSON object::

    {"format_version": 1, "kind": "state" | "model", "sha256": <digest of the tensors>,
     "versions": {"prunequant": ..., "torch": ..., "safetensors": ...}, "meta": <caller's JSON>}

``sha256`` hashes every tensor's name, dtype, shape and raw bytes in name order, so a flipped byte in the data,
a renamed or reshaped tensor, or a truncated file is caught on load. Writes go to a temporary file in the target
folder, are fsync'ed, then ``os.replace``'d over the target, so a crash never leaves a half-written file behind.
Nothing is pickled; ``torch.load`` is never called.

Two levels:

* :func:`save_state` / :func:`load_state`: a flat ``dict[str, Tensor]`` + a JSON-able dict (used by the Trainer's
  checkpoints).
* :func:`save` / :func:`load`: a whole model: its raw ``state_dict`` (including parametrization originals and
  buffers such as pruning masks), the effective value of every parametrized tensor, the model config (so
  ``load`` can rebuild it with :func:`prunequant.models.build_model`), the parametrizations per tensor and the
  per-layer bit widths.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .errors import StorageError

__all__ = [
    "FORMAT_VERSION",
    "atomic_save_safetensors",
    "atomic_write_bytes",
    "load",
    "load_state",
    "read_metadata",
    "save",
    "save_state",
    "tensor_digest",
]

FORMAT_VERSION = 1
_META_KEY = "prunequant"
_EFFECTIVE = "effective/"
_STATE = "state/"
_BIT_ATTRS = ("prunequant_wbits", "prunequant_abits")


# --------------------------------------------------------------------------------------------- atomic writes
def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _atomic_replace(path: Path, write) -> None:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder + ``os.replace``)."""
    path = Path(path)
    _atomic_replace(path, lambda tmp: tmp.write_bytes(data))
    return path


def _plain_tensors(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Detached, contiguous CPU tensors with no two sharing storage (safetensors refuses shared storage)."""
    out: dict[str, Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for name, t in tensors.items():
        if not isinstance(t, Tensor):
            raise StorageError(f"cannot store {name!r}: expected a Tensor, got {type(t).__name__}")
        t = t.detach().to("cpu").contiguous()
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if t.numel() and key in seen:
            t = t.clone()
        elif t.numel():
            seen.add(key)
        out[name] = t
    return out


def atomic_save_safetensors(tensors: dict[str, Tensor], path: str | Path,
                            metadata: dict[str, str] | None = None) -> Path:
    """Write ``tensors`` as a safetensors file atomically; ``metadata`` is the header's string map."""
    from safetensors.torch import save_file

    path = Path(path)
    plain = _plain_tensors(tensors)
    _atomic_replace(path, lambda tmp: save_file(plain, str(tmp), metadata=metadata))
    return path


# --------------------------------------------------------------------------------------------- verified state
def tensor_digest(tensors: dict[str, Tensor]) -> str:
    """sha256 over each tensor's name, dtype, shape and raw bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _versions() -> dict[str, str]:
    import safetensors

    from . import __version__

    return {"prunequant": __version__, "torch": torch.__version__, "safetensors": safetensors.__version__}


def save_state(tensors: dict[str, Tensor], meta: dict[str, Any], path: str | Path, *, kind: str = "state") -> Path:
    """Atomically write ``tensors`` and the JSON-able ``meta`` to one safetensors file with a content digest."""
    path = Path(path)
    plain = _plain_tensors(tensors)
    try:
        header = {"format_version": FORMAT_VERSION, "kind": kind, "sha256": tensor_digest(plain),
                  "versions": _versions(), "meta": meta}
        text = json.dumps(header)
    except (TypeError, ValueError) as e:
        raise StorageError(f"{path}: metadata is not JSON-serializable: {e}") from e
    return atomic_save_safetensors(plain, path, metadata={_META_KEY: text})


def _read_header(path: Path) -> dict[str, Any]:
    """Parse the safetensors header of ``path`` and return the prunequant JSON object (checks the version)."""
    if not path.exists():
        raise StorageError(f"{path}: file not found")
    if not path.is_file():
        raise StorageError(f"{path}: not a file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise StorageError(f"{path}: truncated or not a safetensors file ({size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > 100_000_000:
            raise StorageError(f"{path}: truncated or corrupt safetensors header (claims {n} bytes, "
                               f"file has {size})")
        raw = f.read(n)
    try:
        header = json.loads(raw)
        text = header["__metadata__"][_META_KEY]
        info = json.loads(text)
    except (ValueError, KeyError, TypeError) as e:
        raise StorageError(f"{path}: not a prunequant file (missing or unreadable metadata: {e})") from e
    if not isinstance(info, dict) or "format_version" not in info:
        raise StorageError(f"{path}: prunequant metadata has no format_version")
    version = info["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise StorageError(f"{path}: format version {version!r} is newer than this prunequant supports "
                           f"({FORMAT_VERSION}); upgrade prunequant")
    return info


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The full prunequant header of ``path`` (format version, kind, digest, versions, meta) without the tensors."""
    return _read_header(Path(path))


def load_state(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a file written by :func:`save_state`; verify its digest. Returns ``(tensors, meta)``.

    Raises :class:`StorageError` naming the file if it is missing, truncated, tampered with, or from a newer format.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    info = _read_header(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise StorageError(f"{path}: corrupt or truncated safetensors data: {e}") from e
    if tensor_digest(tensors) != info.get("sha256"):
        raise StorageError(f"{path}: sha256 mismatch, the file was modified or corrupted after it was written")
    return tensors, info.get("meta", {})


# --------------------------------------------------------------------------------------------- models
def _parametrized(model: nn.Module) -> dict[str, list[str]]:
    """``{"module.tensor": [qualified class name of each parametrization]}`` for every parametrized tensor."""
    out: dict[str, list[str]] = {}
    for mname, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        for tname, plist in module.parametrizations.items():
            key = f"{mname}.{tname}" if mname else tname
            out[key] = [f"{type(p).__module__}.{type(p).__qualname__}" for p in plist]
    return out


def _layer_bits(model: nn.Module) -> dict[str, dict[str, int]]:
    """Bit widths per module: ``prunequant_wbits``/``prunequant_abits`` attributes, or a quantizer's ``bits``."""
    out: dict[str, dict[str, int]] = {}
    for mname, module in model.named_modules():
        entry = {a: int(getattr(module, a)) for a in _BIT_ATTRS if getattr(module, a, None) is not None}
        if "prunequant_wbits" not in entry and parametrize.is_parametrized(module, "weight"):
            bits = [int(p.bits) for p in module.parametrizations["weight"] if getattr(p, "bits", None) is not None]
            if bits:
                entry["prunequant_wbits"] = min(bits)
        if entry:
            out[mname] = entry
    return out


def act_quant_specs(model: nn.Module) -> dict[str, dict[str, Any]]:
    """``{module name: {bits, signed}}`` for every input activation quantizer (``attach_input_quant``)."""
    from .quantization.base import ActFakeQuant

    return {mname: {"bits": int(m.input_quant.bits), "signed": bool(m.input_quant.signed)}
            for mname, m in model.named_modules() if isinstance(getattr(m, "input_quant", None), ActFakeQuant)}


def restore_act_quants_(model: nn.Module, spec: dict[str, dict[str, Any]], source: str) -> None:
    """Re-attach input activation quantizers from :func:`act_quant_specs` output (their scale/zero-point buffers
    are loaded with the state afterwards); ``source`` names the file in errors."""
    from .quantization.base import ActFakeQuant, attach_input_quant

    for mname, q in spec.items():
        try:
            module = model.get_submodule(mname) if mname else model
            if not isinstance(getattr(module, "input_quant", None), ActFakeQuant):
                attach_input_quant(module, ActFakeQuant(int(q["bits"]), signed=bool(q["signed"]), scale=1.0))
        except (AttributeError, KeyError, TypeError) as e:
            raise StorageError(f"{source}: stored activation quantizer for layer '{mname}' does not fit "
                               f"{type(model).__name__}: {e}") from e


def apply_layer_bits_(model: nn.Module, bits: dict[str, dict[str, int]]) -> None:
    """Set ``prunequant_wbits``/``prunequant_abits`` from :func:`_layer_bits` output (missing layers skipped)."""
    for mname, entry in bits.items():
        try:
            module = model.get_submodule(mname) if mname else model
        except AttributeError:
            continue
        for attr, value in entry.items():
            if attr in _BIT_ATTRS:
                setattr(module, attr, int(value))


def _get(model: nn.Module, dotted: str) -> tuple[nn.Module, str]:
    mname, _, tname = dotted.rpartition(".")
    return (model.get_submodule(mname) if mname else model), tname


def save(model: nn.Module, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Save ``model`` (config, raw state incl. parametrizations, effective tensors, bit widths) to ``path``.

    ``metadata`` (JSON-able) is stored as the compression state, e.g. the method config and its results.
    """
    if not isinstance(model, nn.Module):
        from .errors import UnsupportedModuleError

        raise UnsupportedModuleError(f"io.save expects an nn.Module, got {type(model).__name__}")
    path = Path(path)
    tensors: dict[str, Tensor] = {_STATE + k: v for k, v in model.state_dict().items()}
    params = _parametrized(model)
    with torch.no_grad():
        for key in params:
            module, tname = _get(model, key)
            tensors[_EFFECTIVE + key] = getattr(module, tname)
    config = getattr(model, "config", None)
    if config is not None:
        try:
            json.dumps(config)
        except (TypeError, ValueError) as e:
            raise StorageError(f"{path}: model.config of {type(model).__name__} is not JSON-able: {e}") from e
    meta = {"model_class": f"{type(model).__module__}.{type(model).__qualname__}", "model_config": config,
            "parametrizations": params, "layer_bits": _layer_bits(model), "act_quant": act_quant_specs(model),
            "compression": metadata or {}}
    return save_state(tensors, meta, path, kind="model")


def _restore_masks(model: nn.Module, raw: dict[str, Tensor], params: dict[str, list[str]]) -> None:
    """Re-attach :class:`~prunequant.pruning.base.FixedMask` where it was the only parametrization of a tensor."""
    from .pruning.base import FixedMask

    fixed = f"{FixedMask.__module__}.{FixedMask.__qualname__}"
    for key, classes in params.items():
        if classes != [fixed]:
            continue
        mname, _, tname = key.rpartition(".")
        prefix = f"{mname}.parametrizations.{tname}" if mname else f"parametrizations.{tname}"
        mask, original = raw.get(f"{prefix}.0.mask"), raw.get(f"{prefix}.original")
        if mask is None or original is None:
            continue
        module, _ = _get(model, key)
        parametrize.register_parametrization(module, tname, FixedMask(mask))
        with torch.no_grad():  # keep the pruned values too, so a mask can be revised later
            module.parametrizations[tname].original.copy_(original)


def load(path: str | Path, model: nn.Module | None = None, *, restore_masks: bool = True) -> nn.Module:
    """Load a model written by :func:`save`.

    * ``model`` given and carrying the same parametrizations (same state-dict keys): the raw state is loaded as is.
    * otherwise (``model`` rebuilt from the stored config with ``build_model`` when not given): the effective
      tensors are loaded into the plain model, so its forward equals the saved model's. Fixed pruning masks are
      re-attached (``restore_masks``); other parametrizations (e.g. fake quantizers) stay baked into the weights and
      their bit widths are set as ``prunequant_wbits``/``prunequant_abits`` so :func:`prunequant.analysis.report`
      still sees them. The stored compression metadata is available as ``model.prunequant_metadata``.
    """
    path = Path(path)
    tensors, meta = load_state(path)
    if not isinstance(meta, dict) or "parametrizations" not in meta:
        raise StorageError(f"{path}: not a prunequant model file (use load_state for plain state files)")
    raw = {k[len(_STATE):]: v for k, v in tensors.items() if k.startswith(_STATE)}
    effective = {k[len(_EFFECTIVE):]: v for k, v in tensors.items() if k.startswith(_EFFECTIVE)}
    params: dict[str, list[str]] = meta["parametrizations"]
    if model is None:
        from .models import build_from_config

        model = build_from_config(meta.get("model_config"), str(path))
    elif not isinstance(model, nn.Module):
        from .errors import UnsupportedModuleError

        raise UnsupportedModuleError(f"io.load: model must be an nn.Module, got {type(model).__name__}")

    restore_act_quants_(model, meta.get("act_quant", {}), str(path))
    target_keys = set(model.state_dict().keys())
    try:
        if target_keys == set(raw):
            model.load_state_dict(raw, strict=True)
        else:
            if _parametrized(model):
                raise StorageError(f"{path}: the given {type(model).__name__} carries parametrizations that do not "
                                   f"match the saved ones ({sorted(params) or 'none'})")
            plain = {k: v for k, v in raw.items() if ".parametrizations." not in f".{k}"}
            plain.update(effective)
            model.load_state_dict(plain, strict=True)
            if restore_masks:
                _restore_masks(model, raw, params)
    except RuntimeError as e:
        raise StorageError(f"{path}: stored tensors do not fit {type(model).__name__}: {e}") from e
    apply_layer_bits_(model, meta.get("layer_bits", {}))
    model.prunequant_metadata = meta.get("compression", {})
    return model
