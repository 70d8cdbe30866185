"""Name -> model class registry so saved models can be rebuilt from their JSON config.

A model class registers itself with ``@register_model("name")`` where it is defined (the bundled models in
:mod:`prunequant.models`, an application's model in its own package). The registry knows no application: a
model file stores the module that defines its class, and :func:`build_from_config` imports that module on
demand (only modules of the ``prunequant`` package; a user's own model must be imported before loading).
"""
from __future__ import annotations

import importlib

from torch import nn

from ..errors import ConfigError, StorageError

_IMPORTABLE_PREFIX = "prunequant."

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
        raise ConfigError(f"unknown model {name!r}; known: {sorted(MODEL_REGISTRY)} (import the module that "
                          f"registers it first)")
    return MODEL_REGISTRY[name](**config)


def build_from_config(config: object, source: str, module: str | None = None) -> nn.Module:
    """Rebuild a model from a stored ``model.config`` (``{"name": ..., **kwargs}``); ``source`` names the file.

    ``module``: the module that defines the model class (stored in the file); imported when the name is not
    registered yet and the module belongs to the ``prunequant`` package (e.g. ``prunequant.apps.glucose.model``).
    """
    if not isinstance(config, dict) or "name" not in config:
        raise StorageError(f"{source}: no model config with a registry name is stored; pass model= to load it")
    cfg = dict(config)
    name = cfg.pop("name")
    if name not in MODEL_REGISTRY and module and module.startswith(_IMPORTABLE_PREFIX):
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise StorageError(f"{source}: model {name!r} is defined in {module}, which cannot be imported "
                               f"({e}); install the extra it needs or pass model= to load it") from e
    return build_model(name, **cfg)
