"""The ``prunequant`` command line. Each subcommand lives in its own module under ``prunequant.cli``."""
from __future__ import annotations

import importlib

import typer

app = typer.Typer(help="prunequant: prune and quantize PyTorch models (learned pruning, MAC-budget pruning, "
                       "piecewise-linear quantization, joint pruning + mixed-precision QAT, glucose app).",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)

# (module, attribute, kind): kind "command" registers a function, "group" a typer sub-app.
SUBCOMMANDS: list[tuple[str, str, str]] = [
    ("prunequant.cli.demo", "demo", "command"),
    ("prunequant.cli.report", "report", "command"),
    ("prunequant.cli.export", "export", "command"), ("prunequant.cli.export", "bench", "command"),
    ("prunequant.cli.quantize", "quantize", "command"),
    ("prunequant.cli.joint", "joint", "command"),
    ("prunequant.cli.prune", "prune", "command"),
    ("prunequant.cli.glucose", "glucose", "group"),
]


def _register() -> None:
    for mod, attr, kind in SUBCOMMANDS:
        obj = getattr(importlib.import_module(mod), attr)
        if kind == "group":
            app.add_typer(obj)
        else:
            app.command()(obj)


_register()

if __name__ == "__main__":  # pragma: no cover
    app()
