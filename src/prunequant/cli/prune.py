"""``prunequant prune MODEL --method analytic --sparsity 0.9``: prune a digits model, print the per-layer table,
write the pruned model, result JSON and a plot."""
from __future__ import annotations

import json
from pathlib import Path

import typer

METHODS = ("analytic", "mac-budget")


def prune(
    model: str = typer.Argument("digits_cnn", help="A reference model name (digits_cnn, mlp, resnet_small, "
                                                   "mobilenet_small: trained on digits first) or a model file "
                                                   "saved with prunequant.io.save."),
    method: str = typer.Option("analytic", "--method", help=f"Pruning method: {', '.join(METHODS)}."),
    sparsity: float = typer.Option(0.9, "--sparsity", help="Target global sparsity of the prunable weights."),
    epochs: int = typer.Option(20, "--epochs", help="analytic: epochs of joint weight + threshold training."),
    finetune_epochs: int = typer.Option(10, "--finetune-epochs", help="Epochs of fine-tuning with the mask fixed."),
    lr: float = typer.Option(1e-3, "--lr", help="Learning rate of the weights (Adam)."),
    granularity: str = typer.Option("layer", help="analytic: one (α, β) per 'layer' or per output 'channel'."),
    penalty: str = typer.Option("soft_l0", help="analytic: 'soft_l0' (mean of h) or 'beta' (reward on β)."),
    min_density: float = typer.Option(0.002, "--min-density", help="Fraction of weights every layer keeps."),
    mac_reduction: float = typer.Option(0.5, "--mac-reduction", help="mac-budget: fraction of effective MACs to "
                                                                      "remove (as `prunequant report` counts them)."),
    rounds: int = typer.Option(3, "--rounds", help="mac-budget: prune -> retrain rounds."),
    retrain_epochs: int = typer.Option(2, "--retrain-epochs", help="mac-budget: retrain epochs per round."),
    allowance: str = typer.Option("mac_share", "--allowance", help="mac-budget: mac_share or macs_per_weight."),
    exclude: list[str] = typer.Option([], "--exclude", help="Module name/pattern left dense (repeatable)."),
    out: Path = typer.Option(Path("prune_out"), "--out", help="Folder for result.json, plot and model."),
    seed: int = typer.Option(0, help="Training seed."),
) -> None:
    """Prune MODEL on the digits task to --sparsity with --method, fine-tune, and write OUT/result.json,
    OUT/prune.png and OUT/model.safetensors (exact zeros)."""
    import torch
    from rich.console import Console
    from rich.table import Table

    from .. import prune_
    from ..data import digits_loaders
    from ..errors import PrunequantError
    from ..io import load, save
    from ..models import REFERENCE_EPOCHS, train_reference
    from ..pruning import global_sparsity, layer_sparsity
    from ..training import TrainConfig, evaluate

    console = Console()
    if method not in METHODS:
        console.print(f"[red]error:[/red] unknown --method {method!r}; available: {', '.join(METHODS)}")
        raise typer.Exit(2)
    torch.manual_seed(seed)
    try:
        if model in REFERENCE_EPOCHS:
            console.print(f"training reference model [bold]{model}[/] on digits (seed {seed}) ...")
            net, _ = train_reference(model, seed=seed)
        else:
            net = load(Path(model))
        train, val, test = digits_loaders(seed=seed)
        before = evaluate(net, test)
        base = TrainConfig(lr=lr, seed=seed, progress=True, log_every_epoch=False)
        out.mkdir(parents=True, exist_ok=True)
        info: dict = {"method": method, "target_sparsity": sparsity}
        config_meta: dict = {}
        if method == "analytic":
            from ..pruning import AnalyticThresholdConfig
            from ..pruning.analytic import plot_analytic_run

            cfg = AnalyticThresholdConfig(target_sparsity=sparsity, epochs=epochs, finetune_epochs=finetune_epochs,
                                          granularity=granularity, penalty=penalty, min_density=min_density,
                                          exclude=exclude or None)
            res = prune_(net, cfg, train=train, val=val, train_config=base)
            plot_analytic_run(res, out / "prune.png")
            info.update(sparsity_before_snap=res.sparsity_before_snap, snap_factor=res.snap_factor,
                        layers=res.layers, history=res.history)
            config_meta = {k: v for k, v in vars(cfg).items() if k not in ("include", "exclude", "types")}
        elif method == "mac-budget":
            from ..pruning import MacBudgetConfig, finalize_masks_
            from ..pruning.mac_budget.plot import plot_history

            cfg = MacBudgetConfig(mac_reduction=mac_reduction, rounds=rounds, retrain_epochs=retrain_epochs,
                                  retrain_lr=lr, allowance=allowance, exclude=tuple(exclude), seed=seed)
            res = prune_(net, cfg, train=train, val=val, train_config=base, history_path=out / "history.json")
            finalize_masks_(net)
            plot_history(res, out / "prune.png")
            info.pop("target_sparsity")
            info.update(target_mac_reduction=mac_reduction, mac_reduction=res.reduction, met_target=res.met_target,
                        layers=[{"layer": ly.layer, "params": ly.numel} for ly in res.rounds[-1].layers],
                        history=res.to_dict()["rounds"])
            config_meta = cfg.to_dict()
    except PrunequantError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from e
    after = evaluate(net, test)
    table = Table(title=f"{method} pruning of {model}")
    for col in ("layer", "params", "sparsity"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for name, s in layer_sparsity(net).items():
        n = next((r["params"] for r in info.get("layers", []) if r["layer"] == name), None)
        table.add_row(name, "" if n is None else str(n), f"{100 * s:.2f}%")
    console.print(table)
    total = global_sparsity(net)
    target = (f"effective-MAC reduction {100 * info['mac_reduction']:.2f}% (target {100 * mac_reduction:.1f}%)"
              if method == "mac-budget" else f"target {100 * sparsity:.1f}%")
    console.print(f"global sparsity {100 * total:.2f}% ({target}); "
                  f"digits test accuracy {before:.4f} -> {after:.4f}")
    info.update(sparsity=total, accuracy={"dense": before, "pruned": after})
    (out / "result.json").write_text(json.dumps(info, indent=2, default=float))
    save(net, out / "model.safetensors", metadata={"method": method, "config": config_meta, "sparsity": total})
    console.print(f"wrote {out}/result.json, {out}/prune.png, {out}/model.safetensors")
