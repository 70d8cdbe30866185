"""Recipes: a pipeline of compression steps in one YAML file, validated against the Python configs before
anything runs, and its lock file (every default resolved, package versions, seed).

Schema (keys of each step are the fields of the method's config dataclass, plus ``method`` and an optional
``train`` mapping of :class:`~prunequant.training.TrainConfig` fields for that step)::

    seed: 0
    model: {factory: "my_model.py:build", kwargs: {width: 16}, weights: w.safetensors, input_shape: [1, 1, 8, 8]}
           # or {reference: digits_cnn} | {hf: path/to/dir} | {file: model.pq}
    data: {train: train.npz, val: val.npz, test: test.npz, task: classification}   # or {bundled: digits}
          # val / test missing: 10% of train each, held out with the seed
    train: {lr: 0.001}                       # TrainConfig defaults for every step that trains
    steps:
      - train: {epochs: 5}                   # plain training with the task loss (TrainConfig fields)
      - prune: {method: analytic, target_sparsity: 0.5, epochs: 3}
      - quantize: {method: pwlq, wbits: 4, abits: 8}
      - finalize: {}
      - export: {format: onnx}               # OUT/model.pq is always written

Relative paths are relative to the recipe file.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import platform
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .data import DataSource, check_data_source
from .models import ModelSource, check_model_source

# step kind -> method name -> ("module:ConfigClass", fixed config keys)
METHODS: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "prune": {
        "analytic": ("prunequant.pruning:AnalyticThresholdConfig", {}),
        "mac_budget": ("prunequant.pruning:MacBudgetConfig", {}),
        "magnitude": ("prunequant.pruning:MagnitudeConfig", {}),
    },
    "quantize": {
        "pwlq": ("prunequant.quantization:PWLQConfig", {"scheme": "pwlq"}),
        "uniform": ("prunequant.quantization:PWLQConfig", {"scheme": "uniform"}),
        "log2": ("prunequant.quantization.log2:Log2Config", {}),
    },
    "joint": {
        "joint": ("prunequant.joint:JointConfig", {}),
        "analytic_then_pwlq": ("prunequant.joint:AnalyticPWLQConfig", {}),
        "magnitude_qat": ("prunequant.joint:MagnitudeQATConfig", {}),
    },
}
DEFAULT_METHOD = {"prune": "analytic", "quantize": "pwlq", "joint": "joint"}
STEP_KINDS = ("train", "prune", "quantize", "joint", "finalize", "export")
EXPORT_FORMATS = ("onnx",)
TOP_KEYS = ("seed", "model", "data", "train", "steps", "calibration_samples", "prunequant_lock", "versions")


def _close(key: str, options: list[str]) -> str:
    m = difflib.get_close_matches(key, options, n=1)
    return f" (did you mean {m[0]!r}?)" if m else ""


def _config_class(path: str) -> type:
    mod, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"config {path} is not available in this installation ({e})") from None


def _coerce(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """YAML lists -> tuples where the config's field is a tuple (so a lock file round-trips)."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable annotations: keep values as they are
        hints = {}
    out = {}
    for k, v in values.items():
        hint = str(hints.get(k, ""))
        if isinstance(v, list) and ("tuple" in hint.lower() or "sequence" in hint.lower()):
            v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
        out[k] = v
    return out


def build_config(cls: type, values: dict[str, Any], where: str) -> Any:
    """``cls(**values)`` with unknown keys and invalid values reported as one line naming ``where``."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}{_close(unknown[0], names)} for {cls.__name__} "
                          f"(keys: {', '.join(names)})")
    try:
        return cls(**_coerce(cls, values))
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {type(e).__name__}: {e}") from None


def _train_config(values: dict[str, Any], where: str, base: Any = None) -> Any:
    from ..training import TrainConfig

    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of TrainConfig fields, got {type(values).__name__}")
    merged = {**(dataclasses.asdict(base) if base is not None else {}), **values}
    return build_config(TrainConfig, merged, where)


def plain(v: Any) -> Any:
    """A YAML/JSON-able copy (tuples -> lists, dataclasses -> dicts, paths -> str)."""
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, (Path, str)):
        return str(v)
    if hasattr(v, "item") and callable(v.item) and getattr(v, "ndim", 1) == 0:
        return v.item()  # numpy / torch scalars
    return v


@dataclass
class Step:
    """One validated step: its kind, method, config object (None for train/finalize/export) and options."""

    kind: str
    method: str | None = None
    config: Any = None
    train: Any = None  # TrainConfig for steps that train
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.method is not None:
            body["method"] = self.method
        if self.config is not None:
            fixed = METHODS[self.kind][self.method][1]
            body.update({k: v for k, v in plain(self.config).items() if k not in fixed})
        if self.kind == "train":
            body.update(plain(self.train))
        elif self.train is not None:
            body["train"] = plain(self.train)
        body.update(plain(self.options))
        return {self.kind: body}


@dataclass
class Recipe:
    """A validated recipe (see the module docstring)."""

    model: ModelSource
    data: DataSource
    steps: list[Step]
    seed: int = 0
    input_shape: tuple[int, ...] | None = None
    train: Any = None
    calibration_samples: int = 512
    source: str | None = None

    def lock(self) -> dict[str, Any]:
        """The lock mapping: every default resolved, absolute paths, package versions and seed."""
        return {"prunequant_lock": 1, "versions": versions(), "seed": self.seed,
                "model": {**self.model.to_dict(),
                          **({"input_shape": list(self.input_shape)} if self.input_shape else {})},
                "data": self.data.to_dict(), "train": plain(self.train),
                "calibration_samples": self.calibration_samples,
                "steps": [s.to_dict() for s in self.steps]}


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    import numpy
    import torch

    from .. import __version__

    return {"prunequant": str(__version__), "torch": str(torch.__version__), "numpy": str(numpy.__version__),
            "python": platform.python_version()}


def _resolve(p: Any, base: Path) -> Any:
    if not isinstance(p, str) or not p:
        return p
    if ":" in p and not p.endswith((".npz", ".csv")):  # file.py:factory
        target, _, fn = p.rpartition(":")
        if target.endswith(".py") or "/" in target:
            return f"{_resolve(target, base)}:{fn}"
        return p
    q = Path(p)
    if q.is_absolute() or p in ("digits",) or "/" not in p and not q.suffix and not (base / q).exists():
        return p
    return str((base / q).resolve())


def parse_recipe(raw: dict[str, Any], base_dir: str | Path = ".", source: str | None = None) -> Recipe:
    """Validate a recipe mapping: every key, every config value and every path, before anything runs.

    Args:
        raw: the parsed YAML.
        base_dir: folder that relative paths are relative to (the recipe's folder).
        source: the recipe file, for messages.

    Returns:
        The :class:`Recipe`.

    Raises:
        ConfigError / StorageError: one-line messages naming the step and key.
    """
    where = source or "recipe"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with model, data and steps")
    unknown = [k for k in raw if k not in TOP_KEYS]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}{_close(unknown[0], list(TOP_KEYS))}")
    base = Path(base_dir)
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"{where}: seed must be an integer, got {seed!r}")
    # model
    m = raw.get("model")
    if isinstance(m, str):
        m = {"spec": m}
    if not isinstance(m, dict):
        raise ConfigError(f"{where}: model must be a mapping, e.g. {{factory: my_model.py:build}}")
    kinds = [k for k in ("factory", "reference", "hf", "file", "spec") if k in m]
    extra = [k for k in m if k not in ("factory", "reference", "hf", "file", "spec", "weights", "input_shape",
                                       "kwargs")]
    if extra:
        raise ConfigError(f"{where}: model: unknown key {extra[0]!r} (factory, kwargs, reference, hf, file, "
                          f"weights, input_shape)")
    if len(kinds) != 1:
        raise ConfigError(f"{where}: model: give exactly one of factory, reference, hf, file")
    spec = _resolve(str(m[kinds[0]]), base) if kinds[0] != "reference" else str(m[kinds[0]])
    weights = _resolve(m.get("weights"), base)
    model = check_model_source(spec, weights)
    if m.get("kwargs"):
        if model.kind != "factory" or not isinstance(m["kwargs"], dict):
            raise ConfigError(f"{where}: model.kwargs must be a mapping, and only for a factory")
        model = dataclasses.replace(model, kwargs=dict(m["kwargs"]))
    # data
    d = raw.get("data")
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: data must be a mapping, e.g. {{train: train.npz, test: test.npz}}")
    d = dict(d)
    if "bundled" in d:
        name = d.pop("bundled")
        for split in ("train", "val", "test"):
            d.setdefault(split, name)
    allowed = ("train", "val", "test", "task", "target", "batch_size", "loss", "metric", "input_shape")
    bad = [k for k in d if k not in allowed]
    if bad:
        raise ConfigError(f"{where}: data: unknown key {bad[0]!r}{_close(bad[0], list(allowed))}")
    input_shape = m.get("input_shape", d.pop("input_shape", None))
    for split in ("train", "val", "test"):
        if split in d:
            d[split] = _resolve(d[split], base)
    data = check_data_source(**d, input_shape=None)
    if input_shape is not None:
        if not isinstance(input_shape, (list, tuple)) or not input_shape or \
                not all(isinstance(v, int) and v > 0 for v in input_shape):
            raise ConfigError(f"{where}: model.input_shape must be a list of positive integers, got {input_shape!r}")
        input_shape = tuple(input_shape)
    if data.train is None:
        raise ConfigError(f"{where}: data.train is needed (training and calibration data)")
    base_train = _train_config(raw.get("train") or {}, f"{where}: train", None)
    base_train = dataclasses.replace(base_train, seed=seed) if "seed" not in (raw.get("train") or {}) else base_train
    calib = raw.get("calibration_samples", 512)
    if not isinstance(calib, int) or calib < 1:
        raise ConfigError(f"{where}: calibration_samples must be a positive integer, got {calib!r}")
    # steps
    steps_raw = raw.get("steps")
    if not isinstance(steps_raw, list) or not steps_raw:
        raise ConfigError(f"{where}: steps must be a non-empty list, e.g. [{{prune: {{method: analytic}}}}]")
    steps = []
    for i, s in enumerate(steps_raw, start=1):
        if isinstance(s, str):
            s = {s: {}}
        if not isinstance(s, dict) or len(s) != 1:
            raise ConfigError(f"{where}: step {i}: expected one mapping like {{prune: {{...}}}}, got {s!r}")
        kind, body = next(iter(s.items()))
        body = dict(body or {})
        at = f"{where}: step {i} ({kind})"
        if kind not in STEP_KINDS:
            raise ConfigError(f"{where}: step {i}: unknown step {kind!r}{_close(str(kind), list(STEP_KINDS))}; "
                              f"steps: {', '.join(STEP_KINDS)}")
        if kind == "train":
            steps.append(Step("train", train=_train_config(body, at, base_train)))
        elif kind == "finalize":
            bad = [k for k in body if k != "bake_quantization"]
            if bad:
                raise ConfigError(f"{at}: unknown key {bad[0]!r} (bake_quantization)")
            steps.append(Step("finalize", options={"bake_quantization": bool(body.get("bake_quantization", False))}))
        elif kind == "export":
            fmt = body.pop("format", "onnx")
            if fmt not in EXPORT_FORMATS:
                raise ConfigError(f"{at}: format must be one of {', '.join(EXPORT_FORMATS)} (model.pq is always "
                                  f"written), got {fmt!r}")
            bad = [k for k in body if k not in ("check",)]
            if bad:
                raise ConfigError(f"{at}: unknown key {bad[0]!r} (format, check)")
            steps.append(Step("export", options={"format": fmt, "check": bool(body.get("check", True))}))
        else:
            method = str(body.pop("method", DEFAULT_METHOD[kind])).replace("-", "_")
            if method not in METHODS[kind]:
                names = list(METHODS[kind])
                raise ConfigError(f"{at}: unknown method {method!r}{_close(method, names)}; methods: "
                                  f"{', '.join(names)}")
            path, fixed = METHODS[kind][method]
            clash = [k for k in fixed if k in body and body[k] != fixed[k]]
            if clash:
                raise ConfigError(f"{at}: method {method} sets {clash[0]}={fixed[clash[0]]!r}; drop "
                                  f"{clash[0]}={body[clash[0]]!r}")
            train = _train_config(body.pop("train"), f"{at}: train", base_train) if "train" in body else base_train
            cfg = build_config(_config_class(path), {**body, **fixed}, at)
            steps.append(Step(kind, method, cfg, train))
    return Recipe(model=model, data=data, steps=steps, seed=seed, input_shape=input_shape, train=base_train,
                  calibration_samples=calib, source=source)


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe (or lock) YAML file (needs PyYAML, the ``[cli]`` extra)."""
    from ..errors import StorageError

    path = Path(path)
    if not path.is_file():
        raise StorageError(f"{path}: not found")
    try:
        import yaml
    except ImportError as e:
        raise ConfigError("recipes need PyYAML: pip install 'prunequant[cli]'") from e
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    return parse_recipe(raw, base_dir=path.parent, source=str(path))
