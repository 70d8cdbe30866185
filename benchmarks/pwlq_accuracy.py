"""Post-training quantization accuracy on Fashion-MNIST (the paper's comparison on real images).

Models: the Fashion-MNIST reference models ``fashion_resnet`` (ResNet-style, 1.2M parameters) and
``fashion_mobilenetv2`` (MobileNet-v2-style, inverted residuals with depthwise convs, 1.7M parameters), trained by
``prunequant.models.fashion.train_fashion_reference`` and cached on disk by seed. Every method quantizes the very
same trained weights with the same calibration images (random training images, seeded) and is scored on the same
test images, in one run:

* ``fp32``;
* ``uniform`` / ``pwlq1`` / ``pwlq2`` (PWLQ with 1 / 2 breakpoints), each with and without bias correction
  (``+bc``), at W4A8, W3A8, W4A4 (equal nominal bits), and ``uniform`` at W5A8 (equal storage with PWLQ-4: PWLQ-b
  stores a b-bit code plus a region bit; uniform W4A8 is the equal-storage match of PWLQ-3). The project's
  pipeline: BN folded, per-channel weights, per-layer activations calibrated by top-10 median (``--calibration``; the
  library default ``auto`` is ~6x slower to calibrate);
* ``torch_ao``: PyTorch's FX graph-mode PTQ (per-channel symmetric weights cut to the bit width, histogram
  activation observers, int8 kernels);
* ``brevitas_gptq+bc``: Brevitas (benchmark-only dependency, ``pip install brevitas``) graph quantization with
  per-channel float-scale weights at the bit width, GPTQ, then Brevitas' bias correction, activations per-tensor
  at ``abits``.

``bits_per_weight`` is all-in over the quantized layers: codes, PWLQ region bits and every per-channel scale /
offset / breakpoint (``prunequant.core.cost.weight_storage_bits`` for the project's quantizers; per-channel fp32
scale (+ int zero point for torch.ao) for the peers).

    .venv/bin/python benchmarks/pwlq_accuracy.py --quick   # 1 seed, quick-trained models, 1,000 test images
    .venv/bin/python benchmarks/pwlq_accuracy.py           # 3 seeds, --schedule full, all 10,000 test images
    # models trained elsewhere, wait for them, end by 10:50 UTC (skips a seed that would not finish):
    .venv/bin/python benchmarks/pwlq_accuracy.py --cached-only --finish-by 10:50 --test-images 2000
    # seeds run as separate processes (one per core), then merged into one result:
    .venv/bin/python benchmarks/pwlq_accuracy.py --models fashion_mobilenetv2 --seed-list 1 --out out/s1
    .venv/bin/python benchmarks/pwlq_accuracy.py --merge a.json out/s1/pwlq_accuracy_fashion_mobilenetv2.json

The JSON is rewritten after every (model, seed), so an interrupted run keeps what it measured.

Last stdout line: {"benchmark": "pwlq_accuracy", "rows": [{"dataset", "model", "method", "wbits", "abits",
"bits_per_weight", "accuracy", ...}], "comparisons": [...], ...}
"""
from __future__ import annotations

import argparse
import copy
import datetime
import hashlib
import json
import math
import statistics
import time
import warnings
from pathlib import Path

import torch

from prunequant.core.chain import WeightChain
from prunequant.core.cost import weight_storage_bits
from prunequant.data import fashion_mnist
from prunequant.models.fashion import evaluate_accuracy, train_fashion_reference
from prunequant.pruning.base import prunable_modules
from prunequant.quantization import PWLQConfig
from prunequant.quantization.calibration import CALIBRATION_METHODS
from prunequant.quantization.handler import quantize_weights_
from prunequant.storage import atomic_write_bytes

NOMINAL = ((4, 8), (3, 8), (4, 4))
MODELS = ("fashion_resnet", "fashion_mobilenetv2")


def accuracy(model, x, y) -> float:
    return evaluate_accuracy(model, x, y)


def ours_bits_per_weight(model) -> float:
    """All-in bits per weight over the quantized weights of a model quantized by ``quantize_``."""
    bits = n = 0
    for _, module, pname in prunable_modules(model):
        q = WeightChain(module, pname).quantizer
        if q is None:
            continue
        w = getattr(module, pname).detach()
        bits += weight_storage_bits(w, q)
        n += w.numel()
    return bits / max(1, n)


def peer_bits_per_weight(model, wbits: int, state_bits_per_channel: int) -> float:
    """b bits per weight + per-channel state (fp32 scale, plus zero point where the peer stores one)."""
    bits = n = 0
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            bits += m.weight.numel() * wbits + m.weight.shape[0] * state_bits_per_channel
            n += m.weight.numel()
    return bits / max(1, n)


def torch_ao_ptq(model, wbits: int, abits: int, calib: torch.Tensor, example: torch.Tensor):
    """torch.ao FX PTQ: per-channel symmetric weights in [-2^(w-1), 2^(w-1)-1], activations quint8 cut to
    [0, 2^a - 1] with a histogram observer, converted to quantized kernels (x86/fbgemm)."""
    from torch.ao.quantization import QConfig, QConfigMapping
    from torch.ao.quantization.observer import HistogramObserver, PerChannelMinMaxObserver
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    qc = QConfig(activation=HistogramObserver.with_args(dtype=torch.quint8, quant_min=0, quant_max=2 ** abits - 1),
                 weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                                                           quant_min=-(2 ** (wbits - 1)),
                                                           quant_max=2 ** (wbits - 1) - 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(copy.deepcopy(model).eval(), QConfigMapping().set_global(qc), example_inputs=(example,))
        with torch.no_grad():
            for xb in calib.split(32):
                prepared(xb)
        return convert_fx(prepared)


def brevitas_gptq(model, wbits: int, abits: int, calib: torch.Tensor):
    """Brevitas graph PTQ: BN merged, per-channel weights at ``wbits`` (float scales), per-tensor activations at
    ``abits``, activation calibration, GPTQ layer by layer, then Brevitas' bias correction."""
    from brevitas.graph.calibrate import bias_correction_mode, calibration_mode
    from brevitas.graph.gptq import gptq_mode
    from brevitas.graph.quantize import (
        COMPUTE_LAYER_MAP,
        QUANT_ACT_MAP,
        QUANT_IDENTITY_MAP,
        preprocess_for_quantize,
        quantize,
    )
    from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerChannelFloat, Uint8ActPerTensorFloat

    wq = Int8WeightPerChannelFloat.let(bit_width=wbits)
    sa = Int8ActPerTensorFloat.let(bit_width=abits)
    ua = Uint8ActPerTensorFloat.let(bit_width=abits)

    def swap(spec):
        if spec is None:
            return None
        cls, kw = spec
        kw = dict(kw)
        if "weight_quant" in kw:
            kw["weight_quant"] = wq
        for key in ("act_quant", "input_quant"):
            if key in kw:
                kw[key] = ua if "Uint" in getattr(kw[key], "__name__", "") else sa
        return cls, kw

    layer_map = {k: swap(v) for k, v in COMPUTE_LAYER_MAP.items()}
    act_map = {k: swap(v) for k, v in QUANT_ACT_MAP.items()}
    ident_map = {k: swap(v) for k, v in QUANT_IDENTITY_MAP.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = preprocess_for_quantize(copy.deepcopy(model).eval())  # traces, merges BN, ReLU6 -> ReLU
        q = quantize(g, quant_identity_map=ident_map, compute_layer_map=layer_map, quant_act_map=act_map)
        batches = calib.split(64)
        with torch.no_grad():
            with calibration_mode(q):
                for xb in batches:
                    q(xb)
            with gptq_mode(q, use_quant_activations=True) as gptq:
                for _ in range(gptq.num_layers):
                    for xb in batches:
                        gptq.model(xb)
                    gptq.update()
            with bias_correction_mode(q):
                for xb in batches:
                    q(xb)
    return q.eval()


def reference_path(name: str, seed: int, schedule: str) -> Path:
    """Cache file ``train_fashion_reference`` writes for (name, width 1, seed, schedule) (same key and hash), so
    that ``--cached-only`` can wait for a model trained elsewhere instead of training it here."""
    from prunequant.models.fashion import SCHEDULES, cache_dir

    key = json.dumps({"name": name, "width": 1.0, "seed": seed, **SCHEDULES[schedule]}, sort_keys=True)
    tag = hashlib.sha256(key.encode()).hexdigest()[:10]
    return cache_dir() / "fashion" / f"{name}-w1-s{seed}-{tag}.safetensors"


def run_model_seed(name, seed, args, ds, schedule, x_test, y_test, n_calib, record, acc) -> None:
    """Every method on one trained model (one seed): records accuracies and all-in bits per weight."""
    model, _ = train_fashion_reference(name, seed=seed, schedule=schedule, data=ds)
    g = torch.Generator().manual_seed(1000 + seed)
    calib = ds.x_train[torch.randperm(len(ds.y_train), generator=g)[:n_calib]]
    record((name, "fp32", 32, 32), accuracy(model, x_test, y_test), 32.0)
    settings = [(wb, ab, s) for wb, ab in NOMINAL for s in ("uniform", "pwlq1", "pwlq2")] + \
               [(5, 8, "uniform")]
    if args.minimal:
        settings = [(4, 8, "uniform"), (4, 8, "pwlq1"), (3, 8, "uniform"), (3, 8, "pwlq1"), (5, 8, "uniform")]
    t0 = time.perf_counter()
    for wb, ab, scheme in settings:
        for bc in ((True,) if args.minimal else (False, True)):
            m = copy.deepcopy(model)
            cfg = PWLQConfig(wbits=wb, abits=ab, scheme="uniform" if scheme == "uniform" else "pwlq",
                             n_breakpoints=2 if scheme == "pwlq2" else 1, bias_correction=bc,
                             calibration=args.calibration, calibration_batch_size=16)
            # the PTQ transform behind quantize_ (no post-hoc fidelity pass, which costs extra forwards)
            quantize_weights_(m, cfg, calibration_data=calib)
            key = (name, scheme + ("+bc" if bc else ""), wb, ab)
            record(key, accuracy(m, x_test, y_test), ours_bits_per_weight(m))
            print(f"  {name} s{seed} {key[1]} W{wb}A{ab}: {acc[key][-1]:.4f}", flush=True)
    print(f"{name} seed {seed}: project methods done ({time.perf_counter() - t0:.0f}s)", flush=True)
    if args.no_peers:
        return
    for wb, ab in (NOMINAL[:1] if args.minimal else NOMINAL):
        try:
            q = torch_ao_ptq(model, wb, ab, calib, x_test[:1])
            record((name, "torch_ao", wb, ab), accuracy(q, x_test, y_test), peer_bits_per_weight(model, wb, 32 + 32))
        except Exception as e:  # noqa: BLE001 - report where torch.ao does not apply
            record((name, "torch_ao", wb, ab), float("nan"), float("nan"))
            print(f"torch.ao PTQ failed for {name} W{wb}A{ab}: {e}")
    for wb, ab in (() if args.minimal else ((4, 8), (3, 8))):
        try:
            q = brevitas_gptq(model, wb, ab, calib)
            record((name, "brevitas_gptq+bc", wb, ab), accuracy(q, x_test, y_test), peer_bits_per_weight(model, wb, 32))
        except Exception as e:  # noqa: BLE001 - report where the peer does not apply
            record((name, "brevitas_gptq+bc", wb, ab), float("nan"), float("nan"))
            print(f"Brevitas GPTQ failed for {name} W{wb}A{ab}: {type(e).__name__}: {e}")
    print(f"{name} seed {seed}: peers done ({time.perf_counter() - t0:.0f}s)", flush=True)


def summarize(acc, bpw, seeds_done, models, args, schedule, n_test, n_calib, skipped, seconds) -> dict:
    rows = []
    for (name, method, wb, ab), vals in acc.items():
        ok = [v for v in vals if not math.isnan(v)]
        rows.append({"dataset": "fashion_mnist", "model": name, "method": method, "wbits": wb, "abits": ab,
                     "bits_per_weight": round(bpw[(name, method, wb, ab)], 4),
                     "accuracy": round(statistics.mean(ok), 4) if ok else None,
                     "seeds": seeds_done[name], "accuracy_per_seed": [round(v, 4) for v in vals],
                     "accuracy_std": round(statistics.stdev(ok), 4) if len(ok) > 1 else None})
    by = {(r["model"], r["method"], r["wbits"], r["abits"]): r["accuracy"] for r in rows}
    models = [n for n in models if seeds_done.get(n)]
    comparisons = []
    for name in models:
        for scheme in ("pwlq1", "pwlq2"):
            for bc in ("", "+bc"):
                for wb, ab in NOMINAL:  # equal nominal bits
                    if (name, scheme + bc, wb, ab) not in by:
                        continue
                    u, p = by[(name, "uniform" + bc, wb, ab)], by[(name, scheme + bc, wb, ab)]
                    comparisons.append({"model": name, "kind": "equal_nominal_bits", "pwlq": f"{scheme}{bc} W{wb}A{ab}",
                                        "uniform": f"uniform{bc} W{wb}A{ab}", "pwlq_acc": p, "uniform_acc": u,
                                        "margin": round(p - u, 4)})
                for wb in (4, 3):  # equal storage: PWLQ-b (1 breakpoint: b + 1 bits) vs uniform-(b+1)
                    if scheme != "pwlq1" or (name, scheme + bc, wb, 8) not in by:
                        continue
                    u, p = by[(name, "uniform" + bc, wb + 1, 8)], by[(name, scheme + bc, wb, 8)]
                    comparisons.append({"model": name, "kind": "equal_storage", "pwlq": f"{scheme}{bc} W{wb}A8",
                                        "uniform": f"uniform{bc} W{wb + 1}A8", "pwlq_acc": p, "uniform_acc": u,
                                        "margin": round(p - u, 4)})
    peer_cmp = []
    for name in models:
        for wb in (4, 3):
            peer = by.get((name, "brevitas_gptq+bc", wb, 8))
            ours = by.get((name, "pwlq1+bc", wb, 8))
            if ours is None:
                continue
            peer_cmp.append({"model": name, "wbits": wb, "abits": 8, "pwlq1+bc": ours, "brevitas_gptq+bc": peer,
                             "pwlq_ahead": None if peer is None else ours > peer})
    nominal = [c for c in comparisons if c["kind"] == "equal_nominal_bits" and c["pwlq"].startswith("pwlq1")]
    storage = [c for c in comparisons if c["kind"] == "equal_storage"]
    margin = {n: statistics.mean(c["margin"] for c in nominal if c["model"] == n) for n in models
              if any(c["model"] == n for c in nominal)}
    fp = {n: by[(n, "fp32", 32, 32)] for n in models}
    return {"benchmark": "pwlq_accuracy", "dataset": "fashion_mnist", "quick": args.quick, "minimal": args.minimal,
            "seeds": seeds_done, "schedule": schedule, "test_images": n_test,
            "calibration": f"{n_calib} random train images (seeded by training seed), activations "
                           f"calibration={args.calibration!r}, batch 16",
            "skipped": skipped, "fp32": fp, "rows": rows, "comparisons": comparisons, "peer_comparisons": peer_cmp,
            "mean_pwlq_margin_equal_nominal_bits": {k: round(v, 4) for k, v in margin.items()},
            "goal_pwlq_ahead_of_uniform_equal_nominal_all": all(c["margin"] > 0 for c in nominal),
            "goal_widest_margin_on_depthwise": margin["fashion_mobilenetv2"] > margin["fashion_resnet"]
            if len(margin) == 2 else None,
            "goal_pwlq_bc_ahead_of_peer": all(c["pwlq_ahead"] for c in peer_cmp if c["pwlq_ahead"] is not None)
            if any(c["pwlq_ahead"] is not None for c in peer_cmp) else None,
            "goal_pwlq_not_behind_uniform_equal_storage": all(c["margin"] >= 0 for c in storage),
            "equal_storage_wins": sum(c["margin"] >= 0 for c in storage), "equal_storage_count": len(storage),
            "seconds": round(seconds, 1)}


def merge_results(paths: list[Path], out: Path) -> dict:
    """Merge the rows of several result files per (model, seed) and recompute every comparison and goal.

    Raises:
        SystemExit: a file is missing or not a pwlq_accuracy result, the files were measured on different test
            images / calibration / schedule, or two files disagree on the same (model, seed).
    """
    per_seed: dict[tuple, dict[int, float]] = {}
    bpw: dict[tuple, float] = {}
    seeds: dict[str, set[int]] = {}
    setup, quick, minimal, secs, skipped = None, False, False, 0.0, []
    for p in paths:
        if not Path(p).is_file():
            raise SystemExit(f"--merge: no such file {p}")
        d = json.loads(Path(p).read_text())
        if d.get("benchmark") != "pwlq_accuracy" or "rows" not in d:
            raise SystemExit(f"--merge: {p} is not a pwlq_accuracy result")
        this = (d["schedule"], d["test_images"], d["calibration"])
        if setup is not None and this != setup:
            raise SystemExit(f"--merge: {p} was measured with {this}, the first file with {setup}")
        setup, quick, minimal = this, quick or d["quick"], minimal or d["minimal"]
        secs += d.get("seconds", 0.0)
        skipped += d.get("skipped", [])
        for r in d["rows"]:
            key = (r["model"], r["method"], r["wbits"], r["abits"])
            bpw[key] = r["bits_per_weight"]
            for s, v in zip(r["seeds"], r["accuracy_per_seed"]):
                old = per_seed.setdefault(key, {}).get(s)
                if old is not None and not (math.isnan(old) and math.isnan(v)) and abs(old - v) > 1e-9:
                    raise SystemExit(f"--merge: {key} seed {s} is {old} in one file and {v} in {p}")
                per_seed[key][s] = v
                seeds.setdefault(r["model"], set()).add(s)
    seeds_done = {m: sorted(v) for m, v in seeds.items()}
    acc = {k: [v.get(s, float("nan")) for s in seeds_done[k[0]]] for k, v in per_seed.items()}
    models = [m for m in MODELS if m in seeds_done]
    calib = setup[2]
    n_calib = int(calib.split()[0])
    method = calib.split("calibration=")[1].split(",")[0].strip("'")
    args = argparse.Namespace(quick=quick, minimal=minimal, calibration=method)
    ran = [f"{m} seed {x}:" for m in seeds_done for x in seeds_done[m]]
    skipped = [s for s in skipped if not any(s.startswith(r) for r in ran)]  # skipped in one file, run in another
    result = summarize(acc, bpw, seeds_done, models, args, setup[0], setup[1], n_calib, skipped, secs)
    result["calibration"] = calib
    result["merged_from"] = [str(p) for p in paths]
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, json.dumps(result, indent=1).encode())
    print(json.dumps(result))
    return result


def _deadline(hhmm: str | None) -> float | None:
    """Epoch seconds of the next HH:MM UTC (today, or tomorrow if already past)."""
    if not hhmm:
        return None
    h, m = (int(v) for v in hhmm.split(":"))
    now = datetime.datetime.now(datetime.timezone.utc)
    t = now.replace(hour=h, minute=m, second=0, microsecond=0)
    if t < now:
        t += datetime.timedelta(days=1)
    return t.timestamp()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, quick-trained models, 1,000 test images")
    ap.add_argument("--seeds", type=int, default=None, help="training seeds per model (default 1 quick / 3 full)")
    ap.add_argument("--seed-list", type=int, nargs="+", default=None, help="run exactly these seeds (not --seeds)")
    ap.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                    help="run nothing: merge the per-seed results of earlier runs (same test images, calibration "
                         "and schedule; a (model, seed) in several files must agree) into --out/pwlq_accuracy.json")
    ap.add_argument("--schedule", default=None, choices=("quick", "full"),
                    help="training schedule of the reference models (default quick with --quick, else full)")
    ap.add_argument("--test-images", type=int, default=None, help="default 1,000 quick / 10,000 full")
    ap.add_argument("--calib-images", type=int, default=None, help="default 128 quick / 512 full")
    ap.add_argument("--calibration", default="topk_median", choices=CALIBRATION_METHODS,
                    help="activation calibration of the project's rows (default topk_median, the paper's top-10 "
                         "median; 'auto' is the library default and ~6x slower)")
    ap.add_argument("--no-peers", action="store_true", help="skip torch.ao and Brevitas")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--minimal", action="store_true",
                    help="only W4A8/W3A8 with bias correction (uniform, pwlq1, uniform W5A8) and torch.ao: for an "
                         "overloaded machine; the JSON says so")
    ap.add_argument("--cached-only", action="store_true",
                    help="never train: use reference models already in the cache, waiting for ones being trained "
                         "elsewhere; with --finish-by, skip a (model, seed) that would not finish in time")
    ap.add_argument("--finish-by", default=None, metavar="HH:MM",
                    help="UTC time by which the run must end (with --cached-only): a (model, seed) is started only if "
                         "the slowest one so far of that model would still finish")
    ap.add_argument("--data", default=None, help="Fashion-MNIST directory (default: $PRUNEQUANT_FASHION_MNIST or "
                                                 "/usr/share/datasets/fashion-mnist)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = ap.parse_args()
    if args.merge:
        merge_results(args.merge, args.out / "pwlq_accuracy.json")
        return
    torch.set_num_threads(1)  # on a shared 2-core machine more threads only add spin-wait overhead
    seeds = list(args.seed_list) if args.seed_list else list(range(args.seeds or (1 if args.quick else 3)))
    schedule = args.schedule or ("quick" if args.quick else "full")
    n_test = args.test_images or (1000 if args.quick else 10000)
    n_calib = args.calib_images or (128 if args.quick else 512)
    ds = fashion_mnist(args.data)
    x_test, y_test = ds.x_test[:n_test], ds.y_test[:n_test]
    t0 = time.perf_counter()
    acc: dict[tuple, list[float]] = {}
    bpw: dict[tuple, float] = {}

    def record(key, value, bits):
        acc.setdefault(key, []).append(value)
        bpw[key] = bits

    models = list(args.models)
    args.out.mkdir(parents=True, exist_ok=True)
    tag = "" if len(models) == len(MODELS) else "_" + "_".join(models)
    out = args.out / f"pwlq_accuracy{tag}.json"
    # jobs in priority order: seed 0 of every model, then every seed of the first model, then the others' seeds
    pending = [(n, 0) for n in models if 0 in seeds] + [(models[0], s) for s in seeds if s] + \
              [(n, s) for n in models[1:] for s in seeds if s]
    seeds_done: dict[str, list[int]] = {n: [] for n in models}
    job_secs: dict[str, float] = {}
    skipped: list[str] = []
    end_by = _deadline(args.finish_by)

    def est(job) -> float:  # the slowest (model, seed) of that model so far, else of any model
        return job_secs.get(job[0], max(job_secs.values(), default=0.0))

    while pending:
        ready = [j for j in pending if not args.cached_only or reference_path(j[0], j[1], schedule).is_file()]
        if end_by is not None:
            for j in list(pending):
                if time.time() + est(j) > end_by:
                    pending.remove(j)
                    skipped.append(f"{j[0]} seed {j[1]}: would not finish by {args.finish_by} UTC "
                                   f"(~{est(j):.0f}s per model-seed)")
                    print(skipped[-1], flush=True)
            # a ready job starts only if the pending jobs ahead of it in priority could still finish after it
            ready = [j for j in ready if j in pending and
                     time.time() + est(j) + sum(est(k) for k in pending[:pending.index(j)]) <= end_by]
        if not pending:
            break
        if not ready:
            time.sleep(20)  # waiting for a reference model being trained elsewhere (or for time to fit)
            continue
        name, seed = ready[0]
        pending.remove((name, seed))
        tj = time.perf_counter()
        run_model_seed(name, seed, args, ds, schedule, x_test, y_test, n_calib, record, acc)
        job_secs[name] = max(job_secs.get(name, 0.0), time.perf_counter() - tj)
        seeds_done[name].append(seed)
        print(f"{name} seed {seed}: {time.perf_counter() - tj:.0f}s", flush=True)
        result = summarize(acc, bpw, seeds_done, models, args, schedule, n_test, n_calib, skipped,
                           time.perf_counter() - t0)
        result["seconds_per_model_seed"] = {k: round(v, 1) for k, v in job_secs.items()}
        atomic_write_bytes(out, json.dumps(result, indent=1).encode())  # partial results survive an interrupted run

    result = json.loads(out.read_text()) if out.is_file() and any(seeds_done.values()) else {}
    if not result:
        raise SystemExit("no (model, seed) ran")
    result["skipped"] = skipped
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"{'model':20s} {'method':17s} {'W/A':7s} {'bits/w':>7s} {'acc':>7s}")
    for r in sorted(result["rows"], key=lambda r: (r["model"], r["abits"], -r["wbits"], r["method"])):
        a = "-" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
        print(f"{r['model']:20s} {r['method']:17s} W{r['wbits']}A{r['abits']:<4d} {r['bits_per_weight']:7.3f} {a:>7s}")
    atomic_write_bytes(out, json.dumps(result, indent=1).encode())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
