"""Pruning methods: learned analytic threshold (self-pruning), MAC-budget, magnitude baselines.

Importing this package registers each method's config with :func:`prunequant.api.register_handler`.
"""
from .base import (
    SUPPORTED_TYPES,
    FixedMask,
    MaskParametrization,
    apply_mask_,
    check_weight,
    finalize_masks_,
    get_mask,
    global_sparsity,
    kept_mask,
    layer_sparsity,
    mask_parametrizations,
    prunable_modules,
)

__all__ = [
    "MaskParametrization", "FixedMask", "SUPPORTED_TYPES", "prunable_modules", "check_weight", "get_mask",
    "mask_parametrizations", "apply_mask_", "finalize_masks_", "kept_mask", "layer_sparsity", "global_sparsity",
]
from .analytic import (AnalyticPruningResult, AnalyticThreshold, AnalyticThresholdConfig, AnalyticThresholdPlugin,
                       prune_analytic_)

__all__ += ["AnalyticThresholdConfig", "AnalyticThreshold", "AnalyticThresholdPlugin", "AnalyticPruningResult",
            "prune_analytic_"]
