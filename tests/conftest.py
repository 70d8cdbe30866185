"""Shared test fixtures and helpers.

Fixtures: ``digits`` (train/val/test loaders of the bundled digits set), ``digits_tensors`` (the three
TensorDatasets), ``trained_cnn`` (the reference digits CNN trained once per process: ``(model, accuracy)``),
``make_cnn`` (fresh, seeded ``DigitsCNN`` factory), ``x_digits`` (one all-zero digits input) and ``run_cli``
(the command line run in-process: ``(exit_code, stdout, stderr)``). The helpers are importable too
(``from conftest import make_cnn``) for module-level use.
"""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn


def make_cnn(seed: int = 0, cls: type[nn.Module] | None = None, random_bn_stats: bool = False) -> nn.Module:
    """A fresh ``cls()`` (default ``DigitsCNN``) after ``torch.manual_seed(seed)``; with ``random_bn_stats`` the
    BatchNorm running statistics are drawn non-trivially (mean ~ N(0, 0.1), var ~ U(0.5, 1.5)) and the model is
    put in eval mode, so BN folding has something to fold."""
    if cls is None:
        from prunequant.models import DigitsCNN

        cls = DigitsCNN
    torch.manual_seed(seed)
    model = cls()
    if random_bn_stats:
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        model.eval()
    return model


def last_json(output: str) -> dict:
    """The last line of ``output`` that is a JSON object."""
    return json.loads([line for line in output.splitlines() if line.strip().startswith("{")][-1])


def run_cli(args: list[str], capsys=None) -> tuple[int, str, str]:
    """Run ``prunequant ARGS`` in this process through the real entry point (argument parsing, one-line
    errors, exit status); returns ``(exit_code, stdout, stderr)``."""
    from prunequant.cli.main import run

    try:
        run([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    if capsys is None:
        return code, "", ""
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="session")
def digits():
    """``(train, val, test)`` DataLoaders of the bundled digits set (batch 64, seed 0)."""
    from prunequant.data import digits_loaders

    return digits_loaders(batch_size=64, seed=0)


@pytest.fixture(scope="session")
def digits_tensors():
    """``{"train", "val", "test"}`` TensorDatasets of the bundled digits set (seed 0)."""
    from prunequant.data import digits_splits

    return digits_splits(0)


@pytest.fixture
def trained_cnn():
    """``(model, test_accuracy)`` of the reference digits CNN (trained once per process, a fresh copy each time)."""
    from prunequant.models.reference import train_reference

    return train_reference("digits_cnn", seed=0)


@pytest.fixture(name="make_cnn")
def _make_cnn_fixture():
    return make_cnn


@pytest.fixture
def x_digits() -> torch.Tensor:
    return torch.zeros(1, 1, 8, 8)


@pytest.fixture(name="run_cli")
def _run_cli_fixture(capsys):
    def _run(*args):
        return run_cli(list(args), capsys)
    return _run
