"""Demo step ``baseline``: train the digits CNN, print its report, write report.json/.csv, a plot and the model."""
from __future__ import annotations

from typing import Any


def run(ctx: Any) -> None:
    """Train the reference digits CNN (sets ``ctx.model``/``ctx.accuracy``) and write its report and plot."""
    import torch

    from ..analysis import report
    from ..io import save
    from ..models.reference import train_reference
    from ..viz import plot_report

    ctx.console.rule("digits CNN (fp32 baseline)")
    ctx.model, ctx.accuracy = train_reference("digits_cnn", seed=ctx.seed)
    ctx.console.print(f"test accuracy: {ctx.accuracy:.4f}")
    rep = report(ctx.model, torch.zeros(1, 1, 8, 8))
    ctx.console.table(rep, title=f"{rep.model} (fp32)")
    rep.to_json(ctx.out / "report.json")
    rep.to_csv(ctx.out / "report.csv")
    plot_report(rep, ctx.out / "report.png")
    save(ctx.model, ctx.out / "digits_cnn.safetensors")
    ctx.results["baseline"] = {"accuracy": ctx.accuracy, "params": rep.total.params, "macs": rep.total.macs}
