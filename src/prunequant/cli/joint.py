"""``prunequant joint MODEL``: joint pruning + soft mixed-precision QAT on digits, with optional baselines."""
from __future__ import annotations

from pathlib import Path

import typer


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        vals = ()
    if not vals:
        raise typer.BadParameter(f"{what}: expected integers separated by commas, e.g. 2,3,4,6,8; got {text!r}")
    return vals


def joint(
    model: str = typer.Argument("digits_cnn", help="A reference model name (digits_cnn, mlp, resnet_small, "
                                                   "mobilenet_small: trained on digits first) or a model file "
                                                   "saved with prunequant.io.save (trained further on digits)."),
    ratio: float | None = typer.Option(None, "--ratio", help="Target compression vs fp32 (report bytes); e.g. 32."),
    size_bytes: float | None = typer.Option(None, "--size-bytes", help="Target model size in bytes (report formula)."),
    wbits: float | None = typer.Option(None, "--wbits", help="Target average weight bits."),
    abits: float | None = typer.Option(None, "--abits", help="Target average feature-map bits."),
    sparsity: float | None = typer.Option(None, "--sparsity", help="Target global weight sparsity in (0, 1)."),
    bops: float | None = typer.Option(None, "--bops", help="Target bit-operations per sample."),
    weight_bits: str = typer.Option("3,4,6,8", "--weight-bits", help="Weight candidates (0 = remove layer)."),
    act_bits: str = typer.Option("2,3,4,6,8", "--act-bits", help="Feature-map candidates."),
    scheme: str = typer.Option("uniform", "--scheme", help="Weight quantizer per candidate: uniform or pwlq."),
    granularity: str = typer.Option("tensor", help="Weight scales per tensor or channel."),
    mix_granularity: str = typer.Option("layer", "--mix", help="Mixture π per layer or channel."),
    epochs: int = typer.Option(20, help="Soft joint epochs."),
    finetune_epochs: int = typer.Option(10, "--finetune-epochs", help="Epochs with bits and masks fixed."),
    compare: bool = typer.Option(False, "--compare/--no-compare",
                                 help="Also run qat-after-magnitude and analytic-then-pwlq at the same size."),
    out: Path = typer.Option(Path("joint_out"), "--out", help="Folder for result.json, report, plots, model."),
    seed: int = typer.Option(0, help="Training seed."),
) -> None:
    """Prune and mixed-precision quantize MODEL jointly to the given targets (at least one of --ratio,
    --size-bytes, --wbits, --abits, --sparsity, --bops), print the per-layer table each epoch and the final
    report, write OUT/result.json, OUT/report.json, OUT/history.png and OUT/model.safetensors."""
    import copy
    import json

    import torch
    from rich.console import Console
    from rich.table import Table

    from .. import prune_quantize_
    from ..analysis import report
    from ..data import digits_loaders
    from ..errors import PrunequantError
    from ..io import save
    from ..joint import AnalyticPWLQConfig, JointConfig, MagnitudeQATConfig
    from ..joint.plots import plot_history
    from ..models import REFERENCE_EPOCHS, train_reference
    from ..training import TrainConfig, evaluate

    console = Console()
    x1 = torch.zeros(1, 1, 8, 8)
    if all(v is None for v in (ratio, size_bytes, wbits, abits, sparsity, bops)):
        raise typer.BadParameter("give at least one target: --ratio, --size-bytes, --wbits, --abits, --sparsity "
                                 "or --bops")
    try:
        if model in REFERENCE_EPOCHS:
            console.print(f"training reference model [bold]{model}[/] on digits (seed {seed}) ...")
            net, _ = train_reference(model, seed=seed)
        else:
            from ..io import load

            net = load(Path(model))
        train, val, test = digits_loaders(batch_size=64, seed=seed)
        fp32_bytes = report(net, x1).total.bytes
        fp32_acc = evaluate(net, test)
        if ratio is not None and size_bytes is not None:
            raise typer.BadParameter("give --ratio or --size-bytes, not both")
        target = size_bytes if size_bytes is not None else (fp32_bytes / ratio if ratio else None)
        cfg = JointConfig(weight_bits=_ints(weight_bits, "--weight-bits"), act_bits=_ints(act_bits, "--act-bits"),
                          weight_scheme=scheme, granularity=granularity, mix_granularity=mix_granularity,
                          target_wbits=wbits, target_abits=abits, target_sparsity=sparsity,
                          target_size_bytes=target, target_bops=bops, epochs=epochs,
                          finetune_epochs=finetune_epochs)
        baseline_models = {}
        if compare:
            if target is None:
                raise typer.BadParameter("--compare needs --ratio or --size-bytes")
            baseline_models = {name: copy.deepcopy(net) for name in ("qat-after-magnitude", "analytic-then-pwlq")}
        console.rule("[bold]joint pruning + soft mixed-precision QAT")
        tc = TrainConfig(seed=seed, lr=cfg.lr, progress=True, log_every_epoch=False)
        ab = round(abits) if abits else 8
        res = prune_quantize_(net, cfg, train=train, val=val, train_config=tc, console=console)
        results = {"fp32": {"size_bytes": fp32_bytes, "accuracy": fp32_acc}}
        rep = report(net, x1)
        results["joint"] = {"size_bytes": rep.total.bytes, "compression_ratio": rep.compression_ratio,
                            "accuracy": evaluate(net, test), "measures": res.measures}
        if compare:
            wb = 4
            bl = {"qat-after-magnitude": MagnitudeQATConfig(target_size_bytes=target, wbits=wb, abits=ab,
                                                            epochs=epochs + finetune_epochs),
                  "analytic-then-pwlq": AnalyticPWLQConfig(target_size_bytes=target, wbits=wb, abits=ab,
                                                           prune_epochs=epochs, finetune_epochs=finetune_epochs)}
            for name, bcfg in bl.items():
                console.rule(f"[bold]baseline {name}")
                m = baseline_models[name]
                prune_quantize_(m, bcfg, train=train, val=val)
                r = report(m, x1)
                results[name] = {"size_bytes": r.total.bytes, "compression_ratio": r.compression_ratio,
                                 "accuracy": evaluate(m, test)}
    except PrunequantError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from e
    rep.print(console=console)
    t = Table(title="digits test accuracy vs size")
    for c in ("method", "bytes", "ratio", "accuracy"):
        t.add_column(c, justify="left" if c == "method" else "right")
    for name, r in results.items():
        t.add_row(name, f"{r['size_bytes']:,}", f"{fp32_bytes / r['size_bytes']:.1f}x", f"{r['accuracy']:.4f}")
    console.print(t)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps({"results": results, "layers": res.table, "history": res.history,
                                                 "harden": {k: v for k, v in res.harden_info.items()}},
                                                indent=2, default=float))
    rep.to_json(out / "report.json")
    plot_history(res.history, out / "history.png", target)
    save(net, out / "model.safetensors", metadata={"method": "joint", "measures": res.measures})
    console.print(f"wrote {out}/result.json, {out}/report.json, {out}/history.png, {out}/model.safetensors")
