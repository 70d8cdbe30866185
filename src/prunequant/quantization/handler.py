"""``quantize_(model, config, calibration_data=...)``: the one post-training weight-quantization transform.

:func:`quantize_weights_` serves every :class:`~prunequant.quantization.config.PTQConfig` (PWLQ, uniform, log2,
and any quantizer added later): 1. fold BatchNorm (``fold_bn``); 2. calibrate activation ranges on the float
model (if ``abits``); 3. attach the weight quantizer ``config.make_quantizer`` builds to every Linear / Conv1d /
Conv2d / LSTM / GRU / MultiheadAttention weight (:func:`prunequant.core.targets.compressible_weights`), with
per-channel bias correction; 4. attach input activation quantizers; 5. return a per-layer
:class:`QuantizationResult`.

Activations are quantized at the inputs of Conv, Linear, LSTM/GRU (the input sequence) and adaptive average
pools. Layers inside ``nn.MultiheadAttention`` and ``nn.Transformer*Layer`` get weight quantization only:
PyTorch's fused attention / encoder fast paths call them without going through module hooks.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..core.chain import WeightChain
from ..core.targets import Selector, compressible_weights, name_matches
from ..errors import ConfigError, LayerError
from ..registry import register_handler
from .base import WeightFakeQuant, attach_input_quant, check_weight
from .bias_correction import bias_correction_terms
from .bn_fold import fold_batchnorm
from .calibration import calibrate_act_quantizers
from .config import PTQConfig, PWLQConfig, UniformConfig
from .lloyd_max import lloyd_max_mse, lloyd_max_references
from .uniform import quantize_symmetric

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
    lloyd_max_mse_equal_storage: float | None = None  # Lloyd-Max with 2^(code bits) levels (same storage)
    bits_per_weight: float | None = None    # all-in: codes + region bits + every per-channel state tensor


@dataclass
class QuantizationResult:
    config: dict
    layers: list[LayerQuantStats] = field(default_factory=list)
    folded_bn: list[tuple[str, str]] = field(default_factory=list)
    act_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    act_estimators: dict[str, str] = field(default_factory=dict)   # calibration="auto": the estimator chosen
    act_granularity: dict[str, str] = field(default_factory=dict)  # "tensor" / "channel" / "token" per layer

    def to_dict(self) -> dict:
        return {"config": self.config, "layers": [asdict(r) for r in self.layers],
                "folded_bn": [list(p) for p in self.folded_bn],
                "act_ranges": {k: list(v) for k, v in self.act_ranges.items()}, "skipped": self.skipped,
                "act_estimators": self.act_estimators, "act_granularity": self.act_granularity}

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
                        "(MSE ratios: PWLQ / uniform same bits, PWLQ before BC / Lloyd-Max same levels and "
                        "same storage bits; bits/w all-in)")
        t.add_column("layer", overflow="fold")
        for col in ("W/A", "bits/w", "p/m", "center", "MSE", "/unif", "/LM", "/LM st."):
            t.add_column(col, justify="right", no_wrap=True)
        for r in self.layers:
            ratio = ",".join(f"{x:.2f}" for x in r.breakpoint_ratio) or "-"
            t.add_row(f"{r.name} {'x'.join(map(str, r.shape))}", f"{r.bits}/{r.act_bits or '-'}",
                      "-" if r.bits_per_weight is None else f"{r.bits_per_weight:.2f}", ratio,
                      "-" if r.center_fraction is None else f"{r.center_fraction:.0%}", f"{r.mse:.2e}",
                      f"{r.mse / r.uniform_mse:.3f}" if r.uniform_mse > 0 else "-",
                      f"{r.mse_before_bc / r.lloyd_max_mse:.2f}" if r.lloyd_max_mse else "-",
                      f"{r.mse_before_bc / r.lloyd_max_mse_equal_storage:.2f}"
                      if r.lloyd_max_mse_equal_storage else "-")
        console.print(t)


def _weight_only_prefixes(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, _WEIGHT_ONLY_CONTAINERS)]


def _inside(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") or p == "" for p in prefixes)


def make_weight_quantizer(w: torch.Tensor, config: PTQConfig, bits: int, name: str) -> WeightFakeQuant:
    """The weight quantizer ``config`` asks for, fitted to ``w`` (``config.make_quantizer``)."""
    return config.make_quantizer(w, bits, name)


def _check_layer(module: nn.Module, pname: str, name: str) -> None:
    if parametrize.is_parametrized(module, pname) and WeightChain(module, pname).quantizer is not None:
        raise LayerError(f"layer '{name}' is already quantized; finalize_ it or start from the float model")
    w = getattr(module, pname)
    check_weight(w, f"layer '{name}'")
    constant = w.numel() == 1 or float(w.detach().double().std()) == 0.0
    if constant:
        raise LayerError(f"layer '{name}': all {w.numel()} weights equal {float(w.reshape(-1)[0]):.6g} (zero "
                         "variance); leave it in float with skip=[...]")


@torch.no_grad()
def _layer_stats(name: str, module: nn.Module, w: torch.Tensor, quant: WeightFakeQuant, config: PTQConfig,
                 act_bits: int | None, q_raw: torch.Tensor, lloyd_max: bool) -> LayerQuantStats:
    q_final = quant(w)
    mse = float(((q_final - w) ** 2).mean())
    mse_raw = float(((q_raw - w) ** 2).mean())
    uni = float(((quantize_symmetric(w, quant.bits, config.dim) - w) ** 2).mean())
    extra = quant.describe(w)
    try:
        levels_t = quant.levels().to(w.device)
        levels = int(levels_t.shape[1])
    except NotImplementedError:
        levels_t, levels = None, 0
    lm = lm_st = bpw = None
    code_bits = None
    try:
        code_bits = int(sum(quant.code_bits().values()))
        from ..core.cost import weight_storage_bits

        bpw = weight_storage_bits(w, quant) / w.numel()
    except (NotImplementedError, AttributeError):
        pass
    if lloyd_max and levels_t is not None and levels <= 4096:
        if code_bits is not None and 2 ** code_bits <= 4096:
            refs = lloyd_max_references(w, levels, code_bits, dim=config.dim, inits=[levels_t], name=name)
            lm, lm_st = refs["same_levels"], refs["same_storage"]
        else:
            lm, _ = lloyd_max_mse(w, levels, dim=config.dim, inits=[levels_t], name=name)
    return LayerQuantStats(name=name, type=type(module).__name__, shape=list(w.shape), scheme=quant.scheme,
                           bits=quant.bits, act_bits=act_bits, levels=levels,
                           n_breakpoints=int(extra.get("n_breakpoints", 0)),
                           breakpoint_ratio=list(extra.get("breakpoint_ratio", [])),
                           center_fraction=extra.get("center_fraction"), mse=mse, mse_before_bc=mse_raw,
                           uniform_mse=uni, lloyd_max_mse=lm, lloyd_max_mse_equal_storage=lm_st,
                           bits_per_weight=bpw)


def quantize_weights_(model: nn.Module, config: PTQConfig, calibration_data=None, *,
                      lloyd_max: bool = False) -> QuantizationResult:
    """Post-training quantize ``model`` in place with the weight quantizer ``config`` makes.

    Args:
        model: the float model (changed in place: BN folded, quantizers attached as parametrizations).
        config: a :class:`~prunequant.quantization.config.PTQConfig` (``PWLQConfig``, ``UniformConfig``,
            ``Log2Config``, ...).
        calibration_data: a Tensor, Dataset, DataLoader or iterable of input batches; needed when
            ``config.abits`` is set.
        lloyd_max: also compute each layer's Lloyd-Max MSE with the same number of levels (a diagnostic,
            slower).

    Returns:
        A :class:`QuantizationResult` with one :class:`LayerQuantStats` per quantized weight.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from prunequant.quantization import PWLQConfig
        >>> model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> res = quantize_weights_(model, PWLQConfig(wbits=4, abits=None))
        >>> [r.bits for r in res.layers]
        [4, 4]
    """
    if not isinstance(config, PTQConfig):
        raise ConfigError(f"expected a post-training quantization config (PTQConfig), got {type(config).__name__}")
    if config.abits is not None and calibration_data is None:
        raise ConfigError(f"abits={config.abits} needs calibration_data (a Tensor or DataLoader of inputs); "
                          "pass abits=None to quantize weights only")
    was_training = model.training
    model.eval()
    result = QuantizationResult(config=config.to_dict())
    targets = [(r.name, r.module, r.param_name) for r in compressible_weights(model)]
    if not targets:
        raise LayerError(f"{type(model).__name__} has no Linear/Conv/LSTM/GRU/MultiheadAttention weights to quantize")
    skip = Selector.of(skip=config.skip)
    skipped = {mname for mname, module, _ in targets if not skip.matches(mname, module)}
    with torch.no_grad():
        for mname, module, pname in targets:  # validate everything before changing the model
            if mname not in skipped:
                _check_layer(module, pname, f"{mname}.{pname}" if mname else pname)
    if config.fold_bn:
        result.folded_bn = fold_batchnorm(model)

    weight_only = _weight_only_prefixes(model)
    named = dict(model.named_modules())
    act_modules: dict[str, nn.Module] = {}
    if config.abits is not None:
        for mname, module, _ in targets:
            if mname in act_modules or mname in skipped or _inside(mname, weight_only):
                continue
            act_modules[mname] = module
        if config.quantize_pool_inputs:
            for mname, module in named.items():
                if isinstance(module, _POOLS) and not name_matches(mname, config.skip, module) \
                        and not _inside(mname, weight_only):
                    act_modules[mname] = module
        if act_modules:
            act_cal = calibrate_act_quantizers(
                model, act_modules, calibration_data, method=config.calibration,
                granularity=config.act_granularity, k=config.topk,
                percentile=config.percentile, batch_size=config.calibration_batch_size,
                max_batches=config.calibration_batches,
                bits={n: 8 if name_matches(n, config.keep_8bit) else config.abits for n in act_modules})
            result.act_ranges = {n: c.range for n, c in act_cal.items()}
            result.act_granularity = {n: c.granularity for n, c in act_cal.items()}
            if config.calibration == "auto" or config.act_granularity == "auto":
                result.act_estimators = {n: c.estimator for n, c in act_cal.items()}

    def bits_for(mname: str, default: int) -> int:
        return 8 if name_matches(mname, config.keep_8bit) else default

    for mname, module, pname in targets:
        key = f"{mname}.{pname}" if mname else pname
        if mname in skipped:
            result.skipped.append(key)
            continue
        with torch.no_grad():
            w = getattr(module, pname).detach()
            bits = bits_for(mname, config.wbits)
            quant = config.make_quantizer(w, bits, f"layer '{key}'").to(w.device)
            q_raw = quant(w)
            if config.bias_correction:
                quant.set_bias_correction(*bias_correction_terms(w, q_raw, config.dim))
        parametrize.register_parametrization(module, pname, quant)
        abits = bits_for(mname, config.abits) if (config.abits is not None and mname in result.act_ranges) else None
        result.layers.append(_layer_stats(key, module, w, quant, config, abits, q_raw, lloyd_max))

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if config.abits is not None and act_modules:
        for mname, cal in act_cal.items():
            attach_input_quant(named[mname], cal.quant.to(device))
    model.train(was_training)
    return result


@torch.no_grad()
def finalize_quantization_(model: nn.Module) -> nn.Module:
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


def register_ptq_config(config_type: type) -> type:
    """Register a :class:`PTQConfig` subclass with the ``quantize`` verb (handler :func:`quantize_weights_`,
    finalizer :func:`finalize_quantization_`). Returns ``config_type`` (usable as a class decorator)."""
    if not (isinstance(config_type, type) and issubclass(config_type, PTQConfig)):
        raise ConfigError(f"{config_type!r} is not a PTQConfig subclass")
    register_handler(config_type, verb="quantize", finalize=finalize_quantization_, order=30,
                     finalize_when="bake_quantization")(quantize_weights_)
    return config_type


register_ptq_config(PWLQConfig)
register_ptq_config(UniformConfig)
