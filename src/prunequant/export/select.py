"""Per-layer selection policy: which kernel runs each compressed Linear/Conv2d layer, with a dense fallback.

Paths (kernels in :mod:`prunequant.export.kernels`):

* ``dense``  - the layer with its effective weight baked in (parametrizations removed). Always available.
* ``sparse`` - :class:`~.kernels.sparse.SparseLinear` / ``SparseConv2d`` (CSR, int32 indices).
* ``int8``   - :class:`~.kernels.int8.Int8Linear` / ``Int8Conv2d`` (``torch.ao``); exact weights when the
  quantizer has a symmetric int8 form (uniform symmetric <= 8 bits, log2 <= 4 bits), else re-quantized.
* ``pwlq``   - :class:`~.kernels.pwlq_int8.PWLQInt8Linear` / ``PWLQInt8Conv2d`` for a quantizer with a
  multi-branch int8 form (PWLQ): weights exact, activations dynamically int8.

:func:`optimize` picks a path per layer: it captures each layer's input on ``example_input``, builds every
eligible candidate, rejects any whose output strays from the dense layer's beyond its tolerance, times the rest
(median of repeats) and keeps the fastest; ``force`` overrides the choice (``"sparse"`` for every eligible layer,
or ``{"layer": "int8"}``; forcing an ineligible layer raises :class:`ConfigError`). With ``autotune=False`` it
uses the thresholds measured by ``benchmarks/deploy.py`` on the development CPU instead of timing.
Approximate paths (int8, pwlq) are only candidates for layers already quantized to <= 8 bits unless
``int8="always"``.
"""
from __future__ import annotations

import copy
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..core.quantizer import attach_input_quant
from ..core.targets import set_submodule
from ..errors import ConfigError, LayerError, UnsupportedModuleError
from .kernels.common import dense_copy, layer_quantizer, quantizer_input
from .kernels.int8 import Int8Conv2d, Int8Linear
from .kernels.pwlq_int8 import PWLQInt8Conv2d, PWLQInt8Linear
from .kernels.sparse import SparseConv2d, SparseLinear

log = logging.getLogger(__name__)

__all__ = [
    "PATHS",
    "SPARSE_MIN_SPARSITY",
    "TOLERANCE",
    "PathChoice",
    "build_path",
    "eligible_paths",
    "layer_info",
    "optimize",
    "time_call",
]

PATHS = ("dense", "sparse", "int8", "pwlq")
# Sparsity above which CSR beats dense on the development CPU (AVX-512, 1 thread) for realistic widths, from
# benchmarks/deploy.py: batch 1 -> torch.mv wins from ~0.7, batch 64 -> torch.mm wins from ~0.8. Used only
# when autotune=False; autotune measures instead.
SPARSE_MIN_SPARSITY = {"batch1": 0.7, "batched": 0.8}
# Max relative error (max|y - y_dense| / max|y_dense|) a path may show on the example input.
TOLERANCE = {"dense": 0.0, "sparse": 1e-4, "int8": 0.1, "pwlq": 0.1}


_BUILDERS: dict[tuple[str, type], Callable[[nn.Module, Tensor], nn.Module]] = {
    ("dense", nn.Linear): lambda m, x: dense_copy(m),
    ("dense", nn.Conv2d): lambda m, x: dense_copy(m),
    ("sparse", nn.Linear): lambda m, x: SparseLinear.from_module(m),
    ("sparse", nn.Conv2d): lambda m, x: SparseConv2d.from_module(m),
    ("int8", nn.Linear): lambda m, x: Int8Linear.from_module(m),
    ("int8", nn.Conv2d): Int8Conv2d.from_module,
    ("pwlq", nn.Linear): lambda m, x: PWLQInt8Linear.from_module(m),
    ("pwlq", nn.Conv2d): PWLQInt8Conv2d.from_module,
}


def layer_info(module: nn.Module) -> dict[str, Any]:
    """Sparsity, bit width and scheme of a Linear/Conv2d layer (from its effective weight and quantizer)."""
    w = module.weight.detach()
    q = layer_quantizer(module)
    bits = int(q.bits) if q is not None else getattr(module, "prunequant_wbits", None)
    branches = None if q is None else q.int8_branches(quantizer_input(module))
    return {"sparsity": float((w == 0).float().mean()), "bits": bits,
            "scheme": None if q is None else q.scheme, "groups": getattr(module, "groups", 1),
            "int8_branches": 0 if branches is None else len(branches)}


def eligible_paths(module: nn.Module, int8: str = "auto") -> dict[str, str | None]:
    """``{path: None if eligible else the reason it is not}`` for one layer."""
    if int8 not in ("auto", "always", "never"):
        raise ConfigError(f"int8 must be 'auto', 'always' or 'never', got {int8!r}")
    info = layer_info(module)
    out: dict[str, str | None] = {"dense": None}
    if isinstance(module, nn.Conv2d) and info["groups"] != 1:
        out["sparse"] = "grouped/depthwise conv"
    elif info["sparsity"] == 0:
        out["sparse"] = "no zero weights"
    else:
        out["sparse"] = None
    quantized8 = info["bits"] is not None and info["bits"] <= 8
    if int8 == "never":
        out["int8"] = "int8 disabled"
    elif int8 == "auto" and not quantized8:
        out["int8"] = "layer not quantized to <= 8 bits (pass int8='always' to allow)"
    else:
        out["int8"] = None
    aq = module._modules.get("input_quant")
    act_gran = getattr(aq, "granularity", "tensor")
    if act_gran != "tensor":  # the int8 kernels quantize their input with one dynamic per-tensor scale
        why = (f"input activations are quantized per {act_gran}; the int8 kernels quantize their input per tensor "
               "(dense path with the fake-quantized input used instead)")
        for p in ("int8", "pwlq"):
            out[p] = why
        log.info("%s layer: int8 paths not used: %s", type(module).__name__, why)
        return out
    if info["int8_branches"] < 2:
        out["pwlq"] = "layer's quantizer has no multi-branch int8 form (a PWLQ quantizer without bias correction)"
    elif int8 == "never":
        out["pwlq"] = "int8 disabled"
    elif isinstance(module, nn.Conv2d) and info["groups"] != 1:
        out["pwlq"] = "grouped/depthwise conv"
    else:
        out["pwlq"] = None
    return out


def build_path(module: nn.Module, path: str, example_input: Tensor | None = None) -> nn.Module:
    """The ``path`` implementation of a Linear/Conv2d ``module`` (raises if the type is not supported).
    ``example_input`` (the layer's input) calibrates the output scale of int8/pwlq convolutions."""
    if path not in PATHS:
        raise ConfigError(f"unknown path {path!r}; expected one of {PATHS}")
    if example_input is None and isinstance(module, nn.Conv2d) and path in ("int8", "pwlq"):
        raise ConfigError(f"the {path} conv path needs example_input to calibrate its output scale")
    for (p, typ), fn in _BUILDERS.items():
        if p == path and isinstance(module, typ):
            return fn(module, example_input)
    raise UnsupportedModuleError(f"no {path} path for {type(module).__name__}")


def time_call(fn: Callable[[], Any], repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


@dataclass
class PathChoice:
    """The path chosen for one layer, why, and the measured timings (ms) and errors of each candidate."""

    layer: str
    path: str
    reason: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    rel_error: dict[str, float] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)


def _rel_err(y: Tensor, ref: Tensor) -> float:
    scale = float(ref.abs().max())
    return float((y - ref).abs().max()) / (scale if scale > 0 else 1.0)


def _capture_inputs(model: nn.Module, names: list[str], example_input) -> dict[str, Tensor]:
    """The input each named layer receives on ``example_input`` (after any input quantizer)."""
    seen: dict[str, Tensor] = {}
    handles = []
    for name in names:
        mod = model.get_submodule(name)

        def hook(m, args, _name=name):
            seen[_name] = args[0].detach()
        handles.append(mod.register_forward_pre_hook(hook))  # runs after an input-quant pre-hook
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        for h in handles:
            h.remove()
    return seen


def optimize(model: nn.Module, example_input: Tensor, *, force: str | dict[str, str] | None = None,
             autotune: bool = True, int8: str = "auto", repeats: int = 20,
             tolerance: dict[str, float] | None = None) -> tuple[nn.Module, list[PathChoice]]:
    """Return ``(fast_model, choices)``: a copy of ``model`` (eval mode) whose Linear/Conv2d layers run on the
    path chosen per layer, and one :class:`PathChoice` per layer.

    ``force``: a path name for every eligible layer (ineligible ones keep the automatic choice) or a dict
    ``{layer_name: path}`` (an ineligible forced path raises :class:`ConfigError` naming the layer).
    An input quantizer on a layer stays in front of the fast module, so activations are quantized as before.
    """
    tol = {**TOLERANCE, **(tolerance or {})}
    src = model.eval()
    names = [n for n, m in src.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if isinstance(force, dict):
        unknown = [n for n in force if n not in names]
        if unknown:
            raise ConfigError(f"force: no Linear/Conv2d layer named {unknown}; layers: {names}")
        for n, p in force.items():
            if p not in PATHS:
                raise ConfigError(f"force['{n}']: unknown path {p!r}; expected one of {PATHS}")
    elif force is not None and force not in PATHS:
        raise ConfigError(f"force: unknown path {force!r}; expected one of {PATHS}")
    inputs = _capture_inputs(src, names, example_input)
    fast = copy.deepcopy(src)
    choices: list[PathChoice] = []
    for name in names:
        layer = src.get_submodule(name)
        if name not in inputs:
            choices.append(PathChoice(name, "dense", "layer not reached by example_input"))
            continue
        x = inputs[name]
        elig = eligible_paths(layer, int8)
        choice = PathChoice(name, "dense", "")
        choice.rejected = {p: r for p, r in elig.items() if r is not None}
        wanted = force.get(name) if isinstance(force, dict) else force
        if isinstance(force, dict) and wanted is not None and elig.get(wanted) is not None:
            raise ConfigError(f"layer '{name}': cannot force path {wanted!r}: {elig[wanted]}")
        if wanted is not None and elig.get(wanted) is not None:
            wanted = None  # global force: this layer is not eligible, choose automatically
        candidates = [wanted] if wanted else [p for p in PATHS if elig.get(p) is None]
        built: dict[str, nn.Module] = {}
        with torch.no_grad():
            ref = dense_copy(layer)(x)
            for p in candidates:
                try:
                    mod = build_path(layer, p, x)
                    y = mod(x)
                except (RuntimeError, UnsupportedModuleError, LayerError) as e:
                    if wanted:
                        raise ConfigError(f"layer '{name}': forced path {p!r} failed: {e}") from e
                    choice.rejected[p] = f"failed: {e}"
                    continue
                err = _rel_err(y, ref)
                choice.rel_error[p] = err
                if err > tol[p] and not wanted:
                    choice.rejected[p] = f"relative error {err:.3g} > tolerance {tol[p]}"
                    continue
                built[p] = mod
        if not built:
            built["dense"] = dense_copy(layer)
        if wanted:
            choice.path, choice.reason = wanted, "forced"
        elif autotune:
            with torch.no_grad():
                for p, mod in built.items():
                    choice.timings_ms[p] = time_call(lambda m=mod, x=x: m(x), repeats=repeats)
            choice.path = min(choice.timings_ms, key=choice.timings_ms.get)
            choice.reason = "fastest measured"
        else:
            choice.path, choice.reason = _heuristic(layer, x, built)
        new = built[choice.path]
        old = fast.get_submodule(name)
        quant = old._modules.get("input_quant")
        if quant is not None:
            attach_input_quant(new, quant)
        set_submodule(fast, name, new)
        choices.append(choice)
    return fast.eval(), choices


def _heuristic(layer: nn.Module, x: Tensor, built: dict[str, nn.Module]) -> tuple[str, str]:
    info = layer_info(layer)
    batch = x.shape[0] if isinstance(layer, nn.Conv2d) else x.reshape(-1, x.shape[-1]).shape[0]
    thr = SPARSE_MIN_SPARSITY["batch1" if batch == 1 else "batched"]
    if "sparse" in built and info["sparsity"] >= thr:
        return "sparse", f"sparsity {info['sparsity']:.2f} >= {thr}"
    for p in ("pwlq", "int8"):
        if p in built:
            return p, "quantized layer"
    return "dense", "fallback"
