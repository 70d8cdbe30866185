"""A small causal transformer language model built from plain ``torch.nn`` (no extra dependency).

GPT-style, pre-LayerNorm: token + learned position embeddings, ``n_layers`` blocks of causal self-attention
(one fused ``qkv`` Linear, ``F.scaled_dot_product_attention``) and a GELU MLP, final LayerNorm, ``lm_head``.
Every projection is an ``nn.Linear`` whose input dimension is ``d_model`` or ``4 d_model``, so group-wise
weight-only quantization with groups of 32/64/128 along the input dimension fits when ``d_model`` is a
multiple of 128.

Example:
    >>> import torch
    >>> from prunequant.models.tiny_lm import TinyLM
    >>> lm = TinyLM(vocab_size=256, d_model=64, n_layers=1, n_heads=2, max_len=32)
    >>> lm(torch.zeros(2, 16, dtype=torch.long)).shape
    torch.Size([2, 16, 256])
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from .registry import register_model


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)
        shape = (B, T, self.n_heads, D // self.n_heads)
        q, k, v = (t.reshape(shape).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, T, D))


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc = nn.Linear(d_model, 4 * d_model)
        self.fc_out = nn.Linear(4 * d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.fc_out(F.gelu(self.fc(self.ln2(x)))))


@register_model("tiny_lm")
class TinyLM(nn.Module):
    """Causal transformer LM: ``forward(tokens (B, T) long) -> logits (B, T, vocab_size)``.

    Args:
        vocab_size: number of token ids (256 for the byte tokenizer of :mod:`prunequant.data.text`).
        d_model, n_layers, n_heads: width, depth, attention heads (``d_model % n_heads == 0``).
        max_len: longest sequence (size of the position table).
        dropout: dropout on attention and residual branches (training only).
    """

    def __init__(self, vocab_size: int = 256, d_model: int = 256, n_layers: int = 4, n_heads: int = 4,
                 max_len: int = 256, dropout: float = 0.0):
        super().__init__()
        for what, v in (("vocab_size", vocab_size), ("d_model", d_model), ("n_layers", n_layers),
                        ("n_heads", n_heads), ("max_len", max_len)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"TinyLM.{what} must be a positive integer, got {v!r}")
        if d_model % n_heads:
            raise ConfigError(f"TinyLM.d_model ({d_model}) must be a multiple of n_heads ({n_heads})")
        self.config = {"name": "tiny_lm", "vocab_size": vocab_size, "d_model": d_model, "n_layers": n_layers,
                       "n_heads": n_heads, "max_len": max_len, "dropout": dropout}
        self.max_len = max_len
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, dropout) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith(("proj.weight", "fc_out.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.dim() != 2 or tokens.dtype not in (torch.long, torch.int32, torch.int64):
            raise ShapeError(f"TinyLM expects integer tokens of shape (B, T), got {tuple(tokens.shape)} "
                             f"{tokens.dtype}")
        T = tokens.shape[1]
        if T > self.max_len:
            raise ShapeError(f"sequence length {T} exceeds TinyLM.max_len={self.max_len}")
        x = self.tok(tokens) + self.pos(torch.arange(T, device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))

    def block_linears(self) -> list[str]:
        """Names of the Linear layers inside the transformer blocks (what weight-only LLM schemes quantize)."""
        return [n for n, m in self.named_modules() if isinstance(m, nn.Linear) and n.startswith("blocks.")]


@torch.no_grad()
def perplexity(model: nn.Module, tokens: Tensor, seq_len: int, batch_size: int = 16,
               max_windows: int | None = None) -> float:
    """Perplexity ``exp(mean NLL)`` of ``model`` over a 1-d token stream cut into non-overlapping windows of
    ``seq_len + 1`` tokens (every window predicts its last ``seq_len`` tokens; the stream's tail is dropped).

    Args:
        model: maps (B, T) tokens to (B, T, V) logits.
        tokens: 1-d long tensor.
        seq_len: context length of each window.
        batch_size: windows per forward pass.
        max_windows: evaluate only the first ``max_windows`` windows (None: all).
    Returns:
        perplexity per token (per byte for the byte tokenizer).
    """
    if tokens.dim() != 1:
        raise ShapeError(f"perplexity expects a 1-d token stream, got shape {tuple(tokens.shape)}")
    n = (tokens.numel() - 1) // seq_len
    if max_windows is not None:
        n = min(n, max_windows)
    if n < 1:
        raise ShapeError(f"token stream of {tokens.numel()} tokens is shorter than one window of {seq_len + 1}")
    starts = torch.arange(n) * seq_len
    idx = starts[:, None] + torch.arange(seq_len + 1)
    was = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, n, batch_size):
        w = tokens[idx[i:i + batch_size]].long()
        logits = model(w[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), w[:, 1:].reshape(-1), reduction="sum")
        total += float(loss)
        count += w[:, 1:].numel()
    model.train(was)
    return math.exp(total / count)


def train_lm(model: nn.Module, tokens: Tensor, *, steps: int, seq_len: int, batch_size: int = 16,
             lr: float = 3e-3, warmup: int = 50, weight_decay: float = 0.1, seed: int = 0,
             log_every: int = 0) -> list[float]:
    """Train ``model`` on random windows of a 1-d token stream with AdamW and a cosine schedule.

    Returns the training loss of every step. Deterministic for a given ``seed`` (on CPU).
    """
    import logging

    if tokens.dim() != 1 or tokens.numel() <= seq_len + 1:
        raise ShapeError(f"train_lm needs a 1-d token stream longer than {seq_len + 1}, "
                         f"got shape {tuple(tokens.shape)}")
    g = torch.Generator().manual_seed(seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        t = (step - warmup) / max(1, steps - warmup)
        return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    offs = torch.arange(seq_len + 1)
    losses = []
    model.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        starts = torch.randint(0, tokens.numel() - seq_len - 1, (batch_size,), generator=g)
        w = tokens[starts[:, None] + offs].long()
        logits = model(w[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        if log_every and (step + 1) % log_every == 0:
            logging.getLogger(__name__).info("step %d/%d loss %.4f", step + 1, steps, losses[-1])
    model.eval()
    return losses


__all__ = ["TinyLM", "perplexity", "train_lm"]
