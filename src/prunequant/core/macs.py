"""Multiply-accumulate counting per layer call, from the shapes a forward hook sees.

Every count is expressed as *weight uses*: a :class:`WeightUse` says that (a row slice of) a weight tensor took
part in ``uses`` multiply-accumulates per element in one call. Then

* dense MACs     = sum(numel(W[rows]) * uses) + activation-only MACs (attention scores and weighted sums),
* effective MACs = sum(nnz(W[rows])   * uses) + activation-only MACs,

so zero weights are skipped exactly where they would be skipped by a sparse kernel. Rules (biases, additions and
element-wise gate products are not MACs; counts are for the example input as given, batch included):

* Linear: each weight is used once per output row: ``uses = numel(out) / out_features``.
* Conv1d/2d/3d (any groups, stride, padding, dilation, depthwise): once per output position:
  ``uses = N * prod(out_spatial)``; dense = N * prod(out_spatial) * C_out * C_in/groups * prod(kernel).
* ConvTranspose: once per *input* position: ``uses = N * prod(in_spatial)``.
* RNN/LSTM/GRU: every ``weight_ih_l*``, ``weight_hh_l*`` (and LSTM ``weight_hr_l*``) once per time step and sequence,
  for each layer and direction: ``uses = N * T`` (packed sequences: the number of real tokens). This covers all
  gates (4 for LSTM, 3 for GRU) because the gate rows are part of the weight.
* RNNCell/LSTMCell/GRUCell: ``weight_ih`` and ``weight_hh`` once per sample per call: ``uses = N`` (1 when
  unbatched); the caller's time loop calls the cell once per step, so the per-step calls add up.
* MultiheadAttention: Q projection ``N*L`` uses, K and V projections ``N*S`` uses, ``out_proj`` ``N*L`` uses, plus
  ``2 * N * L * S' * E`` activation MACs for QK^T and AV (S' includes ``bias_k`` / ``add_zero_attn`` columns).
* BatchNorm / LayerNorm / GroupNorm / InstanceNorm, Embedding, PReLU: 0 MACs (norms fold into the previous layer
  for inference; an embedding is a lookup).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from .nested import first_tensor

__all__ = ["ZERO_MAC_TYPES", "CallMacs", "WeightUse", "call_macs", "flop_counter_macs", "is_known", "weight_nonzeros"]

ZERO_MAC_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.Embedding, nn.PReLU,
)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_RNN = (nn.RNN, nn.LSTM, nn.GRU)
_CELL = (nn.RNNCell, nn.LSTMCell, nn.GRUCell)
_KNOWN = (nn.Linear, *_CONV, *_CONV_T, *_RNN, *_CELL, nn.MultiheadAttention, *ZERO_MAC_TYPES)


@dataclass(frozen=True)
class WeightUse:
    """``tensor`` (dotted path relative to the called module) rows ``rows`` (None = all) used ``uses`` times."""

    tensor: str
    uses: int
    rows: tuple[int, int] | None = None


@dataclass
class CallMacs:
    """The MACs of one module call: weight uses plus MACs between activations only (no weight involved)."""

    weights: list[WeightUse]
    activation_macs: int = 0


def is_known(module: nn.Module) -> bool:
    """True if :func:`call_macs` has an exact rule for ``module``'s type."""
    return isinstance(module, _KNOWN)



def _rnn_tokens(module: nn.RNNBase, x: Any) -> int:
    """Number of (sequence, time step) pairs the recurrence runs over."""
    if isinstance(x, PackedSequence):
        return int(x.data.shape[0])
    if x.dim() == 2:  # unbatched (T, I)
        return int(x.shape[0])
    return int(x.shape[0] * x.shape[1])


def _rnn_uses(module: nn.RNNBase, tokens: int) -> list[WeightUse]:
    out = []
    for name in module._flat_weights_names:
        if name.startswith(("weight_ih_l", "weight_hh_l", "weight_hr_l")):
            out.append(WeightUse(name, tokens))
    return out


def _mha(module: nn.MultiheadAttention, args: tuple, kwargs: dict) -> CallMacs:
    q = args[0] if len(args) > 0 else kwargs["query"]
    k = args[1] if len(args) > 1 else kwargs["key"]
    if q.dim() == 2:  # unbatched (L, E)
        n, length, src = 1, q.shape[0], k.shape[0]
    elif module.batch_first:
        n, length, src = q.shape[0], q.shape[1], k.shape[1]
    else:
        n, length, src = q.shape[1], q.shape[0], k.shape[0]
    e = module.embed_dim
    attn_src = src + (1 if module.bias_k is not None else 0) + (1 if module.add_zero_attn else 0)
    if module._qkv_same_embed_dim:
        weights = [WeightUse("in_proj_weight", n * length, (0, e)),
                   WeightUse("in_proj_weight", n * src, (e, 2 * e)),
                   WeightUse("in_proj_weight", n * src, (2 * e, 3 * e))]
    else:
        weights = [WeightUse("q_proj_weight", n * length), WeightUse("k_proj_weight", n * src),
                   WeightUse("v_proj_weight", n * src)]
    weights.append(WeightUse("out_proj.weight", n * length))
    return CallMacs(weights, activation_macs=2 * n * length * attn_src * e)


def call_macs(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> CallMacs:
    """MACs of one call of a known module type (see :func:`is_known`), from its inputs and output."""
    if isinstance(module, nn.Linear):
        out = first_tensor(output)
        return CallMacs([WeightUse("weight", out.numel() // module.out_features)])
    if isinstance(module, _CONV):
        out = first_tensor(output)
        return CallMacs([WeightUse("weight", out.numel() // module.out_channels)])
    if isinstance(module, _CONV_T):
        x = args[0] if args else kwargs["input"]
        return CallMacs([WeightUse("weight", x.numel() // module.in_channels)])
    if isinstance(module, _RNN):
        x = args[0] if args else kwargs["input"]
        return CallMacs(_rnn_uses(module, _rnn_tokens(module, x)))
    if isinstance(module, _CELL):
        x = args[0] if args else kwargs["input"]
        n = 1 if x.dim() == 1 else int(x.shape[0])
        return CallMacs([WeightUse("weight_ih", n), WeightUse("weight_hh", n)])
    if isinstance(module, nn.MultiheadAttention):
        return _mha(module, args, kwargs)
    if isinstance(module, ZERO_MAC_TYPES):
        return CallMacs([])
    raise TypeError(f"no MAC rule for {type(module).__name__}")  # pragma: no cover - guarded by is_known


def flop_counter_macs(model: nn.Module, run) -> dict[str, int]:
    """MACs per module name from ``torch.utils.flop_counter`` (FLOPs / 2), children included in their parents.

    ``run()`` performs the forward. Keys are module names as in ``named_modules`` ("" for the model itself).
    torch's counter sees matmuls and convolutions only; it misses LSTM and the fused attention fast path.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, depth=None) as fc:
        run()
    root = type(model).__name__
    out: dict[str, int] = {}
    for key, ops in fc.get_flop_counts().items():
        if key == "Global":
            continue
        name = "" if key == root else key[len(root) + 1:] if key.startswith(root + ".") else None
        if name is not None:
            out[name] = int(sum(ops.values())) // 2
    return out


def weight_nonzeros(t: Tensor, rows: tuple[int, int] | None) -> tuple[int, int]:
    """``(numel, nonzeros)`` of ``t`` or of its row slice."""
    if rows is not None:
        t = t[rows[0]:rows[1]]
    return t.numel(), int(torch.count_nonzero(t))

