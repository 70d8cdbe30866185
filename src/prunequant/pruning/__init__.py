"""Pruning methods: learned analytic threshold (self-pruning), MAC-budget, magnitude baselines.

Importing this package registers each method's config with :func:`prunequant.registry.register_handler`.
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
from .analytic import (
    AnalyticPruningResult,
    AnalyticThreshold,
    AnalyticThresholdConfig,
    AnalyticThresholdPlugin,
    prune_analytic_,
)

__all__ += ["AnalyticThresholdConfig", "AnalyticThreshold", "AnalyticThresholdPlugin", "AnalyticPruningResult",
            "prune_analytic_"]
from .mac_budget import MacBudgetConfig, MacBudgetResult, prune_mac_budget_  # noqa: E402
from .magnitude import (  # noqa: E402,E501
    AGPPlugin,
    MagnitudeConfig,
    MagnitudeResult,
    apply_magnitude_masks_,
    magnitude_masks,
    prune_magnitude_,
    sparsity_for_mac_reduction,
)

__all__ += ["MacBudgetConfig", "MacBudgetResult", "prune_mac_budget_", "MagnitudeConfig", "MagnitudeResult", "prune_magnitude_", "AGPPlugin", "magnitude_masks", "apply_magnitude_masks_", "sparsity_for_mac_reduction"]  # noqa: E501
