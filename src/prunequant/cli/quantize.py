"""``prunequant quantize MODEL``: post-training quantization (PWLQ, uniform or log2) of the user's model,
calibrated on the user's data; per-layer table, model.pq, report.json, weight histograms, lock file."""
from __future__ import annotations

from pathlib import Path

import typer

from . import common

METHODS = ("pwlq", "uniform", "log2")


def quantize(
    model: str = typer.Argument(..., help=common.MODEL_HELP),
    method: str = typer.Option("pwlq", "--method", help=f"{', '.join(METHODS)}."),
    wbits: int | None = typer.Option(None, "--wbits", help="Weight bits (2-16; default 4)."),
    abits: int | None = typer.Option(None, "--abits", help="Activation bits (2-16; default 8); 0 quantizes "
                                                           "weights only."),
    granularity: str | None = typer.Option(None, help="channel or tensor."),
    variant: str | None = typer.Option(None, help="PWLQ variant: b_center (default) or paper."),
    breakpoints: str | None = typer.Option(None, "--breakpoints", help="empirical, gaussian_closed, "
                                                                      "laplace_closed, gaussian_bisect, "
                                                                      "laplace_bisect."),
    n_breakpoints: int | None = typer.Option(None, "--n-breakpoints", help="1, 2 or 3."),
    bias_correction: bool | None = typer.Option(None, "--bias-correction/--no-bias-correction"),
    calibration: str | None = typer.Option(None, help="topk_median, percentile or minmax."),
    act_granularity: str | None = typer.Option(None, "--act-granularity", help="Activation scales per tensor, "
                                                                             "channel, token or auto."),
    skip: list[str] | None = typer.Option(None, "--skip", help="Module name/pattern left in float "  # noqa: B008
                                                               "(repeatable)."),
    keep_8bit: list[str] | None = typer.Option(None, "--keep-8bit", help="Module name/pattern kept at 8 "  # noqa
                                                                         "bits (repeatable)."),
    calibration_samples: int = typer.Option(512, "--calibration-samples", help="Training samples used for "
                                                                               "calibration."),
    sets: list[str] | None = common.SET,
    weights: Path | None = common.WEIGHTS,
    data: str = common.DATA, val: str | None = common.VAL, test: str | None = common.TEST,
    target: str | None = common.TARGET, task: str = common.TASK, loss: str | None = common.LOSS,
    metric: str | None = common.METRIC, input_shape: str | None = common.INPUT_SHAPE,
    batch_size: int = common.BATCH,
    out: Path = typer.Option(Path("quantize_out"), "--out", help="Output folder."),  # noqa: B008
    seed: int = common.SEED,
) -> None:
    """Post-training quantization of MODEL (BN folding, activation calibration on --data, weight quantizers).

    Every argument is validated before anything runs; outputs as for `prunequant run`."""
    from ..errors import ConfigError

    if method not in METHODS:
        raise ConfigError(f"unknown --method {method!r}; available: {', '.join(METHODS)}")
    body: dict = {"method": method}
    opts = {"wbits": wbits, "granularity": granularity, "variant": variant, "breakpoint_method": breakpoints,
            "n_breakpoints": n_breakpoints, "bias_correction": bias_correction, "calibration": calibration,
            "act_granularity": act_granularity}
    if abits is not None:
        opts["abits"] = abits or None
    if skip:
        opts["skip"] = list(skip)
    if keep_8bit:
        opts["keep_8bit"] = list(keep_8bit)
    body.update({k: v for k, v in opts.items() if v is not None or k == "abits"})
    body.update(common.parse_sets(sets))
    raw = {"seed": seed, "model": common.model_block(model, weights, input_shape),
           "data": common.data_block(data, val, test, target, task, loss, metric, batch_size),
           "calibration_samples": calibration_samples, "steps": [{"quantize": body}]}
    common.run_and_print(raw, out, f"{method} quantization of {model}")
