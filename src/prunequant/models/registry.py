"""Name -> model class registry so saved models can be rebuilt from their JSON config."""
from __future__ import annotations

from torch import nn

from ..errors import ConfigError

MODEL_REGISTRY: dict[str, type[nn.Module]] = {}


def register_model(name: str):
    """Class decorator: register ``cls`` under ``name``; instances get ``config = {"name": name, **kwargs}``."""

    def deco(cls):
        MODEL_REGISTRY[name] = cls
        cls.registry_name = name
        return cls

    return deco


def build_model(name: str, **config) -> nn.Module:
    """Instantiate a registered model by name with keyword config."""
    if name not in MODEL_REGISTRY:
        # apps register their models on import
        import importlib

        for mod in ("prunequant.apps.glucose",):
            try:
                importlib.import_module(mod)
            except ImportError:
                pass
    if name not in MODEL_REGISTRY:
        raise ConfigError(f"unknown model {name!r}; known: {sorted(MODEL_REGISTRY)}")
    return MODEL_REGISTRY[name](**config)


def build_from_config(config: object, source: str) -> nn.Module:
    """Rebuild a model from a stored ``model.config`` (``{"name": ..., **kwargs}``); ``source`` names the file."""
    from ..errors import StorageError

    if not isinstance(config, dict) or "name" not in config:
        raise StorageError(f"{source}: no model config with a registry name is stored; pass model= to load it")
    cfg = dict(config)
    return build_model(cfg.pop("name"), **cfg)
