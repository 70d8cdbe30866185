"""``quantize_(model, PWLQConfig(...), calibration_data=...)``: the post-training quantization pipeline.

1. fold BatchNorm (``fold_bn``); 2. calibrate activation ranges on the float model (if ``abits``);
3. attach a weight fake-quantizer parametrization to every Linear / Conv1d / Conv2d / LSTM / GRU /
MultiheadAttention weight (``prunequant.pruning.base.prunable_modules``), with per-channel bias correction;
4. attach input activation quantizers; 5. return a per-layer :class:`QuantizationResult`.

Activations are quantized at the inputs of Conv, Linear, LSTM/GRU (the input sequence) and adaptive average
pools. Layers inside ``nn.MultiheadAttention`` and ``nn.Transformer*Layer`` get weight quantization only:
PyTorch's fused attention / encoder fast paths call them without going through module hooks.
"""
from __future__ import annotations

import fnmatch
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..api import register_handler
from ..errors import ConfigError, LayerError
from ..pruning.base import prunable_modules
from .base import ActFakeQuant, WeightFakeQuant, attach_input_quant, check_weight
from .bias_correction import bias_correction_terms
from .bn_fold import fold_batchnorm
from .calibration import calibrate_ranges
from .config import PWLQConfig
from .lloyd_max import lloyd_max_mse
from .pwlq import PWLQWeightQuant, pwlq_level_count
from .uniform import UniformWeightQuant, quantize_symmetric

_WEIGHT_ONLY_CONTAINERS = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)
_POOLS = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)


@dataclass
class LayerQuantStats:
    """Per-weight result. MSEs are means over the weight's elements; ``lloyd_max_mse`` uses
    ``levels`` levels per channel (the scheme's own count)."""

    name: str
    type: str
    shape: list[int]
    scheme: str
    bits: int
    act_bits: int | None
    levels: int
    n_breakpoints: int
    breakpoint_ratio: list[float]          # mean over channels of p_l / max|w|
    center_fraction: float | None
    mse: float                              # final weights (bias correction included) vs float
    mse_before_bc: float
    uniform_mse: float                      # symmetric uniform, same bits and granularity
    lloyd_max_mse: float | None


@dataclass
class QuantizationResult:
    config: dict
    layers: list[LayerQuantStats] = field(default_factory=list)
    folded_bn: list[tuple[str, str]] = field(default_factory=list)
    act_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"config": self.config, "layers": [asdict(r) for r in self.layers],
                "folded_bn": [list(p) for p in self.folded_bn],
                "act_ranges": {k: list(v) for k, v in self.act_ranges.items()}, "skipped": self.skipped}

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    def print(self, console=None) -> None:
        """Rich table: bits, breakpoints, center fraction, MSE vs uniform and Lloyd-Max per layer."""
        from rich.console import Console
        from rich.table import Table

        console = console or Console()
        wa = f"W{self.config['wbits']}" + (f"A{self.config['abits']}" if self.config["abits"] else " weights only")
        t = Table(title=f"{self.config['scheme']} {wa} per layer "
                        "(MSE ratios: PWLQ / uniform same bits, PWLQ before BC / Lloyd-Max same levels)")
        t.add_column("layer", overflow="fold")
        for col in ("W/A", "p/m", "center", "MSE", "/unif", "/LM"):
            t.add_column(col, justify="right", no_wrap=True)
        for r in self.layers:
            ratio = ",".join(f"{x:.2f}" for x in r.breakpoint_ratio) or "-"
            t.add_row(f"{r.name} {'x'.join(map(str, r.shape))}", f"{r.bits}/{r.act_bits or '-'}", ratio,
                      "-" if r.center_fraction is None else f"{r.center_fraction:.0%}", f"{r.mse:.2e}",
                      f"{r.mse / r.uniform_mse:.3f}" if r.uniform_mse > 0 else "-",
                      f"{r.mse_before_bc / r.lloyd_max_mse:.2f}" if r.lloyd_max_mse else "-")
        console.print(t)


def _matches(name: str, patterns) -> bool:
    return any(name == p or fnmatch.fnmatchcase(name, p) for p in patterns)


def _weight_only_prefixes(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, _WEIGHT_ONLY_CONTAINERS)]


def _inside(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") or p == "" for p in prefixes)


def make_weight_quantizer(w: torch.Tensor, config: PWLQConfig, bits: int, name: str) -> WeightFakeQuant:
    """The weight quantizer ``config`` asks for, fitted to ``w``."""
    if config.scheme == "uniform":
        return UniformWeightQuant.from_weight(w, bits, symmetric=config.uniform_symmetric, dim=config.dim,
                                              name=name)
    return PWLQWeightQuant.from_weight(w, bits, method=config.breakpoint_method,
                                       n_breakpoints=config.n_breakpoints, variant=config.variant, dim=config.dim,
                                       name=name)


def _check_layer(module: nn.Module, pname: str, name: str) -> None:
    if parametrize.is_parametrized(module, pname) and any(
            isinstance(p, WeightFakeQuant) for p in module.parametrizations[pname]):
        raise LayerError(f"layer '{name}' is already quantized; finalize_ it or start from the float model")
    w = getattr(module, pname)
    check_weight(w, f"layer '{name}'")
    constant = w.numel() == 1 or float(w.detach().double().std()) == 0.0
    if constant:
        raise LayerError(f"layer '{name}': all {w.numel()} weights equal {float(w.reshape(-1)[0]):.6g} (zero "
                         "variance); leave it in float with PWLQConfig(skip=[...])")


@torch.no_grad()
def _layer_stats(name: str, module: nn.Module, w: torch.Tensor, quant: WeightFakeQuant, config: PWLQConfig,
                 act_bits: int | None, q_raw: torch.Tensor) -> LayerQuantStats:
    q_final = quant(w)
    mse = float(((q_final - w) ** 2).mean())
    mse_raw = float(((q_raw - w) ** 2).mean())
    uni = float(((quantize_symmetric(w, quant.bits, config.dim) - w) ** 2).mean())
    if isinstance(quant, PWLQWeightQuant):
        levels = pwlq_level_count(quant.bits, quant.n_breakpoints, quant.variant)
        ratio = (quant.breakpoints / quant.max_abs.clamp(min=1e-30)[:, None]).mean(0).tolist()
        center = quant.center_fraction(w)
        n_bp = quant.n_breakpoints
    else:
        levels, ratio, center, n_bp = 2 ** quant.bits, [], None, 0
    lm = None
    if config.lloyd_max and levels <= 4096:
        lm, _ = lloyd_max_mse(w, levels, dim=config.dim, inits=[quant.levels().to(w.device)], name=name)
    return LayerQuantStats(name=name, type=type(module).__name__, shape=list(w.shape), scheme=quant.scheme,
                           bits=quant.bits, act_bits=act_bits, levels=levels, n_breakpoints=n_bp,
                           breakpoint_ratio=[round(float(x), 5) for x in ratio],
                           center_fraction=center, mse=mse, mse_before_bc=mse_raw, uniform_mse=uni,
                           lloyd_max_mse=lm)


def quantize_model(model: nn.Module, config: PWLQConfig, calibration_data=None, **_unused) -> QuantizationResult:
    """Quantize ``model`` in place as ``config`` says; see the module docstring for the steps."""
    if not isinstance(config, PWLQConfig):
        raise ConfigError(f"expected a PWLQConfig, got {type(config).__name__}")
    if config.abits is not None and calibration_data is None:
        raise ConfigError(f"abits={config.abits} needs calibration_data (a Tensor or DataLoader of inputs); "
                          "pass abits=None to quantize weights only")
    was_training = model.training
    model.eval()
    result = QuantizationResult(config=config.to_dict())
    targets = prunable_modules(model)
    if not targets:
        raise LayerError(f"{type(model).__name__} has no Linear/Conv/LSTM/GRU/MultiheadAttention weights to quantize")
    with torch.no_grad():
        for mname, module, pname in targets:  # validate everything before changing the model
            if not _matches(mname, config.skip):
                _check_layer(module, pname, f"{mname}.{pname}" if mname else pname)
    if config.fold_bn:
        result.folded_bn = fold_batchnorm(model)

    weight_only = _weight_only_prefixes(model)
    named = dict(model.named_modules())
    act_modules: dict[str, nn.Module] = {}
    if config.abits is not None:
        seen = set()
        for mname, module, _ in targets:
            if mname in seen or _matches(mname, config.skip) or _inside(mname, weight_only):
                continue
            seen.add(mname)
            act_modules[mname] = module
        if config.quantize_pool_inputs:
            for mname, module in named.items():
                if isinstance(module, _POOLS) and not _matches(mname, config.skip) and not _inside(mname, weight_only):
                    act_modules[mname] = module
        if act_modules:
            result.act_ranges = calibrate_ranges(
                model, act_modules, calibration_data, method=config.calibration, k=config.topk,
                percentile=config.percentile, batch_size=config.calibration_batch_size,
                max_batches=config.calibration_batches)

    def bits_for(mname: str, default: int) -> int:
        return 8 if _matches(mname, config.keep_8bit) else default

    for mname, module, pname in targets:
        key = f"{mname}.{pname}" if mname else pname
        if _matches(mname, config.skip):
            result.skipped.append(key)
            continue
        with torch.no_grad():
            w = getattr(module, pname).detach()
            bits = bits_for(mname, config.wbits)
            quant = make_weight_quantizer(w, config, bits, f"layer '{key}'").to(w.device)
            q_raw = quant(w)
            if config.bias_correction:
                quant.set_bias_correction(*bias_correction_terms(w, q_raw, config.dim))
        parametrize.register_parametrization(module, pname, quant)
        abits = bits_for(mname, config.abits) if (config.abits is not None and mname in result.act_ranges) else None
        result.layers.append(_layer_stats(key, module, w, quant, config, abits, q_raw))

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    for mname, (lo, hi) in result.act_ranges.items():
        attach_input_quant(named[mname], ActFakeQuant.from_range(lo, hi, bits_for(mname, config.abits)).to(device))
    model.train(was_training)
    return result


@torch.no_grad()
def finalize_quantization_(model: nn.Module, config: PWLQConfig | None = None, **_unused) -> nn.Module:
    """Bake every weight fake-quantizer into its weight (and any parametrization before it), remove the
    parametrizations and record ``prunequant_wbits`` on the module. Activation quantizers stay."""
    for _, module in list(model.named_modules()):
        plists = getattr(module, "parametrizations", None)
        if plists is None:
            continue
        for pname in list(plists.keys()):
            qs = [p for p in plists[pname] if isinstance(p, WeightFakeQuant)]
            if not qs:
                continue
            parametrize.remove_parametrizations(module, pname, leave_parametrized=True)
            module.prunequant_wbits = min(q.bits for q in qs)
    return model


register_handler(PWLQConfig, finalize=finalize_quantization_)(quantize_model)

