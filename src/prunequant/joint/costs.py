"""What the joint method optimizes and measures, per compressed weight tensor and for the whole model.

Each quantity exists twice:

* **soft** (differentiable in the weights, α, β and θ): kept count k = Σ h(w), expected bits Σ_b π_b·b;
* **hard** (what finalization produces): non-zeros of the hard-masked, quantized weight at the chosen bits.

Definitions (docs/joint.md):

* ``wbits``: average weight bits, Σ_l n_l·b_l / Σ_l n_l over the compressed tensors (0 for a removed layer);
* ``abits``: average feature-map bits weighted by each tensor's dense MACs (as the report's total);
* ``size_bytes``: the model size with :func:`prunequant.analysis.report`'s storage formula (values at b bits,
  the cheaper of dense / bitmap / CSR index, the quantizer's export state, every other parameter at 32 bits);
  the soft version is the CSR cost with soft k and Σ_b π_b (see :func:`soft_storage_bits`);
* ``bops``: bit-operations per sample, Σ_l (effective MACs)·b_w·b_a;
* ``sparsity``: fraction of zero weights over the compressed tensors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..analysis.macs import call_macs, is_known
from ..analysis.report import storage_bits
from ..pruning.analytic import AnalyticThreshold
from ..pruning.analytic.controller import beta_caps
from ..pruning.base import FixedMask, get_mask
from ..quantization.base import MIN_BITS
from .quantizers import SoftMixActQuant, SoftMixWeightQuant

FP_BITS = 32


@dataclass
class JointLayer:
    """One compressed weight tensor: its module, soft weight quantizer, the module's feature-map quantizer
    (shared by the module's tensors) and its MAC count per sample."""

    name: str
    module_name: str
    module: nn.Module
    pname: str
    wq: SoftMixWeightQuant
    aq: SoftMixActQuant | None = None
    macs: float = 0.0

    @property
    def raw(self) -> Tensor:
        return self.module.parametrizations[self.pname].original

    @property
    def mask(self):
        return get_mask(self.module, self.pname)

    @property
    def numel(self) -> int:
        return self.raw.numel()

    @property
    def rows(self) -> int:
        return self.raw.shape[0] if self.raw.dim() > 1 else 1

    @property
    def cols(self) -> int:
        return self.numel // self.rows

    @property
    def uses(self) -> float:
        """MACs per weight element per sample."""
        return self.macs / self.numel

    # -- soft (differentiable) ------------------------------------------------------------------------------
    def soft_kept_rows(self) -> Tensor:
        """Differentiable kept count per output channel, (rows,)."""
        m, w = self.mask, self.raw
        if isinstance(m, AnalyticThreshold):
            keep = m.h(w)
        elif m is not None:
            keep = m.hard_mask(w).to(w.dtype)
        else:
            keep = torch.ones_like(w)
        return keep.reshape(self.rows, -1).sum(1)

    def soft_wbits(self) -> Tensor:
        return self.wq.mixture.expected_bits().mean()

    def soft_abits(self) -> Tensor:
        if self.aq is None:
            return torch.tensor(float(FP_BITS), device=self.raw.device)
        return self.aq.mixture.expected_bits()

    # -- hard (what finalization produces) -----------------------------------------------------------------
    @torch.no_grad()
    def hard_masked(self, beta_factor: float = 1.0, min_density: float = 0.0) -> Tensor:
        """Raw weight with the hard mask applied (|w| > β·factor for an analytic threshold, β capped so that
        each group keeps ``min_density`` of its weights)."""
        m, w = self.mask, self.raw.detach()
        if isinstance(m, AnalyticThreshold):
            beta = m.beta.detach() * beta_factor
            if beta_factor != 1.0 and min_density > 0:
                beta = torch.minimum(beta, beta_caps(m, w, min_density))
            return w * (w.abs() > m._view(beta, w)).to(w.dtype)
        if isinstance(m, FixedMask):
            return w * m.mask.to(w.dtype)
        return w

    @torch.no_grad()
    def hard_weight(self, beta_factor: float = 1.0, min_density: float = 0.0) -> Tensor:
        """The effective weight after finalization: hard mask, then the quantizer at the current choice."""
        return self.wq.quantize_current(self.hard_masked(beta_factor, min_density))

    def channel_bits(self) -> Tensor:
        """Chosen weight bits per output channel (rows,) (0 = removed)."""
        b = self.wq.mixture.current_bits()
        return b.expand(self.rows) if b.dim() == 0 else b

    def hard_wbits(self) -> float:
        return float(self.channel_bits().mean())

    def hard_abits(self) -> float:
        return float(FP_BITS) if self.aq is None else float(self.aq.mixture.current_bits())

    def storage_bits_for(self, b: int) -> int:
        """Bits the finalized quantizer's export state costs (what the report adds on top of the values)."""
        if self.wq.mixture.per_channel:
            return self.rows * (32 + 8)  # ChannelBitsWeightQuant: fp32 scale + uint8 bit-width per channel
        # uniform: fp32 scale + int32 zero point; PWLQ: fp32 breakpoint + fp32 max|w|; per scale row
        return (self.rows if self.wq.dim == 0 else 1) * (32 + 32)


def soft_storage_bits(layer: JointLayer, kept: Tensor) -> Tensor:
    """Differentiable surrogate of the stored bits, averaged over the candidates with π: the CSR cost
    k·(b + ⌈log2 cols⌉) + 32·(rows + 1) + quantizer state.

    The report charges the cheapest of dense / bitmap / CSR; its bitmap and dense branches do not depend on k,
    so their gradient would give pruning no incentive until the CSR regime is reached. The surrogate charges
    every kept weight its sparse cost instead; the controller measures the true (report) size.
    """
    rows = layer.rows
    cidx = max(1, math.ceil(math.log2(layer.cols))) if layer.cols > 1 else 1
    p = layer.wq.mixture.probs()
    if p.dim() == 2:
        p = p.mean(1)
    total = kept.new_zeros(())
    for i, b in enumerate(layer.wq.mixture.bits):
        values = kept * (max(b, MIN_BITS) + cidx) if b > 0 else kept * 0
        total = total + p[i] * (values + (rows + 1) * 32 + layer.storage_bits_for(b))
    return total


def soft_costs(layers: list[JointLayer], fixed_bits: int) -> dict[str, Tensor]:
    """Differentiable wbits, abits, size_bytes, bops and density over ``layers``."""
    n_tot = sum(l.numel for l in layers)
    macs_tot = sum(l.macs for l in layers) or 1.0
    wbits = abits = size = bops = kept_tot = None
    for l in layers:
        kept_rows = l.soft_kept_rows()
        kept = kept_rows.sum()
        wb = l.soft_wbits()
        ab = l.soft_abits()
        if l.wq.mixture.per_channel:
            eff_bits = (kept_rows * l.wq.mixture.expected_bits()).sum()
        else:
            eff_bits = kept * wb
        terms = (l.numel * wb, l.macs * ab, soft_storage_bits(l, kept), l.uses * eff_bits * ab, kept)
        if wbits is None:
            wbits, abits, size, bops, kept_tot = terms
        else:
            wbits, abits, size, bops, kept_tot = (a + t for a, t in zip((wbits, abits, size, bops, kept_tot), terms))
    return {"wbits": wbits / n_tot, "abits": abits / macs_tot, "size_bytes": (size + fixed_bits) / 8,
            "bops": bops, "density": kept_tot / n_tot}


@torch.no_grad()
def layer_measures(l: JointLayer, beta_factor: float = 1.0, min_density: float = 0.0) -> dict[str, float]:
    """Hard measures of one tensor: non-zeros, bits, storage bits, BOPs."""
    w = l.hard_weight(beta_factor, min_density)
    cb = l.channel_bits()
    nnz_rows = (w != 0).reshape(l.rows, -1).sum(1).to(cb.dtype)
    ab = l.hard_abits()
    b_store = max(MIN_BITS, int(cb.max()))
    ovh = l.storage_bits_for(int(cb.max()))
    return {"numel": l.numel, "nonzeros": int(nnz_rows.sum()), "wbits": float(cb.mean()), "abits": ab,
            "storage_bits": storage_bits(w, b_store, ovh), "bops": float(l.uses * (nnz_rows * cb).sum() * ab),
            "macs": l.macs}


@torch.no_grad()
def hard_costs(layers: list[JointLayer], fixed_bits: int, beta_factor: float = 1.0,
               min_density: float = 0.0) -> dict[str, float]:
    """wbits, abits, size_bytes, bops and sparsity the finalized model would have now (every analytic β scaled
    by ``beta_factor``, capped by ``min_density``)."""
    rows = [layer_measures(l, beta_factor, min_density) for l in layers]
    n_tot = sum(r["numel"] for r in rows)
    macs_tot = sum(r["macs"] for r in rows) or 1.0
    return {"wbits": sum(r["numel"] * r["wbits"] for r in rows) / n_tot,
            "abits": sum(r["macs"] * r["abits"] for r in rows) / macs_tot,
            "size_bytes": (sum(r["storage_bits"] for r in rows) + fixed_bits) / 8,
            "bops": sum(r["bops"] for r in rows),
            "sparsity": 1.0 - sum(r["nonzeros"] for r in rows) / n_tot}


@torch.no_grad()
def measure_macs_(model: nn.Module, layers: list[JointLayer], example_input: Any) -> None:
    """Set ``layer.macs`` (dense MACs per sample) from one forward of ``example_input`` (batch first)."""
    by_module: dict[int, list[JointLayer]] = {}
    for l in layers:
        by_module.setdefault(id(l.module), []).append(l)
    counts: dict[tuple[int, str], float] = {}
    batch = [1]

    def hook(module, args, kwargs, out):
        for wu in call_macs(module, args, kwargs, out).weights:
            sub, _, tname = wu.tensor.rpartition(".")  # e.g. out_proj.weight, used by its attention parent
            owner = module.get_submodule(sub) if sub else module
            t = getattr(owner, tname)
            n = t[wu.rows[0]:wu.rows[1]].numel() if wu.rows else t.numel()
            key = (id(owner), tname)
            counts[key] = counts.get(key, 0.0) + n * wu.uses

    handles = []
    for l in layers:
        if is_known(l.module) and id(l.module) in by_module:
            handles.append(l.module.register_forward_hook(hook, with_kwargs=True))
            by_module.pop(id(l.module))
    x = example_input
    if isinstance(x, Tensor):
        batch[0] = max(1, x.shape[0])
        args = (x,)
    else:
        args = tuple(x)
        batch[0] = max(1, args[0].shape[0])
    was = model.training
    model.eval()
    try:
        model(*args)
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    for l in layers:
        l.macs = counts.get((id(l.module), l.pname), 0.0) / batch[0]


def fixed_param_bits(model: nn.Module, compressed: set[int]) -> int:
    """Bits of every parameter that is not a compressed weight (stored at 32 bits by the report)."""
    return sum(p.numel() * FP_BITS for p in model.parameters() if id(p) not in compressed)
