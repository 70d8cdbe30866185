"""Speed of the vectorized PWLQ breakpoint search vs a per-channel Python loop of the same search.

The stack has ResNet-50's conv/linear shapes (25.5M weights, 26.7k output channels, fan-in 27..4608) filled with
heavy-tailed weights (Student-t, 3 degrees of freedom, random per-channel scales). Both sides run
``find_breakpoints(w, 4, "empirical")`` (1 breakpoint, b-center variant): the vectorized side on each whole
layer, the loop side on one channel at a time (``w[c:c+1]``), which is the same search by construction. The loop
is timed on a subset of each layer's channels (``--loop-channels``) and extrapolated to all channels of that
layer (time per channel x channels); the JSON says so. ``seconds`` is the vectorized time to quantize the
whole stack (breakpoint search + fake quantization); ``speedup_vs_loop`` compares the search alone (wall
clock; ``speedup_vs_loop_cpu_time`` the same with process CPU time, steadier on a shared machine).
The default search scans p/m over the full range 0.001..0.95 (issue 15); ``capped_search_seconds`` times the same
stack with the pre-issue range p/m < 0.5 (``ratio_range=CAPPED_RANGE``), and ``full_over_capped_seconds`` is
their ratio (the goal: no slower, within timing noise on a shared machine).

    .venv/bin/python benchmarks/pwlq_speed.py --quick   # 1/10 of the stack (~2.5M weights)
    .venv/bin/python benchmarks/pwlq_speed.py           # full 25.5M stack; --device cuda on a GPU machine

Last stdout line: {"speedup_vs_loop": ..., "seconds": ..., ...}
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from prunequant.quantization import find_breakpoints, pwlq_quantize
from prunequant.quantization.breakpoints import CAPPED_RANGE


def resnet50_shapes() -> list[tuple[int, ...]]:
    shapes = [(64, 3, 7, 7)]
    cin = 64
    for mid, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        out = mid * 4
        for i in range(blocks):
            shapes += [(mid, cin, 1, 1), (mid, mid, 3, 3), (out, mid, 1, 1)]
            if i == 0:
                shapes.append((out, cin, 1, 1))
            cin = out
    shapes.append((1000, 2048))
    return shapes


def heavy_tailed(shape, g: torch.Generator, device) -> torch.Tensor:
    C = shape[0]
    z = torch.randn(shape, generator=g)
    chi = torch.randn((3,) + tuple(shape), generator=g).pow(2).sum(0) / 3.0
    w = z / chi.sqrt()  # Student-t, 3 dof
    scale = torch.exp(0.5 * torch.randn(C, generator=g)).reshape(C, *([1] * (len(shape) - 1)))
    return (w * scale * (2.0 / (w[0].numel() ** 0.5))).to(device)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="every 10th layer of the stack (~2.5M weights)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--loop-channels", type=int, default=None,
                    help="channels per layer timed in the loop (default 16 quick / 24 full)")
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads for both sides (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(args.seed)
    shapes = resnet50_shapes()
    if args.quick:
        shapes = shapes[::10] + [shapes[-1]]
    loop_ch = args.loop_channels or (16 if args.quick else 24)
    layers = [heavy_tailed(s, g, device) for s in shapes]
    n_params = sum(w.numel() for w in layers)
    n_channels = sum(w.shape[0] for w in layers)
    print(f"stack: {len(layers)} layers, {n_params / 1e6:.2f}M weights, {n_channels} channels on {device}")

    find_breakpoints(layers[1][:4], args.bits)  # warm-up (allocator, kernels)
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    bps = [find_breakpoints(w, args.bits, "empirical") for w in layers]
    _sync(device)
    t_search, c_search = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    for w, p in zip(layers, bps):
        pwlq_quantize(w, args.bits, p)
    _sync(device)
    t_quant = time.perf_counter() - t0
    print(f"vectorized: search {t_search:.2f}s + fake-quantize {t_quant:.2f}s")
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for w in layers:
        find_breakpoints(w, args.bits, "empirical", ratio_range=CAPPED_RANGE)
    _sync(device)
    t_capped, c_capped = time.perf_counter() - t0, time.process_time() - c0
    print(f"capped range p/m < 0.5: search {t_capped:.2f}s (full range / capped = {t_search / t_capped:.2f})")

    t_loop_est, c_loop_est, timed, max_diff = 0.0, 0.0, 0, 0.0
    for w, p in zip(layers, bps):
        idx = torch.linspace(0, w.shape[0] - 1, min(loop_ch, w.shape[0])).round().long().unique()
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        loop_p = [find_breakpoints(w[c:c + 1], args.bits, "empirical") for c in idx.tolist()]
        _sync(device)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        t_loop_est += dt / len(idx) * w.shape[0]
        c_loop_est += dc / len(idx) * w.shape[0]
        timed += len(idx)
        max_diff = max(max_diff, float((torch.cat(loop_p) - p[idx]).abs().max() / p[idx].abs().max()))
    speedup = t_loop_est / t_search
    speedup_cpu = c_loop_est / c_search
    print(f"per-channel loop: {timed} channels timed, extrapolated {t_loop_est:.1f}s for all {n_channels} "
          f"-> speedup {speedup:.1f}x wall, {speedup_cpu:.1f}x process CPU time "
          f"(same breakpoints: max rel. diff {max_diff:.2e})")
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(json.dumps({"benchmark": "pwlq_speed", "quick": args.quick, "device": str(device), "device_name": dev_name,
                      "threads": torch.get_num_threads(), "params": n_params, "channels": n_channels,
                      "layers": len(layers), "bits": args.bits, "method": "empirical",
                      "seconds": round(t_search + t_quant, 3), "search_seconds": round(t_search, 3),
                      "quantize_seconds": round(t_quant, 3), "loop_seconds_extrapolated": round(t_loop_est, 2),
                      "loop_channels_timed": timed,
                      "loop_note": "per-channel loop timed on an evenly spaced subset of each layer's channels "
                                   "and extrapolated linearly to all channels of the layer",
                      "loop_max_rel_breakpoint_diff": max_diff, "speedup_vs_loop": round(speedup, 1),
                      "search_cpu_seconds": round(c_search, 3), "loop_cpu_seconds_extrapolated": round(c_loop_est, 2),
                      "speedup_vs_loop_cpu_time": round(speedup_cpu, 1),
                      "timing_note": "speedup_vs_loop is wall-clock; speedup_vs_loop_cpu_time uses process CPU time "
                                     "(less sensitive to other processes on a shared machine; with --device cuda "
                                     "it does not count GPU time)",
                      "search_range": [0.001, 0.95], "capped_search_seconds": round(t_capped, 3),
                      "full_over_capped_seconds": round(t_search / t_capped, 3),
                      "capped_search_cpu_seconds": round(c_capped, 3),
                      "full_over_capped_cpu_seconds": round(c_search / c_capped, 3),
                      "goal_speedup_20x": speedup >= 20}))


if __name__ == "__main__":
    main()
