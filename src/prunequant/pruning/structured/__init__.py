"""Structured (channel) pruning that makes models physically smaller: filters / output channels and transformer
MLP hidden units, with coupled layers found by Torch-Pruning's ``DependencyGraph`` (optional extra
``prunequant[structured]``) and prunequant's own importance (analytic gates h(||g||²), MAC-budget allowances) and
real-cost budgets on top. See docs/structured_pruning.md.

Entry points: ``prune_(model, AnalyticThresholdConfig(granularity="channel", mac_reduction=0.5), fit=...)``,
``prune_(model, MacBudgetConfig(granularity="channel", mac_reduction=0.5), fit=...)``, or the functions below.
"""
from .analytic import (
    ChannelAnalyticPlugin,
    ChannelGate,
    ChannelGates,
    StructuredTarget,
    attach_channel_gates_,
    detach_channel_gates_,
)
from .calibrate import calibration_inputs, group_sensitivity, recalibrate_batchnorm_
from .costs import CostModel, group_scores
from .groups import ChannelGraph, ChannelGroup, Member, build_channel_graph
from .mac_budget import allowances, channel_threshold, plan_for_target
from .recipes import (
    StructuredResult,
    finalize_channels_,
    prune_channels_analytic_,
    prune_channels_mac_budget_,
    target_from_config,
)
from .shrink import check_plan, remove_channels_, resize_to_state_dict_, zero_channels_

__all__ = [
    "ChannelAnalyticPlugin", "ChannelGate", "ChannelGates", "ChannelGraph", "ChannelGroup", "CostModel", "Member",
    "StructuredResult", "StructuredTarget", "allowances", "attach_channel_gates_", "build_channel_graph",
    "calibration_inputs", "channel_threshold", "check_plan", "detach_channel_gates_", "finalize_channels_",
    "group_scores", "group_sensitivity", "plan_for_target", "prune_channels_analytic_", "prune_channels_mac_budget_",
    "recalibrate_batchnorm_", "remove_channels_", "resize_to_state_dict_", "target_from_config", "zero_channels_",
]
