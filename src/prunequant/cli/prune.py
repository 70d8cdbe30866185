"""``prunequant prune MODEL --method analytic --sparsity 0.9``: prune the user's model on the user's data (or a
bundled reference model on digits), print the per-layer table, write model.pq, report.json, plots and the lock."""
from __future__ import annotations

from pathlib import Path

import typer

from . import common

METHODS = ("analytic", "mac-budget", "magnitude")


def prune(
    model: str = typer.Argument("digits_cnn", help=common.MODEL_HELP),
    method: str = typer.Option("analytic", "--method", help=f"Pruning method: {', '.join(METHODS)}."),
    sparsity: float | None = typer.Option(None, "--sparsity", help="Target global sparsity of the prunable "
                                                                   "weights (analytic default 0.9)."),
    epochs: int | None = typer.Option(None, "--epochs", help="analytic: epochs of joint weight + threshold "
                                                             "training."),
    finetune_epochs: int | None = typer.Option(None, "--finetune-epochs", help="Epochs of fine-tuning with the "
                                                                               "mask fixed."),
    granularity: str | None = typer.Option(None, help="'layer' (unstructured), analytic 'channel_threshold' (one "
                                                      "(α, β) per output channel) or 'channel' (structured: whole "
                                                      "channels removed, real MACs; analytic and mac-budget)."),
    penalty: str | None = typer.Option(None, help="analytic: 'soft_l0' (mean of h) or 'beta' (reward on β)."),
    min_density: float | None = typer.Option(None, "--min-density", help="Fraction of weights every layer keeps."),
    mac_reduction: float | None = typer.Option(None, "--mac-reduction", help="mac-budget: fraction of effective "
                                                                             "MACs to remove; with --granularity "
                                                                             "channel (analytic or mac-budget): of "
                                                                             "real MACs of the shrunk model."),
    rounds: int | None = typer.Option(None, "--rounds", help="mac-budget: prune -> retrain rounds."),
    retrain_epochs: int | None = typer.Option(None, "--retrain-epochs", help="mac-budget: retrain epochs per "
                                                                             "round."),
    allowance: str | None = typer.Option(None, "--allowance", help="mac-budget: mac_share or macs_per_weight."),
    exclude: list[str] | None = typer.Option(None, "--exclude", help="Module name/pattern left dense "  # noqa: B008
                                                                     "(repeatable)."),
    sets: list[str] | None = common.SET,
    weights: Path | None = common.WEIGHTS,
    data: str = common.DATA, val: str | None = common.VAL, test: str | None = common.TEST,
    target: str | None = common.TARGET, task: str = common.TASK, loss: str | None = common.LOSS,
    metric: str | None = common.METRIC, input_shape: str | None = common.INPUT_SHAPE,
    batch_size: int = common.BATCH, lr: float | None = common.LR,
    out: Path = typer.Option(Path("prune_out"), "--out", help="Output folder."),  # noqa: B008
    seed: int = common.SEED,
) -> None:
    """Prune MODEL with --method (analytic, mac-budget, magnitude) and fine-tune it on --data.

    Every argument is validated before training starts; outputs as for `prunequant run`."""
    from ..errors import ConfigError

    m = method.replace("-", "_")
    if method not in METHODS:
        raise ConfigError(f"unknown --method {method!r}; available: {', '.join(METHODS)}")
    body: dict = {"method": m}
    opts = {"epochs": epochs, "finetune_epochs": finetune_epochs, "granularity": granularity, "penalty": penalty,
            "min_density": min_density, "mac_reduction": mac_reduction, "rounds": rounds,
            "retrain_epochs": retrain_epochs, "allowance": allowance}
    if sparsity is not None:
        opts["sparsity" if m == "magnitude" else "target_sparsity"] = sparsity
    if exclude:
        opts["exclude"] = list(exclude)
    if m == "mac_budget" and lr is not None:
        opts["retrain_lr"] = lr
    body.update({k: v for k, v in opts.items() if v is not None})
    body.update(common.parse_sets(sets))
    raw = {"seed": seed, "model": common.model_block(model, weights, input_shape),
           "data": common.data_block(data, val, test, target, task, loss, metric, batch_size),
           "train": {"lr": lr} if lr is not None else {}, "steps": [{"prune": body}]}
    common.run_and_print(raw, out, f"{method} pruning of {model}")
