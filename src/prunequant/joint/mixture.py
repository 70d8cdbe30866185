"""Mixing weights over candidate bit-widths: π = softmax(θ / τ), per layer (B,) or per output channel (B, C).

A :class:`BitMixture` is the learnable part of one soft quantizer. During soft training π weights the
quantize-dequantize copies of a tensor; :meth:`BitMixture.harden_` freezes a choice (the argmax of θ unless a
repair step picked another one) and π becomes that one-hot vector, so the soft quantizer computes exactly the
fixed-precision quantizer it will be finalized into.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError


class BitMixture(nn.Module):
    """Learnable logits θ over candidate bit-widths ``bits`` with temperature ``tau`` (a buffer).

    ``channels=None``: one mixture per tensor, θ of shape (B,); otherwise one per channel, θ (B, C).
    ``init="linear"`` sets θ_b = b / max(b) (a slight preference for high precision at the start);
    ``"uniform"`` sets θ = 0.
    """

    def __init__(self, bits: Sequence[int], channels: int | None = None, init: str = "linear"):
        super().__init__()
        self.bits = tuple(int(b) for b in bits)
        if not self.bits:
            raise ConfigError("BitMixture needs at least one candidate bit-width")
        values = torch.tensor(self.bits, dtype=torch.float32)
        self.register_buffer("bit_values", values)
        shape = (len(self.bits),) if channels is None else (len(self.bits), int(channels))
        if init == "linear":
            theta = (values / values.max()).reshape(-1, *([1] * (len(shape) - 1))).expand(shape).clone()
        elif init == "uniform":
            theta = torch.zeros(shape)
        else:
            raise ConfigError(f"logit init must be 'linear' or 'uniform', got {init!r}")
        self.logits = nn.Parameter(theta)
        self.register_buffer("tau", torch.tensor(1.0))
        self.register_buffer("chosen", torch.zeros(shape[1:], dtype=torch.long))
        self.register_buffer("is_hard", torch.tensor(False))

    @property
    def per_channel(self) -> bool:
        return self.logits.dim() == 2

    @property
    def hard(self) -> bool:
        return bool(self.is_hard)

    def probs(self) -> Tensor:
        """π: softmax(θ/τ) over the candidate axis 0, or the one-hot of the frozen choice once hardened."""
        if self.hard:
            return F.one_hot(self.chosen, len(self.bits)).movedim(-1, 0).to(self.logits.dtype)
        return F.softmax(self.logits / self.tau, dim=0)

    def expected_bits(self) -> Tensor:
        """Σ_b π_b · b: shape () per tensor, (C,) per channel (differentiable in θ while soft)."""
        p = self.probs()
        v = self.bit_values.to(p.dtype).reshape(-1, *([1] * (p.dim() - 1)))
        return (p * v).sum(0)

    def argmax(self) -> Tensor:
        """Index of the most probable candidate (first one on ties): () or (C,)."""
        return self.logits.detach().argmax(0)

    def current(self) -> Tensor:
        """The frozen choice if hardened, else the argmax: candidate indices, () or (C,)."""
        return self.chosen if self.hard else self.argmax()

    def current_bits(self) -> Tensor:
        """Bit-width of :meth:`current` (float), () or (C,)."""
        return self.bit_values[self.current()]

    @torch.no_grad()
    def harden_(self, chosen: Tensor | None = None) -> None:
        """Freeze the choice (default: the argmax) and stop θ from training."""
        c = self.argmax() if chosen is None else torch.as_tensor(chosen, device=self.chosen.device)
        if c.shape != self.chosen.shape:
            raise ConfigError(f"chosen index shape {tuple(c.shape)} != {tuple(self.chosen.shape)}")
        self.chosen.copy_(c.long())
        self.is_hard.fill_(True)
        self.logits.requires_grad_(False)

    @torch.no_grad()
    def soften_(self) -> None:
        """Back to the soft mixture (θ trainable again)."""
        self.is_hard.fill_(False)
        self.logits.requires_grad_(True)

    def describe(self, digits: int = 2, min_prob: float = 0.005, top: int | None = None) -> str:
        """π as text, most probable first, e.g. ``"4:.90 2:.05 8:.05"``, omitting candidates below ``min_prob``
        (and beyond the ``top`` most probable); per-channel mixtures: the mean over channels."""
        with torch.no_grad():
            p = self.probs()
            if p.dim() == 2:
                p = p.mean(1)
        order = sorted(zip(self.bits, p.tolist()), key=lambda bv: -bv[1])
        keep = [(b, v) for b, v in order if v >= min_prob][:top] or order[:1]
        return " ".join(f"{b}:{v:.{digits}f}".replace("0.", ".", 1) for b, v in keep)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, per_channel={self.per_channel}, hard={self.hard}"
