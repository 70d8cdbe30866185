"""Target-sparsity mode on the digits CNN: the controller alone (before the final snap) lands within ±0.5 pt,
the snap makes it exact, no layer is emptied, and accuracy holds."""
import pytest
import torch

from prunequant import prune_
from prunequant.data import digits_loaders
from prunequant.models.reference import train_reference
from prunequant.pruning import AnalyticThresholdConfig, global_sparsity, layer_sparsity
from prunequant.training import TrainConfig, evaluate

torch.set_num_threads(1)


@pytest.mark.parametrize("target", [0.6, 0.9])
def test_target_sparsity_reached_on_digits_cnn(target):
    model, ref_acc = train_reference("digits_cnn", seed=0)
    train, val, test = digits_loaders(seed=0)
    res = prune_(model, AnalyticThresholdConfig(target_sparsity=target), train=train, val=val,
                 train_config=TrainConfig(lr=1e-3, seed=0, progress=False))
    assert abs(res.sparsity_before_snap - target) <= 0.005, res.history[-1]
    n = sum(r["params"] for r in res.layers)
    assert abs(global_sparsity(model) - target) <= 1.0 / n
    assert all(s < 1.0 for s in layer_sparsity(model).values())
    acc = evaluate(model, test)
    assert acc >= ref_acc - 0.03, (acc, ref_acc)
    assert [h["phase"] for h in res.history].count("finetune") == 10
