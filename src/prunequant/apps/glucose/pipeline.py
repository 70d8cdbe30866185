"""Train, evaluate and compress a :class:`~.model.GlucoseLSTM` with the toolkit's shared pieces.

* training: :class:`prunequant.training.Trainer` with a regression loss (``"mse"`` on standardised glucose, or
  ``"relative"`` = mean((ŷ − y)/y)², which targets MARD) and ``neg_rmse`` as the validation metric;
* compression: analytic-threshold pruning (``prune_(model, AnalyticThresholdConfig(...), train=...)``) followed by
  post-training PWLQ of the weights (and 8-bit activations) (``quantize_(model, PWLQConfig(...), ...)``);
* size: :func:`prunequant.analysis.report` bytes (sparse + low-bit aware) plus the model's fixed buffers.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ...errors import ConfigError, ShapeError
from .metrics import GlucoseMetrics, evaluate_predictions
from .model import GlucoseLSTM

LOSSES = ("mse", "relative")


def regression_loss(kind: str, y_scale: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``"mse"``: mean(((ŷ − y)/y_scale)²), scale-free so extra loss terms (pruning penalties) keep their weight;
    ``"relative"``: mean(((ŷ − y)/y)²) (targets must be > 0)."""
    if kind not in LOSSES:
        raise ConfigError(f"loss must be one of {LOSSES}, got {kind!r}")
    s = float(y_scale)
    if not s > 0:
        raise ConfigError(f"y_scale must be > 0, got {y_scale}")
    if kind == "mse":
        def mse(pred, y):
            return torch.mean(((pred - y) / s) ** 2)
        return mse

    def relative(pred, y):
        return torch.mean(((pred - y) / y.clamp_min(1e-6)) ** 2)
    return relative


def neg_rmse(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Negative RMSE (higher is better), the Trainer's validation metric for glucose."""
    return -float(torch.sqrt(torch.mean((outputs.reshape(targets.shape).float() - targets.float()) ** 2)))


neg_rmse.name = "neg_rmse"  # type: ignore[attr-defined]


@dataclass
class TrainSettings:
    epochs: int = 10
    lr: float = 3e-3
    batch_size: int = 64
    weight_decay: float = 0.0
    loss: str = "mse"
    schedule: str = "cosine"
    seed: int = 0
    progress: bool = True


def _tensor(x, what: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    if not torch.isfinite(t).all():
        raise ShapeError(f"{what} holds NaN/Inf values")
    return t


def make_loader(x, y, batch_size: int, shuffle: bool = False) -> DataLoader:
    xt, yt = _tensor(x, "inputs"), _tensor(y, "targets").reshape(-1)
    if len(xt) != len(yt):
        raise ShapeError(f"{len(xt)} inputs but {len(yt)} targets")
    return DataLoader(TensorDataset(xt, yt), batch_size=batch_size, shuffle=shuffle)


def _trainer_config(s: TrainSettings, epochs: int | None = None, lr: float | None = None):
    from ...training import TrainConfig

    return TrainConfig(epochs=s.epochs if epochs is None else epochs, lr=s.lr if lr is None else lr,
                       optimizer="adamw" if s.weight_decay else "adam", weight_decay=s.weight_decay,
                       schedule=s.schedule, seed=s.seed, progress=s.progress, log_every_epoch=False)


def fit_glucose(model: GlucoseLSTM, x_train, y_train, x_val=None, y_val=None,
                settings: TrainSettings | None = None) -> list[dict[str, Any]]:
    """Fit the model's normalisation on the training data, then train it with the shared Trainer."""
    from ...training import Trainer

    s = settings or TrainSettings()
    torch.manual_seed(s.seed)
    model.fit_normalization(_tensor(x_train, "training inputs"), _tensor(y_train, "training targets"))
    train = make_loader(x_train, y_train, s.batch_size, shuffle=True)
    val = make_loader(x_val, y_val, 1024) if x_val is not None else None
    trainer = Trainer(model, _trainer_config(s), loss_fn=regression_loss(s.loss, float(model.y_std)),
                      metric=neg_rmse)
    return trainer.fit(train, val)


@torch.no_grad()
def predict(model: nn.Module, x, batch_size: int = 2048) -> np.ndarray:
    """Model outputs for inputs ``x`` (numpy or tensor) as a float64 array."""
    was = model.training
    model.eval()
    xt = _tensor(x, "inputs")
    out = torch.cat([model(xt[i:i + batch_size]) for i in range(0, len(xt), batch_size)]) if len(xt) else \
        torch.zeros(0)
    model.train(was)
    return out.double().numpy().reshape(-1)


def evaluate_model(model: nn.Module, x, y, clinical: bool = True) -> GlucoseMetrics:
    return evaluate_predictions(y, predict(model, x), clinical=clinical)


def size_report(model: nn.Module, example_input: torch.Tensor) -> dict[str, int]:
    """Storage and compute per prediction.

    ``bytes``: the compressed ``.pq`` file :func:`prunequant.save` writes (the report measures it with the same
    code), buffers, layout and header included; ``tensor_bytes``: the parameters alone as the cost model prices
    them (cheapest of dense / bitmap / CSR per tensor, never above dense); ``bytes_dense``: fp32 parameters +
    buffers, no container. A dense model's file is ``bytes_dense`` plus ~1-2 kB of layout and header. Also MACs,
    effective (non-zero) MACs, params and non-zeros."""
    from ...analysis import report

    rep = report(model, example_input)
    t = rep.total
    extra = model.buffer_bytes() if hasattr(model, "buffer_bytes") else 0  # already inside the file's bytes
    return {"bytes": int(t.bytes), "tensor_bytes": int(t.bytes - rep.file_overhead_bytes),
            "bytes_dense": int(t.bytes_dense + extra), "macs": int(t.macs),
            "effective_macs": int(t.effective_macs), "params": int(t.params), "nonzeros": int(t.nonzeros)}


@dataclass
class CompressSettings:
    """Analytic-threshold pruning then PWLQ.

    ``exclude`` layers are not pruned: the 1-output head, and the PCA-initialised input projection ``proj``,
    which must cancel nuisance directions ~10^3 larger than the glucose signal and so needs ``input_bits``
    (per-channel, default 14) instead of ``wbits``; the LSTMs take ``wbits`` at ``granularity``.
    ``abits=None`` (default, as the issue asks: PWLQ on the weights) leaves activations in floating point; an
    integer quantizes the LSTM/head inputs too (such a model does not reload with ``prunequant.io.load`` yet).
    """

    sparsity: float = 0.8
    prune_epochs: int = 6
    finetune_epochs: int = 4
    lr: float = 1e-3
    wbits: int = 4
    abits: int | None = None
    granularity: str = "tensor"
    input_bits: int = 14
    breakpoint_method: str = "empirical"
    exclude: tuple[str, ...] = ("head", "proj")
    calibration_samples: int = 512
    extra_prune: dict = field(default_factory=dict)


@dataclass
class CompressionOutcome:
    prune: Any
    quant: Any
    settings: dict


def compress_glucose(model: GlucoseLSTM, x_train, y_train, x_val=None, y_val=None,
                     settings: CompressSettings | None = None, train: TrainSettings | None = None,
                     inplace: bool = False) -> tuple[GlucoseLSTM, CompressionOutcome]:
    """Prune (analytic threshold, fine-tuned, finalized to exact zeros) then quantize (PWLQ) a trained model."""
    from ...api import prune_, quantize_
    from ...pruning import AnalyticThresholdConfig
    from ...quantization import PWLQConfig

    c = settings or CompressSettings()
    t = train or TrainSettings()
    m = model if inplace else copy.deepcopy(model)
    loss = regression_loss(t.loss, float(m.y_std))
    tl = make_loader(x_train, y_train, t.batch_size, shuffle=True)
    vl = make_loader(x_val, y_val, 1024) if x_val is not None else None
    pcfg = AnalyticThresholdConfig(target_sparsity=c.sparsity, epochs=c.prune_epochs,
                                   finetune_epochs=c.finetune_epochs, exclude=list(c.exclude) or None,
                                   **c.extra_prune)
    pres = prune_(m, pcfg, train=tl, val=vl, train_config=_trainer_config(t, lr=c.lr), loss_fn=loss,
                  metric=neg_rmse)
    rng = np.random.default_rng(t.seed)
    xt = np.asarray(x_train)
    calib = _tensor(xt[rng.choice(len(xt), min(c.calibration_samples, len(xt)), replace=False)], "calibration")
    qres = []
    if m.proj is not None:  # the input projection first, at high precision, weights only
        qres.append(quantize_(m, PWLQConfig(wbits=c.input_bits, abits=None, granularity="channel",
                                            bias_correction=False, breakpoint_method=c.breakpoint_method,
                                            skip=("lstm1", "lstm2", "head")), calibration_data=calib))
    qres.append(quantize_(m, PWLQConfig(wbits=c.wbits, abits=c.abits, granularity=c.granularity, bias_correction=False,
                                        breakpoint_method=c.breakpoint_method,
                                        skip=("proj",) if m.proj is not None else ()), calibration_data=calib))
    return m, CompressionOutcome(prune=pres, quant=qres, settings=asdict(c))
