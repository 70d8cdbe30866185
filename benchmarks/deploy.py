"""Deployment benchmark: latency and bytes of dense fp32 vs sparse vs int8 vs PWLQ paths on this CPU.

For single Linear and Conv2d layers and for the reference models (random init: speed and size do not depend on
training), at batch 1 and 64:

* ``dense_fp32``      the plain layer/model (baseline, measured in the same run);
* ``sparse_csr``      magnitude-pruned to 50/80/90/95 %, every layer forced to the CSR path;
* ``int8_torch``      8-bit symmetric uniform weights, int8 path (torch.ao quantized engine, activations int8);
* ``pwlq_int8``       4-bit PWLQ (1 breakpoint, empirical), forced to the int8-branch path;
* ``pwlq_dequant_ref`` (Linear layers up to 2048x2048) the weight-only reference (dequantize packed codes every
  call + fp32 GEMM),
  i.e. what the Triton kernel fuses on GPU - on CPU it only shows the unfused cost;
* ``pwlq_sparse90_auto`` 90 % pruned + 4-bit PWLQ with the automatic per-layer choice;
* ``dense_fp32_ort`` / ``int8_ort`` the fp32 model in onnxruntime, and onnxruntime's own static int8 QDQ
  quantization of it (calibrated on the batch-64 input); ``speedup_vs_dense`` is still vs PyTorch fp32, the goals
  also give int8_ort vs dense_fp32_ort (same runtime). Bytes of these rows are the ONNX file sizes.

Latency: median of interleaved repeats (all paths of a row group take turns each repeat, so drift from other
processes on the shared CPU hits them alike); 1 thread by default. Bytes: the packed artifact
(:func:`prunequant.export.export`) vs the fp32 bytes of the same tensors; dense rows use the artifact of the plain
model. Timings on a shared 2-core machine are noisy: compare rows of one run, not across runs.

    .venv/bin/python benchmarks/deploy.py --quick     # 2048x2048 as the large layer, 21 repeats, 45-80 s
    .venv/bin/python benchmarks/deploy.py             # 4096x4096, 41 repeats, ~10 min on the shared CPU

Last stdout line: {"benchmark": "deploy", "rows": [{"model", "path", "sparsity", "batch", "latency_ms",
"speedup_vs_dense", "bytes", "size_ratio"}, ...], "goals": {...}, ...}
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from prunequant.export import export, optimize
from prunequant.export.kernels.weight_only import WeightOnlyLinear
from prunequant.export.ort_runtime import ort_fp32, ort_int8
from prunequant.models import build_model
from prunequant.pruning.base import apply_mask_, prunable_modules
from prunequant.quantization.pwlq import PWLQWeightQuant
from prunequant.quantization.uniform import UniformWeightQuant

SPARSITIES = (0.5, 0.8, 0.9, 0.95)


def time_interleaved(fns: dict[str, callable], repeats: int, warmup: int = 3) -> dict[str, float]:
    """Median ms per function; each repeat calls every function once, in turn."""
    with torch.no_grad():
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        times = {k: [] for k in fns}
        for _ in range(repeats):
            for k, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def compress(model: nn.Module, sparsity: float = 0.0, quant: str | None = None) -> nn.Module:
    """Per-layer magnitude mask, then a weight quantizer: ``uniform8`` or ``pwlq4``."""
    for name, mod, pname in prunable_modules(model):
        w = getattr(mod, pname).detach()
        if sparsity:
            k = max(1, int(sparsity * w.numel()))
            thr = w.abs().flatten().kthvalue(k).values
            apply_mask_(mod, pname, w.abs() > thr, layer_name=name)
        w = getattr(mod, pname).detach()
        if quant == "uniform8":
            parametrize.register_parametrization(mod, pname, UniformWeightQuant.from_weight(w, 8))
        elif quant == "pwlq4":
            parametrize.register_parametrization(mod, pname, PWLQWeightQuant.from_weight(w, 4))
    return model.eval()


def artifact_bytes(model: nn.Module, tmp: Path) -> tuple[int, int]:
    res = export(model, tmp / "a.pq")
    return res.file_bytes, res.fp32_bytes


def bench_unit(label: str, make, x_by_batch: dict[int, torch.Tensor], repeats: int, tmp: Path) -> list[dict]:
    """Rows for one layer or model: every path at every batch size, dense measured alongside."""
    variants: dict[str, tuple[nn.Module, float, str | None]] = {"dense_fp32": (make(), 0.0, None)}
    for s in SPARSITIES:
        variants[f"sparse_csr_{int(s * 100)}"] = (compress(make(), s), s, "sparse")
    variants["int8_torch"] = (compress(make(), 0.0, "uniform8"), 0.0, "int8")
    variants["pwlq_int8"] = (compress(make(), 0.0, "pwlq4"), 0.0, "pwlq")
    variants["pwlq_sparse90_auto"] = (compress(make(), 0.9, "pwlq4"), 0.9, "auto")
    sizes = {k: artifact_bytes(m, tmp) for k, (m, _, _) in variants.items()}
    calib = x_by_batch[max(x_by_batch)]
    ort_mods = {"dense_fp32_ort": ort_fp32(make(), calib), "int8_ort": ort_int8(make(), calib)}
    fp32_bytes = sizes["dense_fp32"][1]
    for k, mod in ort_mods.items():
        sizes[k] = (mod.nbytes, fp32_bytes)
    rows = []
    for batch, x in x_by_batch.items():
        fns, meta = {}, {}
        for k, (m, s, force) in variants.items():
            if force is None:
                fast = m
            elif force == "auto":
                fast, _ = optimize(m, x, repeats=5)
            else:
                fast, _ = optimize(m, x, force=force, repeats=1)
            fns[k] = (lambda f=fast, x=x: f(x))
            meta[k] = s
        for k, mod in ort_mods.items():
            fns[k] = (lambda f=mod, x=x: f(x))
            meta[k] = 0.0
        pwlq_model = variants["pwlq_int8"][0]
        # the unfused reference takes seconds per call on a 4096x4096 layer: only the smaller layers get this row
        if isinstance(pwlq_model, nn.Sequential) and len(pwlq_model) == 1 and isinstance(pwlq_model[0], nn.Linear) \
                and pwlq_model[0].weight.numel() <= 2 ** 22:
            wo = WeightOnlyLinear.from_module(pwlq_model[0])
            fns["pwlq_dequant_ref"] = lambda wo=wo, x=x: wo(x)
            meta["pwlq_dequant_ref"] = 0.0
            sizes["pwlq_dequant_ref"] = sizes["pwlq_int8"]
        times = time_interleaved(fns, repeats)
        base = times["dense_fp32"]
        for k, t in times.items():
            name = k.rsplit("_", 1)[0] if k.startswith("sparse_csr_") else k
            b, fp32 = sizes[k]
            rows.append({"model": label, "path": name, "sparsity": meta[k], "batch": batch,
                         "latency_ms": round(t, 4), "speedup_vs_dense": round(base / t, 3), "bytes": b,
                         "size_ratio": round(b / fp32, 4)})
    return rows


def _wrap(layer_factory):
    """Layers are exported inside a Sequential so the artifact has a model around them."""
    def make():
        torch.manual_seed(0)
        return nn.Sequential(layer_factory()).eval()
    return make


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller large layer, fewer repeats (< 3 min)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t_start = time.perf_counter()
    repeats = 21 if args.quick else 41
    big = 2048 if args.quick else 4096
    units = [
        ("linear_1024x1024", _wrap(lambda: nn.Linear(1024, 1024)), lambda b: torch.randn(b, 1024)),
        (f"linear_{big}x{big}", _wrap(lambda: nn.Linear(big, big)), lambda b: torch.randn(b, big)),
        ("conv_64x64_3x3_16px", _wrap(lambda: nn.Conv2d(64, 64, 3, padding=1)),
         lambda b: torch.randn(b, 64, 16, 16)),
        ("digits_cnn", lambda: build_model("digits_cnn").eval(), lambda b: torch.rand(b, 1, 8, 8)),
        ("mlp", lambda: build_model("mlp").eval(), lambda b: torch.rand(b, 1, 8, 8)),
        ("mlp_1024x1024", lambda: build_model("mlp", hidden=(1024, 1024)).eval(), lambda b: torch.rand(b, 1, 8, 8)),
    ]
    units.append(("resnet_small", lambda: build_model("resnet_small").eval(), lambda b: torch.rand(b, 1, 8, 8)))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as d:
        for label, make, inp in units:
            t0 = time.perf_counter()
            unit_rows = bench_unit(label, make, {1: inp(1), 64: inp(64)}, repeats, Path(d))
            rows += unit_rows
            print(f"{label}: {time.perf_counter() - t0:.1f}s")
            for r in unit_rows:
                print(f"  b={r['batch']:<3} {r['path']:<20} s={r['sparsity']:<5} {r['latency_ms']:9.4f} ms  "
                      f"x{r['speedup_vs_dense']:<6} {r['bytes']:>9} B  ratio {r['size_ratio']}")

    def pick(model, path, batch, sparsity=None):
        for r in rows:
            if r["model"] == model and r["path"] == path and r["batch"] == batch and \
                    (sparsity is None or abs(r["sparsity"] - sparsity) < 1e-9):
                return r
        return None

    sp90 = {m: pick(m, "sparse_csr", 1, 0.9)["speedup_vs_dense"] for m in ("linear_1024x1024", f"linear_{big}x{big}")}
    int8 = {f"{m}_b{b}": pick(m, "int8_torch", b)["speedup_vs_dense"]
            for m in ("digits_cnn", "mlp", "mlp_1024x1024") for b in (1, 64)}
    pwlq_size = {m: pick(m, "pwlq_int8", 1)["size_ratio"] for m, *_ in units}
    int8_ort = {f"{m}_b{b}": round(pick(m, "dense_fp32_ort", b)["latency_ms"] / pick(m, "int8_ort", b)["latency_ms"], 3)
                for m in ("digits_cnn", "mlp", "mlp_1024x1024") for b in (1, 64)}
    goals = {
        "sparse90_linear_b1_speedup": sp90,
        "sparse90_linear_b1_ge_2x": {m: v >= 2.0 for m, v in sp90.items()},
        "int8_speedup": int8,
        "int8_ge_1.5x_on_digits_cnn_or_wide_mlp": any(int8[k] >= 1.5 for k in int8 if not k.startswith("mlp_b")),
        "int8_ort_speedup_vs_ort_fp32": int8_ort,
        "pwlq4_size_ratio": pwlq_size,
        "pwlq4_size_le_0.17": {m: v <= 0.17 for m, v in pwlq_size.items()},
        "gpu_kernel": "see benchmarks/gpu_kernels.py (needs CUDA + Triton)",
    }
    out = {"benchmark": "deploy", "quick": args.quick, "threads": args.threads, "repeats": repeats,
           "timing": "median of interleaved repeats, shared CPU: noisy", "rows": rows, "goals": goals,
           "seconds": round(time.perf_counter() - t_start, 1)}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
