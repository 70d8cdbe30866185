"""``MacBudgetConfig``: every knob of MAC-budget pruning, with the reconstruction choices named and defaulted.

See docs/mac_budget_pruning.md for the formulas. Choices marked [R] are reconstructions of US 2019/0050735 A1 and
its siblings US 10,832,135 / US 12,008,474 (the full specifications were not available).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ...errors import ConfigError
from .allowance import ALLOWANCE_RULES, LAYER_KINDS
from .threshold import ERROR_SCALES, NORMS


@dataclass
class MacBudgetConfig:
    """MAC-budget pruning: per-layer error allowance from MAC load, q-bisection, prune -> retrain rounds.

    Target: ``mac_reduction`` (fraction of the dense model's effective MACs to remove, as
    ``prunequant.analysis.report`` counts them) — the base allowance eps0 is then searched each round; or, with
    ``mac_reduction=None``, a fixed ``base_allowance`` eps0 applied every round.

    * ``allowance`` [R]: ``"mac_share"`` eps_l = eps0 * L * MAC_l / sum MAC (default) or ``"macs_per_weight"``
      eps_l = eps0 * (MAC_l/N_l) / mean(MAC/N); the factor is raised to ``allowance_power`` and clipped to
      ``allowance_clip``. ``mac_source``: MACs of the dense layer (``"dense"``, default) or the current effective
      MACs (``"effective"``).
    * error [R]: ``norm`` L2 (default) or L1; ``error_scale`` ``"power_mean"`` (default, size-independent) or
      ``"per_pruned"`` (literal sibling-claim form); ``relative_error`` divides by the layer std.
    * threshold T = q * std(surviving weights), q bisected in [``q_min``, ``q_max``] to ``q_tol``.
    * ``min_pruned`` / ``max_pruned``: per layer kind (conv, depthwise, grouped, linear, rnn, attention, or
      ``default``) bounds on a tensor's pruned fraction (US 12,008,474 claim 4); a layer outside them is set to the
      bound, which equals rescaling its allowance until it falls in range (claims 2 and 5).
    * rounds [R]: ``rounds`` prune -> retrain rounds whose effective-MAC targets follow ``schedule``
      (``"geometric"``: each round removes the same fraction of the remaining MACs; ``"linear"``); each round
      retrains ``retrain_epochs`` with masks fixed. Up to ``max_extra_rounds`` more if the report still misses the
      target by more than ``tolerance``.
    * ``granularity="channel"`` (pruning/structured, docs/structured_pruning.md): the error of a group is
      ``channel_error`` (``"energy"``, default: sqrt of the removed fraction of the group's squared norm;
      ``"rms"``: RMS of the removed normalised filter norms, which collapses on BatchNorm networks), each group's
      allowance is divided by its output sensitivity measured on ``channel_sensitivity`` training samples (0: MACs
      only), and BatchNorm statistics are re-estimated on ``bn_recalibration`` samples after each removal (0: off).
    """

    mac_reduction: float | None = 0.5
    granularity: str = "layer"  # "channel": remove whole channels (pruning/structured), real MACs
    target_params: int | None = None  # granularity="channel" with mac_reduction=None: parameter count to reach
    target_sparsity: float | None = None  # granularity="channel" with mac_reduction=None: fraction of params removed
    base_allowance: float | None = None
    allowance: str = "mac_share"
    allowance_power: float = 1.0
    allowance_clip: tuple[float, float] | None = None
    mac_source: str = "dense"
    norm: str = "l2"
    error_scale: str = "power_mean"
    relative_error: bool = False
    q_min: float = 0.0
    q_max: float = 4.0
    q_tol: float = 1e-4
    max_bisect_iter: int = 60
    min_pruned: dict[str, float] = field(default_factory=dict)
    max_pruned: dict[str, float] = field(default_factory=lambda: {"default": 0.95})
    rounds: int = 3
    schedule: str = "geometric"
    retrain_epochs: int = 2
    retrain_lr: float = 1e-3
    tolerance: float = 0.005
    max_extra_rounds: int = 2
    channel_error: str = "energy"
    channel_sensitivity: int = 256
    bn_recalibration: int = 1024
    include: Sequence[str] | None = None
    exclude: Sequence[str] = ()

    def __post_init__(self):
        if self.granularity not in ("layer", "channel"):
            raise ConfigError(f"granularity must be 'layer' or 'channel', got {self.granularity!r}")
        if self.granularity == "channel":
            if self.mac_reduction is None and self.target_params is None and self.target_sparsity is None:
                raise ConfigError("MacBudgetConfig(granularity='channel') needs mac_reduction, target_params or "
                                  "target_sparsity")
            if self.target_sparsity is not None and not 0.0 < self.target_sparsity < 1.0:
                raise ConfigError(f"target_sparsity must be in (0, 1), got {self.target_sparsity}")
            if self.target_params is not None and not self.target_params >= 1:
                raise ConfigError(f"target_params must be >= 1, got {self.target_params}")
        elif self.target_params is not None or self.target_sparsity is not None:
            raise ConfigError("target_params / target_sparsity need granularity='channel' (use mac_reduction)")
        elif self.mac_reduction is None and self.base_allowance is None:
            raise ConfigError("MacBudgetConfig needs mac_reduction (target) or base_allowance (eps0)")
        if self.mac_reduction is not None and not 0.0 <= self.mac_reduction < 1.0:
            raise ConfigError(f"mac_reduction must be in [0, 1), got {self.mac_reduction}")
        if self.base_allowance is not None and not self.base_allowance >= 0:
            raise ConfigError(f"base_allowance must be >= 0, got {self.base_allowance}")
        if self.channel_error not in ("energy", "rms"):
            raise ConfigError(f"channel_error must be 'energy' or 'rms', got {self.channel_error!r}")
        if self.channel_sensitivity < 0 or self.bn_recalibration < 0:
            raise ConfigError("channel_sensitivity and bn_recalibration are sample counts >= 0")
        if self.allowance not in ALLOWANCE_RULES:
            raise ConfigError(f"allowance must be one of {ALLOWANCE_RULES}, got {self.allowance!r}")
        if self.mac_source not in ("dense", "effective"):
            raise ConfigError(f"mac_source must be 'dense' or 'effective', got {self.mac_source!r}")
        if self.norm not in NORMS:
            raise ConfigError(f"norm must be one of {sorted(NORMS)}, got {self.norm!r}")
        if self.error_scale not in ERROR_SCALES:
            raise ConfigError(f"error_scale must be one of {ERROR_SCALES}, got {self.error_scale!r}")
        if not 0.0 <= self.q_min <= self.q_max:
            raise ConfigError(f"need 0 <= q_min <= q_max, got q_min={self.q_min}, q_max={self.q_max}")
        if self.q_tol <= 0 or self.max_bisect_iter < 1:
            raise ConfigError("q_tol must be > 0 and max_bisect_iter >= 1")
        if not self.allowance_power > 0:
            raise ConfigError(f"allowance_power must be > 0, got {self.allowance_power}")
        if self.allowance_clip is not None:
            lo, hi = self.allowance_clip
            if not 0 <= lo <= hi:
                raise ConfigError(f"allowance_clip must be (lo, hi) with 0 <= lo <= hi, got {self.allowance_clip}")
        for label, bounds in (("min_pruned", self.min_pruned), ("max_pruned", self.max_pruned)):
            for k, v in bounds.items():
                if k != "default" and k not in LAYER_KINDS:
                    raise ConfigError(f"{label}: unknown layer kind {k!r}; known: default, {', '.join(LAYER_KINDS)}")
                if not 0.0 <= v <= 1.0:
                    raise ConfigError(f"{label}[{k!r}] must be in [0, 1], got {v}")
        for kind in ("default",) + LAYER_KINDS:
            if self.min_fraction(kind) > self.max_fraction(kind):
                raise ConfigError(f"min_pruned > max_pruned for layer kind {kind!r}")
        if self.rounds < 1 or self.max_extra_rounds < 0:
            raise ConfigError(f"rounds must be >= 1 and max_extra_rounds >= 0, got {self.rounds}, "
                              f"{self.max_extra_rounds}")
        if self.schedule not in ("geometric", "linear"):
            raise ConfigError(f"schedule must be 'geometric' or 'linear', got {self.schedule!r}")
        if self.retrain_epochs < 0 or self.retrain_lr <= 0:
            raise ConfigError("retrain_epochs must be >= 0 and retrain_lr > 0")
        if not 0 < self.tolerance < 1:
            raise ConfigError(f"tolerance must be in (0, 1), got {self.tolerance}")

    def min_fraction(self, kind: str) -> float:
        return float(self.min_pruned.get(kind, self.min_pruned.get("default", 0.0)))

    def max_fraction(self, kind: str) -> float:
        return float(self.max_pruned.get(kind, self.max_pruned.get("default", 1.0)))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["include"] = list(self.include) if self.include is not None else None
        d["exclude"] = list(self.exclude)
        return d
