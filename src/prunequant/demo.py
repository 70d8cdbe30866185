"""The demo: each step shows one method on bundled data and writes its results under the output folder.

Steps are registered in ``DEMO_STEPS`` (name -> function(ctx)); each method adds its own step.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rich.console import Console


@dataclass
class DemoContext:
    out: Path
    seed: int
    console: Console
    model: Any = None             # the trained digits CNN (fp32 baseline)
    accuracy: float | None = None
    results: dict[str, Any] = field(default_factory=dict)


def step_baseline(ctx: DemoContext) -> None:
    """Train the digits CNN, print its report, write report.json/.csv and a per-layer plot."""
    import torch

    from .analysis import plot_report, report
    from .io import save
    from .models import train_reference

    ctx.console.rule("[bold]digits CNN (fp32 baseline)")
    ctx.model, ctx.accuracy = train_reference("digits_cnn", seed=ctx.seed, progress=True)
    ctx.console.print(f"test accuracy: {ctx.accuracy:.4f}")
    rep = report(ctx.model, torch.zeros(1, 1, 8, 8))
    rep.print(console=ctx.console)
    rep.to_json(ctx.out / "report.json")
    rep.to_csv(ctx.out / "report.csv")
    plot_report(rep, ctx.out / "report.png")
    save(ctx.model, ctx.out / "digits_cnn.safetensors")
    ctx.results["baseline"] = {"accuracy": ctx.accuracy, "params": rep.total.params, "macs": rep.total.macs}


def step_analytic(ctx: DemoContext) -> None:
    """Self-pruning with learned thresholds h(w) to 90% sparsity vs global magnitude (docs/analytic_pruning.md)."""
    from .pruning.analytic.demo_step import run_demo_step

    run_demo_step(ctx)


def step_mac_budget(ctx: DemoContext) -> None:
    """MAC-budget pruning to 50% fewer effective MACs vs uniform-rate magnitude (docs/mac_budget_pruning.md)."""
    from .pruning.mac_budget.demo_step import run_demo_step

    run_demo_step(ctx)


def step_quantize(ctx: DemoContext) -> None:
    """PWLQ vs uniform post-training quantization at W4A8/W3A8 (docs/pwlq.md)."""
    from .quantization.demo_step import run_demo_step

    run_demo_step(ctx)


def step_joint(ctx: DemoContext) -> None:
    """Joint pruning + soft mixed-precision QAT to 1/32 of the fp32 size, 4-bit feature maps (docs/joint.md)."""
    from .joint.demo_step import run_demo_step

    run_demo_step(ctx)


def step_glucose(ctx: DemoContext) -> None:
    """Glucose from NIR data: two stacked LSTMs vs PLS, then pruned + PWLQ (docs/glucose.md)."""
    from .apps.glucose.demo_step import run_demo_step

    run_demo_step(ctx)


DEMO_STEPS: dict[str, Callable[[DemoContext], None]] = {
    "baseline": step_baseline,
    "analytic": step_analytic,
    "mac-budget": step_mac_budget,
    "quantize": step_quantize,
    "joint": step_joint,
    "glucose": step_glucose,
}


def run_demo(out: str | Path, seed: int = 0, steps: list[str] | None = None) -> dict[str, Any]:
    """Run the demo steps (all by default) and write ``summary.json`` to ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = DemoContext(out=out, seed=seed, console=Console())
    names = list(DEMO_STEPS) if steps is None else ["baseline"] + [s for s in steps if s != "baseline"]
    unknown = [s for s in names if s not in DEMO_STEPS]
    if unknown:
        raise SystemExit(f"unknown demo step(s) {unknown}; available: {list(DEMO_STEPS)}")
    timings = {}
    for name in names:
        t0 = time.perf_counter()
        DEMO_STEPS[name](ctx)
        timings[name] = round(time.perf_counter() - t0, 2)
    ctx.results["seconds"] = timings
    (out / "summary.json").write_text(json.dumps(ctx.results, indent=2, default=float))
    ctx.console.print(f"[green]demo finished in {sum(timings.values()):.1f}s; results in {out}/[/]")
    return ctx.results
