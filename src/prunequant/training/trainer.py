"""The shared training loop: plugins, per-group learning rates, checkpoints with exact resume, and DDP.

Data order: for a ``DataLoader`` with the default sampler (``shuffle=True/False``) the trainer owns the order: every
epoch draws a permutation from ``(seed, epoch)`` through ``DistributedSampler`` (one replica when not distributed),
so a resumed run and a ``torchrun`` run see exactly the same samples as an uninterrupted single-process run with
the same global batch. A sampler or batch sampler of your own (weighted, distributed, bucketed ...) is used as
given, never replaced; an ``IterableDataset`` or any other iterable of batches is read as it comes.

Batches may be ``(x, y)`` tuples or dicts (inputs as keywords, targets under ``labels``); model outputs may be
tensors, tuples or ``ModelOutput``-like objects with ``.logits`` (see :mod:`prunequant.training.batches`).
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import random
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
)

from ..errors import ConfigError
from .batches import call_model, output_tensor, split_batch, to_device
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .device import resolve_device
from .metrics import accuracy
from .plugin import TrainPlugin, param_groups

log = logging.getLogger("prunequant.training")

_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


@dataclass
class TrainConfig:
    """Training hyper-parameters.

    ``checkpoint_every``: steps between checkpoints (0 = at each epoch end); needs ``checkpoint_dir``.
    ``resume``: continue from the newest checkpoint in ``checkpoint_dir`` if one exists.
    ``max_steps``: stop after this many optimizer steps in total (None = run all epochs).
    ``schedule``: "constant" or "cosine" (per step, over the whole run).
    ``progress``: a rich progress bar when stdout is a terminal (never in logs or pipes).
    ``log_every_epoch``: one INFO line per epoch on the ``prunequant.training`` logger.
    ``warn_drop``: with a validation loader, warn (``logging.warning``) when the run ends with a metric more than
    this fraction below its start value (None = never).
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
    warn_drop: float | None = 0.1
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

    ``loss_fn(outputs, targets)`` is the task loss (``outputs``: the prediction tensor, ``.logits`` of a
    ``ModelOutput``); with ``loss_fn=None`` the model output's own ``.loss`` is used (Hugging Face models given
    ``labels``). ``metric(outputs, targets) -> float`` (higher is better) is used by :meth:`evaluate` and logged
    for the validation loader each epoch.
    """

    def __init__(self, model: nn.Module, config: TrainConfig | None = None,
                 loss_fn: Callable[[torch.Tensor, Any], torch.Tensor] | None = F.cross_entropy,
                 plugins: Iterable[TrainPlugin] = (), metric: Callable[..., float] = accuracy):
        if not isinstance(model, nn.Module):
            raise ConfigError(f"Trainer needs a torch.nn.Module, got {type(model).__name__}")
        self.config = config or TrainConfig()
        self.model = model
        self.loss_fn = loss_fn
        self.plugins = list(plugins)
        self.metric = metric
        self.distributed, self.rank, self.world_size = _dist_info()
        self.device = resolve_device(self.config.device)
        self.history: list[dict[str, Any]] = []
        self.global_step = 0
        self.epoch = 0
        self._step_in_epoch = 0
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler = None
        self._ddp_model: nn.Module | None = None
        self.start_metric: float | None = None
        self._warned_sampler = False

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
        groups = param_groups(self.model, self.plugins)
        kw: dict[str, Any] = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
        if cfg.optimizer == "sgd":
            kw["momentum"] = cfg.momentum
        self.optimizer = _OPTIMIZERS[cfg.optimizer](groups, **kw)
        if cfg.schedule == "cosine":
            total = max(total_steps, 1)
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                self.optimizer, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total)))

    def _loader(self, loader: Any, epoch: int) -> Any:
        """The batches of one epoch (see the module docstring for who owns the order)."""
        if not isinstance(loader, DataLoader) or isinstance(loader.dataset, IterableDataset):
            return loader
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
            return loader
        default = (type(loader.sampler) in (RandomSampler, SequentialSampler)
                   and type(loader.batch_sampler) is BatchSampler)
        if not default:  # the user's own sampler: keep it
            if self.distributed and not self._warned_sampler:
                self._warned_sampler = True
                log.warning("Trainer: keeping the DataLoader's own %s; in a distributed run every rank reads "
                            "what it yields (use a DistributedSampler to split the data)",
                            type(loader.batch_sampler if type(loader.batch_sampler) is not BatchSampler
                                 else loader.sampler).__name__)
            return loader
        sampler = DistributedSampler(loader.dataset, num_replicas=self.world_size, rank=self.rank, shuffle=True,
                                     seed=self.config.seed, drop_last=False)
        sampler.set_epoch(epoch)
        return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler,
                          num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                          drop_last=loader.drop_last, pin_memory=loader.pin_memory)

    def _steps_per_epoch(self, loader: Any) -> int | None:
        try:
            return len(self._loader(loader, 0))
        except TypeError:  # an IterableDataset / generator without __len__
            return None

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
            log.info("resumed from %s (epoch %d, step %d)", path, self.epoch, self.global_step)
        return True

    # ------------------------------------------------------------------ loop
    def fit(self, train_loader: Any, val_loader: Any = None) -> list[dict[str, Any]]:
        """Train for ``config.epochs``; returns the per-epoch history (loss, metric, plugin columns).

        ``train_loader``: a ``DataLoader`` or any re-iterable of batches (an epoch ends when it is exhausted).
        """
        cfg = self.config
        self._init_distributed()
        seed_everything(cfg.seed)
        self.model.to(self.device)
        steps_per_epoch = self._steps_per_epoch(train_loader)
        if steps_per_epoch is None and cfg.schedule == "cosine" and cfg.max_steps is None:
            raise ConfigError("schedule='cosine' needs the run length: give max_steps= for training data without "
                              "a length (IterableDataset)")
        self._build_optimizer(steps_per_epoch * cfg.epochs if steps_per_epoch is not None else cfg.max_steps)
        resumed = self._maybe_resume()
        if val_loader is not None and self.rank == 0 and not resumed and cfg.warn_drop is not None:
            self.start_metric = self.evaluate(val_loader)
        net = self.model
        if self.distributed:
            net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=bool(cfg.extra.get("find_unused_parameters", False)))
        self._ddp_model = net
        for p in self.plugins:
            p.on_train_begin(self.model)
        with _progress_bar(cfg.progress and self.rank == 0) as bar:
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
                        p.on_step_end(self.model, self.global_step)
                    bar.update(task, advance=1, loss=tot / n)
                    if cfg.checkpoint_every and self.global_step % cfg.checkpoint_every == 0:
                        self.save_checkpoint()
                bar.remove_task(task)
                if cfg.max_steps is not None and self.global_step >= cfg.max_steps and (
                        steps_per_epoch is None or self._step_in_epoch < steps_per_epoch):
                    break  # stopped by max_steps mid-epoch
                logs: dict[str, Any] = {"epoch": self.epoch + 1, "step": self.global_step,
                                        "train_loss": tot / max(n, 1)}
                if val_loader is not None and self.rank == 0:
                    logs[f"val_{getattr(self.metric, 'name', 'metric')}"] = self.evaluate(val_loader)
                for p in self.plugins:
                    extra = p.on_epoch_end(self.model, self.epoch, logs)
                    if extra:
                        logs.update(extra)
                self.history.append(logs)
                self.epoch += 1
                self._step_in_epoch = 0
                if cfg.checkpoint_dir and not cfg.checkpoint_every:
                    self.save_checkpoint()
                if cfg.log_every_epoch and self.rank == 0:
                    log.info("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in logs.items() if not isinstance(v, (dict, list))))
        if cfg.checkpoint_dir and cfg.checkpoint_every:
            self.save_checkpoint()
        self._check_drop()
        if self.distributed:
            dist.barrier()
        return self.history

    def _check_drop(self) -> None:
        """Warn when the run ended far below its start metric (a too-short schedule, a too-high lr ...)."""
        start, key = self.start_metric, f"val_{getattr(self.metric, 'name', 'metric')}"
        if start is None or not self.history or key not in self.history[-1]:
            return
        end = float(self.history[-1][key])
        if start - end > self.config.warn_drop * max(abs(start), 1e-12):
            log.warning("training ended far below its start metric: %s %.4f at the start, %.4f after %d epoch(s) "
                        "(%d steps); check the schedule (epochs, lr) before using this model", key, start, end,
                        self.epoch, self.global_step)

    def close(self) -> None:
        """Tear down the process group that :meth:`fit` created (call once at the end of a torchrun script)."""
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    def _task_loss(self, out: Any, targets: Any) -> torch.Tensor:
        if self.loss_fn is None:
            loss = getattr(out, "loss", None)
            if loss is None and isinstance(out, dict):
                loss = out.get("loss")
            if loss is None:
                raise ConfigError("loss_fn=None needs a model output with .loss (pass labels to the model)")
            return loss
        return self.loss_fn(output_tensor(out), targets)

    def _train_step(self, net: nn.Module, batch) -> float:
        inputs, targets = split_batch(to_device(batch, self.device))
        if self.loss_fn is None and isinstance(batch, dict):  # the model computes its own loss from the labels
            inputs = to_device(batch, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._task_loss(call_model(net, inputs), targets)
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
            inputs, targets = split_batch(batch)
            outs.append(output_tensor(call_model(self.model, to_device(inputs, self.device))).cpu())
            ys.append(targets)
        self.model.train(was)
        return torch.cat(outs), torch.cat(ys)

    def evaluate(self, loader: DataLoader, metric: Callable[..., float] | None = None) -> float:
        """Metric (default: the trainer's) of the model on ``loader``."""
        return (metric or self.metric)(*self.predict(loader))


class _NoBar:
    """Stand-in for a rich progress bar when output is not a terminal."""

    def add_task(self, *a, **k):
        return 0

    def advance(self, *a, **k):
        pass

    def update(self, *a, **k):
        pass

    def remove_task(self, *a, **k):
        pass


@contextlib.contextmanager
def _progress_bar(wanted: bool):
    """A transient rich progress bar on a terminal (rich imported only then); otherwise a no-op."""
    if not (wanted and sys.stdout.isatty()):
        yield _NoBar()
        return
    try:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    except ImportError:
        yield _NoBar()
        return
    with Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), transient=True) as bar:
        yield bar


def evaluate(model: nn.Module, loader: DataLoader, metric: Callable[..., float] = accuracy,
             device: str = "cpu") -> float:
    """Metric of ``model`` on ``loader`` without training."""
    t = Trainer(model, TrainConfig(device=device, progress=False), metric=metric)
    t.model.to(t.device)
    return t.evaluate(loader)
