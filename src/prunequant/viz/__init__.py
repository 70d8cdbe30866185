"""Plots for every method, in one place (shell layer; needs the ``[viz]`` extra: matplotlib).

Each function draws on a ``matplotlib.figure.Figure`` with its own Agg canvas and writes a PNG atomically; the
user's matplotlib backend and pyplot state are never touched, and matplotlib is imported only when a function
runs. Importing this package does not import matplotlib.

Example:
    >>> from prunequant.viz import plot_report            # doctest: +SKIP
    >>> plot_report(prunequant.analysis.report(model, x), "report.png")  # doctest: +SKIP
"""
from __future__ import annotations

from ._canvas import new_figure, save_figure
from .analytic import plot_analytic_run
from .joint import plot_joint_history
from .mac_budget import plot_mac_budget
from .pwlq import plot_weight_histograms, quantized_weights
from .report import plot_report
from .sensitivity import plot_sensitivity

__all__ = ["new_figure", "plot_analytic_run", "plot_joint_history", "plot_mac_budget", "plot_report",
           "plot_sensitivity", "plot_weight_histograms", "quantized_weights", "save_figure"]
