"""Magnitude-pruning baselines: global (one threshold over all layers), uniform rate (the same fraction in every
layer), a rate tuned to an effective-MAC reduction, and AGP gradual pruning (Zhu & Gupta 2017) as a TrainPlugin."""
from .config import MagnitudeConfig
from .handler import prune_magnitude_
from .plugin import AGPPlugin, agp_sparsity
from .recipe import MagnitudeResult, fit_magnitude_, magnitude_prune_
from .transform import (
    SCOPES,
    apply_magnitude_masks_,
    effective_mac_reduction,
    magnitude_masks,
    sparsity_for_mac_reduction,
)

__all__ = ["SCOPES", "AGPPlugin", "MagnitudeConfig", "MagnitudeResult", "agp_sparsity", "apply_magnitude_masks_",
           "effective_mac_reduction", "fit_magnitude_", "magnitude_masks", "magnitude_prune_", "prune_magnitude_",
           "sparsity_for_mac_reduction"]
