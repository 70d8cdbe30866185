"""Configuration of self-pruning with the learnable analytic threshold h(w) = sigmoid((w² − β²)/α²)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...errors import ConfigError
from .functions import THRESHOLD_FUNCTIONS

PENALTIES = ("soft_l0", "beta")
GRANULARITIES = ("layer", "channel_threshold", "channel")


@dataclass
class AnalyticThresholdConfig:
    """Self-pruning with a learnable analytic threshold (US 2019/0180184 A1 family; see docs/analytic_pruning.md).

    Target mode (``target_sparsity`` set): the penalty weight λ is a dual variable driven by the controller so the
    global hard-mask sparsity tracks a setpoint ramped to ``target_sparsity``; ``penalty_weight`` is λ's start.
    Fixed mode (``target_sparsity=None``): λ = ``penalty_weight`` throughout.

    * ``penalty``: "soft_l0" (λ · mean of h over all prunable weights, a differentiable kept-weight count) or
      "beta" (−λ · mean_l (β_l/σ_l)², a direct reward on the threshold).
    * ``penalty_on_weights``: let the penalty's gradient reach the weights (pushing weights in the band toward
      zero) as well as α, β.
    * ``function``: the threshold function h ("sigmoid_sq" = sigmoid((w²−β²)/α²), "sigmoid_abs" =
      sigmoid((|w|−β)/α)); both have their edges at |w| = β, so the hard mask is |w| > β for either.
    * ``alpha_init`` / ``beta_init``: α₀, β₀ as multiples of each layer's weight standard deviation σ_l.
    * ``alpha_max_ratio``: projection α ≤ ratio · β after each step (None = free), so the band stays a band:
      h(0) ≤ sigmoid(−1/ratio²). Without it the task loss inflates α and the soft model drifts from the hard one.
    * ``alpha_anneal``: final multiplier on α (cosine from 1); 1.0 = no annealing. α stays learnable.
    * ``min_density``: each mask group (layer, or output channel) keeps at least this fraction of weights.
    * ``epochs`` (soft h, thresholds learned) then ``finetune_epochs`` (hard mask fixed); ``threshold_lr`` is
      the learning rate of log α / log β (weights use the TrainConfig lr).
    * ``dual_lr``: λ ← max(0, λ + dual_lr · log(density / setpoint density)) each step; ``target_ramp``: fraction of the
      pruning steps over which the setpoint rises (cubic) from the initial sparsity to the target.
    * ``snap_to_target``: after the soft phase, scale all β by one common factor (bisection) so the hard
      sparsity equals the target before the fine-tune.
    * ``finalize``: bake the masks into the weights at the end (plain module, exact zeros).
    * ``granularity``: "layer" (one (α, β) per layer), "channel_threshold" (one (α, β) per output channel; both
      unstructured), or "channel" (structured: h on group norms, whole filters / MLP hidden units removed so the
      model gets physically smaller; target ``mac_reduction`` (real MACs), else ``target_params``, else
      ``target_sparsity`` (fraction of parameters); see docs/structured_pruning.md). After the channels are
      removed, BatchNorm statistics are re-estimated on ``bn_recalibration`` training samples (0: off).
    """

    target_sparsity: float | None = 0.9
    mac_reduction: float | None = None  # granularity="channel": fraction of real MACs to remove (first)
    target_params: int | None = None  # granularity="channel": parameter count to reach (before target_sparsity)
    penalty: str = "soft_l0"
    penalty_weight: float = 0.0
    penalty_on_weights: bool = True
    function: str = "sigmoid_sq"
    granularity: str = "layer"
    alpha_init: float = 0.2
    beta_init: float = 0.5
    learn_alpha: bool = True
    alpha_max_ratio: float | None = 0.5
    alpha_anneal: float = 0.1
    min_density: float = 0.002
    epochs: int = 20
    finetune_epochs: int = 10
    threshold_lr: float = 0.02
    dual_lr: float = 1.0
    dual_kp: float = 10.0
    target_ramp: float = 0.6
    snap_to_target: bool = True
    bn_recalibration: int = 1024  # granularity="channel": samples to re-estimate BatchNorm stats after removal
    finalize: bool = True
    include: Sequence[str | type] | None = None
    exclude: Sequence[str | type] | None = None
    types: Sequence[type] | None = None

    def __post_init__(self):
        ts = self.target_sparsity
        if ts is not None and not 0.0 < ts < 1.0:
            raise ConfigError(f"target_sparsity must be in (0, 1) or None, got {ts}")
        if self.penalty not in PENALTIES:
            raise ConfigError(f"penalty must be one of {PENALTIES}, got {self.penalty!r}")
        if self.function not in THRESHOLD_FUNCTIONS:
            raise ConfigError(f"function must be one of {tuple(THRESHOLD_FUNCTIONS)}, got {self.function!r}")
        if self.granularity not in GRANULARITIES:
            raise ConfigError(f"granularity must be one of {GRANULARITIES}, got {self.granularity!r}")
        if (self.mac_reduction is not None or self.target_params is not None) and self.granularity != "channel":
            raise ConfigError("mac_reduction / target_params need granularity='channel'")
        if self.mac_reduction is not None and not 0.0 < self.mac_reduction < 1.0:
            raise ConfigError(f"mac_reduction must be in (0, 1), got {self.mac_reduction}")
        if self.target_params is not None and not self.target_params >= 1:
            raise ConfigError(f"target_params must be >= 1, got {self.target_params}")
        for k in ("alpha_init", "beta_init", "threshold_lr", "alpha_anneal"):
            if not getattr(self, k) > 0:
                raise ConfigError(f"{k} must be > 0, got {getattr(self, k)}")
        if self.dual_lr < 0:
            raise ConfigError(f"dual_lr must be >= 0, got {self.dual_lr}")
        if self.target_sparsity is None and self.penalty_weight < 0:
            raise ConfigError(f"penalty_weight must be >= 0 in fixed mode, got {self.penalty_weight}")
        if self.alpha_max_ratio is not None and not self.alpha_max_ratio > 0:
            raise ConfigError(f"alpha_max_ratio must be > 0 or None, got {self.alpha_max_ratio}")
        if not 0.0 <= self.min_density <= 1.0:
            raise ConfigError(f"min_density must be in [0, 1], got {self.min_density}")
        if ts is not None and self.min_density > 1.0 - ts:
            raise ConfigError(f"min_density {self.min_density} makes target_sparsity {ts} unreachable")
        if not 0.0 <= self.target_ramp <= 1.0:
            raise ConfigError(f"target_ramp must be in [0, 1], got {self.target_ramp}")
        if self.bn_recalibration < 0:
            raise ConfigError(f"bn_recalibration must be >= 0 (samples), got {self.bn_recalibration}")
        if self.epochs < 0 or self.finetune_epochs < 0:
            raise ConfigError("epochs and finetune_epochs must be >= 0")
