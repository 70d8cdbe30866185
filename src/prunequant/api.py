"""One verb per idea, torchao style: the config dataclass decides which method runs.

    prune_(model, AnalyticThresholdConfig(target_sparsity=0.9))                 # attach; returns the plugin
    prune_(model, AnalyticThresholdConfig(target_sparsity=0.9), fit=Fit(train, val))   # run the recipe
    quantize_(model, PWLQConfig(wbits=4), calibration_data=x)
    prune_quantize_(model, JointConfig(target_size_bytes=8000), train=train)
    finalize_(model)

The facade only checks and dispatches; the methods register themselves in the leaf :mod:`prunequant.registry`
(imported lazily here so ``import prunequant`` stays light).

Every verb also lists the layers the config selects but no method can compress (``result.skipped_layers``, with
the reason, and a warning), and, when it is given data (``calibration_data``, ``calibration``, ``example_input``
or ``fit``), checks the compressed model against its fp32 self on up to 32 of those inputs
(``result.fidelity``: output and per-layer cosine / relative error; a warning names the worst layers below a
cosine of 0.98). ``fidelity=False`` skips the check, ``fidelity=0.995`` sets the threshold
(:mod:`prunequant.core.fidelity`).
"""
from __future__ import annotations

import difflib
import importlib
from typing import Any

from torch import nn

from . import registry
from .errors import ConfigError, UnsupportedModuleError

# Packages whose import registers handlers (lazily, on the first call of a verb).
_METHOD_MODULES = (
    "prunequant.pruning",
    "prunequant.quantization",
    "prunequant.joint",
)
# Convenience keywords that map onto training.Fit for handlers that take ``fit``.
_FIT_KEYWORDS = ("train", "val", "loss_fn", "metric", "train_config")


def _load_methods() -> None:
    for mod in _METHOD_MODULES:
        importlib.import_module(mod)


def _dispatch(verb: str, model: nn.Module, config: Any, kwargs: dict[str, Any]) -> Any:
    if not isinstance(model, nn.Module):
        raise UnsupportedModuleError(f"expected a torch.nn.Module, got {type(model).__name__}")
    _load_methods()
    handler = registry.handler_for(config, verb)
    check_fidelity = kwargs.pop("fidelity", True)
    accepted = set(handler.options)
    takes_fit = "fit" in accepted
    if takes_fit:
        accepted |= set(_FIT_KEYWORDS)
    unknown = sorted(k for k in kwargs if k not in accepted)
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, sorted(accepted), n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(f"{verb}_(model, {type(config).__name__}) got unknown keyword argument(s) "
                          f"{', '.join(hints)}; accepted: {', '.join(sorted(accepted)) or 'none'}")
    if takes_fit:
        loose = {k: kwargs.pop(k) for k in _FIT_KEYWORDS if k in kwargs}
        if loose:
            if kwargs.get("fit") is not None:
                raise ConfigError(f"give either fit=Fit(...) or {', '.join(loose)}=, not both")
            if loose.get("train") is None:
                raise ConfigError(f"{', '.join(sorted(loose))}= given without train= (training data)")
            from .training import Fit

            kwargs["fit"] = Fit(**loose)
    from .core.fidelity import fidelity_data, run_checked

    return run_checked(f"{verb}_", model, config, lambda: handler.fn(model, config, **kwargs), fidelity_data(kwargs),
                       check_fidelity)


def prune_(model: nn.Module, config: Any, **kwargs: Any) -> Any:
    """Prune ``model`` in place with the method ``config`` selects.

    Without data, the method's transform is applied and the training plugin is returned, so your own loop can
    drive it (``loss = task_loss + plugin.loss(model, step)``, then ``plugin.on_step_end(model, step)`` after
    each optimizer step, and :func:`finalize_` at the end). With data (``fit=Fit(train, val)``, or the
    shorthand ``train=``, ``val=``, ``loss_fn=``, ``metric=``, ``train_config=``) the method's recipe trains
    and a result dataclass is returned. Methods without a training phase (magnitude, MAC-budget without data)
    return their result directly.

    Args:
        model: the ``nn.Module`` to prune (changed in place).
        config: a pruning config (``AnalyticThresholdConfig``, ``MacBudgetConfig``, ``MagnitudeConfig``).
        **kwargs: ``fit`` or its shorthand keywords, and the method's own options (e.g. ``example_input``,
            ``total_steps``). Unknown names raise :class:`~prunequant.errors.ConfigError`.

    Returns:
        The plugin (attach only) or the method's result dataclass.

    Raises:
        ConfigError: ``config`` is not a pruning config, or an unknown keyword argument was given.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from prunequant import prune_, finalize_
        >>> from prunequant.pruning import MagnitudeConfig
        >>> model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> result = prune_(model, MagnitudeConfig(sparsity=0.5))
        >>> round(result.sparsity, 2)
        0.5
        >>> _ = finalize_(model)
    """
    return _dispatch("prune", model, config, kwargs)


def quantize_(model: nn.Module, config: Any, **kwargs: Any) -> Any:
    """Quantize ``model`` in place with the method ``config`` selects.

    Args:
        model: the ``nn.Module`` to quantize (changed in place; weight quantizers attached as parametrizations).
        config: a quantization config (``PWLQConfig``).
        **kwargs: the method's options, e.g. ``calibration_data`` (batches for activation ranges). Unknown
            names raise :class:`~prunequant.errors.ConfigError`.

    Returns:
        The method's result dataclass (per-layer statistics).

    Raises:
        ConfigError: ``config`` is not a quantization config, or an unknown keyword argument was given.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from prunequant import quantize_
        >>> from prunequant.quantization import PWLQConfig
        >>> model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> result = quantize_(model, PWLQConfig(wbits=4, abits=None))
        >>> model(torch.randn(1, 8)).shape
        torch.Size([1, 2])
    """
    return _dispatch("quantize", model, config, kwargs)


def prune_quantize_(model: nn.Module, config: Any, **kwargs: Any) -> Any:
    """Jointly prune and quantize ``model`` in place with the method ``config`` selects.

    Without data, the soft quantizers and thresholds are attached (``calibration=`` batches and
    ``example_input=`` needed) and the plugin is returned for your own loop; with data (``fit=Fit(...)`` or
    ``train=``) the recipe trains, hardens and fine-tunes.

    Args:
        model: the ``nn.Module`` to compress (changed in place).
        config: a joint config (``JointConfig``, or a baseline ``MagnitudeQATConfig`` / ``AnalyticPWLQConfig``).
        **kwargs: ``fit`` or its shorthand keywords and the method's options (``example_input``,
            ``calibration``, ``total_steps``). Unknown names raise :class:`~prunequant.errors.ConfigError`.

    Returns:
        The plugin (attach only) or the method's result dataclass.

    Raises:
        ConfigError: ``config`` is not a joint config, or an unknown keyword argument was given.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from prunequant import prune_quantize_, finalize_
        >>> from prunequant.joint import JointConfig
        >>> model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> x = torch.randn(16, 8)
        >>> plugin = prune_quantize_(model, JointConfig(), calibration=[(x,)], example_input=x[:1])
        >>> loss = model(x).square().mean() + plugin.loss(model, 1)
        >>> _ = finalize_(model)
    """
    return _dispatch("prune_quantize", model, config, kwargs)


def finalize_(model: nn.Module, bake_quantization: bool = False) -> nn.Module:
    """Turn a model under compression into its deployable form, in place.

    Runs every finalizer the methods registered, in their declared order: soft joint mixtures are hardened at
    their most probable bit width and replaced by fixed quantizers, then every pruning mask becomes exact zeros
    and its parametrization is removed; fixed weight quantizers stay attached so ``prunequant.export`` can pack
    their integer codes, unless ``bake_quantization=True`` bakes them into plain float weights too.

    Args:
        model: the model to finalize (changed in place).
        bake_quantization: also replace weight quantizers by their dequantized float weights.

    Returns:
        ``model``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from prunequant import prune_, finalize_
        >>> from prunequant.pruning import MagnitudeConfig
        >>> model = nn.Linear(16, 4)
        >>> _ = prune_(model, MagnitudeConfig(sparsity=0.75))
        >>> _ = finalize_(model)
        >>> int((model.weight == 0).sum())
        48
    """
    if not isinstance(model, nn.Module):
        raise UnsupportedModuleError(f"expected a torch.nn.Module, got {type(model).__name__}")
    _load_methods()
    for fin in registry.finalizers(bake_quantization=bake_quantization):
        fin(model)
    return model
