"""``prunequant quantize MODEL``: post-training quantization (PWLQ or uniform) with a per-layer table and plot."""
from __future__ import annotations

from pathlib import Path

import typer


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise typer.BadParameter(f"expected positive integers separated by commas, e.g. 1,8,8; got {text!r}")
    return shape


def quantize(
    model: str = typer.Argument(..., help="A reference model name (digits_cnn, mlp, resnet_small, mobilenet_small: "
                                          "trained on digits first) or a model file saved with prunequant.io.save."),
    method: str = typer.Option("pwlq", "--method", help="pwlq or uniform."),
    wbits: int = typer.Option(4, "--wbits", help="Weight bits (2-16)."),
    abits: int = typer.Option(8, "--abits", help="Activation bits (2-16); 0 quantizes weights only."),
    granularity: str = typer.Option("channel", help="channel or tensor."),
    variant: str = typer.Option("b_center", help="PWLQ variant: b_center (default) or paper."),
    breakpoints: str = typer.Option("empirical", "--breakpoints",
                                    help="empirical, gaussian_closed, laplace_closed, gaussian_bisect, "
                                         "laplace_bisect."),
    n_breakpoints: int = typer.Option(1, "--n-breakpoints", help="1, 2 or 3."),
    bias_correction: bool = typer.Option(True, "--bias-correction/--no-bias-correction"),
    calibration: str = typer.Option("topk_median", help="topk_median, percentile or minmax."),
    skip: list[str] | None = typer.Option(  # noqa: B008 - typer's idiom
        None, "--skip", help="Module name/pattern left in float (repeatable)."),
    keep_8bit: list[str] | None = typer.Option(  # noqa: B008
        None, "--keep-8bit", help="Module name/pattern kept at 8 bits (repeatable)."),
    data: Path | None = typer.Option(  # noqa: B008
        None, "--data", help="CSV/NPZ of calibration inputs (default: 512 digits training images)."),
    input_shape: str = typer.Option("1,8,8", "--input-shape", help="Per-sample shape of --data rows."),
    out: Path = typer.Option(  # noqa: B008
        "quantize_out", "--out", help="Folder for result.json, weights.png, model."),
    seed: int = typer.Option(0, help="Training / calibration sampling seed."),
) -> None:
    """Quantize MODEL after training (no retraining): fold BN, calibrate activations, quantize weights per
    channel with PWLQ or uniform, print the per-layer table (bits, breakpoints, center fraction, MSE vs uniform
    and vs Lloyd-Max) and write OUT/result.json, OUT/weights.png (histograms with breakpoints and levels) and
    OUT/model.safetensors."""
    import torch
    from rich.console import Console

    from .. import quantize_
    from ..data import digits_splits, load_tensors
    from ..errors import PrunequantError
    from ..io import save
    from ..models import REFERENCE_EPOCHS, train_reference
    from ..quantization import PWLQConfig
    from ..quantization.plots import plot_weight_histograms

    console = Console()
    try:
        cfg = PWLQConfig(wbits=wbits, abits=abits or None, scheme=method, granularity=granularity, variant=variant,
                         breakpoint_method=breakpoints, n_breakpoints=n_breakpoints,
                         bias_correction=bias_correction, calibration=calibration, skip=tuple(skip or ()),
                         keep_8bit=tuple(keep_8bit or ()))
        splits = digits_splits(0)
        if model in REFERENCE_EPOCHS:
            console.print(f"training reference model [bold]{model}[/] on digits (seed {seed}) ...")
            net, _ = train_reference(model, seed=seed)
        else:
            from ..io import load

            net = load(Path(model))
        net.eval()
        if data is not None:
            calib = load_tensors(data, target=None, feature_shape=_shape(input_shape)).tensors[0]
        else:
            g = torch.Generator().manual_seed(seed)
            x_train = splits["train"].tensors[0]
            calib = x_train[torch.randperm(len(x_train), generator=g)[:512]]
        x_test, y_test = splits["test"].tensors
        digits_model = data is None

        def acc() -> float:
            with torch.no_grad():
                return float((net(x_test).argmax(1) == y_test).float().mean())

        before = acc() if digits_model else None
        result = quantize_(net, cfg, calibration_data=calib)
        after = acc() if digits_model else None
    except PrunequantError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from e
    result.print(console)
    if before is not None:
        console.print(f"digits test accuracy: fp32 {before:.4f} -> quantized {after:.4f}")
    out.mkdir(parents=True, exist_ok=True)
    info = result.to_dict()
    info["accuracy"] = {"fp32": before, "quantized": after}
    import json

    (out / "result.json").write_text(json.dumps(info, indent=2))
    plot_weight_histograms(net, out / "weights.png")
    save(net, out / "model.safetensors", metadata={"method": "quantize", "config": cfg.to_dict()})
    console.print(f"wrote {out}/result.json, {out}/weights.png, {out}/model.safetensors")
