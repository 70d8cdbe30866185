"""Attention-head pruning: whole heads of ``nn.MultiheadAttention`` (its model dimension stays).

``nn.MultiheadAttention`` ties its inner (all-heads) width to its model width, so a model with fewer heads cannot
be an ``nn.MultiheadAttention``; removal replaces it by :class:`HeadPrunedAttention`, an ordinary module with
``q_proj``/``k_proj``/``v_proj``/``out_proj`` ``nn.Linear`` children and the same call signature and outputs
(``nn.TransformerEncoderLayer`` / ``DecoderLayer`` take it as their ``self_attn`` and run their standard path).
Zeroing a head (its q, k, v rows and biases, its ``out_proj`` columns) gives the same outputs as removing it: the
head attends uniformly over zero values and adds nothing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

__all__ = ["HeadPrunedAttention", "gate_slices", "head_sq_norms", "head_supported", "remove_heads_", "zero_heads_"]


def gate_slices(m: nn.Module) -> list[tuple[nn.Module, str, Tensor, Tensor, int]]:
    """Where a head gate acts: (module, tensor name, row indices, head of each row, rows) for the value rows
    (weight and bias) of every head; scaling a head's values by h scales its output by h."""
    d, h = m.head_dim, m.num_heads
    inner = h * d
    local = torch.arange(inner)
    heads = local // d
    if isinstance(m, HeadPrunedAttention):
        out = [(m.v_proj, "weight", local, heads, inner)]
        if m.v_proj.bias is not None:
            out.append((m.v_proj, "bias", local, heads, inner))
        return out
    e = m.embed_dim
    out = [(m, "in_proj_weight", local + 2 * e, heads, 3 * e)]
    if m.in_proj_bias is not None:
        out.append((m, "in_proj_bias", local + 2 * e, heads, 3 * e))
    return out


def head_supported(m: nn.Module) -> str | None:
    """None if the heads of ``m`` can be pruned, else why not."""
    if isinstance(m, HeadPrunedAttention):
        return None if m.num_heads > 1 else "one head left"
    if not isinstance(m, nn.MultiheadAttention):
        return "not an attention module"
    if not m._qkv_same_embed_dim:
        return "separate q/k/v projection weights (kdim/vdim)"
    if m.bias_k is not None or m.add_zero_attn:
        return "bias_k/bias_v or add_zero_attn"
    if m.num_heads < 2:
        return "a single head"
    return None


def _raw(m: nn.Module, pname: str):
    if parametrize.is_parametrized(m, pname):
        return m.parametrizations[pname].original
    return getattr(m, pname)


def _qkv(m: nn.Module, raw: bool = False) -> tuple[Tensor, Tensor | None, Tensor, int]:
    """(stacked q/k/v weight (3, inner, E), stacked bias (3, inner) or None, out_proj weight, head_dim);
    ``raw``: the stored tensors under any parametrization."""
    get = _raw if raw else getattr
    if isinstance(m, HeadPrunedAttention):
        w = torch.stack([get(m.q_proj, "weight"), get(m.k_proj, "weight"), get(m.v_proj, "weight")])
        b = None if m.q_proj.bias is None else torch.stack([get(m.q_proj, "bias"), get(m.k_proj, "bias"),
                                                            get(m.v_proj, "bias")])
        return w, b, get(m.out_proj, "weight"), m.head_dim
    e = m.embed_dim
    w = get(m, "in_proj_weight").view(3, -1, e)
    b = _raw(m, "in_proj_bias")
    b = None if b is None else get(m, "in_proj_bias").view(3, -1)
    return w, b, get(m.out_proj, "weight"), m.head_dim


def head_sq_norms(m: nn.Module) -> Tensor:
    """Squared norm per head of the stored weights: its q, k, v rows and its ``out_proj`` columns
    (differentiable)."""
    w, _, wo, d = _qkv(m, raw=True)
    h = m.num_heads
    per = w.pow(2).reshape(3, h, d, -1).sum((0, 2, 3))
    return per + wo.pow(2).reshape(wo.shape[0], h, d).sum((0, 2))


@torch.no_grad()
def zero_heads_(m: nn.Module, heads: list[int]) -> None:
    """Zero the q, k, v rows and biases and the ``out_proj`` columns of ``heads``."""
    d = m.head_dim
    rows = torch.cat([torch.arange(h * d, (h + 1) * d) for h in heads]) if heads else torch.zeros(0, dtype=torch.long)
    if isinstance(m, HeadPrunedAttention):
        for lin in (m.q_proj, m.k_proj, m.v_proj):
            lin.weight.index_fill_(0, rows, 0.0)
            if lin.bias is not None:
                lin.bias.index_fill_(0, rows, 0.0)
    else:
        e = m.embed_dim
        allrows = torch.cat([rows, rows + e, rows + 2 * e])
        m.in_proj_weight.index_fill_(0, allrows, 0.0)
        if m.in_proj_bias is not None:
            m.in_proj_bias.index_fill_(0, allrows, 0.0)
    m.out_proj.weight.index_fill_(1, rows, 0.0)


class HeadPrunedAttention(nn.Module):
    """Multi-head attention whose inner width (``num_heads * head_dim``) differs from its model width.

    Called like ``nn.MultiheadAttention`` (query, key, value, key_padding_mask, need_weights, attn_mask,
    average_attn_weights, is_causal) and returns ``(output, weights or None)``.

    Args:
        embed_dim: model width (inputs and output). num_heads: heads kept. head_dim: width of each head.
        bias: projections carry biases. dropout: attention dropout (training only). batch_first: input layout.
    """

    # attributes nn.TransformerEncoderLayer reads to decide on its fused fast path (it takes the standard path)
    _qkv_same_embed_dim = False
    in_proj_bias = None
    in_proj_weight = None

    def __init__(self, embed_dim: int, num_heads: int, head_dim: int, bias: bool = True, dropout: float = 0.0,
                 batch_first: bool = False):
        super().__init__()
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, head_dim
        self.dropout, self.batch_first = dropout, batch_first
        inner = num_heads * head_dim
        self.q_proj = nn.Linear(embed_dim, inner, bias=bias)
        self.k_proj = nn.Linear(embed_dim, inner, bias=bias)
        self.v_proj = nn.Linear(embed_dim, inner, bias=bias)
        self.out_proj = nn.Linear(inner, embed_dim, bias=bias)

    @classmethod
    @torch.no_grad()
    def from_attention(cls, m: nn.Module, keep: list[int]) -> HeadPrunedAttention:
        """The attention ``m`` restricted to the heads ``keep``."""
        w, b, wo, d = _qkv(m)
        rows = torch.cat([torch.arange(h * d, (h + 1) * d) for h in keep])
        new = cls(m.embed_dim, len(keep), d, bias=b is not None, dropout=float(m.dropout),
                  batch_first=bool(m.batch_first)).to(device=w.device, dtype=w.dtype)
        for i, lin in enumerate((new.q_proj, new.k_proj, new.v_proj)):
            lin.weight.copy_(w[i][rows])
            if b is not None:
                lin.bias.copy_(b[i][rows])
        new.out_proj.weight.copy_(wo[:, rows])
        if m.out_proj.bias is not None:
            new.out_proj.bias.copy_(m.out_proj.bias)
        new.train(m.training)
        return new

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
                need_weights: bool = True, attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
        batched = query.dim() == 3
        if not batched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        lq, n, _ = query.shape
        ls = key.shape[0]
        h, d = self.num_heads, self.head_dim
        q = self.q_proj(query).reshape(lq, n * h, d).transpose(0, 1).reshape(n, h, lq, d)
        k = self.k_proj(key).reshape(ls, n * h, d).transpose(0, 1).reshape(n, h, ls, d)
        v = self.v_proj(value).reshape(ls, n * h, d).transpose(0, 1).reshape(n, h, ls, d)
        mask = None
        if attn_mask is not None:
            am = attn_mask
            if am.dtype == torch.bool:
                am = torch.zeros(am.shape, dtype=q.dtype, device=q.device).masked_fill(am, float("-inf"))
            mask = am.view(n, h, lq, ls) if am.dim() == 3 else am.view(1, 1, lq, ls)
        if key_padding_mask is not None:
            kp = key_padding_mask
            if kp.dtype == torch.bool:
                kp = torch.zeros(kp.shape, dtype=q.dtype, device=q.device).masked_fill(kp, float("-inf"))
            kp = kp.view(n, 1, 1, ls)
            mask = kp if mask is None else mask + kp
        if is_causal and mask is None:
            mask = torch.full((lq, ls), float("-inf"), dtype=q.dtype, device=q.device).triu(1).view(1, 1, lq, ls)
        scores = (q @ k.transpose(-2, -1)) / (d ** 0.5)
        if mask is not None:
            scores = scores + mask
        attn = scores.softmax(-1)
        if self.training and self.dropout > 0:
            attn = F.dropout(attn, p=self.dropout)
        out = (attn @ v).permute(2, 0, 1, 3).reshape(lq, n, h * d)
        out = self.out_proj(out)
        if self.batch_first and batched:
            out = out.transpose(0, 1)
        if not batched:
            out = out.squeeze(1)
        weights = None
        if need_weights:
            weights = attn.mean(1) if average_attn_weights else attn
            if not batched:
                weights = weights.squeeze(0)
        return out, weights


def remove_heads_(model: nn.Module, name: str, heads: list[int]) -> HeadPrunedAttention:
    """Replace the attention module ``name`` of ``model`` by a :class:`HeadPrunedAttention` without ``heads``."""
    m = model.get_submodule(name)
    keep = [h for h in range(m.num_heads) if h not in set(heads)]
    new = HeadPrunedAttention.from_attention(m, keep)
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)
    return new
