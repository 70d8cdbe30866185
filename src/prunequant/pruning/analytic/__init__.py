"""Self-pruning with a learnable analytic threshold h(w) = sigmoid((w² − β²)/α²) (docs/analytic_pruning.md)."""
from .config import AnalyticThresholdConfig
from .controller import SparsityController, hard_sparsity, project_min_density_, snap_to_target_
from .functions import THRESHOLD_FUNCTIONS, sigmoid_abs, sigmoid_sq
from .handler import (AnalyticPruningResult, attach_analytic_thresholds_, harden_masks_, layer_table,
                      prune_analytic_)
from .parametrization import AnalyticThreshold
from .plugin import AnalyticThresholdPlugin

__all__ = ["AnalyticThresholdConfig", "AnalyticThreshold", "AnalyticThresholdPlugin", "AnalyticPruningResult",
           "SparsityController", "THRESHOLD_FUNCTIONS", "sigmoid_sq", "sigmoid_abs", "prune_analytic_",
           "attach_analytic_thresholds_", "harden_masks_", "layer_table", "hard_sparsity",
           "project_min_density_", "snap_to_target_"]
