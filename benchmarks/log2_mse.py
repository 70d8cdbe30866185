"""Layer MSE of power-of-two (log2) weights vs symmetric uniform at the same bits, on the trained digits CNN.

Both per output channel, BN folded first (as ``quantize_`` does), no bias correction; ``log2`` searches its scale
over one octave (``Log2Config.scale_search = 8``). Also measures the test accuracy of ``quantize_`` with each
config (weights only, and W/A8). Last output line: one JSON object.

    python benchmarks/log2_mse.py --quick
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer training epochs for the reference model")
    ap.add_argument("--bits", type=int, nargs="+", default=[3, 4])
    args = ap.parse_args()
    torch.set_num_threads(1)
    from prunequant import quantize_
    from prunequant.core.targets import compressible_weights
    from prunequant.data import digits_loaders
    from prunequant.models.reference import train_reference
    from prunequant.quantization import Log2Config, Log2WeightQuant, UniformConfig, fold_batchnorm
    from prunequant.quantization.uniform import quantize_symmetric
    from prunequant.training import evaluate

    model, acc = train_reference("digits_cnn", seed=0, epochs=4 if args.quick else None)
    train, _, test = digits_loaders()
    calib = torch.cat([b[0] for _, b in zip(range(4), train)])  # calibration images from the training split
    folded = copy.deepcopy(model).eval()
    fold_batchnorm(folded)
    rows = []
    for bits in args.bits:
        for ref in compressible_weights(folded):
            w = getattr(ref.module, ref.param_name).detach()
            uni = float(((quantize_symmetric(w, bits, 0) - w) ** 2).mean())
            log2 = float(((Log2WeightQuant.from_weight(w, bits)(w) - w) ** 2).mean())
            rows.append({"layer": ref.key, "wbits": bits, "mse_uniform": uni, "mse_log2": log2,
                         "log2_over_uniform": log2 / uni})
            print(f"{ref.key:18s} W{bits}  uniform {uni:.3e}  log2 {log2:.3e}  ratio {log2 / uni:.2f}")
    accuracy = {"fp32": acc}
    for bits in args.bits:
        for name, cfg in (("uniform", UniformConfig), ("log2", Log2Config)):
            for abits in (None, 8):
                m = copy.deepcopy(model)
                quantize_(m, cfg(wbits=bits, abits=abits, bias_correction=False), calibration_data=calib)
                key = f"{name}-W{bits}" + (f"A{abits}" if abits else "")
                accuracy[key] = evaluate(m, test)
                print(f"{key:16s} accuracy {accuracy[key]:.4f}")
    med = {b: statistics.median(r["log2_over_uniform"] for r in rows if r["wbits"] == b) for b in args.bits}
    print(json.dumps({"benchmark": "log2_mse", "quick": args.quick, "rows": rows, "accuracy": accuracy,
                      **{f"log2_over_uniform_mse_{b}bit_median": med[b] for b in args.bits}}))


if __name__ == "__main__":
    main()
