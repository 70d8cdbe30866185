"""``prunequant report MODEL_FILE``: per-layer table of a saved model (params, sparsity, bits, MACs, bytes)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise typer.BadParameter(f"expected positive integers separated by commas, e.g. 1,1,8,8; got {text!r}")
    return shape


def report(
    model_file: Annotated[Path, typer.Argument(help="Model saved with prunequant.io.save (.safetensors).")],
    input_shape: Annotated[str, typer.Option("--input-shape", help="Example input shape, comma-separated, batch "
                                                                   "first.")] = "1,1,8,8",
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here.")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Also write the report as CSV here.")] = None,
    plot_out: Annotated[Path | None, typer.Option("--plot", help="Also write a per-layer PNG plot here.")] = None,
) -> None:
    """Load MODEL_FILE, run one example input of zeros through it, and print per-layer parameters, non-zeros,
    sparsity, weight/activation bits, dense and effective MACs, and dense vs compressed bytes."""
    import torch
    from rich.console import Console

    from ..analysis import plot_report
    from ..analysis import report as make_report
    from ..errors import PrunequantError
    from ..io import load

    console = Console()
    shape = _parse_shape(input_shape)
    try:
        model = load(model_file)
        rep = make_report(model, torch.zeros(shape))
    except PrunequantError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from e
    rep.print(console)
    for out, write in ((json_out, rep.to_json), (csv_out, rep.to_csv), (plot_out, lambda p: plot_report(rep, p))):
        if out is not None:
            write(out)
            console.print(f"wrote {out}")
