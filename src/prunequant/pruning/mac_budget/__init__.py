"""MAC-budget pruning (US 2019/0050735 A1, reconstructed): per-layer error allowance from MAC load, q-bisection
of the threshold q * std, prune -> retrain rounds to an effective-MAC target (docs/mac_budget_pruning.md)."""
from .allowance import ALLOWANCE_RULES, LAYER_KINDS, allowance_factors, layer_kind
from .config import MacBudgetConfig
from .handler import prune_mac_budget_
from .history import LayerRound, MacBudgetResult, RoundRecord, format_round
from .mac_model import weight_uses
from .planner import RoundPlan, RoundPlanner
from .plugin import MacBudgetPlugin
from .recipe import run_mac_budget_
from .threshold import BisectionResult, SortedMagnitudes, bisect_q, pruning_error
from .transform import MacBudgetPruner, round_targets

__all__ = [
           "ALLOWANCE_RULES",
           "LAYER_KINDS",
           "BisectionResult",
           "LayerRound",
           "MacBudgetConfig",
           "MacBudgetResult",
           "RoundPlan",
           "RoundPlanner",
           "RoundRecord",
           "SortedMagnitudes",
           "allowance_factors",
           "bisect_q",
           "layer_kind",
           "format_round",
           "MacBudgetPlugin",
           "MacBudgetPruner",
           "run_mac_budget_",
           "prune_mac_budget_",
           "pruning_error",
           "round_targets",
           "weight_uses",
]
