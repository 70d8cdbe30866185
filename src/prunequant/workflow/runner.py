"""Run a validated recipe: build the model, read the data, apply each step, write the compressed file, the
report, plots and the lock file; evaluate a saved model on a data file.

Output folder::

    OUT/model.pq           the compressed model (what the report counts)
    OUT/report.json        per-layer rows, "total": {"bytes", "bytes_fp32" (the input model), "bytes_file"},
                           "metric": {"name", "initial", "before", "after", "reloaded"} on the test split:
                           initial = the model as given, before = after any leading `train` steps (where the
                           compression starts), after = the compressed model, reloaded = read back from model.pq
    OUT/report.png, OUT/<step>.png   plots (with the [viz] extra)
    OUT/recipe.lock.yaml   every default resolved, package versions, seed: `prunequant run` on it reproduces
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .data import DataSource, load_split, loader
from .models import ModelSource, build_model_from, load_model_file
from .recipe import Recipe, plain

log = logging.getLogger("prunequant.workflow")
_VERB = {"prune": "prune", "quantize": "quantize", "joint": "prune_quantize"}


@dataclass
class RunResult:
    """What :func:`run_recipe` measured and wrote."""

    out: str
    metric: dict[str, Any]
    bytes_reported: int
    bytes_fp32: int
    bytes_file: int
    seconds: float
    files: list[str] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def save_compressed(model: nn.Module, path: Path) -> int:
    """Write ``model`` to ``path`` in the compressed format; returns the file size in bytes."""
    import prunequant

    save = getattr(prunequant, "save", None)
    if callable(save):
        save(model, path)
    else:  # before prunequant.save existed: the packed artifact
        from ..export import export

        export(model, path)
    return path.stat().st_size


def load_compressed_file(path: str | Path, skeleton: nn.Module | None = None) -> nn.Module:
    """Read a compressed model file; ``skeleton`` (a plain model of the same architecture) when the file cannot
    rebuild the model by itself (a user factory)."""
    import prunequant

    path = Path(path)
    load = getattr(prunequant, "load", None)
    if callable(load):
        try:
            return load(path) if skeleton is None else load(path, model=copy.deepcopy(skeleton))
        except TypeError:
            return load(path)
    from ..export import load_compressed

    return load_compressed(path, model=None if skeleton is None else copy.deepcopy(skeleton))


def held_out(splits: dict[str, Any], seed: int, fraction: float = 0.1) -> dict[str, Any]:
    """Fill a missing ``val``/``test`` split with ``fraction`` of the training samples (seeded, disjoint)."""
    from torch.utils.data import TensorDataset

    missing = [s for s in ("test", "val") if splits.get(s) is None]
    if not missing:
        return splits
    train = splits["train"]
    n = len(train)
    k = max(1, int(round(fraction * n)))
    if n - k * len(missing) < 1:
        raise ConfigError(f"{n} training samples are too few to hold out {', '.join(missing)}; give --val/--test")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919))
    out = dict(splits)
    start = 0
    for s in missing:
        idx = perm[start:start + k]
        out[s] = TensorDataset(*(t[idx] for t in train.tensors))
        start += k
    out["train"] = TensorDataset(*(t[perm[start:]] for t in train.tensors))
    log.info("held out %d samples each for %s from the training data", k, " and ".join(missing))
    return out


def _plot(fn: Any, *args: Any) -> str | None:
    try:
        return str(fn(*args))
    except ImportError as e:  # matplotlib missing: the run still completes
        log.warning("plot skipped (%s); install prunequant[viz]", e)
        return None


def _example_input(recipe: Recipe, x: torch.Tensor) -> torch.Tensor:
    if recipe.input_shape is not None:
        shape = tuple(recipe.input_shape)
        return torch.zeros(shape if len(shape) == x.dim() else (1, *shape))
    return torch.zeros(1, *x.shape[1:])


def _handler_kwargs(options: tuple[str, ...], ctx: dict[str, Any]) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if "fit" in options:
        kw.update(train=ctx["train"], val=ctx["val"], loss_fn=ctx["loss_fn"], metric=ctx["metric"],
                  train_config=ctx["train_config"])
    for name in ("example_input", "calibration_data", "calibration"):
        if name in options:
            kw[name] = ctx[name]
    return kw


def _apply_step(model: nn.Module, step: Any, ctx: dict[str, Any], out: Path, index: int) -> dict[str, Any]:
    from .. import registry
    from ..api import _load_methods, finalize_

    t0 = time.perf_counter()
    info: dict[str, Any] = {"step": step.kind, "method": step.method}
    if step.kind == "train":
        from ..training import Trainer

        hist = Trainer(model, step.train, loss_fn=ctx["loss_fn"], metric=ctx["metric"]).fit(ctx["train"], ctx["val"])
        info["epochs"] = len(hist)
    elif step.kind == "finalize":
        finalize_(model, bake_quantization=step.options["bake_quantization"])
        ctx["finalized"] = True
    elif step.kind == "export":
        from ..export import export_onnx

        res = export_onnx(model, out / "model.onnx", ctx["example_input"], check=step.options["check"])
        info.update(path=str(out / "model.onnx"), bytes=res.get("bytes"))
    else:
        _load_methods()
        handler = registry.handler_for(step.config, _VERB[step.kind])
        kw = _handler_kwargs(handler.options, {**ctx, "train_config": step.train})
        if "history_path" in handler.options:  # methods that keep a per-round history file
            kw["history_path"] = out / f"step{index}_{step.method}_history.json"
        result = _dispatch(step, model, kw)
        info.update(_summary(result))
        plot = _step_plot(step, model, result, out / f"step{index}_{step.method}.png")
        if plot:
            info["plot"] = Path(plot).name  # relative to the output folder
    info["seconds"] = round(time.perf_counter() - t0, 2)
    return info


def _dispatch(step: Any, model: nn.Module, kw: dict[str, Any]) -> Any:
    from ..api import prune_, prune_quantize_, quantize_

    verb = {"prune": prune_, "quantize": quantize_, "joint": prune_quantize_}[step.kind]
    return verb(model, step.config, **kw)


def _summary(result: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if callable(getattr(result, "to_dict", None)):
        try:
            out["result"] = plain(result.to_dict())
        except Exception:  # noqa: BLE001 - a result that does not serialise is left out of the report
            pass
    for k in ("sparsity", "reduction", "measures"):
        v = getattr(result, k, None)
        if isinstance(v, (int, float)) or isinstance(v, dict):
            out[k] = plain(v)
    return out


def _step_plot(step: Any, model: nn.Module, result: Any, path: Path) -> str | None:
    from .. import viz

    if step.kind == "prune" and step.method == "analytic" and hasattr(result, "layers"):  # not channel pruning
        return _plot(viz.plot_analytic_run, result, path)
    if step.kind == "prune" and step.method == "mac_budget" and getattr(result, "rounds", None):
        return _plot(viz.plot_mac_budget, result, path)
    if step.kind == "quantize" and viz.quantized_weights(model):
        return _plot(viz.plot_weight_histograms, model, path)
    if step.kind == "joint" and getattr(result, "history", None):
        return _plot(viz.plot_joint_history, result.history, path)
    return None


def _write_yaml(path: Path, data: dict[str, Any]) -> None:
    import yaml

    from ..storage import atomic_write_bytes

    atomic_write_bytes(path, yaml.safe_dump(data, sort_keys=False).encode())


def run_recipe(recipe: Recipe, out: str | Path) -> RunResult:
    """Run ``recipe`` and write its outputs to ``out`` (see the module docstring).

    Args:
        recipe: from :func:`prunequant.workflow.load_recipe` (already validated).
        out: output folder (created).

    Returns:
        A :class:`RunResult`.
    """
    from ..analysis import report
    from ..api import finalize_
    from ..storage import atomic_write_bytes
    from ..training import seed_everything
    from ..viz import plot_report

    t0 = time.perf_counter()
    out = Path(out)
    seed_everything(recipe.seed)
    task = recipe.data.task_obj
    log.info("reading data (%s)", ", ".join(f"{k}={v}" for k, v in recipe.data.to_dict().items()
                                             if k in ("train", "val", "test")))
    splits = held_out({s: load_split(recipe.data, s, recipe.seed) for s in ("train", "val", "test")}, recipe.seed)
    bs = recipe.data.batch_size
    train_dl = loader(splits["train"], bs, True, recipe.seed)
    val_dl = loader(splits["val"], bs, False)
    test_dl = loader(splits["test"], bs, False)
    x_train = splits["train"].tensors[0]
    x1 = _example_input(recipe, x_train)
    if recipe.input_shape is None:  # resolved for the lock file
        recipe = dataclasses.replace(recipe, input_shape=tuple(x1.shape))
    log.info("building model %s", recipe.model.spec)
    model = build_model_from(recipe.model, seed=recipe.seed, task=recipe.data.task)
    skeleton = copy.deepcopy(model)
    g = torch.Generator().manual_seed(recipe.seed)
    calib = x_train[torch.randperm(len(x_train), generator=g)[:recipe.calibration_samples]]
    ctx = {"train": train_dl, "val": val_dl, "loss_fn": task.loss_fn(), "metric": task.train_metric(),
           "example_input": x1, "calibration_data": calib, "calibration": [(calib,)], "finalized": False}
    rep0 = report(model, x1)  # also checks that the model takes the example input
    initial = task.evaluate(model, test_dl)
    out.mkdir(parents=True, exist_ok=True)  # only once the model, the data and the example input fit together
    steps_info = []
    before = None
    for i, step in enumerate(recipe.steps, start=1):
        if before is None and step.kind != "train":  # the metric the compression starts from
            before = initial if i == 1 else task.evaluate(model, test_dl)
            log.info("before compression: %s %.4f on test, %d bytes (report)", task.metric_name, before,
                     rep0.total.bytes)
        log.info("step %d/%d: %s%s", i, len(recipe.steps), step.kind, f" ({step.method})" if step.method else "")
        model.train()
        steps_info.append(_apply_step(model, step, ctx, out, i))
        model.eval()
    if not ctx["finalized"]:
        finalize_(model)
    model.eval()
    after = task.evaluate(model, test_dl)
    if before is None:  # training steps only
        before = initial
    rep = report(model, x1)
    bytes_file = save_compressed(model, out / "model.pq")
    reloaded = task.evaluate(load_compressed_file(out / "model.pq", skeleton), test_dl)
    metric = {"name": task.metric_name, "split": "test", "initial": initial, "before": before, "after": after,
              "reloaded": reloaded}
    log.info("after: %s %.4f (reloaded from model.pq: %.4f); %d bytes reported, %d bytes in the file",
             task.metric_name, after, reloaded, rep.total.bytes, bytes_file)
    files = [str(out / "model.pq")]
    doc = rep.to_dict()
    # fp32 bytes of the model as it came in: a channel-pruned model is smaller than its own dense form
    doc["total"] = {**doc["total"], "bytes": rep.total.bytes, "bytes_fp32": rep0.total.bytes_dense,
                    "bytes_fp32_shrunk": rep.total.bytes_dense, "bytes_file": bytes_file}
    doc.update(metric=metric, steps=steps_info, recipe=recipe.source)
    atomic_write_bytes(out / "report.json", json.dumps(plain(doc), indent=2, default=float).encode())
    files.append(str(out / "report.json"))
    p = _plot(plot_report, rep, out / "report.png")
    if p:
        files.append(p)
    files += [str(out / s["plot"]) for s in steps_info if s.get("plot")]
    _write_yaml(out / "recipe.lock.yaml", recipe.lock())
    files.append(str(out / "recipe.lock.yaml"))
    return RunResult(str(out), metric, rep.total.bytes, rep0.total.bytes_dense, bytes_file,
                     round(time.perf_counter() - t0, 2), files, steps_info)


def evaluate_file(model_path: str | Path, data: DataSource, skeleton: ModelSource | None = None,
                  seed: int = 0) -> dict[str, Any]:
    """Metric of a saved model on the test split of ``data`` (``data.test``, else ``data.train``).

    Args:
        model_path: a ``.pq`` (or ``io.save``) file.
        data: validated data (its ``test`` split, or ``train`` if no test split is given).
        skeleton: the model spec to build the architecture from when the file cannot (a user factory); by
            default ``recipe.lock.yaml`` next to the file is consulted.
        seed: seed for the skeleton's initialisation.

    Returns:
        ``{"metric", "value", "samples", "model"}``.
    """
    model_path = Path(model_path)
    if skeleton is None and (model_path.parent / "recipe.lock.yaml").is_file():
        import yaml

        lock = yaml.safe_load((model_path.parent / "recipe.lock.yaml").read_text()) or {}
        m = lock.get("model") or {}
        if "factory" in m or "hf" in m:
            from .models import check_model_source

            kind = "factory" if "factory" in m else "hf"
            skeleton = dataclasses.replace(check_model_source(m[kind]), kwargs=dict(m.get("kwargs") or {}))
    skel = None
    if skeleton is not None:
        if skeleton.kind == "reference":  # the architecture only: no training for a skeleton
            from ..models import build_model

            skel = build_model(skeleton.spec)
        else:
            skel = build_model_from(dataclasses.replace(skeleton, weights=None), seed=seed, task=data.task)
    model = load_compressed_file(model_path, skel) if skel is not None else load_model_file(model_path)
    split = "test" if data.test is not None else "train"
    ds = load_split(data, split, seed)
    value = data.task_obj.evaluate(model.eval(), loader(ds, data.batch_size, False))
    return {"metric": data.task_obj.metric_name, "value": value, "samples": len(ds), "model": str(model_path),
            "data": getattr(data, split)}
