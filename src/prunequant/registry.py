"""The method registry: which handler runs a config, under which verb, and how a model is finalized.

A leaf module (imports only :mod:`prunequant.errors`), so method packages can register themselves without
importing the facade :mod:`prunequant.api` that dispatches to them.

* :func:`register_handler` ties a config type to its handler and to one verb (``"prune"``, ``"quantize"`` or
  ``"prune_quantize"``); the facade refuses a config given to the wrong verb.
* A handler may name a finalizer with a declared ``order``: :func:`prunequant.api.finalize_` runs every distinct
  registered finalizer in ascending order (soft joint mixtures before masks, masks before quantizer baking).
  A finalizer must be a no-op on a model that carries nothing of its kind. ``finalize_when`` names a keyword of
  ``finalize_`` that must be true for the finalizer to run (e.g. ``"bake_quantization"``).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

VERBS = ("prune", "quantize", "prune_quantize")


@dataclass(frozen=True)
class Handler:
    """One registered method: its config type, handler function, verb and keyword options."""

    config_type: type
    fn: Callable[..., Any]
    verb: str
    options: tuple[str, ...]  # keyword arguments the handler accepts besides (model, config)


@dataclass(frozen=True)
class Finalizer:
    fn: Callable[..., Any]
    order: int
    when: str | None = None


_HANDLERS: dict[type, Handler] = {}
_FINALIZERS: dict[Callable[..., Any], Finalizer] = {}


def _options(fn: Callable[..., Any]) -> tuple[str, ...]:
    params = list(inspect.signature(fn).parameters.values())[2:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        raise ConfigError(f"handler {fn.__qualname__} takes **kwargs; declare every keyword argument explicitly")
    return tuple(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def register_handler(config_type: type, *, verb: str, finalize: Callable[..., Any] | None = None,
                     order: int = 100, finalize_when: str | None = None) -> Callable:
    """Decorator: register ``fn(model, config, ...)`` as the handler of ``config_type`` under ``verb``.

    Args:
        config_type: the config dataclass that selects this method.
        verb: ``"prune"``, ``"quantize"`` or ``"prune_quantize"``; the facade function this config belongs to.
        finalize: ``fn(model)`` making the method's state deployable (no-op when the model has none of it).
        order: finalizers run in ascending order (joint 10, masks 20, quantizer baking 30).
        finalize_when: name of a :func:`prunequant.api.finalize_` flag that must be true for ``finalize`` to run.

    Returns:
        The decorator, which returns the handler unchanged.
    """
    if verb not in VERBS:
        raise ConfigError(f"verb must be one of {VERBS}, got {verb!r}")

    def deco(fn):
        _HANDLERS[config_type] = Handler(config_type, fn, verb, _options(fn))
        if finalize is not None:
            register_finalizer(finalize, order=order, when=finalize_when)
        return fn

    return deco


def register_finalizer(fn: Callable[..., Any], *, order: int, when: str | None = None) -> None:
    """Register ``fn(model)`` to run in :func:`prunequant.api.finalize_` at ``order`` (a function counts once)."""
    old = _FINALIZERS.get(fn)
    if old is not None and (old.order, old.when) != (order, when):
        raise ConfigError(f"finalizer {fn.__qualname__} registered twice with different order/condition")
    _FINALIZERS[fn] = Finalizer(fn, order, when)


def handler_for(config: Any, verb: str | None = None) -> Handler:
    """The handler registered for ``config``'s type (or a base class); refuses a config of another verb."""
    for cls in type(config).__mro__:
        h = _HANDLERS.get(cls)
        if h is None:
            continue
        if verb is not None and h.verb != verb:
            raise ConfigError(f"{type(config).__name__} is a {h.verb!r} config: call {h.verb}_(model, config), "
                              f"not {verb}_")
        return h
    known = ", ".join(sorted(f"{c.__name__} ({h.verb})" for c, h in _HANDLERS.items())) or "none"
    raise ConfigError(f"no method registered for config {type(config).__name__}; known configs: {known}")


def configs_for(verb: str) -> list[type]:
    """Config types registered under ``verb``."""
    return [c for c, h in _HANDLERS.items() if h.verb == verb]


def finalizers(**flags: bool) -> list[Callable[..., Any]]:
    """Registered finalizers in declared order, skipping those whose ``when`` flag is not set in ``flags``."""
    fins = sorted(_FINALIZERS.values(), key=lambda f: f.order)
    return [f.fn for f in fins if f.when is None or flags.get(f.when, False)]
