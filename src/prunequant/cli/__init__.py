"""The ``prunequant`` command line (shell layer; needs the ``[cli]`` extra: typer, rich, PyYAML).

:func:`main` is the console-script entry point; it says which extra to install when typer is missing instead of
failing with a traceback.
"""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``)."""
    try:
        import typer  # noqa: F401
    except ImportError:
        print("error: the command line needs its extra: pip install 'prunequant[cli]'", file=sys.stderr)
        raise SystemExit(2) from None
    from .main import run

    run(argv)
