"""Self-pruning with a learnable analytic threshold h(w) = sigmoid((w² − β²)/α²) (docs/analytic_pruning.md)."""
from .config import AnalyticThresholdConfig
from .controller import SparsityController, hard_sparsity, project_min_density_, snap_to_target_
from .functions import THRESHOLD_FUNCTIONS, sigmoid_abs, sigmoid_sq
from .handler import prune_analytic_
from .parametrization import AnalyticThreshold
from .plugin import AnalyticThresholdPlugin
from .recipe import AnalyticPruningResult, fit_analytic_
from .transform import attach_analytic_thresholds_, harden_masks_, layer_table

__all__ = [
    "THRESHOLD_FUNCTIONS",
    "AnalyticPruningResult",
    "AnalyticThreshold",
    "AnalyticThresholdConfig",
    "AnalyticThresholdPlugin",
    "SparsityController",
    "attach_analytic_thresholds_",
    "fit_analytic_",
    "hard_sparsity",
    "harden_masks_",
    "layer_table",
    "project_min_density_",
    "prune_analytic_",
    "sigmoid_abs",
    "sigmoid_sq",
    "snap_to_target_",
]
