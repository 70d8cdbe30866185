"""Joint pruning + soft mixed-precision QAT of weights and feature maps (US 2020/0293893 A1 family; docs/joint.md).
Importing registers :class:`JointConfig` and the two baseline configs with :mod:`prunequant.registry`."""
from .baselines import (
    AnalyticPWLQConfig,
    AnalyticPWLQResult,
    MagnitudeQATConfig,
    MagnitudeQATResult,
    analytic_then_pwlq_,
    qat_after_magnitude_,
    size_at_sparsity,
    sparsity_for_size,
)
from .config import JointConfig
from .controller import TargetController, fill_budget_, repair_bits_, snap_beta_, snap_sparsity_
from .costs import JointLayer, hard_costs, soft_costs
from .handler import prune_quantize_joint_
from .mixture import BitMixture
from .plugin import JointPlugin, format_table, layer_table
from .quantizers import ChannelBitsWeightQuant, SoftMixActQuant, SoftMixWeightQuant
from .recipe import JointResult, fit_joint_, prepare_joint_
from .transform import attach_joint_, calibrate_, finalize_, finalize_joint_layers_, harden_, joint_layers

__all__ = ["JointConfig", "JointResult", "JointPlugin", "JointLayer", "BitMixture", "SoftMixWeightQuant",
           "SoftMixActQuant", "ChannelBitsWeightQuant", "TargetController", "prune_quantize_joint_", "attach_joint_",
           "calibrate_", "harden_", "finalize_", "finalize_joint_layers_", "fit_joint_", "prepare_joint_",
           "joint_layers", "hard_costs", "soft_costs", "layer_table", "format_table", "repair_bits_", "snap_beta_",
           "snap_sparsity_", "fill_budget_", "MagnitudeQATConfig", "MagnitudeQATResult", "AnalyticPWLQConfig",
           "AnalyticPWLQResult", "qat_after_magnitude_", "analytic_then_pwlq_", "sparsity_for_size",
           "size_at_sparsity"]
