"""``PWLQConfig``: every choice of the post-training quantization pipeline, validated on construction."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import ConfigError
from .base import check_bits
from .breakpoints import METHODS
from .calibration import CALIBRATION_METHODS
from .pwlq import MAX_BREAKPOINTS, VARIANTS

SCHEMES = ("pwlq", "uniform")
GRANULARITIES = ("channel", "tensor")


@dataclass
class PWLQConfig:
    """Post-training quantization: ``quantize_(model, PWLQConfig(...), calibration_data=...)``.

    Defaults follow the paper's pipeline (BN folded, per-channel weights, 8-bit per-layer activations with top-10
    median calibration, bias correction on) with two documented choices of ours: ``variant="b_center"`` and
    ``breakpoint_method="empirical"`` (see docs/pwlq.md for why).

    * ``wbits`` / ``abits``: weight and activation bits (2..16); ``abits=None`` quantizes weights only.
    * ``scheme``: ``"pwlq"`` or ``"uniform"`` (baseline; ``uniform_symmetric`` picks symmetric or affine).
    * ``granularity``: ``"channel"`` (per output channel) or ``"tensor"``.
    * ``variant``, ``breakpoint_method``, ``n_breakpoints`` (1..3): PWLQ choices.
    * ``bias_correction``: per-channel mean/std correction of the quantized weights.
    * ``calibration``: ``"topk_median"`` (``topk``), ``"percentile"`` (``percentile``) or ``"minmax"``;
      ``calibration_batch_size`` splits a Tensor of calibration inputs; ``calibration_batches`` caps batches.
    * ``skip``: module names or fnmatch patterns left in floating point; ``keep_8bit``: modules quantized at 8
      bits (weights and input activations) whatever ``wbits``/``abits`` are.
    * ``quantize_pool_inputs``: also quantize inputs of adaptive average pools (as in the paper).
    * ``lloyd_max``: compute each layer's Lloyd-Max MSE with the same number of levels (reference optimum).
    """

    wbits: int = 4
    abits: int | None = 8
    scheme: str = "pwlq"
    granularity: str = "channel"
    variant: str = "b_center"
    breakpoint_method: str = "empirical"
    n_breakpoints: int = 1
    uniform_symmetric: bool = True
    bias_correction: bool = True
    fold_bn: bool = True
    calibration: str = "topk_median"
    topk: int = 10
    percentile: float = 99.99
    calibration_batch_size: int = 32
    calibration_batches: int | None = None
    skip: tuple[str, ...] = field(default_factory=tuple)
    keep_8bit: tuple[str, ...] = field(default_factory=tuple)
    quantize_pool_inputs: bool = True
    lloyd_max: bool = True

    def __post_init__(self):
        check_bits(self.wbits, "wbits")
        if self.abits is not None:
            check_bits(self.abits, "abits")
        for name, value, allowed in (("scheme", self.scheme, SCHEMES),
                                     ("granularity", self.granularity, GRANULARITIES),
                                     ("variant", self.variant, VARIANTS),
                                     ("breakpoint_method", self.breakpoint_method, METHODS),
                                     ("calibration", self.calibration, CALIBRATION_METHODS)):
            if value not in allowed:
                raise ConfigError(f"PWLQConfig.{name} must be one of {allowed}, got {value!r}")
        if isinstance(self.n_breakpoints, bool) or not isinstance(self.n_breakpoints, int) or \
                not 1 <= self.n_breakpoints <= MAX_BREAKPOINTS:
            raise ConfigError(f"PWLQConfig.n_breakpoints must be an integer in [1, {MAX_BREAKPOINTS}], "
                              f"got {self.n_breakpoints!r}")
        if self.breakpoint_method.endswith("_closed") and self.n_breakpoints != 1:
            raise ConfigError(f"breakpoint_method={self.breakpoint_method!r} has a closed form for one breakpoint "
                              f"only; use '{self.breakpoint_method.split('_')[0]}_bisect' or 'empirical'")
        if not isinstance(self.topk, int) or self.topk < 1:
            raise ConfigError(f"PWLQConfig.topk must be an integer >= 1, got {self.topk!r}")
        if not 50.0 < float(self.percentile) <= 100.0:
            raise ConfigError(f"PWLQConfig.percentile must be in (50, 100], got {self.percentile!r}")
        if not isinstance(self.calibration_batch_size, int) or self.calibration_batch_size < 1:
            raise ConfigError(f"PWLQConfig.calibration_batch_size must be >= 1, got {self.calibration_batch_size!r}")
        if self.calibration_batches is not None and (not isinstance(self.calibration_batches, int)
                                                     or self.calibration_batches < 1):
            raise ConfigError(f"PWLQConfig.calibration_batches must be None or >= 1, got {self.calibration_batches!r}")
        if isinstance(self.skip, str) or isinstance(self.keep_8bit, str):
            raise ConfigError("PWLQConfig.skip and keep_8bit take a list of names/patterns, not a single string")
        self.skip, self.keep_8bit = tuple(self.skip), tuple(self.keep_8bit)

    @property
    def dim(self) -> int | None:
        return 0 if self.granularity == "channel" else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["skip"], d["keep_8bit"] = list(self.skip), list(self.keep_8bit)
        return d
