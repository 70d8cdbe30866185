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
    """Run a YAML recipe: train, prune, quantize, joint, finalize, export steps (docs/cli.md).

    Every key is validated against the method configs before anything runs. Writes OUT/model.pq,
    OUT/report.json, plots and OUT/recipe.lock.yaml (running the lock file reproduces the result)."""
    from ..workflow import load_recipe, run_recipe

    rec = load_recipe(recipe)
    if check:
        print(f"{recipe}: valid ({len(rec.steps)} steps: {', '.join(s.kind for s in rec.steps)})")
        return
    result = run_recipe(rec, out)
    common.print_result(result, out, recipe.name)


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
