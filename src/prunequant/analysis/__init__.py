"""Model analysis: per-layer parameters, non-zeros, sparsity, bit widths, dense/effective MACs and storage bytes."""
from .macs import call_macs, flop_counter_macs
from .plot import plot_report
from .report import LayerStats, Report, report, storage_bits

__all__ = ["LayerStats", "Report", "call_macs", "flop_counter_macs", "plot_report", "report", "storage_bits"]
