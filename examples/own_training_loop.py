"""Analytic-threshold pruning to 90% sparsity inside a plain PyTorch training loop (no prunequant Trainer).

The loop below is ordinary PyTorch; prunequant adds three calls to it:

1. ``plugin = prune_(model, AnalyticThresholdConfig(target_sparsity=0.9), total_steps=...)`` attaches the learnable
   thresholds h(w) = sigmoid((w² − β²)/α²) and returns the training plugin;
2. in every step ``loss = task_loss + plugin.loss(model, step)`` and, after ``optimizer.step()``,
   ``plugin.on_step_end(model, step)`` (the sparsity controller, α annealing, minimum density);
3. at the end ``finalize_(model)``: exact zeros, plain ``nn.Module`` again.

Run: ``python examples/own_training_loop.py [--quick]``; the last output line is one JSON object
``{"sparsity": ..., "accuracy": ...}`` (test accuracy of the finalized model on the bundled digits data).
"""
from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from prunequant import finalize_, prune_
from prunequant.data import digits_loaders
from prunequant.models import DigitsCNN
from prunequant.pruning import AnalyticThresholdConfig, global_sparsity
from prunequant.pruning.analytic import harden_masks_
from prunequant.training import param_groups


def train_epochs(model, loader, optimizer, epochs, plugin=None, step=0):
    """A plain training loop; ``plugin`` hooks in with two lines. Returns the global step."""
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            step += 1
            loss = F.cross_entropy(model(x), y)
            if plugin is not None:
                loss = loss + plugin.loss(model, step)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if plugin is not None:
                plugin.on_step_end(model, step)
    return step


@torch.no_grad()
def accuracy(model, loader):
    model.eval()
    hits = sum(int((model(x).argmax(1) == y).sum()) for x, y in loader)
    return hits / sum(len(y) for _, y in loader)


def main(quick: bool = False, sparsity: float = 0.9, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    train, val, test = digits_loaders(batch_size=64, seed=seed)
    dense_epochs, prune_epochs, finetune_epochs = (6, 10, 3) if quick else (20, 30, 10)

    model = DigitsCNN()
    train_epochs(model, train, torch.optim.Adam(model.parameters(), lr=3e-3), dense_epochs)
    dense_acc = accuracy(model, test)

    # 1. attach the thresholds; total_steps sets the sparsity ramp and the α annealing
    plugin = prune_(model, AnalyticThresholdConfig(target_sparsity=sparsity),
                    total_steps=prune_epochs * len(train))
    optimizer = torch.optim.Adam(param_groups(model, [plugin], lr=1e-3))  # α/β get their own learning rate
    # 2. the same loop, with the plugin's loss term and step hook
    step = train_epochs(model, train, optimizer, prune_epochs, plugin)
    plugin.snap_to_target()   # all β scaled by one factor so the hard sparsity is exactly the target
    harden_masks_(model)      # fixed masks |w| > β for a short fine-tune
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    train_epochs(model, train, optimizer, finetune_epochs, step=step)
    # 3. exact zeros, plain nn.Module
    finalize_(model)

    result = {"sparsity": round(global_sparsity(model), 4), "accuracy": round(accuracy(model, test), 4),
              "dense_accuracy": round(dense_acc, 4)}
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer epochs (under a minute on 2 CPU cores)")
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)  # a small model: more threads only contend
    res = main(a.quick, a.sparsity, a.seed)
    print(f"dense test accuracy {res['dense_accuracy']:.4f} -> pruned to {res['sparsity']:.1%} sparsity: "
          f"{res['accuracy']:.4f}")
    print(json.dumps({"sparsity": res["sparsity"], "accuracy": res["accuracy"]}))
