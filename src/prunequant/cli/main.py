"""The ``prunequant`` command line: parsing, logging set-up and one-line errors. Each subcommand lives in its
own module under ``prunequant.cli``; application logic lives in the library, the CLI only parses and prints.

Errors: every failure prints one line ``error: ...`` on stderr and exits with status 2, without a traceback
unless ``--debug`` is given (anywhere on the command line).
"""
from __future__ import annotations

import importlib
import logging
import sys

import typer

from .. import __version__

app = typer.Typer(help="prunequant: prune and quantize PyTorch models (learned pruning, MAC-budget pruning, "
                       "piecewise-linear quantization, joint pruning + mixed-precision QAT, glucose app).",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)

# (module, attribute, kind): kind "command" registers a function, "group" a typer sub-app.
SUBCOMMANDS: list[tuple[str, str, str]] = [
    ("prunequant.cli.demo", "demo", "command"),
    ("prunequant.cli.report", "report", "command"),
    ("prunequant.cli.export", "export", "command"), ("prunequant.cli.export", "bench", "command"),
    ("prunequant.cli.quantize", "quantize", "command"),
    ("prunequant.cli.joint", "joint", "command"),
    ("prunequant.cli.prune", "prune", "command"),
    ("prunequant.cli.run", "run", "command"), ("prunequant.cli.run", "evaluate", "command"),
    ("prunequant.cli.sensitivity", "sensitivity", "command"),
    ("prunequant.cli.glucose", "glucose", "group"),
]


def _version(value: bool) -> None:
    if value:
        print(f"prunequant {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,  # noqa: B008
                                       help="Print the version and exit."),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="Log warnings and errors only."),  # noqa: B008
          debug: bool = typer.Option(False, "--debug", help="Debug logging and full tracebacks on errors.")  # noqa
          ) -> None:
    """prunequant command line."""
    if quiet:
        logging.getLogger("prunequant").setLevel(logging.WARNING)


def _register() -> None:
    for mod, attr, kind in SUBCOMMANDS:
        obj = getattr(importlib.import_module(mod), attr)
        if kind == "group":
            app.add_typer(obj)
        else:
            app.command()(obj)


_register()


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (redirections and test captures)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(debug: bool = False) -> None:
    """Progress and results of long work go through :mod:`logging` (logger ``prunequant``), one line per event:
    a rich handler on an interactive terminal, plain time-stamped lines in a log file or CI."""
    logger = logging.getLogger("prunequant")
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    if any(getattr(h, "_prunequant_cli", False) for h in logger.handlers):
        return
    handler: logging.Handler | None = None
    if sys.stderr.isatty():
        try:
            from rich.logging import RichHandler

            handler = RichHandler(show_path=False, show_level=False, markup=False)
            handler.setFormatter(logging.Formatter("%(message)s"))
        except ImportError:  # pragma: no cover
            handler = None
    if handler is None:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    handler._prunequant_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False


_EXTRAS = {"typer": "cli", "rich": "cli", "yaml": "cli", "matplotlib": "viz", "sklearn": "data", "PIL": "data",
           "pandas": "glucose", "chemotools": "glucose", "scipy": "glucose", "onnx": "onnx", "onnxruntime": "onnx",
           "onnxscript": "onnx", "transformers": "hf"}


def error_line(exc: BaseException) -> str:
    """The one-line ``error: ...`` message for ``exc`` (a missing file says "not found")."""
    if hasattr(exc, "format_message") and callable(exc.format_message):  # click/typer usage errors
        msg = exc.format_message()
    elif isinstance(exc, FileNotFoundError):
        msg = f"{exc.filename or exc}: not found" if exc.filename else str(exc)
    elif isinstance(exc, ImportError) and (getattr(exc, "name", None) or "").split(".")[0] in _EXTRAS:
        extra = _EXTRAS[exc.name.split(".")[0]]
        msg = f"{exc}: install the optional dependency with pip install 'prunequant[{extra}]'"
    else:
        msg = str(exc) or type(exc).__name__
    msg = " ".join(msg.split())
    return f"error: {msg}"


def run(argv: list[str] | None = None) -> None:
    """Parse ``argv``, run the command, exit. Errors: one ``error:`` line on stderr and status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"] if debug else argv
    setup_logging(debug)
    try:
        rc = app(argv, standalone_mode=False, prog_name="prunequant")
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - the CLI boundary: every error becomes one line
        if debug:
            raise
        if type(e).__name__ == "Abort":
            print("error: aborted", file=sys.stderr)
        else:
            print(error_line(e), file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    run()
