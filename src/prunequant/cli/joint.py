"""``prunequant joint MODEL``: joint pruning + soft mixed-precision QAT of the user's model on the user's data."""
from __future__ import annotations

from pathlib import Path

import typer

from . import common


def _ints(text: str | None, what: str) -> list[int] | None:
    from ..errors import ConfigError

    if text is None:
        return None
    try:
        vals = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        vals = []
    if not vals:
        raise ConfigError(f"{what}: expected integers separated by commas, e.g. 2,3,4,6,8; got {text!r}")
    return vals


def joint(
    model: str = typer.Argument("digits_cnn", help=common.MODEL_HELP),
    ratio: float | None = typer.Option(None, "--ratio", help="Target compression vs fp32 (report bytes); e.g. 32."),
    size_bytes: float | None = typer.Option(None, "--size-bytes", help="Target model size in bytes (report formula)."),
    wbits: float | None = typer.Option(None, "--wbits", help="Target average weight bits."),
    abits: float | None = typer.Option(None, "--abits", help="Target average feature-map bits."),
    sparsity: float | None = typer.Option(None, "--sparsity", help="Target global weight sparsity in (0, 1)."),
    bops: float | None = typer.Option(None, "--bops", help="Target bit-operations per sample."),
    weight_bits: str | None = typer.Option(None, "--weight-bits", help="Weight candidates (0 = remove layer), "
                                                                       "e.g. 3,4,6,8."),
    act_bits: str | None = typer.Option(None, "--act-bits", help="Feature-map candidates, e.g. 2,3,4,6,8."),
    scheme: str | None = typer.Option(None, "--scheme", help="Weight quantizer per candidate: uniform or pwlq."),
    granularity: str | None = typer.Option(None, help="Weight scales per tensor or channel."),
    mix_granularity: str | None = typer.Option(None, "--mix", help="Mixture π per layer or channel."),
    epochs: int | None = typer.Option(None, help="Soft joint epochs (default 20)."),
    finetune_epochs: int | None = typer.Option(None, "--finetune-epochs", help="Epochs with bits and masks fixed."),
    sets: list[str] | None = common.SET,
    weights: Path | None = common.WEIGHTS,
    data: str = common.DATA, val: str | None = common.VAL, test: str | None = common.TEST,
    target: str | None = common.TARGET, task: str = common.TASK, loss: str | None = common.LOSS,
    metric: str | None = common.METRIC, input_shape: str | None = common.INPUT_SHAPE,
    batch_size: int = common.BATCH,
    out: Path = typer.Option(Path("joint_out"), "--out", help="Output folder."),  # noqa: B008
    seed: int = common.SEED,
) -> None:
    """Joint pruning + mixed-precision QAT of MODEL to a target (--ratio, --size-bytes, --wbits, --abits, ...).

    Give at least one of --ratio, --size-bytes, --wbits, --abits, --sparsity, --bops. Every argument is validated
    before training starts; outputs as for `prunequant run`."""
    from ..errors import ConfigError

    if all(v is None for v in (ratio, size_bytes, wbits, abits, sparsity, bops)):
        raise ConfigError("give at least one target: --ratio, --size-bytes, --wbits, --abits, --sparsity or --bops")
    if ratio is not None and size_bytes is not None:
        raise ConfigError("give --ratio or --size-bytes, not both")
    if ratio is not None and ratio <= 1:
        raise ConfigError(f"--ratio must be > 1, got {ratio}")
    mblock = common.model_block(model, weights, input_shape)
    dblock = common.data_block(data, val, test, target, task, loss, metric, batch_size)
    if ratio is not None:
        size_bytes = _fp32_bytes(mblock, dblock) / ratio
    body = {"method": "joint", "target_size_bytes": size_bytes, "target_wbits": wbits, "target_abits": abits,
            "target_sparsity": sparsity, "target_bops": bops, "weight_bits": _ints(weight_bits, "--weight-bits"),
            "act_bits": _ints(act_bits, "--act-bits"), "weight_scheme": scheme, "granularity": granularity,
            "mix_granularity": mix_granularity, "epochs": epochs, "finetune_epochs": finetune_epochs}
    body = {k: v for k, v in body.items() if v is not None}
    body.update(common.parse_sets(sets))
    raw = {"seed": seed, "model": mblock, "data": dblock, "steps": [{"joint": body}]}
    common.run_and_print(raw, out, f"joint compression of {model}")


def _fp32_bytes(mblock: dict, dblock: dict) -> float:
    """fp32 bytes of the model's architecture (report formula), without training a reference model."""
    import torch

    from ..analysis import report
    from ..workflow import check_data_source, check_model_source, load_split
    from ..workflow.models import build_model_from

    src = check_model_source(next(v for k, v in mblock.items() if k in ("factory", "reference", "hf", "file")),
                             mblock.get("weights"))
    if src.kind == "reference":
        from ..models import build_model

        net = build_model(src.spec)
    else:
        net = build_model_from(src)
    if "input_shape" in mblock:
        x = torch.zeros(mblock["input_shape"])
    else:
        ds = check_data_source(train=dblock["train"], task=dblock["task"], target=dblock.get("target"))
        x = load_split(ds, "train")[0][0].unsqueeze(0)
    return float(report(net, x).total.bytes_dense)
