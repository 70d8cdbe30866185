"""Demo step ``joint``: the demo's digits CNN jointly pruned and mixed-precision quantized to 1/32 of its fp32
size with 4-bit feature maps on average (docs/joint.md)."""
from __future__ import annotations

import copy
import json
from typing import Any

import torch

RATIO = 32.0
EPOCHS, FINETUNE = 20, 10


def run(ctx: Any) -> None:
    """Compress ``ctx.model`` to ``fp32 bytes / 32`` (report formula): soft joint phase, hardening, fine-tune;
    print the report and write joint_report.json, joint_history.png and joint_digits_cnn.safetensors."""
    from ..analysis import report
    from ..api import prune_quantize_
    from ..data import digits_loaders
    from ..io import save
    from ..joint import JointConfig
    from ..training import TrainConfig, evaluate
    from ..viz import plot_joint_history

    ctx.console.rule("joint pruning + soft mixed-precision QAT (docs/joint.md)")
    x1 = torch.zeros(1, 1, 8, 8)
    model = copy.deepcopy(ctx.model)
    fp32_bytes = report(model, x1).total.bytes
    target = fp32_bytes / RATIO
    train, val, test = digits_loaders(batch_size=64, seed=ctx.seed)
    cfg = JointConfig(target_size_bytes=target, target_abits=4.0, epochs=EPOCHS, finetune_epochs=FINETUNE)
    res = prune_quantize_(model, cfg, train=train, val=val,
                          train_config=TrainConfig(seed=ctx.seed, progress=False))
    rep = report(model, x1)
    ctx.console.table(rep, title="joint")
    acc = evaluate(model, test)
    ctx.console.print(f"joint: {rep.total.bytes:,} bytes ({rep.compression_ratio:.1f}x smaller than fp32), test "
                      f"accuracy {acc:.4f} (fp32 {ctx.accuracy:.4f}); average weight bits {res.measures['wbits']:.2f}, "
                      f"feature-map bits {res.measures['abits']:.2f}, sparsity {res.measures['sparsity']:.1%}")
    rep.to_json(ctx.out / "joint_report.json")
    plot_joint_history(res.history, ctx.out / "joint_history.png", target)
    save(model, ctx.out / "joint_digits_cnn.safetensors", metadata={"method": "joint", "measures": res.measures})
    out = {"accuracy": acc, "fp32_accuracy": ctx.accuracy, "bytes": rep.total.bytes,
           "compression_ratio": rep.compression_ratio, **{k: float(v) for k, v in res.measures.items()}}
    (ctx.out / "joint.json").write_text(json.dumps({"summary": out, "layers": res.table}, indent=2, default=float))
    ctx.results["joint"] = out
