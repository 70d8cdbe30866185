"""Model analysis: per-layer parameters, non-zeros, sparsity, bit widths, dense/effective MACs and storage bytes."""
from .macs import call_macs, flop_counter_macs
from .report import LayerStats, Report, report, storage_bits

__all__ = ["LayerStats", "Report", "call_macs", "flop_counter_macs", "report", "storage_bits", "sensitivity",
           "SensitivityResult", "LayerSensitivity", "plan_from_budget", "BudgetPlan",
           "compressed_copy"]


def __getattr__(name):  # per-layer sensitivity imports the method registry: loaded on first use
    if name in ("sensitivity", "SensitivityResult", "LayerSensitivity", "plan_from_budget", "BudgetPlan",
                "compressed_copy"):
        from . import layer_sensitivity as _s

        return getattr(_s, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
