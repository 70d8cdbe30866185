"""The shared training loop: plugins, per-group learning rates, checkpoints with exact resume, and DDP.

Data order is owned by the trainer: every epoch draws a permutation from ``(seed, epoch)`` through
``DistributedSampler`` (one replica when not distributed), so a resumed run and a ``torchrun`` run see exactly the
same samples as an uninterrupted single-process run with the same global batch.
"""
from __future__ import annotations

import itertools
import math
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from ..errors import ConfigError
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .metrics import accuracy
from .plugin import TrainPlugin

_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


@dataclass
class TrainConfig:
    """Training hyper-parameters.

    ``checkpoint_every``: steps between checkpoints (0 = at each epoch end); needs ``checkpoint_dir``.
    ``resume``: continue from the newest checkpoint in ``checkpoint_dir`` if one exists.
    ``max_steps``: stop after this many optimizer steps in total (None = run all epochs).
    ``schedule``: "constant" or "cosine" (per step, over the whole run).
    """

    epochs: int = 10
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "constant"
    grad_clip: float | None = None
    seed: int = 0
    device: str = "cpu"
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0
    resume: bool = True
    max_steps: int | None = None
    progress: bool = True
    log_every_epoch: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.optimizer not in _OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {sorted(_OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if self.epochs < 0 or self.lr <= 0:
            raise ConfigError(f"epochs must be >= 0 and lr > 0 (got epochs={self.epochs}, lr={self.lr})")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _dist_info() -> tuple[bool, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return world > 1, int(os.environ.get("RANK", "0")), world


class Trainer:
    """Train ``model`` with a task loss plus the extra terms and parameter groups of ``plugins``.

    ``loss_fn(outputs, targets)`` is the task loss; ``metric(outputs, targets) -> float`` (higher is better) is used
    by :meth:`evaluate` and logged for the validation loader each epoch.
    """

    def __init__(self, model: nn.Module, config: TrainConfig | None = None,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
                 plugins: Iterable[TrainPlugin] = (), metric: Callable[..., float] = accuracy,
                 console: Console | None = None):
        if not isinstance(model, nn.Module):
            raise ConfigError(f"Trainer needs a torch.nn.Module, got {type(model).__name__}")
        self.config = config or TrainConfig()
        self.model = model
        self.loss_fn = loss_fn
        self.plugins = list(plugins)
        self.metric = metric
        self.console = console or Console(stderr=True)
        self.distributed, self.rank, self.world_size = _dist_info()
        self.device = torch.device(self.config.device if self.config.device != "auto"
                                   else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.history: list[dict[str, Any]] = []
        self.global_step = 0
        self.epoch = 0
        self._step_in_epoch = 0
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler = None
        self._ddp_model: nn.Module | None = None

    # ------------------------------------------------------------------ set-up
    def _init_distributed(self) -> None:
        if self.distributed and not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            if self.device.type == "cuda":
                local = int(os.environ.get("LOCAL_RANK", "0"))
                torch.cuda.set_device(local)
                self.device = torch.device("cuda", local)
            dist.init_process_group(backend=backend)

    def _build_optimizer(self, total_steps: int) -> None:
        cfg = self.config
        groups, claimed = [], set()
        for p in self.plugins:
            for g in p.param_groups(self.model):
                params = [q for q in g["params"] if q.requires_grad]
                claimed.update(id(q) for q in params)
                groups.append({**g, "params": params})
        default = [q for q in self.model.parameters() if q.requires_grad and id(q) not in claimed]
        groups.insert(0, {"params": default})
        groups = [g for g in groups if g["params"]]
        kw: dict[str, Any] = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
        if cfg.optimizer == "sgd":
            kw["momentum"] = cfg.momentum
        self.optimizer = _OPTIMIZERS[cfg.optimizer](groups, **kw)
        if cfg.schedule == "cosine":
            total = max(total_steps, 1)
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                self.optimizer, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total)))

    def _loader(self, loader: DataLoader, epoch: int) -> DataLoader:
        sampler = DistributedSampler(loader.dataset, num_replicas=self.world_size, rank=self.rank, shuffle=True,
                                     seed=self.config.seed, drop_last=False)
        sampler.set_epoch(epoch)
        return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler,
                          num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                          drop_last=loader.drop_last)

    # ------------------------------------------------------------ checkpoints
    def _state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "rng": torch.get_rng_state(),
            "plugins": [p.state_dict() for p in self.plugins],
            "epoch": self.epoch, "step_in_epoch": self._step_in_epoch, "global_step": self.global_step,
            "history": self.history, "config": asdict(self.config),
        }

    def save_checkpoint(self) -> Path | None:
        if self.config.checkpoint_dir is None or self.rank != 0:
            return None
        return save_checkpoint(self.config.checkpoint_dir, self.global_step, self._state())

    def _maybe_resume(self) -> bool:
        cfg = self.config
        if not (cfg.checkpoint_dir and cfg.resume):
            return False
        path = latest_checkpoint(cfg.checkpoint_dir)
        if path is None:
            return False
        st = load_checkpoint(path)
        self.model.load_state_dict(st["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        if self.scheduler is not None and st["scheduler"] is not None:
            self.scheduler.load_state_dict(st["scheduler"])
        torch.set_rng_state(st["rng"])
        for p, s in zip(self.plugins, st["plugins"]):
            p.load_state_dict(s)
        self.epoch, self._step_in_epoch = st["epoch"], st["step_in_epoch"]
        self.global_step, self.history = st["global_step"], list(st["history"])
        if self.rank == 0:
            self.console.print(f"[cyan]resumed from {path} (epoch {self.epoch}, step {self.global_step})[/]")
        return True

    # ------------------------------------------------------------------ loop
    def fit(self, train_loader: DataLoader, val_loader: DataLoader | None = None) -> list[dict[str, Any]]:
        """Train for ``config.epochs``; returns the per-epoch history (loss, metric, plugin columns)."""
        cfg = self.config
        self._init_distributed()
        seed_everything(cfg.seed)
        self.model.to(self.device)
        steps_per_epoch = len(self._loader(train_loader, 0))
        self._build_optimizer(steps_per_epoch * cfg.epochs)
        self._maybe_resume()
        net = self.model
        if self.distributed:
            net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=bool(cfg.extra.get("find_unused_parameters", False)))
        self._ddp_model = net
        for p in self.plugins:
            p.on_train_begin(self)
        show = cfg.progress and self.rank == 0
        with Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), console=self.console,
                      disable=not show, transient=True) as bar:
            while self.epoch < cfg.epochs:
                if cfg.max_steps is not None and self.global_step >= cfg.max_steps:
                    break
                loader = self._loader(train_loader, self.epoch)
                task = bar.add_task("train", total=steps_per_epoch, epoch=self.epoch + 1, loss=float("nan"))
                bar.advance(task, self._step_in_epoch)
                net.train()
                tot, n = 0.0, 0
                for batch in itertools.islice(loader, self._step_in_epoch, None):
                    if cfg.max_steps is not None and self.global_step >= cfg.max_steps:
                        break
                    loss = self._train_step(net, batch)
                    tot, n = tot + loss, n + 1
                    self._step_in_epoch += 1
                    self.global_step += 1
                    for p in self.plugins:
                        p.on_step_end(self, self.global_step)
                    bar.update(task, advance=1, loss=tot / n)
                    if cfg.checkpoint_every and self.global_step % cfg.checkpoint_every == 0:
                        self.save_checkpoint()
                bar.remove_task(task)
                if self._step_in_epoch < steps_per_epoch:  # stopped by max_steps mid-epoch
                    break
                logs: dict[str, Any] = {"epoch": self.epoch + 1, "step": self.global_step,
                                        "train_loss": tot / max(n, 1)}
                if val_loader is not None and self.rank == 0:
                    logs[f"val_{getattr(self.metric, 'name', 'metric')}"] = self.evaluate(val_loader)
                for p in self.plugins:
                    extra = p.on_epoch_end(self, self.epoch, logs)
                    if extra:
                        logs.update(extra)
                self.history.append(logs)
                self.epoch += 1
                self._step_in_epoch = 0
                if cfg.checkpoint_dir and not cfg.checkpoint_every:
                    self.save_checkpoint()
                if show and cfg.log_every_epoch:
                    self.console.print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                 for k, v in logs.items() if not isinstance(v, (dict, list))))
        if cfg.checkpoint_dir and cfg.checkpoint_every:
            self.save_checkpoint()
        if self.distributed:
            dist.barrier()
        return self.history

    def close(self) -> None:
        """Tear down the process group that :meth:`fit` created (call once at the end of a torchrun script)."""
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    def _train_step(self, net: nn.Module, batch) -> float:
        x, y = (t.to(self.device) for t in batch[:2])
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(net(x), y)
        task_loss = loss.detach().item()
        for p in self.plugins:
            extra = p.loss(self.model, self.global_step)
            if extra is not None:
                loss = loss + extra
        loss.backward()
        if self.config.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return task_loss

    @torch.no_grad()
    def predict(self, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs and targets over a whole loader (no shuffling, unwrapped model)."""
        was = self.model.training
        self.model.eval()
        outs, ys = [], []
        for batch in loader:
            outs.append(self.model(batch[0].to(self.device)).cpu())
            ys.append(batch[1])
        self.model.train(was)
        return torch.cat(outs), torch.cat(ys)

    def evaluate(self, loader: DataLoader, metric: Callable[..., float] | None = None) -> float:
        """Metric (default: the trainer's) of the model on ``loader``."""
        return (metric or self.metric)(*self.predict(loader))


def evaluate(model: nn.Module, loader: DataLoader, metric: Callable[..., float] = accuracy,
             device: str = "cpu") -> float:
    """Metric of ``model`` on ``loader`` without training."""
    t = Trainer(model, TrainConfig(device=device, progress=False), metric=metric)
    t.model.to(t.device)
    return t.evaluate(loader)
