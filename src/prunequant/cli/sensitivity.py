"""``prunequant sensitivity MODEL --method pwlq --wbits 3``: per-layer sensitivity of the user's model on the
validation split (each layer compressed alone, and greedily together with ``--cumulative``), as a table,
OUT/sensitivity.json and OUT/sensitivity.png; with ``--max-drop`` the layers to keep at 8 bits / in float (or
dense) for that metric budget, checked on the validation split, the test metric before/after, and
``--write-recipe`` a recipe that ``prunequant run`` applies.

Exit status: 0; 1 when ``--max-drop`` is given and the budget cannot be met (nothing is written to
``--write-recipe`` then); 2 with one ``error: ...`` line for bad arguments.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
import typer

from . import common

QUANT_METHODS = ("pwlq", "uniform", "log2")
PRUNE_METHODS = ("magnitude", "analytic")
METHODS = QUANT_METHODS + PRUNE_METHODS
log = logging.getLogger("prunequant.cli")


def _neg_rmse(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    return -float(torch.sqrt(((outputs.reshape(targets.shape).float() - targets.float()) ** 2).mean()))


def _neg_mae(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    return -float((outputs.reshape(targets.shape).float() - targets.float()).abs().mean())


_neg_rmse.name = "neg_rmse"  # type: ignore[attr-defined]
_neg_mae.name = "neg_mae"  # type: ignore[attr-defined]


def _metric_fn(metric_name: str) -> Any:
    """``metric(outputs, targets)``, higher is better, for the task's reported metric."""
    if metric_name == "accuracy":
        from ..training.metrics import accuracy

        return accuracy
    return {"rmse": _neg_rmse, "mae": _neg_mae}[metric_name]


def _step_body(method: str, wbits: int | None, abits: int | None, sparsity: float | None,
               bias_correction: bool | None, calibration: str | None, granularity: str | None,
               skip: list[str] | None, keep_8bit: list[str] | None, exclude: list[str] | None,
               sets: list[str] | None) -> tuple[str, dict[str, Any]]:
    from ..errors import ConfigError

    if method not in METHODS:
        raise ConfigError(f"unknown --method {method!r}; available: {', '.join(METHODS)}")
    body: dict[str, Any] = {"method": method}
    if method in QUANT_METHODS:
        if sparsity is not None or exclude:
            raise ConfigError(f"--sparsity/--exclude are for pruning methods ({', '.join(PRUNE_METHODS)}); "
                              f"{method} takes --wbits/--abits/--skip/--keep-8bit")
        opts = {"wbits": wbits, "bias_correction": bias_correction, "calibration": calibration,
                "granularity": granularity}
        body.update({k: v for k, v in opts.items() if v is not None})
        if abits is not None:
            body["abits"] = abits or None
        if skip:
            body["skip"] = list(skip)
        if keep_8bit:
            body["keep_8bit"] = list(keep_8bit)
        kind = "quantize"
    else:
        if wbits is not None or abits is not None or skip or keep_8bit:
            raise ConfigError(f"--wbits/--abits/--skip/--keep-8bit are for quantization methods "
                              f"({', '.join(QUANT_METHODS)}); {method} takes --sparsity/--exclude")
        if sparsity is None:
            raise ConfigError(f"--method {method} needs --sparsity (the fraction of weights each layer loses)")
        body["sparsity" if method == "magnitude" else "target_sparsity"] = sparsity
        if method == "analytic":
            body.setdefault("min_density", 0.0)
        if exclude:
            body["exclude"] = list(exclude)
        kind = "prune"
    body.update(common.parse_sets(sets))
    return kind, body


def _fmt(v: Any, pct: bool = False) -> Any:
    if v is None:
        return None
    return round(100 * v, 2) if pct else round(v, 4)


def sensitivity(
    model: str = typer.Argument("digits_cnn", help=common.MODEL_HELP),
    method: str = typer.Option("pwlq", "--method", help=f"{', '.join(METHODS)}."),
    wbits: int | None = typer.Option(None, "--wbits", help="Weight bits (2-16; default 4)."),
    abits: int | None = typer.Option(None, "--abits", help="Activation bits (2-16; default 8); 0 quantizes "
                                                           "weights only."),
    sparsity: float | None = typer.Option(None, "--sparsity", help="Pruning methods: sparsity of each layer."),
    granularity: str | None = typer.Option(None, help="Quantization: channel or tensor."),
    bias_correction: bool | None = typer.Option(None, "--bias-correction/--no-bias-correction"),
    calibration: str | None = typer.Option(None, help="auto, topk_median, percentile, minmax or mse."),
    skip: list[str] | None = typer.Option(None, "--skip", help="Module left in float (repeatable)."),  # noqa: B008
    keep_8bit: list[str] | None = typer.Option(None, "--keep-8bit", help="Module kept at 8 bits "  # noqa: B008
                                                                         "(repeatable)."),
    exclude: list[str] | None = typer.Option(None, "--exclude", help="Pruning: module left dense "  # noqa: B008
                                                                     "(repeatable)."),
    sets: list[str] | None = common.SET,
    cumulative: bool = typer.Option(False, "--cumulative", help="Also compress the layers together, least "
                                                                "sensitive first (one more run per layer)."),
    max_drop: float | None = typer.Option(None, "--max-drop", help="Metric budget: largest allowed drop on the "
                                                                    "validation split (accuracy 0.01 = 1 point); "
                                                                    "chooses the layers to fall back."),
    fallback: list[str] | None = typer.Option(None, "--fallback", help="With --max-drop: where layers go, in "  # noqa
                                                                       "order (keep_8bit, skip, exclude; "
                                                                       "default keep_8bit then skip, or "
                                                                       "exclude for pruning)."),
    write_recipe: Path | None = typer.Option(None, "--write-recipe", help="With --max-drop: write a recipe "  # noqa
                                                                          "YAML with the chosen config (run it "
                                                                          "with prunequant run)."),
    search: str = typer.Option("linear", "--search", help="With --max-drop: linear (one layer per measurement) or "
                                                          "bisect (binary search, for many layers)."),
    refine: bool = typer.Option(True, "--refine/--no-refine", help="With --max-drop: try each moved layer back "
                                                                   "once, keep it back if the budget holds."),
    max_batches: int | None = typer.Option(None, "--max-batches", help="Validation batches used (default all)."),
    calibration_samples: int = typer.Option(512, "--calibration-samples", help="Training samples used for "
                                                                               "calibration."),
    weights: Path | None = common.WEIGHTS,
    data: str = common.DATA, val: str | None = common.VAL, test: str | None = common.TEST,
    target: str | None = common.TARGET, task: str = common.TASK, loss: str | None = common.LOSS,
    metric: str | None = common.METRIC, input_shape: str | None = common.INPUT_SHAPE,
    batch_size: int = common.BATCH,
    out: Path = typer.Option(Path("sensitivity_out"), "--out", help="Output folder (sensitivity.json, "  # noqa
                                                                    "sensitivity.png)."),
    seed: int = common.SEED,
) -> None:
    """Per-layer sensitivity of MODEL to a method (each layer compressed alone), measured on the validation split;
    with --max-drop, the per-layer fallbacks (keep_8bit / skip / exclude) that meet that metric budget.

    Every argument is validated before anything runs. Writes OUT/sensitivity.json and OUT/sensitivity.png."""
    from ..errors import ConfigError
    from ..workflow import parse_recipe

    kind, body = _step_body(method, wbits, abits, sparsity, bias_correction, calibration, granularity, skip,
                            keep_8bit, exclude, sets)
    if max_drop is not None and not math.isfinite(max_drop):
        raise ConfigError(f"--max-drop must be a finite number, got {max_drop}")
    if (write_recipe is not None or fallback) and max_drop is None:
        raise ConfigError("--write-recipe and --fallback need --max-drop (the metric budget)")
    if write_recipe is not None and write_recipe.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"--write-recipe {write_recipe}: expected a .yaml file")
    if search not in ("linear", "bisect"):
        raise ConfigError(f"--search must be linear or bisect, got {search!r}")
    if max_batches is not None and max_batches < 1:
        raise ConfigError(f"--max-batches must be >= 1, got {max_batches}")
    if calibration_samples < 1:
        raise ConfigError(f"--calibration-samples must be >= 1, got {calibration_samples}")
    raw = {"seed": seed, "model": common.model_block(model, weights, input_shape),
           "data": common.data_block(data, val, test, target, task, loss, metric, batch_size),
           "calibration_samples": calibration_samples, "steps": [{kind: body}]}
    recipe = parse_recipe(raw, base_dir=".", source="command line")
    step = recipe.steps[0]
    from ..analysis.layer_sensitivity import _fallbacks_for

    fallbacks = _fallbacks_for(step.config, fallback or None) if max_drop is not None else None
    doc = run_sensitivity(recipe, out, cumulative=cumulative, max_drop=max_drop, fallback=fallbacks,
                          max_batches=max_batches, write_recipe=write_recipe, search=search, refine=refine)
    _print(doc, model, method)
    if doc.get("plan") is not None and not doc["plan"]["feasible"]:
        raise typer.Exit(1)


def run_sensitivity(recipe: Any, out: Path, cumulative: bool = False, max_drop: float | None = None,
                    fallback: tuple[str, ...] | None = None, max_batches: int | None = None,
                    write_recipe: Path | None = None, search: str = "linear", refine: bool = True
                    ) -> dict[str, Any]:
    """Run the sensitivity analysis (and the budget plan) of a validated one-step recipe; write OUT/sensitivity.json,
    OUT/sensitivity.png and the recipe; return the JSON document."""
    from ..analysis import compressed_copy, plan_from_budget, report
    from ..analysis import sensitivity as layer_sensitivity
    from ..analysis.layer_sensitivity import _outputs
    from ..storage import atomic_write_bytes
    from ..training import seed_everything
    from ..workflow.data import load_split, loader
    from ..workflow.models import build_model_from
    from ..workflow.recipe import Step, plain
    from ..workflow.runner import _example_input, held_out

    seed_everything(recipe.seed)
    step = recipe.steps[0]
    task = recipe.data.task_obj
    metric = _metric_fn(task.metric_name)
    splits = held_out({s: load_split(recipe.data, s, recipe.seed) for s in ("train", "val", "test")}, recipe.seed)
    bs = recipe.data.batch_size
    val_batches = list(loader(splits["val"], bs, False))
    test_dl = loader(splits["test"], bs, False)
    x_train = splits["train"].tensors[0]
    g = torch.Generator().manual_seed(recipe.seed)
    calib = x_train[torch.randperm(len(x_train), generator=g)[:recipe.calibration_samples]]
    log.info("building model %s", recipe.model.spec)
    model = build_model_from(recipe.model, seed=recipe.seed, task=recipe.data.task).eval()
    log.info("sensitivity of %d validation samples to %s", len(splits["val"]), type(step.config).__name__)
    res = layer_sensitivity(model, step.config, val_batches, metric, max_batches=max_batches,
                            cumulative=cumulative, calibration=calib)
    doc: dict[str, Any] = {"split": "val", "samples": len(splits["val"]), "method": step.method,
                           "sensitivity": res.to_dict(), "plan": None}
    plan = None
    if max_drop is not None:
        log.info("planning for a metric budget: %s drop <= %g", res.metric_name, max_drop)
        cfg, plan = plan_from_budget(model, step.config, val_batches, metric, max_drop=max_drop, fallback=fallback,
                                     sensitivity_result=res, max_batches=max_batches, calibration=calib,
                                     search=search, refine=refine)
        doc["plan"] = plan.to_dict()
        test_batches = list(test_dl)
        y0, _ = _outputs(model, test_batches)
        doc["test"] = {"metric": task.metric_name, "samples": len(splits["test"]),
                       "fp32": task.evaluate(model, test_batches)}
        x1 = _example_input(recipe, x_train)
        doc["bytes"] = {"fp32": report(model, x1).total.bytes_dense}
        for key, c in (("config", step.config), ("plan", cfg)):  # the whole config, then the planned one
            m = compressed_copy(model, c, calibration=calib)
            doc["bytes"][key] = report(m, x1).total.bytes
            doc["test"][key] = task.evaluate(m, test_batches)
            y, _ = _outputs(m, test_batches)
            doc["test"][f"{key}_output_error"] = float((y - y0).norm() / y0.norm().clamp_min(1e-12))
        if write_recipe is not None and plan.feasible:
            import yaml

            new = Step(step.kind, step.method, cfg, step.train if step.kind != "quantize" else None)
            rec = {"seed": recipe.seed,
                   "model": {**recipe.model.to_dict(),
                             **({"input_shape": list(recipe.input_shape)} if recipe.input_shape else {})},
                   "data": recipe.data.to_dict(), "calibration_samples": recipe.calibration_samples,
                   "steps": [new.to_dict()]}
            text = (f"# written by prunequant sensitivity: {plan.message}\n"
                    + yaml.safe_dump(plain(rec), sort_keys=False))
            atomic_write_bytes(Path(write_recipe), text.encode())
            doc["recipe"] = str(write_recipe)
    out.mkdir(parents=True, exist_ok=True)
    files = [str(out / "sensitivity.json")]
    atomic_write_bytes(out / "sensitivity.json", json.dumps(plain(doc), indent=2, default=float).encode())
    try:
        from ..viz import plot_sensitivity

        files.append(str(plot_sensitivity(res, out / "sensitivity.png", plan)))
    except (ImportError, ValueError) as e:  # matplotlib missing, or nothing measurable to plot
        log.warning("plot skipped (%s)", e)
    doc["files"] = files
    return doc


def _print(doc: dict[str, Any], model: str, method: str) -> None:
    from ..viz.tables import print_table

    sens = doc["sensitivity"]
    name = sens["metric_name"]
    pct = name == "accuracy"
    unit = " (points)" if pct else ""
    cum = {c["added"]: c["metric_drop"] for c in sens.get("cumulative") or []}
    plan = doc.get("plan")
    moved = {n: f for f, names in ((plan or {}).get("fallbacks") or {}).items() for n in names}
    rows = []
    for i, r in enumerate(sens["layers"], start=1):
        row = {"rank": i if r["metric_drop"] is not None else None, "layer": r["layer"], "params": r["params"],
               f"{name}_drop": _fmt(r["metric_drop"], pct), "output_error": _fmt(r["output_error"]),
               "cosine": _fmt(r["output_cosine"])}
        if cum:
            row["cumulative_drop"] = _fmt(cum.get(r["layer"]), pct)
        if plan is not None:
            row["plan"] = moved.get(r["layer"], "compressed")
        if r["skipped"]:
            row["skipped"] = r["skipped"]
        rows.append(row)
    print_table(rows, title=f"sensitivity of {model} to {method} ({name} drop{unit} on {doc['samples']} "
                            f"validation samples, baseline {sens['baseline_metric']:.4f}; most sensitive first)")
    if sens.get("cumulative"):
        order = " -> ".join(f"+{c['added']} {_fmt(c['metric_drop'], pct)}" for c in sens["cumulative"])
        print(f"cumulative ({name} drop{unit}, least sensitive first): {order}")
    if plan is not None:
        print(plan["message"])
        t = doc["test"]
        print(f"{t['metric']} on test ({t['samples']} samples): fp32 {t['fp32']:.4f}, every layer compressed "
              f"{t['config']:.4f} (output error {t['config_output_error']:.3f}), with the plan {t['plan']:.4f} "
              f"(output error {t['plan_output_error']:.3f})")
        b = doc["bytes"]
        print(f"bytes (report): fp32 {b['fp32']:,}, every layer compressed {b['config']:,}, with the plan "
              f"{b['plan']:,}")
        if doc.get("recipe"):
            print(f"wrote {doc['recipe']} (prunequant run {doc['recipe']} --out OUT)")
        elif not plan["feasible"]:
            print("no recipe written: the budget is not met")
    print(f"wrote {', '.join(Path(f).name for f in doc['files'])} in {Path(doc['files'][0]).parent}/")
    summary = {"out": str(Path(doc["files"][0]).parent), "metric": name, "split": "val",
               "baseline": sens["baseline_metric"],
               "ranking": [r["layer"] for r in sens["layers"]],
               "metric_drop": {r["layer"]: r["metric_drop"] for r in sens["layers"]}}
    if plan is not None:
        summary.update(max_drop=plan["max_drop"], feasible=plan["feasible"], fallbacks=plan["fallbacks"],
                       plan_metric_drop=plan["metric_drop"], test=doc["test"], bytes=doc["bytes"])
    print(json.dumps(summary, default=float))
