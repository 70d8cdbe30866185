"""Attention-head pruning: whole heads of ``nn.MultiheadAttention`` (its model dimension stays).

``nn.MultiheadAttention`` ties its inner (all-heads) width to its model width, so a model with fewer heads cannot
be an ``nn.MultiheadAttention``; removal replaces it by :class:`~prunequant.core.resize.HeadPrunedAttention`, an
ordinary module with ``q_proj``/``k_proj``/``v_proj``/``out_proj`` ``nn.Linear`` children and the same call
signature and outputs (``nn.TransformerEncoderLayer`` / ``DecoderLayer`` take it as their ``self_attn`` and run their
standard path).
Zeroing a head (its q, k, v rows and biases, its ``out_proj`` columns) gives the same outputs as removing it: the
head attends uniformly over zero values and adds nothing.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

# HeadPrunedAttention lives in core (loading a shrunk model needs it); re-exported here for old imports
from ...core.resize import HeadPrunedAttention, _qkv

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


def remove_heads_(model: nn.Module, name: str, heads: list[int]) -> HeadPrunedAttention:
    """Replace the attention module ``name`` of ``model`` by a :class:`HeadPrunedAttention` without ``heads``."""
    m = model.get_submodule(name)
    keep = [h for h in range(m.num_heads) if h not in set(heads)]
    new = HeadPrunedAttention.from_attention(m, keep)
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)
    return new
