"""What the joint method optimizes and measures, per compressed weight tensor and for the whole model.

Each quantity exists twice:

* **soft** (differentiable in the weights, α, β and θ): kept count k = Σ h(w), expected bits Σ_b π_b·b;
* **hard** (what finalization produces): non-zeros of the hard-masked, quantized weight at the chosen bits.

Definitions (docs/joint.md):

* ``wbits``: average weight bits, Σ_l n_l·b_l / Σ_l n_l over the compressed tensors (0 for a removed layer);
* ``abits``: average feature-map bits weighted by each tensor's dense MACs (as the report's total);
* ``size_bytes``: the model size with the one storage cost model, :mod:`prunequant.core.cost` (values at the
  finalized quantizer's code bits, the cheapest of dense / bitmap / CSR index, every tensor of the quantizer's
  spec, every other parameter at 32 bits); the soft version is the CSR cost with soft k and Σ_b π_b (see
  :func:`soft_storage_bits`);
* ``bops``: bit-operations per sample, Σ_l (effective MACs)·b_w·b_a;
* ``sparsity``: fraction of zero weights over the compressed tensors.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..core.cost import bits_needed, quantizer_state_bits, quantizer_value_bits, tensor_storage_bits
from ..core.tracing import trace_layers
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
    _candidate_costs: dict = field(default_factory=dict, repr=False, compare=False)

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

    def candidate_cost(self, i: int) -> tuple[int, int]:
        """(value bits, state bits) of candidate ``i`` once finalized: the code bits and the spec tensors of the
        fixed quantizer it becomes (:mod:`prunequant.core.cost`); they depend on the shape only, so cached."""
        if i not in self._candidate_costs:
            q = self.wq.candidate_fixed(self.raw.detach(), i, self.name)
            self._candidate_costs[i] = (quantizer_value_bits(q), quantizer_state_bits(q))
        return self._candidate_costs[i]

    def storage_bits_for(self, b: int) -> int:
        """State bits (scales, zero points, breakpoints, ...) of the quantizer the candidate ``b`` finalizes into."""
        return self.candidate_cost(self.wq.mixture.bits.index(b))[1]


def soft_storage_bits(layer: JointLayer, kept: Tensor, surrogate: str = "cheapest") -> Tensor:
    """Differentiable surrogate of the stored bits, averaged over the candidates with π, with v_b and the state
    from the fixed quantizer candidate b finalizes into (:meth:`JointLayer.candidate_cost`):

    * ``"cheapest"`` (default): min(bitmap, CSR) = min(n + k·v_b, k·(v_b + bits(cols − 1)) + (rows + 1)·bits(n))
      + state: a kept weight costs v_b bits while the layer is dense-ish and v_b + index bits once it is very
      sparse, as in the report, so the gradient prices a bit of precision and a kept weight in the same unit;
    * ``"csr"``: always the CSR cost.

    The report also has a dense layout (n·v_b), cheaper than the bitmap only at high density; its cost does not
    depend on k, so using it would give pruning no incentive there (the soft phase stalled at 5.5 kB for a 3 kB
    target when it did). The controller measures the true (report) size.
    """
    rows = layer.rows
    cidx = bits_needed(max(layer.cols - 1, 0))
    ptr = (rows + 1) * bits_needed(layer.numel)  # row pointers at their widest (every weight kept)
    p = layer.wq.mixture.probs()
    if p.dim() == 2:
        p = p.mean(1)
    total = kept.new_zeros(())
    for i, b in enumerate(layer.wq.mixture.bits):
        value_bits, state_bits = layer.candidate_cost(i)
        if b == 0:
            cost = kept * 0 + ptr
        else:
            cost = kept * (value_bits + cidx) + ptr
            if surrogate == "cheapest":
                cost = torch.minimum(cost, kept * value_bits + layer.numel)
        total = total + p[i] * (cost + state_bits)
    return total


def soft_costs(layers: list[JointLayer], fixed_bits: int, size_surrogate: str = "cheapest") -> dict[str, Tensor]:
    """Differentiable wbits, abits, size_bytes (:func:`soft_storage_bits` with ``size_surrogate``), bops and
    density over ``layers``."""
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
        terms = (l.numel * wb, l.macs * ab, soft_storage_bits(l, kept, size_surrogate), l.uses * eff_bits * ab, kept)
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
    if l.wq.mixture.per_channel:  # per-channel bit widths: stored at the widest channel's width
        value_bits, state_bits = max(MIN_BITS, int(cb.max())), l.candidate_cost(0)[1]
    else:
        value_bits, state_bits = l.candidate_cost(int(l.wq.mixture.current()))
    return {"numel": l.numel, "nonzeros": int(nnz_rows.sum()), "wbits": float(cb.mean()), "abits": ab,
            "storage_bits": tensor_storage_bits(w, value_bits, state_bits),
            "bops": float(l.uses * (nnz_rows * cb).sum() * ab),
            "macs": l.macs}


@torch.no_grad()
def hard_costs(layers: list[JointLayer], fixed_bits: int, beta_factor: float = 1.0,
               min_density: float = 0.0) -> dict[str, float]:
    """wbits, abits, size_bytes, bops and sparsity the finalized model would have now (every analytic β scaled
    by ``beta_factor``, capped by ``min_density``)."""
    return aggregate_measures([layer_measures(l, beta_factor, min_density) for l in layers], fixed_bits)


def aggregate_measures(rows: list[dict[str, float]], fixed_bits: int) -> dict[str, float]:
    """Model-level wbits, abits, size_bytes, bops and sparsity from per-tensor :func:`layer_measures` rows."""
    n_tot = sum(r["numel"] for r in rows)
    macs_tot = sum(r["macs"] for r in rows) or 1.0
    return {"wbits": sum(r["numel"] * r["wbits"] for r in rows) / n_tot,
            "abits": sum(r["macs"] * r["abits"] for r in rows) / macs_tot,
            "size_bytes": (sum(r["storage_bits"] for r in rows) + fixed_bits) / 8,
            "bops": sum(r["bops"] for r in rows),
            "sparsity": 1.0 - sum(r["nonzeros"] for r in rows) / n_tot}


@torch.no_grad()
def measure_macs_(model: nn.Module, layers: list[JointLayer], example_input: Any) -> None:
    """Set ``layer.macs`` (dense MACs per sample) from one traced forward of ``example_input`` (batch first)."""
    trace = trace_layers(model, example_input)
    per_tensor = trace.tensor_macs()
    names = {id(m): n for n, m in trace.modules.items()}
    for l in layers:
        l.macs = per_tensor.get((names.get(id(l.module)), l.pname), 0) / trace.batch_size


def fixed_param_bits(model: nn.Module, compressed: set[int]) -> int:
    """Bits of every parameter that is not a compressed weight (stored at 32 bits by the report)."""
    return sum(p.numel() * FP_BITS for p in model.parameters() if id(p) not in compressed)


@torch.no_grad()
def floor_storage_bits(raw: Tensor, wq: SoftMixWeightQuant) -> int:
    """The fewest bits weight ``raw`` can take under the soft quantizer ``wq``'s candidates: all weights pruned,
    so only the pattern and the finalized quantizer's state remain (:mod:`prunequant.core.cost`)."""
    zeros = torch.zeros_like(raw.detach())
    best = None
    for i in range(len(wq.mixture.bits)):
        q = wq.candidate_fixed(raw.detach(), i)
        bits = tensor_storage_bits(zeros, quantizer_value_bits(q), quantizer_state_bits(q))
        best = bits if best is None else min(best, bits)
    return int(best)
