"""Demo step ``quantize``: W4A8/W3A8 post-training quantization of the demo's digits CNN: uniform, PWLQ and
power-of-two (docs/pwlq.md, docs/log2.md)."""
from __future__ import annotations

import copy
import json
from typing import Any

import torch


def run(ctx: Any) -> None:
    """Quantize ``ctx.model`` (trained digits CNN) at W4A8 and W3A8 with uniform, PWLQ and log2 (BN folded,
    per-channel, bias correction, top-10 calibration); print the PWLQ layer table, write quantize.json and
    quantize_weights.png (weight histograms with breakpoints and levels)."""
    from ..api import quantize_
    from ..data import digits_splits
    from ..quantization import PWLQConfig
    from ..quantization.log2 import Log2Config
    from ..viz import plot_weight_histograms

    ctx.console.rule("PWLQ post-training quantization (docs/pwlq.md)")
    splits = digits_splits(0)
    g = torch.Generator().manual_seed(ctx.seed)
    x_train = splits["train"].tensors[0]
    calib = x_train[torch.randperm(len(x_train), generator=g)[:512]]
    x_test, y_test = splits["test"].tensors
    out: dict = {"fp32": ctx.accuracy}
    pwlq_model, pwlq_result = None, None
    for wbits in (4, 3):
        for scheme in ("uniform", "pwlq", "log2"):
            model = copy.deepcopy(ctx.model).eval()
            cfg = Log2Config(wbits=wbits, abits=8) if scheme == "log2" else \
                PWLQConfig(wbits=wbits, abits=8, scheme=scheme)
            result = quantize_(model, cfg, calibration_data=calib)
            with torch.no_grad():
                acc = float((model(x_test).argmax(1) == y_test).float().mean())
            mse = sum(r.mse for r in result.layers) / len(result.layers)
            out[f"{scheme}_w{wbits}a8"] = {"accuracy": acc, "mean_layer_mse": mse}
            ctx.console.print(f"W{wbits}A8 {scheme:7s}: test accuracy {acc:.4f} (fp32 {ctx.accuracy:.4f}), "
                              f"mean layer weight MSE {mse:.3g}")
            if scheme == "pwlq" and wbits == 4:
                pwlq_model, pwlq_result = model, result
    ctx.console.table(pwlq_result, title="PWLQ W4A8 per layer")
    plot_weight_histograms(pwlq_model, ctx.out / "quantize_weights.png")
    (ctx.out / "quantize.json").write_text(json.dumps({"summary": out, "pwlq_w4a8": pwlq_result.to_dict()},
                                                      indent=2, default=float))
    ctx.results["quantize"] = out
