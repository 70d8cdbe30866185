"""End to end: every shipped recipe (recipes/*.yaml) run through the same code as `prunequant run`, then the
compressed file reloaded and evaluated again.

Per recipe: the bytes the report promises, the bytes of OUT/model.pq, their ratio, and the metric before
compression, after it (in memory) and of the reloaded file, all on the recipe's test split.

    python benchmarks/end_to_end.py            # the recipes as shipped
    python benchmarks/end_to_end.py --quick    # shorter training schedules (< 3 min on 2 cores)

Last line of stdout: {"benchmark": "end_to_end", "rows": [{"recipe", "bytes_reported", "bytes_file", "ratio",
"metric", "metric_before", "metric_after", "metric_reloaded", "seconds"}, ...]}.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

# --quick: shorter schedules with the same steps (train epochs and each method's epochs)
QUICK = {"train": {"epochs": 3}, "epochs": 2, "finetune_epochs": 1, "rounds": 2, "retrain_epochs": 1}


def _quick(raw: dict) -> dict:
    steps = []
    for step in raw["steps"]:
        (kind, body), = step.items()
        body = dict(body or {})
        if kind == "train":
            body.update(QUICK["train"])
        else:
            for k in ("epochs", "finetune_epochs", "rounds", "retrain_epochs"):
                if k in body:
                    body[k] = min(body[k], QUICK[k])
        steps.append({kind: body})
    return {**raw, "steps": steps}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter training schedules")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--recipes", nargs="*", help="recipe files (default: recipes/*.yaml)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    import yaml

    from prunequant.workflow import parse_recipe, run_recipe

    files = [Path(p) for p in args.recipes] if args.recipes else sorted((ROOT / "recipes").glob("*.yaml"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in files:
            raw = yaml.safe_load(path.read_text())
            if args.quick:
                raw = _quick(raw)
            recipe = parse_recipe(raw, base_dir=path.parent, source=str(path))
            t0 = time.perf_counter()
            res = run_recipe(recipe, Path(tmp) / path.stem)
            m = res.metric
            row = {"recipe": path.stem, "bytes_reported": res.bytes_reported, "bytes_file": res.bytes_file,
                   "ratio": round(res.bytes_file / res.bytes_reported, 4), "bytes_fp32": res.bytes_fp32,
                   "metric": m["name"], "metric_before": m["before"], "metric_after": m["after"],
                   "metric_reloaded": m["reloaded"], "seconds": round(time.perf_counter() - t0, 1)}
            rows.append(row)
            print(f"{row['recipe']:12s} reported {row['bytes_reported']:>7,} B  file {row['bytes_file']:>7,} B  "
                  f"ratio {row['ratio']:.3f}  {row['metric']} {row['metric_before']:.4f} -> "
                  f"{row['metric_after']:.4f} (reloaded {row['metric_reloaded']:.4f})  {row['seconds']:.0f}s",
                  flush=True)
    out = {"benchmark": "end_to_end", "quick": args.quick, "rows": rows}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
