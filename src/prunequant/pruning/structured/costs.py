"""Real cost of a channel plan: parameters and MACs of the *shrunk* model, exact and differentiable.

After channels are removed a Conv/Linear weight keeps ``numel * f_out * f_in`` elements, where ``f_out`` / ``f_in``
are the kept fractions of its output rows and input columns (a depthwise weight has one input column per group,
so only ``f_out`` applies); every weight element is used the same number of times per call as before (spatial sizes
do not change), so the layer's MACs scale the same way. With ``keep`` vectors in [0, 1] per group (soft gates h or
hard 0/1 decisions) the same formula gives the soft cost that the analytic penalty differentiates and the exact
cost of the shrunk model that budgets are met on. MACs are counted like :func:`prunequant.analysis.report`
(Conv/Linear weight uses, MultiheadAttention projections plus its 2·N·L·S·E activation MACs; norms are free).

Group scores: the normalized group norm ``s_c = mean_m ||W_m[c]||² / ref_m`` over the members m of the group (producer
rows, BatchNorm scales, consumer columns), ``ref_m`` the member's mean at the time the scores were first taken, so
``s ≈ 1`` for an average channel whatever the layer's scale.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ...errors import ConfigError
from .attention import HeadPrunedAttention
from .groups import ChannelGraph, ChannelGroup, Member, _forward


def _head_tensors(m: nn.Module) -> list[tuple[nn.Module, int, int]]:
    """(module, dim, size) of every tensor dimension that shrinks with the heads of attention ``m``."""
    inner = m.num_heads * m.head_dim
    if isinstance(m, HeadPrunedAttention):
        return [(m.q_proj, 0, inner), (m.k_proj, 0, inner), (m.v_proj, 0, inner), (m.out_proj, 1, inner)]
    return [(m, 0, 3 * inner), (m.out_proj, 1, inner)]

__all__ = ["CostModel", "StructuredTarget", "close_gap", "group_scores", "raw_weight"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def raw_weight(module: nn.Module, pname: str = "weight") -> Tensor:
    """The stored tensor under any parametrization (what pruning scores and gradients act on)."""
    if parametrize.is_parametrized(module, pname):
        return module.parametrizations[pname].original
    return getattr(module, pname)


def _member_sq(member) -> Tensor:
    """Squared norm of each indexed slice of the member (rows for out, columns for in, heads)."""
    if member.kind == "heads":
        from .attention import head_sq_norms

        return head_sq_norms(member.module)[member.idx]
    w = raw_weight(member.module)
    sq = w.pow(2)
    if member.kind == "out":
        per = sq.sum(tuple(range(1, w.dim()))) if w.dim() > 1 else sq
    else:
        per = sq.sum((0, *range(2, w.dim())))
    return per[member.idx.to(per.device)]


def group_scores(group: ChannelGroup, refs: list[float] | None = None) -> tuple[Tensor, list[float]]:
    """Normalized squared group norm per channel (differentiable) and the per-member references used."""
    parts, out_refs = [], []
    for i, m in enumerate(group.members):
        sq = _member_sq(m)
        per_root = torch.zeros(group.size, dtype=sq.dtype, device=sq.device).index_add(0, m.root.to(sq.device), sq)
        ref = refs[i] if refs is not None else max(float(per_root.detach().mean()), 1e-12)
        out_refs.append(ref)
        parts.append(per_root / ref)
    return torch.stack(parts).mean(0), out_refs


@dataclass
class _Slot:
    module: str
    pname: str
    numel: int
    uses: int                     # MACs per element per call (0 for biases, norms)
    out_members: list             # (group index, member)
    in_members: list
    dim0: int
    dim1: int
    is_param: bool = True


class CostModel:
    """Parameters and MACs as a function of per-group keep vectors (see module docstring).

    Args:
        graph: the channel graph (its model and example input are traced once here).
    """

    def __init__(self, graph: ChannelGraph):
        self.graph = graph
        model = graph.model
        uses: dict[nn.Module, int] = {}

        attn_macs: dict[nn.Module, int] = {}

        def hook(mod, inp, out):
            if isinstance(mod, (nn.MultiheadAttention, HeadPrunedAttention)):
                q, k = inp[0], inp[1] if len(inp) > 1 else inp[0]
                e = mod.embed_dim
                inner = mod.num_heads * mod.head_dim
                lq = q.numel() // q.shape[-1]
                lk = k.numel() // k.shape[-1]
                # activation MACs: QK^T and AV, 2 * N * L * S * inner
                n = q.shape[0] if (q.dim() == 3 and mod.batch_first) else (q.shape[1] if q.dim() == 3 else 1)
                macs = 2 * n * (lq // n) * (lk // n) * inner
                if isinstance(mod, nn.MultiheadAttention):  # projections applied functionally
                    macs += inner * q.shape[-1] * lq + 2 * inner * k.shape[-1] * lk + e * inner * lq
                attn_macs[mod] = attn_macs.get(mod, 0) + macs
                return
            o = out if isinstance(out, Tensor) else None
            if o is None:
                return
            ch = o.shape[1] if isinstance(mod, _CONV) else o.shape[-1]
            uses[mod] = uses.get(mod, 0) + o.numel() // ch

        hooks = [m.register_forward_hook(hook) for m in model.modules()
                 if isinstance(m, (*_CONV, nn.Linear, nn.MultiheadAttention, HeadPrunedAttention))]
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                _forward(model, graph.example_input)
        finally:
            model.train(was)
            for h in hooks:
                h.remove()
        where: dict[tuple[int, int], list] = {}
        head_group: dict[nn.Module, tuple[int, Member]] = {}
        for gi, g in enumerate(graph.groups):
            for m in g.members:
                if m.kind == "heads":
                    head_group[m.module] = (gi, m)
                    for mod, dim, n in _head_tensors(m.module):
                        idx = torch.arange(n)
                        root = (idx % (m.module.num_heads * m.module.head_dim)) // m.module.head_dim
                        where.setdefault((id(mod), dim), []).append((gi, Member(m.name, mod, "heads", idx, root)))
                    continue
                where.setdefault((id(m.module), 0 if m.kind == "out" else 1), []).append((gi, m))
        self.slots: list[_Slot] = []
        # attention MACs not carried by a Linear call: scale with the heads kept (every term is linear in them)
        for mod, macs in attn_macs.items():
            hg = head_group.get(mod)
            self.slots.append(_Slot("", "(attention)", macs, 1, [hg] if hg else [], [], mod.num_heads, 1,
                                    is_param=False))
        mha_children = {id(c) for m in model.modules() if isinstance(m, nn.MultiheadAttention) for c in m.modules()}
        for name, mod in model.named_modules():
            if "parametrizations" in name.split("."):
                continue  # counted with the tensor they parametrize
            tensors = list(mod.named_parameters(recurse=False))
            if parametrize.is_parametrized(mod):
                tensors += [(pn, mod.parametrizations[pn].original) for pn in mod.parametrizations.keys()]
            for pname, t in tensors:
                u = uses.get(mod, 0) if pname == "weight" and id(mod) not in mha_children else 0
                outs = where.get((id(mod), 0), []) if t.dim() >= 1 else []
                ins = where.get((id(mod), 1), []) if (t.dim() >= 2 and pname == "weight") else []
                self.slots.append(_Slot(name, pname, t.numel(), u, outs, ins, t.shape[0] if t.dim() else 1,
                                        t.shape[1] if t.dim() > 1 else 1))
        self.dense_params = sum(s.numel for s in self.slots if s.is_param)
        self.dense_macs = sum(s.numel * s.uses for s in self.slots)
        # vectorized form: each position of a slot dimension belongs to at most one group channel, so the kept
        # fraction of that dimension is 1 - A @ (1 - keep) with A[slot, channel] = (positions of it) / dim size
        sizes = [g.size for g in graph.groups]
        self.offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        total = sum(sizes)
        self._a = []
        for dim in (0, 1):
            a = torch.zeros(len(self.slots), max(total, 1), dtype=torch.float64)
            for si, sl in enumerate(self.slots):
                members, n = (sl.out_members, sl.dim0) if dim == 0 else (sl.in_members, sl.dim1)
                for gi, m in members:
                    a[si].index_add_(0, m.root + self.offsets[gi], torch.full((len(m.root),), 1.0 / n,
                                                                               dtype=torch.float64))
            self._a.append(a)
        self._numel = torch.tensor([float(sl.numel) for sl in self.slots], dtype=torch.float64)
        self._macw = self._numel * torch.tensor([float(sl.uses) for sl in self.slots], dtype=torch.float64)
        self._paramw = self._numel * torch.tensor([1.0 if sl.is_param else 0.0 for sl in self.slots],
                                                  dtype=torch.float64)

    def costs(self, keep: list[Tensor]) -> tuple[Tensor, Tensor]:
        """(params, MACs) of the model with ``keep[i]`` the kept fraction/decision of each channel of group i
        (differentiable in ``keep``)."""
        if not keep:
            return torch.tensor(float(self.dense_params), dtype=torch.float64), \
                torch.tensor(float(self.dense_macs), dtype=torch.float64)
        drop = 1.0 - torch.cat([k.to(torch.float64).reshape(-1) for k in keep])
        f = (1.0 - self._a[0] @ drop) * (1.0 - self._a[1] @ drop)
        return (self._paramw * f).sum(), (self._macw * f).sum()

    def hard_keep(self, plan: dict[str, list[int]]) -> list[Tensor]:
        """0/1 keep vectors of a removal plan."""
        keep = []
        for g in self.graph.groups:
            k = torch.ones(g.size, dtype=torch.float64)
            if plan.get(g.name):
                k[torch.tensor(plan[g.name], dtype=torch.long)] = 0.0
            keep.append(k)
        return keep

    def plan_costs(self, plan: dict[str, list[int]]) -> tuple[int, int]:
        """Exact (params, MACs) of the model after :func:`remove_channels_` with ``plan``."""
        p, m = self.costs(self.hard_keep(plan))
        return int(round(float(p))), int(round(float(m)))

    def group_macs(self) -> list[float]:
        """Dense MACs touching each group (its producers' and consumers' weights): the group's compute load."""
        out = [0.0] * len(self.graph.groups)
        for s in self.slots:
            if s.uses:
                for gi in {gi for gi, _ in s.out_members + s.in_members}:
                    out[gi] += s.numel * s.uses
        return out


    def group_params(self) -> list[float]:
        """Dense parameters touching each group (every tensor with one of its channels along a dimension)."""
        out = [0.0] * len(self.graph.groups)
        for s in self.slots:
            if s.is_param:
                for gi in {gi for gi, _ in s.out_members + s.in_members}:
                    out[gi] += s.numel
        return out


class StructuredTarget:
    """What a channel budget is measured in: ``kind`` "macs" (fraction of real MACs removed), "sparsity"
    (fraction of parameters removed) or "params" (a parameter count to reach); ``value`` the number."""

    def __init__(self, kind: str, value: float):
        if kind not in ("macs", "sparsity", "params"):
            raise ConfigError(f"structured target must be 'macs', 'sparsity' or 'params', got {kind!r}")
        if kind in ("macs", "sparsity") and not 0.0 <= value < 1.0:
            raise ConfigError(f"{kind} reduction must be in [0, 1), got {value}")
        if kind == "params" and not value >= 1:
            raise ConfigError(f"target parameter count must be >= 1, got {value}")
        self.kind, self.value = kind, float(value)

    def __repr__(self) -> str:
        return f"StructuredTarget({self.kind!r}, {self.value})"

    def ratio(self, costs: CostModel) -> float:
        """Target cost as a fraction of the dense cost (of the quantity :meth:`measure` returns)."""
        if self.kind == "macs":
            return 1.0 - self.value
        if self.kind == "sparsity":
            return 1.0 - self.value
        return self.value / costs.dense_params

    def measure(self, costs: CostModel, keep: list[Tensor]) -> Tensor:
        """Cost of ``keep`` as a fraction of the dense cost (differentiable)."""
        p, m = costs.costs(keep)
        if self.kind == "macs":
            return m / costs.dense_macs
        return p / costs.dense_params


def close_gap(costs: CostModel, target: StructuredTarget, keep: list[Tensor], scores: list[Tensor], goal: float,
              tolerance: float, max_iter: int = 5000, rounds: int = 6, swaps: int = 8) -> list[Tensor]:
    """Close the discrete gap to ``goal`` (a cost ratio) one channel at a time: above the goal, remove the weakest
    kept channels (``scores``) until within budget; below ``goal - tolerance``, restore the strongest removed ones
    that still fit, and if none fits, try restoring each of the ``swaps`` strongest removed channels while removing
    the weakest channels of *other* groups until within budget, keeping the best swap (one coarse channel traded
    for several finer ones). At least one channel per group stays."""
    keep = [k.clone() for k in keep]

    def ratio(k=None):
        return float(target.measure(costs, keep if k is None else k))

    def remove_until_within(kp, skip_group=None, scan: int = 200):
        """Remove the weakest channels until within budget. At the crossing, the weakest channel landing within
        ``tolerance`` of the goal among the next ``scan`` candidates is taken, else the one landing closest below
        the goal (a finer channel of another group can beat the first, coarse one)."""
        cur = ratio(kp)
        if cur <= goal:
            return cur
        cands = [(gi, c) for _, gi, c in sorted((float(s[c]), gi, c) for gi, (k, s) in enumerate(zip(kp, scores))
                                                for c in range(len(k)) if k[c] > 0 and gi != skip_group)]
        for i, (gi, c) in enumerate(cands[:max_iter]):
            if kp[gi].sum() <= 1:
                continue
            kp[gi][c] = 0.0
            new = ratio(kp)
            if new > goal:
                cur = new
                continue
            if new >= goal - tolerance:
                return new
            best = (new, gi, c)  # overshoots: look for a finer channel further down
            kp[gi][c] = 1.0
            for gj, cj in cands[i + 1:i + 1 + scan]:
                if kp[gj].sum() <= 1:
                    continue
                kp[gj][cj] = 0.0
                alt = ratio(kp)
                kp[gj][cj] = 1.0
                if best[0] < alt <= goal:
                    best = (alt, gj, cj)
                    if alt >= goal - tolerance:
                        break
            kp[best[1]][best[2]] = 0.0
            return best[0]
        return cur

    cur = remove_until_within(keep)
    for _ in range(rounds):
        if cur >= goal - tolerance:
            break
        cands = sorted(((float(s[c]), gi, c) for gi, (k, s) in enumerate(zip(keep, scores))
                        for c in range(len(k)) if k[c] == 0), reverse=True)
        if not cands:
            break
        over = []
        for _, gi, c in cands[:max_iter]:
            keep[gi][c] = 1.0
            new = ratio()
            if new > goal:
                keep[gi][c] = 0.0
                if len(over) < swaps:
                    over.append((gi, c))
                continue
            cur = new
            if cur >= goal - tolerance:
                break
        if cur >= goal - tolerance or not over:
            break
        best = None
        for gi, c in over:
            trial = [k.clone() for k in keep]
            trial[gi][c] = 1.0
            new = remove_until_within(trial, skip_group=gi)
            if new <= goal and new > cur and (best is None or new > best[0]):
                best = (new, trial)
        if best is None:
            break
        cur, keep = best
    return keep
