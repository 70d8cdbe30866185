"""The demo: each step shows one method on bundled data and writes its results under the output folder.

Shell layer (above the methods): the steps live here, one module per method, so the method packages carry no
demo code. ``DEMO_STEPS`` maps a step name to ``module:function``; each function takes a :class:`DemoContext`.

Example:
    >>> from prunequant.demo import run_demo
    >>> run_demo("demo_out", steps=["quantize"])  # doctest: +SKIP
"""
from __future__ import annotations

import importlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("prunequant.demo")


class Printer:
    """What a demo step prints: headings, lines and tables, to stdout (tables via :mod:`prunequant.viz.tables`)."""

    def __init__(self, stream=None):
        self._stream = stream

    @property
    def stream(self):
        return self._stream or sys.stdout  # resolved at print time (redirections, captures)

    def rule(self, title: str) -> None:
        print(f"\n== {title} ==", file=self.stream, flush=True)

    def print(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)

    def table(self, rows: Any, title: str | None = None, columns: list[str] | None = None) -> None:
        from ..viz.tables import print_table

        print_table(rows, title=title, columns=columns, stream=self.stream)


@dataclass
class DemoContext:
    """State shared by the steps: output folder, seed, the trained baseline model and collected results."""

    out: Path
    seed: int
    console: Printer = field(default_factory=Printer)
    model: Any = None             # the trained digits CNN (fp32 baseline)
    accuracy: float | None = None
    results: dict[str, Any] = field(default_factory=dict)


# name -> "module:function" under prunequant.demo; "baseline" always runs first.
DEMO_STEPS: dict[str, str] = {
    "baseline": "baseline:run",
    "analytic": "analytic:run",
    "mac-budget": "mac_budget:run",
    "quantize": "pwlq:run",
    "joint": "joint:run",
    "glucose": "glucose:run",
}


def step_function(name: str) -> Callable[[DemoContext], Any]:
    """The function of demo step ``name`` (imported on demand)."""
    mod, fn = DEMO_STEPS[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), fn)


def run_demo(out: str | Path, seed: int = 0, steps: list[str] | None = None) -> dict[str, Any]:
    """Run the demo steps (all by default) and write ``summary.json`` to ``out``.

    Args:
        out: output folder (created).
        seed: seed of every step.
        steps: step names (``baseline`` is always run first); ``None`` runs all of :data:`DEMO_STEPS`.

    Returns:
        The collected results (also in ``out/summary.json``), with per-step seconds under ``"seconds"``.

    Raises:
        ValueError: an unknown step name.
    """
    out = Path(out)
    names = list(DEMO_STEPS) if steps is None else ["baseline"] + [s for s in steps if s != "baseline"]
    unknown = [s for s in names if s not in DEMO_STEPS]
    if unknown:
        raise ValueError(f"unknown demo step(s) {unknown}; available: {list(DEMO_STEPS)}")
    out.mkdir(parents=True, exist_ok=True)
    ctx = DemoContext(out=out, seed=seed)
    timings = {}
    for name in names:
        t0 = time.perf_counter()
        log.info("demo step %s", name)
        step_function(name)(ctx)
        timings[name] = round(time.perf_counter() - t0, 2)
    ctx.results["seconds"] = timings
    (out / "summary.json").write_text(json.dumps(ctx.results, indent=2, default=float))
    ctx.console.print(f"demo finished in {sum(timings.values()):.1f}s; results in {out}/")
    return ctx.results


__all__ = ["DEMO_STEPS", "DemoContext", "Printer", "run_demo", "step_function"]
