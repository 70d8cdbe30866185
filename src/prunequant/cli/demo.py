"""``prunequant demo``: every method on bundled data, in a few minutes."""
from __future__ import annotations

from pathlib import Path

import typer


def demo(out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for report JSON, plots and models."),  # noqa
         seed: int = typer.Option(0, help="Random seed."),
         steps: str = typer.Option("all", help="Comma-separated demo steps to run, or 'all'.")) -> None:
    """Train the digits CNN, report it, then run each compression method on bundled data and write results to OUT."""
    from ..demo import run_demo

    run_demo(out, seed=seed, steps=None if steps == "all" else [s.strip() for s in steps.split(",")])
