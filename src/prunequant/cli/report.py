"""``prunequant report MODEL``: per-layer table of a saved model (params, sparsity, bits, MACs, bytes)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import common


def report(
    model_file: Annotated[Path, typer.Argument(help="A saved model: .pq (compressed) or .safetensors "
                                                    "(prunequant.io.save).")],
    input_shape: Annotated[str, typer.Option("--input-shape", help="Example input shape, comma-separated, batch "
                                                                   "first.")] = "1,1,8,8",
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here.")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Also write the report as CSV here.")] = None,
    plot_out: Annotated[Path | None, typer.Option("--plot", help="Also write a per-layer PNG plot here.")] = None,
) -> None:
    """Per-layer table of a saved model: params, sparsity, bits, dense and effective MACs, bytes.

    One example input of zeros (--input-shape) is run through the model to count MACs."""
    import torch

    from ..analysis import report as make_report
    from ..viz.tables import print_table
    from ..workflow.models import load_model_file

    shape = common.parse_shape(input_shape)
    model = load_model_file(model_file)
    rep = make_report(model, torch.zeros(shape))
    print_table(rep, title=f"{model_file} ({rep.model}, input {list(shape)})")
    t = rep.total
    print(f"total: {t.params:,} params, {t.macs:,} MACs ({t.effective_macs:,} effective), {t.bytes_dense:,} B fp32 "
          f"-> {t.bytes:,} B ({rep.compression_ratio:.1f}x)")
    if plot_out is not None:
        from ..viz import plot_report

        plot_report(rep, plot_out)
    for out, write in ((json_out, rep.to_json), (csv_out, rep.to_csv), (plot_out, None)):
        if out is not None:
            if write is not None:
                write(out)
            print(f"wrote {out}")
