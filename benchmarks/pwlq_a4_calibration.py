"""W4A4 on the Fashion-MNIST MobileNet-v2-style model: PWLQ vs uniform weights under each activation calibration.

Why this exists: in ``pwlq_accuracy.py`` (top-10-median activation calibration, the paper's) PWLQ loses to uniform
at W4A4 on the MobileNet-v2-style model in 2 of 3 seeds while it wins at W4A8 and W3A8. This script asks whether
the calibration method explains it: same trained model, same 128 calibration images (seeded as there), bias
correction on (the PWLQConfig default), per-channel weights, per-tensor activations, every calibration method.

    .venv/bin/python benchmarks/pwlq_a4_calibration.py --seed 1            # ~3 min on one core
    .venv/bin/python benchmarks/pwlq_a4_calibration.py --quick             # quick-trained model, 1,000 images
    # which layers: each group in turn kept at 8 bits (weights and input feature maps), MSE calibration:
    .venv/bin/python benchmarks/pwlq_a4_calibration.py --seed 1 --calibrations mse --by-layer-group

Last stdout line: {"benchmark": "pwlq_a4_calibration", "rows": [{"calibration", "keep_8bit", "scheme",
"accuracy"}], ...}
"""
from __future__ import annotations

import argparse
import copy
import json
import time

import torch

from prunequant.data import fashion_mnist
from prunequant.models.fashion import evaluate_accuracy, train_fashion_reference
from prunequant.quantization import PWLQConfig
from prunequant.quantization.handler import quantize_weights_

LAYER_GROUPS = {  # fnmatch patterns of the FashionMobileNetV2 module names (conv.0: 1x1 expansion, conv.3: 3x3
    # depthwise, conv.6: 1x1 projection; in the first block, without expansion, conv.0 is the depthwise)
    "none": (),
    "expansion 1x1 (conv.0)": ("features.*.conv.0",),
    "depthwise 3x3 (conv.3)": ("features.*.conv.3",),
    "projection 1x1 (conv.6)": ("features.*.conv.6",),
    "stem, head conv, classifier": ("features.0", "features.16", "classifier"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1, help="training seed of the reference model")
    ap.add_argument("--quick", action="store_true", help="quick-trained model, 1,000 test images")
    ap.add_argument("--test-images", type=int, default=5000)
    ap.add_argument("--wbits", type=int, default=4)
    ap.add_argument("--abits", type=int, default=4)
    ap.add_argument("--calibrations", nargs="+", default=["topk_median", "percentile", "mse"])
    ap.add_argument("--by-layer-group", action="store_true",
                    help="also run with each LAYER_GROUPS entry kept at 8 bits (keep_8bit), per calibration method")
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ds = fashion_mnist(args.data)
    schedule = "quick" if args.quick else "full"
    model, _ = train_fashion_reference("fashion_mobilenetv2", seed=args.seed, schedule=schedule, data=ds)
    g = torch.Generator().manual_seed(1000 + args.seed)  # the calibration images pwlq_accuracy.py uses
    calib = ds.x_train[torch.randperm(len(ds.y_train), generator=g)[:128]]
    n = 1000 if args.quick else args.test_images
    x, y = ds.x_test[:n], ds.y_test[:n]
    rows, t0 = [], time.perf_counter()
    groups = LAYER_GROUPS if args.by_layer_group else {"none": ()}
    for cal in args.calibrations:
        for group, patterns in groups.items():
            for scheme in ("uniform", "pwlq"):
                m = copy.deepcopy(model)
                cfg = PWLQConfig(wbits=args.wbits, abits=args.abits, scheme=scheme, calibration=cal,
                                 calibration_batch_size=16, keep_8bit=patterns)
                quantize_weights_(m, cfg, calibration_data=calib)  # the PTQ transform pwlq_accuracy.py runs
                rows.append({"calibration": cal, "keep_8bit": group, "scheme": scheme,
                             "accuracy": round(evaluate_accuracy(m, x, y), 4)})
                print(f"{cal:12s} 8-bit: {group:28s} {scheme:8s} W{args.wbits}A{args.abits}+BC "
                      f"{rows[-1]['accuracy']:.4f}", flush=True)
    print(json.dumps({"benchmark": "pwlq_a4_calibration", "model": "fashion_mobilenetv2", "seed": args.seed,
                      "schedule": schedule, "test_images": n, "wbits": args.wbits, "abits": args.abits,
                      "bias_correction": True, "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
