"""The Trainer on the data and models users bring: IterableDataset, dict batches, ModelOutput-like outputs, a user
loss function, the user's own sampler (kept, never replaced), and a warning when a run ends far below its start."""
import logging
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, Sampler, TensorDataset

from prunequant.errors import ConfigError
from prunequant.training import TrainConfig, Trainer

torch.set_num_threads(1)


def _xy(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    return x, (x[:, 0] > 0).long()


class Stream(IterableDataset):
    def __init__(self, x, y, batch=16):
        self.x, self.y, self.batch = x, y, batch

    def __iter__(self):
        for i in range(0, len(self.x), self.batch):
            yield self.x[i:i + self.batch], self.y[i:i + self.batch]


@dataclass
class Output:  # what a Hugging Face model returns, reduced to the fields the trainer reads
    logits: torch.Tensor
    loss: torch.Tensor | None = None


class DictModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 2)

    def forward(self, features, labels=None):
        logits = self.lin(features)
        return Output(logits, F.cross_entropy(logits, labels) if labels is not None else None)


def _dict_batches(x, y, batch=16):
    return [{"features": x[i:i + batch], "labels": y[i:i + batch]} for i in range(0, len(x), batch)]


def test_iterable_dataset_trains_and_evaluates():
    x, y = _xy()
    torch.manual_seed(0)
    model = nn.Linear(6, 2)
    loader = DataLoader(Stream(x, y), batch_size=None)
    hist = Trainer(model, TrainConfig(epochs=3, lr=0.05, progress=False)).fit(loader, loader)
    assert [h["step"] for h in hist] == [6, 12, 18]
    assert hist[-1]["val_accuracy"] > 0.9
    with pytest.raises(ConfigError, match="max_steps"):
        Trainer(model, TrainConfig(epochs=1, schedule="cosine", progress=False)).fit(loader)
    hist = Trainer(model, TrainConfig(epochs=5, schedule="cosine", max_steps=8, progress=False)).fit(loader)
    assert sum(1 for _ in hist) == 1  # one full epoch (6 steps), then stopped at step 8 mid-epoch


def test_dict_batches_and_model_output_with_logits():
    x, y = _xy()
    torch.manual_seed(0)
    model = DictModel()
    data = _dict_batches(x, y)
    hist = Trainer(model, TrainConfig(epochs=3, lr=0.05, progress=False)).fit(data, data)
    assert hist[-1]["val_accuracy"] > 0.9
    torch.manual_seed(0)
    own = DictModel()  # loss_fn=None: the model's own .loss from the labels
    hist = Trainer(own, TrainConfig(epochs=3, lr=0.05, progress=False), loss_fn=None).fit(data, data)
    assert hist[-1]["val_accuracy"] > 0.9


def test_user_loss_function_is_used():
    x, y = _xy()
    seen = []

    def loss_fn(out, target):
        seen.append(out.shape)
        return F.cross_entropy(out, target) * 0.0 + out.pow(2).mean()  # drives the outputs to zero

    torch.manual_seed(0)
    model = nn.Linear(6, 2)
    with torch.no_grad():
        before = float(model(x).abs().mean())
    Trainer(model, TrainConfig(epochs=10, lr=0.05, progress=False), loss_fn=loss_fn).fit(
        DataLoader(TensorDataset(x, y), batch_size=32))
    assert len(seen) == 30 and seen[0] == (32, 2)
    with torch.no_grad():
        assert float(model(x).abs().mean()) < 0.2 * before


class EvenOnly(Sampler):
    """A user's sampler: only even indices, in a fixed order."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter(range(0, self.n, 2))

    def __len__(self):
        return (self.n + 1) // 2


def test_the_users_sampler_is_kept():
    x, y = _xy(40)
    ids = torch.arange(40)
    seen = []

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 2)

        def forward(self, inp):
            seen.extend(inp[:, -1].long().tolist())
            return self.lin(inp[:, :6])

    data = TensorDataset(torch.cat([x, ids[:, None].float()], 1), y)
    Trainer(Spy(), TrainConfig(epochs=2, progress=False)).fit(DataLoader(data, batch_size=4, sampler=EvenOnly(40)))
    assert seen == list(range(0, 40, 2)) * 2
    seen.clear()  # the default sampler (shuffle=True) stays owned by the trainer: seeded permutation of all
    Trainer(Spy(), TrainConfig(epochs=1, progress=False)).fit(DataLoader(data, batch_size=4, shuffle=True))
    assert sorted(seen) == list(range(40)) and seen != list(range(40))


def test_a_run_ending_far_below_its_start_metric_warns(caplog):
    x, y = _xy()
    torch.manual_seed(0)
    model = nn.Linear(6, 2)
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    Trainer(model, TrainConfig(epochs=4, lr=0.05, progress=False)).fit(loader)  # a good model first
    with caplog.at_level(logging.WARNING, logger="prunequant.training"):
        Trainer(model, TrainConfig(epochs=2, lr=0.05, progress=False)).fit(loader, loader)
    assert not [r for r in caplog.records if "far below" in r.message]

    def wrong(out, target):  # trains toward the wrong class
        return F.cross_entropy(out, 1 - target)

    with caplog.at_level(logging.WARNING, logger="prunequant.training"):
        Trainer(model, TrainConfig(epochs=3, lr=0.1, progress=False), loss_fn=wrong).fit(loader, loader)
    msgs = [r.getMessage() for r in caplog.records if "far below" in r.getMessage()]
    assert len(msgs) == 1 and "val_accuracy" in msgs[0] and "at the start" in msgs[0]
