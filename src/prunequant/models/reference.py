"""Train the reference models on the digits task, fast and deterministic (seconds on 2 CPU cores).

Documented accuracies (test split, seed 0, defaults below) are checked in tests/test_models.py.
"""
from __future__ import annotations

import copy
from functools import lru_cache

import torch
from torch import nn

from ..data import digits_loaders
from .registry import build_model

REFERENCE_EPOCHS = {"digits_cnn": 15, "mlp": 20, "resnet_small": 12, "mobilenet_small": 15}
REFERENCE_LR = {"digits_cnn": 3e-3, "mlp": 2e-3, "resnet_small": 3e-3, "mobilenet_small": 3e-3}


@lru_cache(maxsize=16)
def _train_cached(name: str, seed: int, epochs: int, progress: bool) -> tuple[nn.Module, float]:
    from ..training import TrainConfig, Trainer

    torch.manual_seed(seed)
    model = build_model(name)
    train, val, test = digits_loaders(batch_size=64, seed=seed)
    cfg = TrainConfig(epochs=epochs, lr=REFERENCE_LR.get(name, 3e-3), schedule="cosine", seed=seed,
                      progress=progress, log_every_epoch=False)
    trainer = Trainer(model, cfg)
    trainer.fit(train)
    model.eval()
    return model, trainer.evaluate(test)


def train_reference(name: str = "digits_cnn", seed: int = 0, epochs: int | None = None,
                    progress: bool = False) -> tuple[nn.Module, float]:
    """Train reference model ``name`` on digits; returns ``(model, test_accuracy)``.

    Results are cached per process (a fresh deep copy is returned each call), so benchmarks comparing several
    methods start every method from the very same trained weights.
    """
    model, acc = _train_cached(name, seed, epochs or REFERENCE_EPOCHS.get(name, 15), progress)
    return copy.deepcopy(model), acc
