"""``prunequant run RECIPE.yaml --out OUT`` and ``prunequant evaluate MODEL.pq --data test.npz``."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from . import common


def run(recipe: Path = typer.Argument(..., help="Recipe YAML (or a recipe.lock.yaml to reproduce a run)."),  # noqa
        out: Path = typer.Option(..., "--out", help="Output folder: model.pq, report.json, plots, "  # noqa: B008
                                                    "recipe.lock.yaml."),
        check: bool = typer.Option(False, "--check", help="Only validate the recipe (nothing runs).")) -> None:
    """Run a pipeline of steps (train, prune, quantize, joint, finalize, export) from one YAML file. Every key
    is validated against the method configs before anything runs."""
    from ..workflow import load_recipe, run_recipe

    rec = load_recipe(recipe)
    if check:
        print(f"{recipe}: valid ({len(rec.steps)} steps: {', '.join(s.kind for s in rec.steps)})")
        return
    result = run_recipe(rec, out)
    _print_result(result, out, recipe.name)


def _print_result(result, out: Path, title: str) -> None:
    from ..viz.tables import print_table

    rep = json.loads((out / "report.json").read_text())
    cols = ["name", "type", "params", "sparsity", "weight_bits", "act_bits", "macs", "effective_macs", "bytes"]
    print_table([r for r in rep["rows"] if r.get("params")], title=title, columns=cols)
    m = result.metric
    print(f"{m['name']} on test: {m['before']:.4f} -> {m['after']:.4f} (from the file: {m['reloaded']:.4f}); "
          f"{result.bytes_reported:,} bytes reported ({result.bytes_fp32 / max(result.bytes_reported, 1):.1f}x "
          f"smaller than fp32), {result.bytes_file:,} bytes in {out / 'model.pq'}")
    print(f"wrote {', '.join(Path(f).name for f in result.files)} in {out}/")
    print(json.dumps({"out": str(out), "metric": m, "bytes_reported": result.bytes_reported,
                      "bytes_fp32": result.bytes_fp32, "bytes_file": result.bytes_file,
                      "steps": [{k: v for k, v in s.items() if k != "result"} for s in result.steps]},
                     default=float))


def evaluate(model: Path = typer.Argument(..., help="A compressed model (.pq) or a saved model file."),  # noqa: B008
             data: str = typer.Option(..., "--data", help="Data to evaluate on: .npz, .csv, an image folder or "
                                                          "digits (its test split)."),
             target: str | None = common.TARGET, task: str = common.TASK, metric: str | None = common.METRIC,
             input_shape: str | None = common.INPUT_SHAPE, batch_size: int = common.BATCH,
             skeleton: str | None = typer.Option(None, "--model", help="Architecture for a file that cannot "
                                                                       "rebuild it (file.py:factory); default: "
                                                                       "recipe.lock.yaml next to MODEL."),
             seed: int = common.SEED) -> None:
    """Print the metric of MODEL on DATA; the last line is one JSON object with "value"."""
    from ..errors import StorageError
    from ..workflow import check_data_source, check_model_source, evaluate_file

    if not model.is_file():
        raise StorageError(f"{model}: not found")
    src = check_data_source(test=data, task=task, target=target, metric=metric,
                            input_shape=common.parse_shape(input_shape), batch_size=batch_size)
    skel = check_model_source(skeleton) if skeleton else None
    res = evaluate_file(model, src, skel, seed=seed)
    print(f"{res['metric']} of {model} on {data}: {res['value']:.4f} ({res['samples']} samples)")
    print(json.dumps(res))
