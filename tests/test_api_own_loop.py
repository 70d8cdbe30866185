"""examples/own_training_loop.py: analytic pruning driven by a plain PyTorch loop (no Trainer) reaches 90%."""
import importlib.util
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "own_training_loop.py"


def _example():
    spec = importlib.util.spec_from_file_location("own_training_loop", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_own_training_loop_quick_reaches_90_percent_and_keeps_accuracy():
    res = _example().main(quick=True)
    assert res["sparsity"] == pytest.approx(0.9, abs=0.005)
    assert res["accuracy"] > 0.9 and res["accuracy"] >= res["dense_accuracy"] - 0.05
