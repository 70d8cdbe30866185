"""Shapes of a channel-pruned model: what loading one needs, with nothing but torch.

A channel-pruned model (see :mod:`prunequant.pruning.structured`) is an ordinary dense module whose layers have
fewer channels than its constructor builds, and whose ``nn.MultiheadAttention`` modules with fewer heads are
:class:`HeadPrunedAttention`. :func:`resize_to_state_dict_` gives a freshly constructed model the stored shapes so
its state dict loads. Both live in ``core`` so that ``io`` and ``export`` load shrunk models without importing
``pruning``.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..errors import ShapeError

log = logging.getLogger("prunequant.core.resize")

__all__ = ["HeadPrunedAttention", "resize_to_state_dict_"]


def _raw(m: nn.Module, pname: str):
    """The stored tensor ``pname`` of ``m`` under any parametrization."""
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


# ---------------------------------------------------------------------------------------------------------------
# loading a shrunk state dict into a freshly built (dense) model


def _set_param(module: nn.Module, pname: str, shape: torch.Size) -> None:
    old = getattr(module, pname)
    new = torch.zeros(shape, dtype=old.dtype, device=old.device)
    if isinstance(old, nn.Parameter):
        setattr(module, pname, nn.Parameter(new, requires_grad=old.requires_grad))
    else:
        module.register_buffer(pname, new)


@torch.no_grad()
def resize_to_state_dict_(model: nn.Module, state: Mapping[str, Tensor]) -> list[str]:
    """Give every Conv/Linear/BatchNorm of ``model`` the shapes stored in ``state`` (a channel-pruned model's state
    dict), so ``model.load_state_dict(state)`` succeeds. Returns the names of the resized modules.

    Only channel counts change (kernel sizes, strides, etc. stay); a depthwise convolution stays depthwise.
    Raises :class:`ShapeError` naming the module for any other mismatch.
    """
    resized = []
    for name, mod in list(model.named_modules()):  # head-pruned attention: rebuild with the stored head count
        pre = f"{name}." if name else ""
        if isinstance(mod, nn.MultiheadAttention) and pre + "q_proj.weight" in state:
            q = state[pre + "q_proj.weight"]
            new = HeadPrunedAttention(mod.embed_dim, q.shape[0] // mod.head_dim, mod.head_dim,
                                      bias=pre + "q_proj.bias" in state, dropout=float(mod.dropout),
                                      batch_first=bool(mod.batch_first)).to(q.dtype)
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, new)
            resized.append(name)
    for name, mod in model.named_modules():
        pre = f"{name}." if name else ""
        w = state.get(pre + "weight")
        if w is None or not hasattr(mod, "weight") or not isinstance(mod.weight, Tensor):
            continue
        if tuple(w.shape) == tuple(mod.weight.shape):
            continue
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            if tuple(w.shape[2:]) != tuple(mod.weight.shape[2:]):
                raise ShapeError(f"layer '{name}': stored kernel {tuple(w.shape)} does not fit "
                                 f"{tuple(mod.weight.shape)}")
            depthwise = mod.groups > 1 and mod.groups == mod.in_channels == mod.out_channels
            if depthwise:
                mod.out_channels = mod.in_channels = mod.groups = int(w.shape[0])
            elif mod.groups == 1:
                mod.out_channels, mod.in_channels = int(w.shape[0]), int(w.shape[1])
            else:
                raise ShapeError(f"layer '{name}': grouped convolution ({mod.groups} groups) cannot be resized")
        elif isinstance(mod, nn.Linear):
            mod.out_features, mod.in_features = int(w.shape[0]), int(w.shape[1])
        elif isinstance(mod, nn.modules.batchnorm._NormBase):
            mod.num_features = int(w.shape[0])
        elif isinstance(mod, nn.PReLU) and w.numel() == 1:
            continue
        else:
            raise ShapeError(f"layer '{name}' ({type(mod).__name__}): stored weight {tuple(w.shape)} does not fit "
                             f"{tuple(mod.weight.shape)} and cannot be resized")
        for pname, t in list(mod.named_parameters(recurse=False)) + list(mod.named_buffers(recurse=False)):
            s = state.get(pre + pname)
            if s is not None and t is not None and s.shape != t.shape:
                _set_param(mod, pname, s.shape)
        resized.append(name)
    if resized:
        log.info("resized %d layers to the stored channel counts: %s", len(resized), ", ".join(resized[:8]))
    return resized
