"""Training script used by the DDP and kill/resume tests (run under torchrun or plain python).

usage: train_mlp.py OUT_DIR BATCH [--kill-at N] [--ckpt DIR]
Writes OUT_DIR/final.safetensors with the final weights (rank 0).
"""
import argparse
import os

import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from prunequant.data import digits_splits
from prunequant.models import MLP
from prunequant.training import TrainConfig, Trainer, TrainPlugin

torch.set_num_threads(1)


class KillAt(TrainPlugin):
    """Simulates a crash: the process dies abruptly after step N."""

    def __init__(self, n):
        self.n = n

    def on_step_end(self, model, step):
        if self.n and step == self.n:
            os._exit(17)


class L2(TrainPlugin):
    """A plugin with state, to check that plugin state resumes exactly."""

    def __init__(self):
        self.calls = 0

    def loss(self, model, step):
        self.calls += 1
        return 1e-4 * sum((p ** 2).sum() for p in model.parameters()) * (1 + 0.01 * self.calls)

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, s):
        self.calls = s["calls"]


p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("batch", type=int)
p.add_argument("--kill-at", type=int, default=0)
p.add_argument("--ckpt", default=None)
p.add_argument("--epochs", type=int, default=2)
a = p.parse_args()
torch.manual_seed(0)
model = MLP(hidden=(32,))
ds = digits_splits()["train"]
ds = torch.utils.data.Subset(ds, range(1024))
cfg = TrainConfig(epochs=a.epochs, lr=1e-2, optimizer="sgd", seed=3, progress=False, schedule="cosine",
                  checkpoint_dir=a.ckpt, checkpoint_every=5 if a.ckpt else 0)
trainer = Trainer(model, cfg, plugins=[L2(), KillAt(a.kill_at)])
trainer.fit(DataLoader(ds, batch_size=a.batch))
if int(os.environ.get("RANK", "0")) == 0:
    os.makedirs(a.out, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(a.out, "final.safetensors"))
trainer.close()
