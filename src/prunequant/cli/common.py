"""Options shared by the commands that take a model and data, and the recipe they build from them.

Commands only parse and print: they turn their options into a recipe mapping, which
:func:`prunequant.workflow.parse_recipe` validates completely (model spec, weights, data files, every config
key and value) before anything trains, and :func:`prunequant.workflow.run_recipe` runs.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from ..errors import ConfigError

MODEL_HELP = ("The model: path/to/file.py:factory or package.module:factory (returns an nn.Module), a Hugging "
              "Face folder, a saved .pq/.safetensors model, or a bundled reference name (digits_cnn, mlp, "
              "resnet_small, mobilenet_small: trained on digits first).")

WEIGHTS = typer.Option(None, "--weights", help="Weights for a factory model: .safetensors or a state dict "
                                               "saved with torch.save (read with weights_only=True).")
DATA = typer.Option("digits", "--data", help="Training data: .npz (x, y), .csv (last column the target), an image "
                                             "folder root/<class>/<image>, or a bundled set (digits).")
VAL = typer.Option(None, "--val", help="Validation data (default: 10% held out of --data).")
TEST = typer.Option(None, "--test", help="Test data for the reported metric (default: 10% held out of --data).")
TARGET = typer.Option(None, "--target", help="CSV: name of the target column (default: the last column).")
TASK = typer.Option("classification", "--task", help="classification (cross-entropy, accuracy) or regression "
                                                     "(MSE, RMSE).")
LOSS = typer.Option(None, "--loss", help="Override the task's loss: cross_entropy, mse or l1.")
METRIC = typer.Option(None, "--metric", help="Override the task's metric: accuracy, rmse or mae.")
INPUT_SHAPE = typer.Option(None, "--input-shape", help="Model input shape, batch first, e.g. 1,1,8,8 (default: "
                                                       "one sample of the data).")
BATCH = typer.Option(64, "--batch-size", help="Batch size for training and evaluation.")
SET = typer.Option(None, "--set", help="Any other config key of the method, KEY=VALUE (YAML value; repeatable).")
OUT = typer.Option(None, "--out", help="Output folder (model.pq, report.json, plots, recipe.lock.yaml).")
SEED = typer.Option(0, "--seed", help="Seed of data order, initialisation and training.")
LR = typer.Option(None, "--lr", help="Learning rate of the weights (Adam).")


def parse_shape(text: str | None, what: str = "--input-shape") -> list[int] | None:
    """``"1,1,8,8"`` -> ``[1, 1, 8, 8]`` (also ``1x1x8x8``); a clear error otherwise."""
    if text is None:
        return None
    import re

    try:
        shape = [int(s) for s in re.split(r"[,x]", text.strip())]
    except ValueError:
        shape = []
    if not shape or any(d <= 0 for d in shape):
        raise ConfigError(f"{what}: expected positive integers separated by commas, e.g. 1,1,8,8; got {text!r}")
    return shape


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``["epochs=3", "exclude=[fc]"]`` -> ``{"epochs": 3, "exclude": ["fc"]}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set: expected KEY=VALUE, got {item!r}")
        try:
            import yaml

            out[key.strip()] = yaml.safe_load(value)
        except ImportError:  # pragma: no cover - PyYAML is part of the [cli] extra
            out[key.strip()] = json.loads(value)
        except Exception as e:  # noqa: BLE001 - a YAML parse error
            raise ConfigError(f"--set {item!r}: cannot parse the value ({e})") from None
    return out


def model_block(model: str, weights: Path | None, input_shape: str | None) -> dict[str, Any]:
    """The recipe's ``model`` mapping from the command-line options."""
    from ..workflow.models import REFERENCE_MODELS, _split_factory

    if _split_factory(model) is not None:
        block: dict[str, Any] = {"factory": model}
    elif model in REFERENCE_MODELS and not Path(model).exists():
        block = {"reference": model}
    elif Path(model).is_dir():
        block = {"hf": model}
    else:
        block = {"file": model}
    if weights is not None:
        block["weights"] = str(weights)
    shape = parse_shape(input_shape)
    if shape is not None:
        block["input_shape"] = shape
    return block


def data_block(data: str, val: str | None, test: str | None, target: str | None, task: str, loss: str | None,
               metric: str | None, batch_size: int) -> dict[str, Any]:
    """The recipe's ``data`` mapping from the command-line options."""
    block: dict[str, Any] = {"train": data, "task": task, "batch_size": batch_size}
    for k, v in (("val", val), ("test", test), ("target", target), ("loss", loss), ("metric", metric)):
        if v is not None:
            block[k] = v
    if data == "digits":
        block.setdefault("val", "digits")
        block.setdefault("test", "digits")
    return block


def run_and_print(raw: dict[str, Any], out: Path, title: str) -> Any:
    """Validate ``raw`` (a recipe mapping) completely, then run it into ``out`` and print the per-layer table,
    a summary line and one JSON line (the last line of stdout)."""
    from ..workflow import parse_recipe, run_recipe

    recipe = parse_recipe(raw, base_dir=".", source="command line")
    result = run_recipe(recipe, out)
    print_result(result, out, title)
    return result


def print_result(result, out: Path, title: str) -> None:
    """Per-layer table, a summary line and one JSON line (the last line of stdout) of a finished recipe run."""
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
