"""Reference models for Fashion-MNIST (input (B, 1, 28, 28), 10 classes) of realistic width (>= 1M parameters).

* ``fashion_resnet`` (:class:`FashionResNet`): ResNet-style, a stride-2 stem and four stages of two basic
  residual blocks (conv-BN-ReLU-conv-BN + identity / 1x1 projection), widths 32-64-128-256 at width 1.0
  (about 2.8M parameters, 23M MACs per image).
* ``fashion_mobilenetv2`` (:class:`FashionMobileNetV2`): MobileNet-v2-style inverted residuals (1x1 expand,
  3x3 depthwise, 1x1 linear projection, residual when shapes agree, ReLU6), a 1x1 head conv to 1280 channels
  (about 2.2M parameters, 12M MACs per image at width 1.0).

Both take a ``width`` multiplier. :func:`train_fashion_reference` trains one in minutes on 2 CPU cores and caches
the weights on disk by (name, width, seed, schedule) as safetensors with JSON metadata, so every benchmark starts
from the very same trained weights.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import torch
from torch import nn

from .digits import BasicBlock  # the same residual block as the digits ResNet
from .registry import build_model, register_model

log = logging.getLogger(__name__)

CACHE_ENV = "PRUNEQUANT_CACHE"


def _ch(c: int, width: float, divisor: int = 8) -> int:
    return max(divisor, int(round(c * width / divisor)) * divisor)


@register_model("fashion_resnet")
class FashionResNet(nn.Module):
    """ResNet-style classifier for 28x28 images.

    Args:
        width: channel multiplier (1.0: stages of 32, 64, 128, 256 channels).
        blocks: residual blocks per stage.
        num_classes, in_channels: output classes and input channels.

    Example:
        >>> m = FashionResNet(width=0.25)
        >>> m(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(self, width: float = 1.0, blocks: tuple[int, ...] = (1, 1, 1, 1), num_classes: int = 10,
                 in_channels: int = 1):
        super().__init__()
        self.config = {"name": "fashion_resnet", "width": float(width), "blocks": list(blocks),
                       "num_classes": num_classes, "in_channels": in_channels}
        widths = [_ch(c, width) for c in (32, 64, 128, 256)][:len(blocks)]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU())
        layers, c = [], widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            for j in range(n):
                layers.append(BasicBlock(c, w, 2 if (j == 0 and i > 0) else 1))
                c = w
        self.layers = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.layers(self.stem(x))))


class InvertedResidual(nn.Module):
    """MobileNet-v2 block: 1x1 expand-BN-ReLU6 (if t > 1), 3x3 depthwise-BN-ReLU6, 1x1 project-BN (linear),
    plus the input when stride is 1 and the channel counts agree."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.ReLU6(), nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


# (expansion t, channels c, repeats n, stride s) as in MobileNet-v2 (Sandler et al. 2018), strides for 28x28
MBV2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 3, 2), (6, 96, 2, 1), (6, 160, 2, 1),
                (6, 320, 1, 1))


@register_model("fashion_mobilenetv2")
class FashionMobileNetV2(nn.Module):
    """MobileNet-v2-style classifier for 28x28 images (inverted residuals with depthwise convolutions).

    Args:
        width: channel multiplier (1.0: MobileNet-v2's 32-16-24-32-64-96-160-320 channels, head 1280).
        num_classes, in_channels: output classes and input channels.

    Example:
        >>> m = FashionMobileNetV2(width=0.25)
        >>> m(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(self, width: float = 1.0, num_classes: int = 10, in_channels: int = 1, head: int = 1280):
        super().__init__()
        self.config = {"name": "fashion_mobilenetv2", "width": float(width), "num_classes": num_classes,
                       "in_channels": in_channels, "head": head}
        c = _ch(32, width)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU6()]
        for t, ch, n, s in MBV2_SETTING:
            out = _ch(ch, width)
            for i in range(n):
                layers.append(InvertedResidual(c, out, s if i == 0 else 1, t))
                c = out
        last = _ch(head, max(1.0, width))
        layers += [nn.Conv2d(c, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)))


FASHION_MODELS = ("fashion_resnet", "fashion_mobilenetv2")
# quick: a seeded 4k-image subset and 2 epochs (minutes on a shared 2-core CPU); full: all 60k images, 2 epochs
SCHEDULES = {"quick": {"train_size": 4000, "epochs": 2}, "full": {"train_size": None, "epochs": 2}}


def cache_dir(path: str | Path | None = None) -> Path:
    """Where trained reference weights live: ``path``, else $PRUNEQUANT_CACHE, else ~/.cache/prunequant."""
    if path is not None:
        return Path(path)
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "prunequant"


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` on tensors (x, y), evaluated in eval mode in batches."""
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        correct += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    model.train(was)
    return correct / max(1, len(y))


def train_fashion_reference(name: str = "fashion_resnet", seed: int = 0, *, width: float = 1.0,
                            schedule: str = "quick", train_size: int | None = -1, epochs: int | None = None,
                            data=None, root=None, cache: str | Path | None = None, use_cache: bool = True,
                            threads: int | None = 1) -> tuple[nn.Module, float]:
    """Train (or load from the disk cache) a Fashion-MNIST reference model; returns ``(model, test_accuracy)``.

    Plain PyTorch loop: AdamW (lr 3e-3, weight decay 5e-4), OneCycle schedule, batch 128, random shift (up to 2 px)
    and horizontal-flip augmentation, seeded. ``schedule="quick"`` trains on a seeded 4k-image subset for 2
    epochs (a few minutes on 2 cores), ``"full"`` on all 60k for 2 epochs; ``train_size``/``epochs`` override.
    Weights are cached as ``<cache>/fashion/<name>-w<width>-s<seed>-<hash>.safetensors`` (metadata: config,
    schedule, accuracy); a cached file is loaded instead of training.

    Example:
        >>> model, acc = train_fashion_reference("fashion_resnet", seed=0)  # doctest: +SKIP
    """
    from safetensors.torch import load_file, save_file

    from ..data.fashion_mnist import fashion_mnist

    if name not in FASHION_MODELS:
        raise ValueError(f"unknown Fashion-MNIST reference model {name!r}; known: {FASHION_MODELS}")
    sched = dict(SCHEDULES[schedule])
    if train_size != -1:
        sched["train_size"] = train_size
    if epochs is not None:
        sched["epochs"] = epochs
    key = json.dumps({"name": name, "width": float(width), "seed": seed, **sched}, sort_keys=True)
    tag = hashlib.sha256(key.encode()).hexdigest()[:10]
    path = cache_dir(cache) / "fashion" / f"{name}-w{width:g}-s{seed}-{tag}.safetensors"
    model = build_model(name, width=width)
    ds = data if data is not None else fashion_mnist(root)
    if use_cache and path.is_file():
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        model.load_state_dict(load_file(str(path)))
        model.eval()
        return model, float(meta.get("accuracy", "nan"))
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        t0 = time.time()
        acc = _train(model, ds, seed, sched["train_size"], sched["epochs"])
        log.info("trained %s (width %g, seed %d) in %.0fs: test accuracy %.4f", name, width, seed,
                 time.time() - t0, acc)
    finally:
        torch.set_num_threads(old_threads)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp), metadata={"config": json.dumps(model.config), "schedule": key,
                                             "accuracy": repr(acc)})
        os.replace(tmp, path)
    return model, acc


def _train(model: nn.Module, ds, seed: int, train_size: int | None, epochs: int) -> float:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x, y = ds.x_train, ds.y_train
    if train_size is not None and train_size < len(y):
        idx = torch.randperm(len(y), generator=g)[:train_size]
        x, y = x[idx], y[idx]
    bs = 128
    steps = epochs * ((len(y) + bs - 1) // bs)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.25)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), bs):
            j = perm[i:i + bs]
            xb = _augment(x[j], g)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), y[j])
            loss.backward()
            opt.step()
            sched.step()
        log.info("epoch %d/%d loss %.4f", epoch + 1, epochs, loss.item())
    model.eval()
    return evaluate_accuracy(model, ds.x_test, ds.y_test)


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random cyclic shift by up to 2 pixels and horizontal flip, one draw per batch (cheap, seeded)."""
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=g))
    x = torch.roll(x, (dy, dx), (2, 3))
    if bool(torch.rand(1, generator=g) < 0.5):
        x = x.flip(3)
    return x
