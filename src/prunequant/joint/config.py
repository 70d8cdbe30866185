"""Configuration of joint pruning + soft mixed-precision QAT (US 2020/0293893 A1 family; docs/joint.md)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from .. import quantization as _quantization  # noqa: F401  (registers the built-in weight quantizers)
from ..core.quantizer import MAX_BITS, MIN_BITS, registered_schemes
from ..errors import ConfigError


def joint_schemes() -> tuple[str, ...]:
    """Weight schemes usable as joint candidates: every registered quantizer with ``joint_candidate = True``."""
    return registered_schemes(joint=True)


SCHEMES = joint_schemes()  # at import time; joint_schemes() also sees quantizers registered later
GRANULARITIES = ("tensor", "channel")
MIX_GRANULARITIES = ("layer", "channel")
TARGET_NAMES = ("wbits", "abits", "size_bytes", "bops")


def _check_candidates(bits: Sequence[int], what: str, allow_zero: bool) -> tuple[int, ...]:
    bits = tuple(bits)
    if not bits:
        raise ConfigError(f"{what}: at least one candidate bit-width is needed")
    for b in bits:
        ok = isinstance(b, int) and not isinstance(b, bool) and (MIN_BITS <= b <= MAX_BITS or (allow_zero and b == 0))
        if not ok:
            zero = " or 0 (layer/channel pruned away)" if allow_zero else ""
            raise ConfigError(f"{what}: candidate {b!r} is not an integer in [{MIN_BITS}, {MAX_BITS}]{zero}")
    if len(set(bits)) != len(bits):
        raise ConfigError(f"{what}: duplicate candidates in {bits}")
    if all(b == 0 for b in bits):
        raise ConfigError(f"{what}: 0 bits cannot be the only candidate")
    return tuple(sorted(bits))


@dataclass
class JointConfig:
    """Joint pruning (analytic threshold h(w; α, β)) + soft mixed-precision QAT of weights and feature maps.

    Candidates and quantizers
    * ``weight_bits`` / ``act_bits``: candidate bit-widths. ``0`` among ``weight_bits`` is the "pruned away"
      option (the layer, or with ``mix_granularity="channel"`` the output channel, becomes zero).
    * ``weight_scheme``: any registered joint-candidate quantizer (:func:`joint_schemes`: "uniform" symmetric
      max-scaled, "pwlq" piecewise linear with one breakpoint, "log2" power-of-two), one string for all
      candidates or one per entry of ``weight_bits``. Feature maps use uniform quantizers.
    * ``granularity``: weight quantizer scales per "tensor" or per output "channel".
    * ``mix_granularity``: one mixture π per "layer" (default), or one per output channel ("channel").
    * ``act_momentum``: EMA momentum of the feature-map range (running max of |x|).
    * ``quantize_acts``: quantize the feature map that enters every selected layer (``False``: weights only).

    Targets (the controller reaches them; ``None`` = no constraint)
    * ``target_wbits``: average weight bits (weighted by weight count); ``target_abits``: average feature-map
      bits (weighted by MACs); ``target_sparsity``: global weight sparsity; ``target_size_bytes``: model size
      as :func:`prunequant.analysis.report` counts it; ``target_bops``: bit-operations Σ eff. MACs·b_w·b_a.
    * ``loss_weights``: fixed λ per term ("wbits", "abits", "size_bytes", "bops", "sparsity") used when that
      term has no target (hand-tuned mode); with a target it is only λ's starting value.
    * ``target_mode``: "at_most" (default; λ >= 0, targets are upper bounds) or "equal" (λ of either sign, the
      measure tracks its setpoint; oscillates more on the digits CNN). Hardening enforces measure <= target.
    * ``dual_lr``: step of the dual ascent λ ← λ + dual_lr · e, per optimizer step, with the error
      e = log(measure / setpoint) (``dual_error="log"``, default) or measure / setpoint − 1 (``"ratio"``).
    * ``cost_norm``: each target's loss term is λ · soft / setpoint(step) (``"setpoint"``, default: the same
      weight all along the ramp) or λ · soft / target (``"target"``: up to ratio-times heavier early on).
    * ``size_surrogate``: differentiable size of one tensor, per candidate bit-width: ``"cheapest"`` (default)
      the cheaper of bitmap (n + k·b) and CSR (k·(b + index bits)) storage at the soft kept count k, so a kept
      weight of a dense-ish layer costs its b value bits and one of a very sparse layer b + index bits — bits and
      sparsity priced in the same unit (bytes), as the report prices them; ``"csr"``: always the CSR cost
      (over-prices keeping weights in dense-ish layers by (b + index)/b).
    * ``target_ramp``: fraction of the soft phase over which every setpoint moves (cubic) from the starting
      value to its target.
    * ``tol``: relative slack allowed on the targets at hardening (0: measure <= target).
    * ``fill_budget``: at hardening, use budget the soft phase left unused: scale all β down by one common factor
      until the size/BOP target is just met (weights pruned beyond the budget come back; not with a sparsity
      target), then raise bit choices (most preferred first) while every target still holds.

    Schedule
    * ``epochs`` soft joint training, τ annealed geometrically from ``tau_start`` to ``tau_end`` — with
      ``tau_schedule="after_ramp"`` (default) only after the setpoints have reached their targets (τ stays at
      ``tau_start`` during the ramp, so the bit choice sharpens at a fixed budget), ``"whole"``: over the whole
      soft phase;
      ``finetune_epochs`` with hard masks and the chosen bits fixed (straight-through QAT), learning rate
      ``finetune_schedule`` ("cosine" decay or "constant").
    * ``threshold_lr`` (log α, log β), ``logit_lr`` (θ); the weights' lr, seed, device and logging are run
      options (``Fit`` / ``TrainConfig``).
    * ``logit_init``: "linear" (θ_b = b / max b, high precision slightly preferred) or "uniform".
    * ``alpha_init``, ``beta_init`` (× weight std), ``alpha_anneal``, ``min_density``: as in
      :class:`~prunequant.pruning.analytic.AnalyticThresholdConfig`.
    * ``pwlq_refresh_every``: steps between breakpoint re-fits of PWLQ candidates.
    * ``finalize``: harden to plain quantized, pruned layers at the end (see :func:`finalize_`).
    """

    weight_bits: Sequence[int] = (3, 4, 6, 8)
    act_bits: Sequence[int] = (2, 3, 4, 6, 8)
    weight_scheme: str | Sequence[str] = "uniform"
    granularity: str = "tensor"
    mix_granularity: str = "layer"
    quantize_acts: bool = True
    act_momentum: float = 0.1
    target_wbits: float | None = None
    target_abits: float | None = None
    target_sparsity: float | None = None
    target_size_bytes: float | None = None
    target_bops: float | None = None
    target_mode: str = "at_most"
    loss_weights: dict = field(default_factory=dict)
    dual_lr: float = 0.05
    dual_error: str = "log"
    cost_norm: str = "setpoint"
    size_surrogate: str = "cheapest"
    target_ramp: float = 0.5
    tol: float = 0.0
    fill_budget: bool = True
    epochs: int = 20
    finetune_epochs: int = 10
    finetune_schedule: str = "cosine"
    threshold_lr: float = 0.02
    logit_lr: float = 0.05
    tau_start: float = 1.0
    tau_end: float = 0.05
    tau_schedule: str = "after_ramp"
    logit_init: str = "linear"
    alpha_init: float = 0.3
    beta_init: float = 0.3
    alpha_anneal: float = 0.3
    min_density: float = 0.005
    prune: bool = True
    pwlq_refresh_every: int = 20
    finalize: bool = True
    include: Sequence[str | type] | None = None
    exclude: Sequence[str | type] | None = None

    def __post_init__(self):
        self.weight_bits = _check_candidates(self.weight_bits, "weight_bits", allow_zero=True)
        self.act_bits = _check_candidates(self.act_bits, "act_bits", allow_zero=False)
        schemes = (self.weight_scheme,) * len(self.weight_bits) if isinstance(self.weight_scheme, str) \
            else tuple(self.weight_scheme)
        if len(schemes) != len(self.weight_bits):
            raise ConfigError(f"weight_scheme: {len(schemes)} entries for {len(self.weight_bits)} weight_bits")
        known = joint_schemes()
        for s in schemes:
            if s not in known:
                raise ConfigError(f"weight_scheme must be one of {known}, got {s!r}")
        self.schemes = schemes
        if self.granularity not in GRANULARITIES:
            raise ConfigError(f"granularity must be one of {GRANULARITIES}, got {self.granularity!r}")
        if self.mix_granularity not in MIX_GRANULARITIES:
            raise ConfigError(f"mix_granularity must be one of {MIX_GRANULARITIES}, got {self.mix_granularity!r}")
        if self.target_mode not in ("equal", "at_most"):
            raise ConfigError(f"target_mode must be 'equal' or 'at_most', got {self.target_mode!r}")
        if self.finetune_schedule not in ("cosine", "constant"):
            raise ConfigError(f"finetune_schedule must be 'cosine' or 'constant', got {self.finetune_schedule!r}")
        for k, allowed in (("dual_error", ("log", "ratio")), ("cost_norm", ("setpoint", "target")),
                           ("size_surrogate", ("cheapest", "csr")), ("tau_schedule", ("after_ramp", "whole"))):
            if getattr(self, k) not in allowed:
                raise ConfigError(f"{k} must be one of {allowed}, got {getattr(self, k)!r}")
        if self.logit_init not in ("linear", "uniform"):
            raise ConfigError(f"logit_init must be 'linear' or 'uniform', got {self.logit_init!r}")
        for k in ("target_wbits", "target_abits", "target_size_bytes", "target_bops"):
            v = getattr(self, k)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise ConfigError(f"{k} must be a finite number > 0 or None, got {v}")
        wmin = min(b for b in self.weight_bits)
        if self.target_wbits is not None and not wmin <= self.target_wbits:
            raise ConfigError(f"target_wbits {self.target_wbits} is below the smallest candidate {wmin}")
        if self.target_abits is not None and not min(self.act_bits) <= self.target_abits:
            raise ConfigError(f"target_abits {self.target_abits} is below the smallest candidate {min(self.act_bits)}")
        if self.target_abits is not None and not self.quantize_acts:
            raise ConfigError("target_abits needs quantize_acts=True")
        ts = self.target_sparsity
        if ts is not None and not 0.0 < ts < 1.0:
            raise ConfigError(f"target_sparsity must be in (0, 1) or None, got {ts}")
        if ts is not None and not self.prune:
            raise ConfigError("target_sparsity needs prune=True")
        if ts is not None and self.min_density > 1.0 - ts:
            raise ConfigError(f"min_density {self.min_density} makes target_sparsity {ts} unreachable")
        for k in ("threshold_lr", "logit_lr", "tau_start", "tau_end", "alpha_init", "beta_init",
                  "alpha_anneal"):
            if not getattr(self, k) > 0:
                raise ConfigError(f"{k} must be > 0, got {getattr(self, k)}")
        if self.tau_end > self.tau_start:
            raise ConfigError(f"tau_end {self.tau_end} must be <= tau_start {self.tau_start}")
        if self.epochs < 0 or self.finetune_epochs < 0:
            raise ConfigError("epochs and finetune_epochs must be >= 0")
        if not 0.0 <= self.target_ramp <= 1.0:
            raise ConfigError(f"target_ramp must be in [0, 1], got {self.target_ramp}")
        if not 0.0 < self.act_momentum <= 1.0:
            raise ConfigError(f"act_momentum must be in (0, 1], got {self.act_momentum}")
        if self.dual_lr < 0 or self.tol < 0:
            raise ConfigError("dual_lr and tol must be >= 0")
        if not 0.0 <= self.min_density <= 1.0:
            raise ConfigError(f"min_density must be in [0, 1], got {self.min_density}")
        if self.pwlq_refresh_every < 1:
            raise ConfigError(f"pwlq_refresh_every must be >= 1, got {self.pwlq_refresh_every}")
        known = set(TARGET_NAMES) | {"sparsity"}
        for k, v in dict(self.loss_weights).items():
            if k not in known:
                raise ConfigError(f"loss_weights: unknown term {k!r}; known: {sorted(known)}")
            if not (isinstance(v, (int, float)) and v >= 0):
                raise ConfigError(f"loss_weights[{k!r}] must be a number >= 0, got {v!r}")

    def targets(self) -> dict[str, float]:
        """The bit/size/BOP targets that are set, keyed as in :data:`TARGET_NAMES`."""
        vals = {"wbits": self.target_wbits, "abits": self.target_abits, "size_bytes": self.target_size_bytes,
                "bops": self.target_bops}
        return {k: float(v) for k, v in vals.items() if v is not None}
