"""Per-layer sensitivity and a metric budget (docs/sensitivity.md): rank the layers of a trained model by the
accuracy they lose alone at low bits, let ``plan_from_budget`` keep layers at 8 bits until the validation drop is
within ``--max-drop``, and report what that costs and gives on a held-out test split.

Data: the full run uses the Fashion-MNIST ResNet-style reference (``train_fashion_reference(..., schedule=
"full")``; it must be cached, this script never trains it) with a seeded half of the 10,000 test images as the
validation split (the plan is chosen and checked there) and the other half as the reported test split; 512
training images calibrate. ``--quick`` uses the bundled digits CNN and its validation / test splits instead.

    .venv/bin/python benchmarks/sensitivity_budget.py --quick
    .venv/bin/python benchmarks/sensitivity_budget.py --wbits 2 --no-bias-correction --calibration minmax

Rows: the fp32 model, the config on every layer, the plan without and with the refine pass, and the config at one
more bit on every layer (the plain alternative). Last stdout line: {"benchmark": "sensitivity_budget", "model",
"max_drop", "ranking", "rows": [{"name", "keep_8bit", "val_drop", "test_accuracy", "bytes"}]}
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from prunequant.analysis import compressed_copy, plan_from_budget, report, sensitivity
from prunequant.quantization import PWLQConfig
from prunequant.training.metrics import accuracy


def _data(args):
    if args.quick:
        from prunequant.data import digits_splits
        from prunequant.models.reference import train_reference

        model, _ = train_reference("digits_cnn", seed=0)
        sp = digits_splits(0)
        xt, xv, yv, xs, ys = sp["train"].tensors[0], *sp["val"].tensors, *sp["test"].tensors
        name = "digits_cnn"
    else:
        from prunequant.data.fashion_mnist import fashion_mnist
        from prunequant.models.fashion import train_fashion_reference

        model, _ = train_fashion_reference(args.model, seed=0, schedule="full")
        ds = fashion_mnist()
        perm = torch.randperm(len(ds.x_test), generator=torch.Generator().manual_seed(0))
        half = len(perm) // 2
        xt = ds.x_train
        xv, yv = ds.x_test[perm[:half]], ds.y_test[perm[:half]]
        xs, ys = ds.x_test[perm[half:]], ds.y_test[perm[half:]]
        name = args.model
    calib = xt[torch.randperm(len(xt), generator=torch.Generator().manual_seed(0))[:512]]
    bs = 500

    def batches(x, y):
        return [(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)]

    return name, model.eval(), calib, batches(xv, yv), batches(xs, ys)


@torch.no_grad()
def _acc(model, batches) -> float:
    model.eval()
    return float(torch.cat([(model(x).argmax(1) == y).float() for x, y in batches]).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="digits CNN (bundled data) instead of Fashion-MNIST")
    p.add_argument("--model", default="fashion_resnet", help="fashion_resnet or fashion_mobilenetv2")
    p.add_argument("--wbits", type=int, default=2)
    p.add_argument("--abits", type=int, default=8)
    p.add_argument("--scheme", default="pwlq", choices=("pwlq", "uniform"))
    p.add_argument("--no-bias-correction", action="store_true")
    p.add_argument("--calibration", default="minmax")
    p.add_argument("--max-drop", type=float, default=0.01)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    name, model, calib, val, test = _data(args)
    cfg = PWLQConfig(wbits=args.wbits, abits=args.abits, scheme=args.scheme, calibration=args.calibration,
                     bias_correction=not args.no_bias_correction)
    x1 = val[0][0][:1]
    res = sensitivity(model, cfg, val, accuracy, max_batches=None, calibration=calib)
    t_rank = time.perf_counter() - t0
    for r in res.layers:
        print(f"{r.layer:28s} {r.params:9,d} val drop {100 * r.metric_drop:6.2f} pt  output error "
              f"{r.output_error:.4f}", flush=True)
    base = res.baseline_metric
    rows = [{"name": "fp32", "keep_8bit": [], "val_drop": 0.0, "test_accuracy": _acc(model, test),
             "bytes": report(model, x1).total.bytes_dense}]

    def row(label, c, val_drop):
        m = compressed_copy(model, c, calibration=calib)
        return {"name": label, "keep_8bit": list(getattr(c, "keep_8bit", ())), "val_drop": val_drop,
                "test_accuracy": _acc(m, test), "bytes": report(m, x1).total.bytes}

    whole = base - _acc(compressed_copy(model, cfg, calibration=calib), val)
    rows.append(row(f"{args.scheme} W{args.wbits}A{args.abits}, every layer", cfg, whole))
    plans = {}
    for refine in (False, True):
        c, plan = plan_from_budget(model, cfg, val, accuracy, max_drop=args.max_drop, sensitivity_result=res,
                                   calibration=calib, refine=refine)
        plans[refine] = plan
        label = f"plan {'with' if refine else 'without'} refine ({'met' if plan.feasible else 'NOT met'})"
        rows.append(row(label, c, plan.metric_drop))
        print(plan.message, flush=True)
    more = dataclasses.replace(cfg, wbits=args.wbits + 1)
    rows.append(row(f"{args.scheme} W{args.wbits + 1}A{args.abits}, every layer", more,
                    base - _acc(compressed_copy(model, more, calibration=calib), val)))
    for r in rows:
        print(f"{r['name']:40s} val drop {100 * r['val_drop']:6.2f} pt  test {100 * r['test_accuracy']:6.2f}%  "
              f"{r['bytes']:>10,d} bytes  keep_8bit {', '.join(r['keep_8bit']) or '-'}", flush=True)
    print(json.dumps({"benchmark": "sensitivity_budget", "model": name, "config": dataclasses.asdict(cfg) | {
        "keep_8bit": [], "skip": []}, "max_drop": args.max_drop, "val_samples": sum(len(y) for _, y in val),
        "test_samples": sum(len(y) for _, y in test), "ranking": res.ranking(),
        "steps": plans[True].steps, "seconds_ranking": round(t_rank, 1),
        "seconds": round(time.perf_counter() - t0, 1), "rows": rows}, default=float))


if __name__ == "__main__":
    main()
