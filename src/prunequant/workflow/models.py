"""Where a model comes from: a factory in the user's file or package, a local Hugging Face directory, a saved
prunequant file, or a bundled reference model.

``check_model_source`` validates a spec without building anything heavy (files exist, the factory resolves, the
weights file is a state dict); ``build_model_from`` builds it. Every failure is a
:class:`~prunequant.errors.PrunequantError` whose one-line message names the file or spec.

Specs (strings):

- ``path/to/file.py:factory`` or ``package.module:factory``: ``factory()`` returns an ``nn.Module``; optional
  weights: a ``.safetensors`` file or a state dict saved with ``torch.save`` (read with ``weights_only=True``);
- ``path/to/hf_dir``: a folder with a Hugging Face ``config.json`` (needs ``transformers``);
- ``model.pq`` / ``model.safetensors``: a model saved by prunequant;
- a bundled reference name (``digits_cnn``, ``mlp``, ...): trained on its bundled data set first.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import ConfigError, StorageError

REFERENCE_MODELS = ("digits_cnn", "mlp", "resnet_small", "mobilenet_small")


@dataclass(frozen=True)
class ModelSource:
    """A validated model spec. ``kind``: ``factory``, ``hf``, ``file`` or ``reference``."""

    spec: str
    kind: str
    weights: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)  # keyword arguments of a factory

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {self.kind: self.spec}
        if self.kwargs:
            d["kwargs"] = dict(self.kwargs)
        if self.weights:
            d["weights"] = self.weights
        return d


def _split_factory(spec: str) -> tuple[str, str] | None:
    """``("target", "factory")`` for ``target:factory`` specs (a Windows drive letter is not a separator)."""
    if ":" not in spec:
        return None
    target, _, fn = spec.rpartition(":")
    if not target or not fn or len(target) == 1 or "/" in fn or "\\" in fn:
        return None
    if not fn.replace("_", "a").isalnum():
        raise ConfigError(f"model {spec!r}: {fn!r} is not a Python name (expected file.py:factory)")
    return target, fn


def _load_module_from_file(path: Path) -> Any:
    key = "prunequant_user_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: cannot be imported as a Python file")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[key] = mod
    sys.path.insert(0, str(path.resolve().parent))  # let the file import its neighbours
    try:
        spec.loader.exec_module(mod)
    except Exception as e:
        del sys.modules[key]
        raise ConfigError(f"{path}: importing it failed: {type(e).__name__}: {e}") from e
    finally:
        sys.path.remove(str(path.resolve().parent))
    return mod


def resolve_factory(spec: str) -> Callable[..., nn.Module]:
    """The callable named by ``file.py:factory`` or ``package.module:factory``."""
    parts = _split_factory(spec)
    if parts is None:
        raise ConfigError(f"model {spec!r}: expected path/to/file.py:factory or package.module:factory")
    target, fn = parts
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target)
        if not path.is_file():
            raise StorageError(f"{path}: not found")
        mod = _load_module_from_file(path)
    else:
        try:
            mod = importlib.import_module(target)
        except ModuleNotFoundError as e:
            raise ConfigError(f"model {spec!r}: module {e.name!r} not found") from e
    factory = getattr(mod, fn, None)
    if factory is None:
        names = [n for n in dir(mod) if not n.startswith("_") and callable(getattr(mod, n))]
        raise ConfigError(f"model {spec!r}: {target} has no {fn!r} (callables: {', '.join(names[:12]) or 'none'})")
    if not callable(factory):
        raise ConfigError(f"model {spec!r}: {fn!r} is not callable")
    return factory


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file: safetensors, or a state dict saved with ``torch.save`` (``weights_only=True``).

    Raises:
        StorageError: missing file, unreadable file, or a pickle that is not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise StorageError(f"{path}: not found")
    with open(path, "rb") as f:
        head = f.read(16)
    is_zip_or_pickle = head[:2] == b"PK" or head[:1] == b"\x80"
    if path.suffix == ".safetensors" or not is_zip_or_pickle:
        try:
            from safetensors.torch import load_file

            return load_file(str(path))
        except Exception as e:  # noqa: BLE001 - any parse error is a bad file
            raise StorageError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError etc.
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StorageError(f"{path}: not a state dict: the pickle holds objects that weights_only loading refuses "
                           f"(save model.state_dict() instead of the model; {first[:160]})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # a checkpoint dict with the weights under "state_dict"
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        what = type(obj).__name__ if not isinstance(obj, dict) else "a dict whose values are not all tensors"
        raise StorageError(f"{path}: not a state dict (holds {what}); save model.state_dict()")
    return obj


def load_weights_(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a weights file into ``model`` (strict): mismatched names or shapes are one clear error."""
    sd = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [k for k in own if k in sd and tuple(own[k].shape) != tuple(sd[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]!r})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]!r})")
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} of another shape (e.g. {k!r}: file {tuple(sd[k].shape)}, model "
                         f"{tuple(own[k].shape)})")
        raise StorageError(f"{path}: weights do not fit the model: {'; '.join(parts)}")
    model.load_state_dict(sd, strict=True)
    return model


def _is_hf_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def check_model_source(spec: str, weights: str | None = None) -> ModelSource:
    """Validate a model spec (see the module docstring) without training or loading anything large.

    Returns:
        The :class:`ModelSource`.

    Raises:
        ConfigError / StorageError: with a one-line message naming the spec or file.
    """
    if not spec or not isinstance(spec, str):
        raise ConfigError("model: give a spec (file.py:factory, package.module:factory, a folder, a file or a "
                          f"reference name {', '.join(REFERENCE_MODELS)})")
    if weights is not None:
        read_state_dict(weights)  # the file exists and is a state dict
    if _split_factory(spec) is not None:
        resolve_factory(spec)
        return ModelSource(spec, "factory", weights)
    path = Path(spec)
    if path.is_dir():
        if not _is_hf_dir(path):
            raise StorageError(f"{path}: a folder without config.json (not a Hugging Face model directory)")
        if importlib.util.find_spec("transformers") is None:
            raise ConfigError(f"{path}: a Hugging Face model needs transformers: pip install 'prunequant[hf]'")
        return ModelSource(spec, "hf", weights)
    if path.suffix in (".pq", ".safetensors", ".pt", ".pth", ".bin", ".py") or "/" in spec:
        if not path.exists():
            raise StorageError(f"{path}: not found")
        if path.suffix == ".py":
            raise ConfigError(f"model {spec!r}: name the factory in the file, e.g. {spec}:build_model")
        if path.suffix in (".pt", ".pth", ".bin"):
            read_state_dict(path)
            raise ConfigError(f"{path}: a state dict has no architecture; give the model as file.py:factory and "
                              f"this file as the weights")
        from ..storage import read_metadata

        read_metadata(path)  # a readable prunequant file (one-line error otherwise)
        if weights is not None:
            raise ConfigError(f"{path}: a saved prunequant model carries its weights; drop the weights option")
        return ModelSource(spec, "file", None)
    if spec in REFERENCE_MODELS:
        if weights is not None:
            return ModelSource(spec, "reference", weights)
        return ModelSource(spec, "reference", None)
    raise ConfigError(f"model {spec!r}: not found as a file, folder, file.py:factory or reference model "
                      f"({', '.join(REFERENCE_MODELS)})")


class HFOutputs(nn.Module):
    """A Hugging Face model whose forward returns a plain tensor (``logits``, else the first output)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        cfg = getattr(self.model, "config", None)
        if args and torch.is_tensor(args[0]) and args[0].is_floating_point() and getattr(cfg, "vocab_size", None):
            args = (args[0].round().long(), *args[1:])  # token ids stored as numbers in NPZ/CSV
        out = self.model(*args, **kwargs)
        if hasattr(out, "logits"):
            return out.logits
        return out[0] if isinstance(out, (tuple, list)) or hasattr(out, "to_tuple") else out


def _load_hf(path: Path, task: str | None) -> nn.Module:
    import transformers

    cfg = json.loads((path / "config.json").read_text())
    archs = cfg.get("architectures") or []
    auto = transformers.AutoModel
    if any(a.endswith("ForSequenceClassification") for a in archs) or (task == "classification" and
                                                                       "num_labels" in cfg):
        auto = transformers.AutoModelForSequenceClassification
    elif any(a.endswith("ForCausalLM") for a in archs):
        auto = transformers.AutoModelForCausalLM
    return HFOutputs(auto.from_pretrained(str(path), local_files_only=True))


def build_model_from(source: ModelSource, seed: int = 0, task: str | None = None) -> nn.Module:
    """Build the model a validated :class:`ModelSource` names (a reference model is trained on its bundled data).

    Args:
        source: from :func:`check_model_source`.
        seed: seed for the factory's initialisation and for training a reference model.
        task: ``classification`` or ``regression`` (picks the Hugging Face head).

    Returns:
        The ``nn.Module`` in eval mode.
    """
    torch.manual_seed(seed)
    if source.kind == "factory":
        try:
            model = resolve_factory(source.spec)(**source.kwargs)
        except TypeError as e:
            raise ConfigError(f"model {source.spec!r}: calling the factory failed: {e}") from None
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model {source.spec!r}: the factory returned {type(model).__name__}, not an nn.Module")
    elif source.kind == "hf":
        model = _load_hf(Path(source.spec), task)
    elif source.kind == "file":
        model = load_model_file(source.spec)
    else:
        if source.weights is not None:
            from ..models import build_model

            model = build_model(source.spec)
        else:
            from ..models.reference import train_reference

            model, _ = train_reference(source.spec, seed=seed)
    if source.weights is not None:
        load_weights_(model, source.weights)
    return model.eval()


def load_model_file(path: str | Path) -> nn.Module:
    """A model saved by prunequant: the compressed ``.pq`` format (quantizers attached) or an ``io.save`` file."""
    path = Path(path)
    if not path.exists():
        raise StorageError(f"{path}: not found")
    from ..storage import read_metadata

    kind = read_metadata(path).get("kind")
    if kind == "pq-artifact":  # the packed deployment artifact of prunequant.export.export
        from ..export import load_compressed

        return load_compressed(path)
    if kind == "model":  # prunequant.io.save
        from ..io import load

        return load(path)
    import prunequant

    return prunequant.load(path)  # the compressed model format (.pq); names the file on any other kind
