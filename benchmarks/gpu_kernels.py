"""Triton weight-only PWLQ / uniform GEMM vs fp16 cuBLAS (torch.matmul) at batch 1..16 on large layers.

Runs only where CUDA and Triton exist; otherwise prints one JSON line saying it was skipped and why. For each
layer size and scheme it first checks the kernel against the pure-torch reference (max relative error), then
times both (CUDA events, median of repeats) with the card named in the output.

    .venv/bin/python benchmarks/gpu_kernels.py [--quick]

Last stdout line: {"benchmark": "gpu_kernels", "device": ..., "rows": [{"shape", "scheme", "batch",
"kernel_ms", "cublas_fp16_ms", "speedup", "max_rel_err"}, ...]} or {"benchmark": "gpu_kernels", "skipped": true,
"reason": ...}.
"""
from __future__ import annotations

import argparse
import json
import statistics

import torch
from torch import nn
from torch.nn.utils import parametrize

from prunequant.export.kernels.weight_only import (
    pack_weight_only,
    triton_available,
    weight_only_matmul_reference,
    weight_only_matmul_triton,
)
from prunequant.quantization.pwlq import PWLQWeightQuant
from prunequant.quantization.uniform import UniformWeightQuant


def cuda_time(fn, repeats: int) -> float:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        ts.append(a.elapsed_time(b))
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    ok, why = triton_available()
    if not ok or not torch.cuda.is_available():
        reason = why if not ok else "no CUDA device (the Triton interpreter checks logic, not speed)"
        print(json.dumps({"benchmark": "gpu_kernels", "skipped": True, "reason": reason}))
        return
    torch.manual_seed(0)
    shapes = [(4096, 4096)] if args.quick else [(4096, 4096), (8192, 8192), (11008, 4096)]
    batches = (1, 16) if args.quick else (1, 4, 16)
    repeats = 20 if args.quick else 50
    rows = []
    for n, k in shapes:
        for scheme in ("pwlq4", "uniform4"):
            layer = nn.Linear(k, n, bias=False)
            w = layer.weight.detach()
            q = PWLQWeightQuant.from_weight(w, 4) if scheme == "pwlq4" else UniformWeightQuant.from_weight(w, 4)
            parametrize.register_parametrization(layer, "weight", q)
            kw = pack_weight_only(layer).to("cuda")
            w16 = layer.weight.detach().to("cuda", torch.float16)
            for b in batches:
                x = torch.randn(b, k, device="cuda")
                ref = weight_only_matmul_reference(x, kw)
                got = weight_only_matmul_triton(x, kw)
                err = float((got - ref).abs().max() / ref.abs().max())
                x16 = x.half()
                t_kernel = cuda_time(lambda x=x, kw=kw: weight_only_matmul_triton(x, kw), repeats)
                t_cublas = cuda_time(lambda x16=x16, w16=w16: x16 @ w16.t(), repeats)
                rows.append({"shape": [n, k], "scheme": scheme, "batch": b, "kernel_ms": round(t_kernel, 4),
                             "cublas_fp16_ms": round(t_cublas, 4), "speedup": round(t_cublas / t_kernel, 3),
                             "max_rel_err": err})
                print(rows[-1])
    print(json.dumps({"benchmark": "gpu_kernels", "device": torch.cuda.get_device_name(0), "rows": rows}))


if __name__ == "__main__":
    main()
