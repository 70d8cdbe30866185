"""Weight-only quantization of a small causal transformer LM: perplexity vs all-in bits per weight.

A GPT-style byte-level LM (:class:`prunequant.models.tiny_lm.TinyLM`, torch.nn only) is trained here on the
docstrings of the Python standard library (:func:`prunequant.data.text.stdlib_corpus`: one document per source
file, train/val/test split by a hash of the file path, so no file is in two splits). The trained weights are
cached by configuration and seed (safetensors + JSON, ``benchmarks/out/lm_cache/``, gitignored).

Then every Linear layer inside the transformer blocks (qkv, attention output, MLP in/out; embeddings and
``lm_head`` stay fp32, as torchao's weight-only configs leave them) is weight-only quantized with

* ``uniform_affine``: asymmetric b-bit codes, fp16 scale + uint8 zero point per group of ``g`` input elements
  (the scheme of torchao's int4 weight-only), ``g`` in 32/64/128, and per output channel (``group_size`` null);
* ``pwlq``: piecewise-linear (1 breakpoint, b-center variant, empirical breakpoint search), b-bit code +
  1-bit region id, fp16 range and breakpoint per group (or per output channel).

Test perplexity (per byte, on the test documents) and all-in bits per weight (codes + region ids + every
scale, zero point, range and breakpoint, over all quantized weights) are measured in the same run. The goal
check compares the best PWLQ row against every uniform row inside the same storage class (<= 4.6 and <= 3.6
bits per weight).

    .venv/bin/python benchmarks/lm_weight_only.py --quick   # 0.4M-param LM, short training, < 5 min
    .venv/bin/python benchmarks/lm_weight_only.py           # 2.5M-param LM (3 layers, d=256), ~35 min on one busy core

Last stdout line: {"benchmark": "lm_weight_only", "rows": [{"method", "wbits", "group_size",
"bits_per_weight", "perplexity"}, ...], ...}
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

from prunequant.data.text import stdlib_corpus
from prunequant.models.tiny_lm import TinyLM, perplexity, train_lm
from prunequant.quantization.groupwise import group_pwlq_fit, group_uniform_fit

FULL = {"model": {"vocab_size": 256, "d_model": 256, "n_layers": 3, "n_heads": 4, "max_len": 128},
        "train": {"steps": 500, "seq_len": 128, "batch_size": 16, "lr": 3e-3, "warmup": 50},
        "eval_windows": 128}
QUICK = {"model": {"vocab_size": 256, "d_model": 128, "n_layers": 2, "n_heads": 4, "max_len": 64},
         "train": {"steps": 80, "seq_len": 64, "batch_size": 16, "lr": 4e-3, "warmup": 10},
         "eval_windows": 32}
UNIFORM_BITS = (3, 4)
PWLQ_BITS = (2, 3, 4)
GROUPS = (None, 128, 64, 32)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cached_model(setup: dict, corpus, seed: int, cache_dir: Path) -> tuple[TinyLM, dict]:
    """Train the LM (or load it from the cache keyed by config, corpus and seed)."""
    from safetensors.torch import load_file, save_file

    key_src = json.dumps({"model": setup["model"], "train": setup["train"], "seed": seed,
                          "corpus": corpus.summary()}, sort_keys=True)
    key = hashlib.sha1(key_src.encode()).hexdigest()[:12]
    path = cache_dir / f"tiny_lm_{key}.safetensors"
    meta_path = path.with_suffix(".json")
    torch.manual_seed(seed)
    model = TinyLM(**setup["model"])
    if path.exists() and meta_path.exists():
        model.load_state_dict(load_file(str(path)))
        meta = json.loads(meta_path.read_text())
        log(f"loaded cached LM {path}")
        return model.eval(), {**meta, "cached": True}
    t0 = time.perf_counter()
    losses = train_lm(model, corpus.train, seed=seed, **setup["train"])
    meta = {"key": key, "train_seconds": round(time.perf_counter() - t0, 1),
            "final_train_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4)}
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, path)
    tmpm = meta_path.with_suffix(".jsontmp")
    tmpm.write_text(json.dumps({**meta, "config": json.loads(key_src)}, indent=1))
    os.replace(tmpm, meta_path)
    log(f"trained LM in {meta['train_seconds']} s, cached at {path}")
    return model.eval(), {**meta, "cached": False}


@torch.no_grad()
def quantized_copy(model: TinyLM, method: str, bits: int, group_size: int | None) -> tuple[nn.Module, float, float]:
    """Copy of ``model`` with block Linear weights replaced by their fake-quantized values.

    Returns (model, all-in bits per quantized weight, relative weight MSE)."""
    q = copy.deepcopy(model)
    total_bits, total_n, err, ref = 0.0, 0, 0.0, 0.0
    for name in q.block_linears():
        lin = q.get_submodule(name)
        w = lin.weight.detach()
        g = group_size if group_size is not None else w.shape[1]
        if method == "uniform_affine":
            w_hat, bpw = group_uniform_fit(w, bits, g, name=name)
        else:
            w_hat, bpw = group_pwlq_fit(w, bits, g, name=name)
        total_bits += bpw * w.numel()
        total_n += w.numel()
        err += float(((w_hat - w) ** 2).sum())
        ref += float((w ** 2).sum())
        lin.weight.copy_(w_hat)
    return q, total_bits / total_n, err / ref


def weight_stats(model: TinyLM) -> dict:
    """Median max|w|/std over output channels and over groups of 128 (how heavy-tailed the weights are)."""
    ch, gr = [], []
    for name in model.block_linears():
        w = model.get_submodule(name).weight.detach()
        ch.append(w.abs().amax(1) / w.std(1))
        g = w.reshape(-1, 128) if w.shape[1] % 128 == 0 else w
        gr.append(g.abs().amax(1) / g.std(1))
    return {"max_over_std_channel_median": round(float(torch.cat(ch).median()), 2),
            "max_over_std_group128_median": round(float(torch.cat(gr).median()), 2)}


def goal_check(rows: list[dict], budget: float) -> dict:
    inside = [r for r in rows if r["method"] != "fp32" and r["bits_per_weight"] <= budget]
    pw = [r for r in inside if r["method"] == "pwlq"]
    un = [r for r in inside if r["method"] == "uniform_affine"]
    if not pw or not un:
        return {"budget_bits": budget, "met": None, "note": "no PWLQ or no uniform row in this class"}
    bp, bu = min(pw, key=lambda r: r["perplexity"]), min(un, key=lambda r: r["perplexity"])
    return {"budget_bits": budget, "best_pwlq": bp, "best_uniform": bu,
            "pwlq_beats_every_uniform": bp["perplexity"] < bu["perplexity"],
            "margin_ppl": round(bu["perplexity"] - bp["perplexity"], 4),
            "margin_rel": round((bu["perplexity"] - bp["perplexity"]) / bu["perplexity"], 5)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small LM, short training, fewer eval windows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is fastest on a shared, oversubscribed CPU)")
    ap.add_argument("--steps", type=int, default=None, help="override the training steps")
    ap.add_argument("--eval-windows", type=int, default=None, help="override the number of test windows")
    ap.add_argument("--cache-dir", type=Path, default=Path("benchmarks/out/lm_cache"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    setup = copy.deepcopy(QUICK if args.quick else FULL)
    if args.steps is not None:
        setup["train"]["steps"] = args.steps
    if args.eval_windows is not None:
        setup["eval_windows"] = args.eval_windows
    corpus = stdlib_corpus()
    log(f"corpus: {corpus.summary()}")
    model, train_meta = cached_model(setup, corpus, args.seed, args.cache_dir)
    n_params = sum(p.numel() for p in model.parameters())
    n_quant = sum(model.get_submodule(n).weight.numel() for n in model.block_linears())
    seq_len, windows = setup["train"]["seq_len"], setup["eval_windows"]

    def ppl(m: nn.Module) -> float:
        return round(perplexity(m, corpus.test, seq_len, batch_size=16, max_windows=windows), 4)

    rows = [{"method": "fp32", "wbits": 32, "group_size": None, "bits_per_weight": 32.0, "perplexity": ppl(model),
             "weight_rel_mse": 0.0}]
    log(f"fp32 perplexity {rows[0]['perplexity']}")
    plan = [("uniform_affine", b, g) for b in UNIFORM_BITS for g in GROUPS] + \
           [("pwlq", b, g) for b in PWLQ_BITS for g in GROUPS]
    for method, bits, g in plan:
        t = time.perf_counter()
        qm, bpw, rel = quantized_copy(model, method, bits, g)
        row = {"method": method, "wbits": bits, "group_size": g, "bits_per_weight": round(bpw, 4),
               "perplexity": ppl(qm), "weight_rel_mse": round(rel, 6)}
        rows.append(row)
        log(f"{method:15s} b={bits} g={str(g):5s} bpw={bpw:.3f} ppl={row['perplexity']:.4f} rel_mse={rel:.2e} "
            f"({time.perf_counter() - t:.1f} s)")
    result = {"benchmark": "lm_weight_only", "quick": args.quick, "seed": args.seed,
              "corpus": corpus.summary(), "model": setup["model"], "train": {**setup["train"], **train_meta},
              "params": n_params, "quantized_params": n_quant, "eval_windows": windows,
              "eval_tokens": windows * seq_len, "weight_stats": weight_stats(model),
              "quantized_layers": "every nn.Linear in the transformer blocks (embeddings, lm_head fp32)",
              "goal_4p6_bits": goal_check(rows, 4.6), "goal_3p6_bits": goal_check(rows, 3.6),
              "seconds": round(time.perf_counter() - t0, 1), "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"lm_weight_only{'_quick' if args.quick else ''}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
