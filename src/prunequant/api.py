"""One entry point per idea, torchao style: the config dataclass decides which method runs.

    prune_(model, AnalyticThresholdConfig(sparsity=0.9), train=...)
    quantize_(model, PWLQConfig(wbits=4), calibration_data=...)
    prune_quantize_(model, JointConfig(...), train=...)

Each method registers a handler for its config type with :func:`register_handler`.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

from torch import nn

from .errors import ConfigError, UnsupportedModuleError

_HANDLERS: dict[type, Callable[..., Any]] = {}
_FINALIZERS: dict[type, Callable[..., Any]] = {}
# Modules that register handlers; imported lazily so `import prunequant` stays light.
_METHOD_MODULES = (
    "prunequant.pruning",
    "prunequant.quantization",
    "prunequant.joint",
)


def register_handler(config_type: type, finalize: Callable[..., Any] | None = None):
    """Decorator: register ``fn(model, config, **kwargs)`` as the handler for ``config_type``."""

    def deco(fn):
        _HANDLERS[config_type] = fn
        if finalize is not None:
            _FINALIZERS[config_type] = finalize
        return fn

    return deco


def _load_methods() -> None:
    for mod in _METHOD_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:  # a method package not built yet
            if e.name != mod:
                raise


def _dispatch(model: nn.Module, config: Any, **kwargs) -> Any:
    if not isinstance(model, nn.Module):
        raise UnsupportedModuleError(f"expected a torch.nn.Module, got {type(model).__name__}")
    _load_methods()
    for cls in type(config).__mro__:
        if cls in _HANDLERS:
            return _HANDLERS[cls](model, config, **kwargs)
    known = ", ".join(sorted(c.__name__ for c in _HANDLERS)) or "none"
    raise ConfigError(f"no method registered for config {type(config).__name__}; known configs: {known}")


def prune_(model: nn.Module, config: Any, **kwargs) -> Any:
    """Prune ``model`` in place with the method that ``config`` selects."""
    return _dispatch(model, config, **kwargs)


def quantize_(model: nn.Module, config: Any, **kwargs) -> Any:
    """Quantize ``model`` in place with the method that ``config`` selects."""
    return _dispatch(model, config, **kwargs)


def prune_quantize_(model: nn.Module, config: Any, **kwargs) -> Any:
    """Jointly prune and quantize ``model`` in place with the method that ``config`` selects."""
    return _dispatch(model, config, **kwargs)


def finalize_(model: nn.Module, bake_quantization: bool = False) -> nn.Module:
    """Turn a model under compression into its deployable form, in place.

    Soft joint mixtures are hardened at their most probable bit width, every pruning mask (analytic, MAC-budget,
    magnitude) becomes exact zeros and its parametrization is removed; fixed weight quantizers stay attached so
    ``prunequant.export`` can pack their integer codes. ``bake_quantization=True`` also bakes them into plain
    float weights (records ``prunequant_wbits``), leaving no parametrization at all.
    """
    if not isinstance(model, nn.Module):
        raise UnsupportedModuleError(f"expected a torch.nn.Module, got {type(model).__name__}")
    from .joint.handler import finalize_ as finalize_joint_
    from .joint.handler import joint_layers
    from .pruning.base import finalize_masks_
    from .quantization.handler import finalize_quantization_

    if joint_layers(model):
        finalize_joint_(model)
    finalize_masks_(model)
    if bake_quantization:
        finalize_quantization_(model)
    return model
