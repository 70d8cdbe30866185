"""Post-training quantization configs: the shared pipeline fields (:class:`PTQConfig`) and one config per
weight quantizer (:class:`PWLQConfig`, :class:`UniformConfig`; ``Log2Config`` lives in :mod:`.log2`).

A config says *what* quantizer to attach (:meth:`PTQConfig.make_quantizer`); the one transform
(:func:`~prunequant.quantization.handler.quantize_weights_`) walks the model, folds BN, calibrates activations and
attaches what the config makes. A new weight quantizer subclasses :class:`PTQConfig` and implements
``make_quantizer`` (see docs/DEVELOPING.md, "How to add a quantizer").
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from torch import Tensor

from ..errors import ConfigError
from .base import WeightFakeQuant, check_bits
from .breakpoints import METHODS, SEARCH_RANGE, SEARCHES, check_ratio_range
from .calibration import ACT_GRANULARITY_CHOICES, CALIBRATION_METHODS
from .groupwise import GroupPWLQWeightQuant, GroupUniformWeightQuant, check_group_size
from .pwlq import MAX_BREAKPOINTS, VARIANTS, PWLQWeightQuant
from .uniform import UniformWeightQuant

SCHEMES = ("pwlq", "uniform")
GRANULARITIES = ("channel", "tensor")


@dataclass
class PTQConfig:
    """Fields every post-training weight quantizer shares (the pipeline around the quantizer).

    * ``wbits`` / ``abits``: weight and activation bits (2..16); ``abits=None`` quantizes weights only.
    * ``granularity``: ``"channel"`` (per output channel) or ``"tensor"``.
    * ``bias_correction``: per-channel mean/std correction of the quantized weights.
    * ``fold_bn``: fold BatchNorm into the preceding conv/linear first.
    * ``calibration``: ``"auto"`` (default: per layer, the range with the least error at the layer's output),
      ``"topk_median"`` (``topk``; the paper's), ``"percentile"`` (``percentile``), ``"minmax"`` or ``"mse"``;
      ``calibration_batch_size`` splits a Tensor of calibration inputs; ``calibration_batches`` caps batches.
    * ``act_granularity``: activation scales per ``"tensor"``, per ``"channel"`` (one scale per input channel:
      dim 1 of conv inputs, the last dim of Linear / transformer inputs), per ``"token"`` (dynamic per-row
      scales computed at run time, no stored scale) or ``"auto"`` (per-channel only for layers where it cuts the
      layer's output error on the calibration data by >= 10%: outlier channels); docs/calibration.md.
    * ``skip``: module names or fnmatch patterns left in floating point; ``keep_8bit``: modules quantized at 8
      bits (weights and input activations) whatever ``wbits``/``abits`` are.
    * ``quantize_pool_inputs``: also quantize inputs of adaptive average pools (as in the PWLQ paper).
    """

    wbits: int = 4
    abits: int | None = 8
    granularity: str = "channel"
    bias_correction: bool = True
    fold_bn: bool = True
    calibration: str = "auto"
    act_granularity: str = "tensor"
    topk: int = 10
    percentile: float = 99.99
    calibration_batch_size: int = 32
    calibration_batches: int | None = None
    skip: tuple[str, ...] = field(default_factory=tuple)
    keep_8bit: tuple[str, ...] = field(default_factory=tuple)
    quantize_pool_inputs: bool = True

    def __post_init__(self):
        name = type(self).__name__
        check_bits(self.wbits, "wbits")
        if self.abits is not None:
            check_bits(self.abits, "abits")
        for key, value, allowed in (("granularity", self.granularity, GRANULARITIES),
                                    ("calibration", self.calibration, CALIBRATION_METHODS),
                                    ("act_granularity", self.act_granularity, ACT_GRANULARITY_CHOICES)):
            if value not in allowed:
                raise ConfigError(f"{name}.{key} must be one of {allowed}, got {value!r}")
        if not isinstance(self.topk, int) or self.topk < 1:
            raise ConfigError(f"{name}.topk must be an integer >= 1, got {self.topk!r}")
        if not 50.0 < float(self.percentile) <= 100.0:
            raise ConfigError(f"{name}.percentile must be in (50, 100], got {self.percentile!r}")
        if not isinstance(self.calibration_batch_size, int) or self.calibration_batch_size < 1:
            raise ConfigError(f"{name}.calibration_batch_size must be >= 1, got {self.calibration_batch_size!r}")
        if self.calibration_batches is not None and (not isinstance(self.calibration_batches, int)
                                                     or self.calibration_batches < 1):
            raise ConfigError(f"{name}.calibration_batches must be None or >= 1, got {self.calibration_batches!r}")
        if isinstance(self.skip, str) or isinstance(self.keep_8bit, str):
            raise ConfigError(f"{name}.skip and keep_8bit take a list of names/patterns, not a single string")
        self.skip, self.keep_8bit = tuple(self.skip), tuple(self.keep_8bit)

    @property
    def dim(self) -> int | None:
        return 0 if self.granularity == "channel" else None

    @property
    def scheme_name(self) -> str:
        """The weight quantizer's registry scheme (for reports)."""
        raise NotImplementedError  # pragma: no cover

    def make_quantizer(self, w: Tensor, bits: int, name: str) -> WeightFakeQuant:  # pragma: no cover - abstract
        """The weight quantizer this config asks for, fitted to ``w`` at ``bits``; ``name`` for error messages."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        d = asdict(self)
        d["skip"], d["keep_8bit"] = list(self.skip), list(self.keep_8bit)
        d["scheme"] = self.scheme_name
        return d


@dataclass
class PWLQConfig(PTQConfig):
    """Post-training PWLQ: ``quantize_(model, PWLQConfig(...), calibration_data=...)``.

    Defaults follow the paper's pipeline (BN folded, per-channel weights, 8-bit per-layer activations with top-10
    median calibration, bias correction on) with two documented choices of ours: ``variant="b_center"`` and
    ``breakpoint_method="empirical"`` (see docs/pwlq.md for why). Shared fields: :class:`PTQConfig`.

    * ``variant``, ``breakpoint_method``, ``n_breakpoints`` (1..3): PWLQ choices.
    * ``breakpoint_range``: bounds (lo, hi) of the breakpoint ratio p/m for one breakpoint (default 0.001..0.95,
      wide enough that no trained layer's optimum is cut off; the paper's p < m/2 is ``(0.001, 0.499)``);
      ``breakpoint_search``: ``"auto"``, ``"exact"`` or ``"grid"`` (see ``find_breakpoints``).
    * ``scheme``: ``"pwlq"``, or ``"uniform"`` for the baseline (kept for existing callers; prefer
      :class:`UniformConfig`); ``uniform_symmetric`` picks symmetric or affine for it.
    * ``group_size``: ``None`` (per output channel / tensor, see ``granularity``) or g (e.g. 32/64/128): range
      and breakpoints per group of g input elements, fp16 (:mod:`.groupwise`, docs/weight_only.md).
    """

    scheme: str = "pwlq"
    variant: str = "b_center"
    breakpoint_method: str = "empirical"
    n_breakpoints: int = 1
    uniform_symmetric: bool = True
    breakpoint_range: tuple[float, float] = SEARCH_RANGE
    breakpoint_search: str = "auto"
    group_size: int | None = None

    def __post_init__(self):
        super().__post_init__()
        _check_group_config(self)
        for key, value, allowed in (("scheme", self.scheme, SCHEMES), ("variant", self.variant, VARIANTS),
                                    ("breakpoint_method", self.breakpoint_method, METHODS)):
            if value not in allowed:
                raise ConfigError(f"PWLQConfig.{key} must be one of {allowed}, got {value!r}")
        if self.breakpoint_search not in SEARCHES:
            raise ConfigError(f"PWLQConfig.breakpoint_search must be one of {SEARCHES}, got {self.breakpoint_search!r}")
        self.breakpoint_range = check_ratio_range(self.breakpoint_range)
        if isinstance(self.n_breakpoints, bool) or not isinstance(self.n_breakpoints, int) or \
                not 1 <= self.n_breakpoints <= MAX_BREAKPOINTS:
            raise ConfigError(f"PWLQConfig.n_breakpoints must be an integer in [1, {MAX_BREAKPOINTS}], "
                              f"got {self.n_breakpoints!r}")
        if self.breakpoint_method.endswith("_closed") and self.n_breakpoints != 1:
            raise ConfigError(f"breakpoint_method={self.breakpoint_method!r} has a closed form for one breakpoint "
                              f"only; use '{self.breakpoint_method.split('_')[0]}_bisect' or 'empirical'")

    @property
    def scheme_name(self) -> str:
        return self.scheme

    def make_quantizer(self, w: Tensor, bits: int, name: str) -> WeightFakeQuant:
        if self.group_size is not None and self.scheme == "uniform":
            return GroupUniformWeightQuant.from_weight(w, bits, self.group_size, symmetric=self.uniform_symmetric,
                                                       name=name)
        if self.group_size is not None:
            return GroupPWLQWeightQuant.from_weight(w, bits, self.group_size, method=self.breakpoint_method,
                                                    n_breakpoints=self.n_breakpoints, variant=self.variant, name=name,
                                                    ratio_range=self.breakpoint_range, search=self.breakpoint_search)
        if self.scheme == "uniform":
            return UniformWeightQuant.from_weight(w, bits, symmetric=self.uniform_symmetric, dim=self.dim, name=name)
        return PWLQWeightQuant.from_weight(w, bits, method=self.breakpoint_method, n_breakpoints=self.n_breakpoints,
                                           variant=self.variant, dim=self.dim, name=name,
                                           ratio_range=self.breakpoint_range, search=self.breakpoint_search)


@dataclass
class UniformConfig(PTQConfig):
    """Post-training uniform quantization (paper eq. 1): symmetric (``symmetric=True``, max-scaled) or affine
    per channel / per tensor, or per group of ``group_size`` input elements (fp16 scale, uint8 zero point when
    affine: torchao's int4 weight-only scheme with ``symmetric=False``). Shared fields: :class:`PTQConfig`."""

    symmetric: bool = True
    group_size: int | None = None

    def __post_init__(self):
        super().__post_init__()
        _check_group_config(self)

    @property
    def scheme_name(self) -> str:
        return "uniform"

    def make_quantizer(self, w: Tensor, bits: int, name: str) -> WeightFakeQuant:
        if self.group_size is not None:
            return GroupUniformWeightQuant.from_weight(w, bits, self.group_size, symmetric=self.symmetric, name=name)
        return UniformWeightQuant.from_weight(w, bits, symmetric=self.symmetric, dim=self.dim, name=name)


def _check_group_config(config: PTQConfig) -> None:
    """``group_size`` is None or a positive integer, groups live inside output channels, codes fit 8 bits."""
    g = config.group_size
    if g is None:
        return
    name = type(config).__name__
    try:
        check_group_size(g, g)
    except ConfigError as e:
        raise ConfigError(f"{name}.group_size must be None or a positive integer, got {g!r}") from e
    if config.granularity != "channel":
        raise ConfigError(f"{name}: group_size={g} splits each output channel into groups; it needs "
                          f"granularity='channel', got {config.granularity!r}")
    if max(config.wbits, 8 if config.keep_8bit else 0) > 8:
        raise ConfigError(f"{name}: group-wise codes are stored in 8-bit containers; wbits must be <= 8, "
                          f"got {config.wbits}")
