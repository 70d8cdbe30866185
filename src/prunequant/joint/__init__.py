"""Joint pruning + soft mixed-precision quantization-aware training of weights and feature maps
(US 2020/0293893 A1 family; docs/joint.md). Importing registers :class:`JointConfig` with the method registry."""
from .baselines import (
                        AnalyticPWLQConfig,
                        MagnitudeQATConfig,
                        analytic_then_pwlq_,
                        qat_after_magnitude_,
                        size_at_sparsity,
                        sparsity_for_size,
)
from .config import JointConfig
from .controller import TargetController, fill_budget_, repair_bits_, snap_beta_, snap_sparsity_
from .costs import JointLayer, hard_costs, soft_costs
from .handler import JointResult, attach_joint_, calibrate_, finalize_, harden_, joint_layers, prune_quantize_joint_
from .mixture import BitMixture
from .plugin import JointPlugin, layer_table, rich_table
from .quantizers import ChannelBitsWeightQuant, SoftMixActQuant, SoftMixWeightQuant

__all__ = ["JointConfig", "JointResult", "JointPlugin", "JointLayer", "BitMixture", "SoftMixWeightQuant",
           "SoftMixActQuant", "ChannelBitsWeightQuant", "TargetController", "prune_quantize_joint_", "attach_joint_",
           "calibrate_", "harden_", "finalize_", "joint_layers", "hard_costs", "soft_costs", "layer_table",
           "rich_table", "repair_bits_", "snap_beta_", "snap_sparsity_", "fill_budget_", "MagnitudeQATConfig",
           "AnalyticPWLQConfig",
           "qat_after_magnitude_", "analytic_then_pwlq_", "sparsity_for_size", "size_at_sparsity"]
