"""Joint pruning + soft mixed-precision QAT as a TrainPlugin for any training loop.

Per step: the analytic-threshold plugin (α/β group, sparsity controller, α annealing, minimum density) runs
inside; τ follows its geometric schedule; the hard measures (what finalization would give now) feed the
target controller; PWLQ breakpoints are re-fitted every ``pwlq_refresh_every`` steps. Per epoch: log columns (bits,
size, BOPs, sparsity, τ, λ) and, with ``verbose``, a per-layer table of π, chosen bits and sparsity via ``logging``.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import torch
from torch import Tensor, nn

from ..pruning.analytic import AnalyticThreshold, AnalyticThresholdPlugin
from ..training import TrainPlugin
from .config import JointConfig
from .controller import TargetController
from .costs import JointLayer, hard_costs, layer_measures, soft_costs

log = logging.getLogger("prunequant.joint")


def unique_mixtures(layers: list[JointLayer]) -> list:
    out, seen = [], set()
    for l in layers:
        for m in (l.wq.mixture, l.aq.mixture if l.aq is not None else None):
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                out.append(m)
    return out


def tau_at(step: int, total_steps: int | None, tau_start: float, tau_end: float, begin: int = 0) -> float:
    """Geometric annealing τ_t = τ_0 (τ_1/τ_0)^((t − t_0)/(T − t_0)): τ_0 until step ``begin`` (t_0), τ_1 from
    ``total_steps`` (T) on."""
    if not total_steps or step <= begin:
        return tau_start
    if begin >= total_steps:
        return tau_start
    t = min((step - begin) / (total_steps - begin), 1.0)
    return tau_start * (tau_end / tau_start) ** t


@torch.no_grad()
def layer_table(layers: list[JointLayer]) -> list[dict[str, Any]]:
    """Per-tensor rows: params, sparsity, β/σ, chosen weight/feature-map bits and π (two most probable), MACs,
    BOPs, storage."""
    rows = []
    for l in layers:
        m = layer_measures(l)
        mask = l.mask
        rows.append({
            "layer": l.name, "params": l.numel, "sparsity": 1.0 - m["nonzeros"] / l.numel,
            "beta_over_std": float(mask.beta.mean() / mask.ref_std) if isinstance(mask, AnalyticThreshold) else None,
            "wbits": m["wbits"], "w_pi": l.wq.mixture.describe(top=2),
            "abits": m["abits"], "a_pi": l.aq.mixture.describe(top=2) if l.aq is not None else "-",
            "macs": l.macs, "bops": m["bops"], "bytes": m["storage_bits"] / 8,
        })
    return rows


def format_table(rows: list[dict[str, Any]], title: str) -> str:
    """Compact plain-text per-layer table for ``logging``: sparsity (β/σ while soft), weight π and feature-map ρ
    (two most probable bit-widths first: the first one is the current choice), BOPs, bytes."""
    soft = any(r["beta_over_std"] is not None for r in rows)
    head = ["layer", "params", "sparse"] + (["β/σ"] if soft else []) + ["w bits:π", "a bits:ρ", "BOPs", "bytes"]
    body = []
    for r in rows:
        beta = [] if not soft else ["-" if r["beta_over_std"] is None else f"{r['beta_over_std']:.2f}"]
        body.append([r["layer"].removesuffix(".weight"), f"{r['params']:,}", f"{r['sparsity']:.1%}", *beta,
                     r["w_pi"], r["a_pi"], f"{r['bops']:.2g}", f"{r['bytes']:,.0f}"])
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    left = {0, len(head) - 4, len(head) - 3}

    def line(cells):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([title, line(head)] + [line(b) for b in body])


class JointPlugin(TrainPlugin):
    """Drives the soft joint phase (``hard=False``) or only reports during the fixed-choice fine-tune
    (``hard=True``). ``pruning`` is the analytic-threshold plugin of the same layers (None without pruning).

    In any training loop: put ``plugin.param_groups(model)`` in the optimizer, add ``plugin.loss(model, step)`` to
    the task loss and call ``plugin.on_step_end(model, step)`` after each optimizer step (``step`` from 1)."""

    name = "joint"

    def __init__(self, layers: list[JointLayer], config: JointConfig, fixed_bits: int,
                 total_steps: int | None = None, pruning: AnalyticThresholdPlugin | None = None,
                 hard: bool = False, verbose: bool = False):
        self.layers, self.config, self.fixed_bits = layers, config, int(fixed_bits)
        self.total_steps, self.pruning, self.hard, self.verbose = total_steps, pruning, hard, verbose
        self.mixtures = unique_mixtures(layers)
        self.measures = hard_costs(layers, fixed_bits)
        ramp = int(config.target_ramp * total_steps) if total_steps else 0
        targets = config.targets()
        self.controller = TargetController(targets, self.measures, ramp, config.dual_lr, config.loss_weights,
                                           config.target_mode, config.dual_error, config.cost_norm)
        # τ anneals after the setpoints reached their targets ("after_ramp") or over the whole soft phase
        self.tau_begin = ramp if config.tau_schedule == "after_ramp" and targets else 0
        # hand-tuned terms (no target): λ · soft / soft-at-start, so λ = 1 weighs the term like the task loss
        self.fixed = {k: float(v) for k, v in config.loss_weights.items()
                      if k in ("wbits", "abits", "size_bytes", "bops") and k not in targets and v > 0}
        with torch.no_grad():
            soft = soft_costs(layers, fixed_bits, config.size_surrogate)
        self.refs = {k: max(float(soft[k]), 1e-12) for k in self.fixed}
        self.tau = tau_at(0, total_steps, config.tau_start, config.tau_end, self.tau_begin)
        if not hard:
            self._set_tau(self.tau)

    def _set_tau(self, tau: float) -> None:
        for m in self.mixtures:
            m.tau.fill_(tau)

    # ------------------------------------------------------------------ hooks
    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        if self.hard:
            return []
        groups = self.pruning.param_groups(model) if self.pruning is not None else []
        logits = [m.logits for m in self.mixtures if m.logits.requires_grad]
        return groups + [{"params": logits, "lr": self.config.logit_lr, "weight_decay": 0.0}]

    def loss(self, model: nn.Module, step: int) -> Tensor:
        if self.hard:
            return torch.zeros(())
        terms = []
        if self.pruning is not None and self.pruning.lam != 0.0:
            terms.append(self.pruning.loss(model, step))
        if self.controller.targets or self.fixed:
            soft = soft_costs(self.layers, self.fixed_bits, self.config.size_surrogate)
            t = self.controller.loss(soft, step)
            if t is not None:
                terms.append(t)
            terms += [w * soft[k] / self.refs[k] for k, w in self.fixed.items()]
        return sum(terms) if terms else torch.zeros(())

    def on_step_end(self, model: nn.Module, step: int) -> None:
        if self.hard:
            return
        if self.pruning is not None:
            self.pruning.on_step_end(model, step)
        self.tau = tau_at(step, self.total_steps, self.config.tau_start, self.config.tau_end, self.tau_begin)
        self._set_tau(self.tau)
        self.measures = hard_costs(self.layers, self.fixed_bits)
        self.controller.update(step, self.measures)
        if step % self.config.pwlq_refresh_every == 0:
            self.refresh_breakpoints()

    @torch.no_grad()
    def refresh_breakpoints(self) -> None:
        for l in self.layers:
            l.wq.refresh_breakpoints_(l.hard_masked(), l.name)

    def on_epoch_end(self, model: nn.Module, epoch: int, logs: dict) -> dict | None:
        self.measures = hard_costs(self.layers, self.fixed_bits)
        out = {k: float(v) for k, v in self.measures.items()}
        if not self.hard:
            out["tau"] = self.tau
            out.update({f"lambda_{k}": v for k, v in self.controller.lam.items()})
            if self.pruning is not None and self.pruning.controller is not None:
                out["lambda_sparsity"] = self.pruning.lam
        if self.verbose and int(os.environ.get("RANK", "0")) == 0:
            phase = "fine-tune" if self.hard else f"soft, τ={self.tau:.3g}"
            title = (f"joint epoch {epoch + 1}, {phase}: {out['size_bytes']:,.0f} B, w {out['wbits']:.2f} b, "
                     f"a {out['abits']:.2f} b, sparsity {out['sparsity']:.1%}")
            log.info("%s", format_table(layer_table(self.layers), title))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"controller": self.controller.state_dict(), "tau": self.tau,
                "pruning": self.pruning.state_dict() if self.pruning is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        self.tau = float(state["tau"])
        if not self.hard:
            self._set_tau(self.tau)
        if self.pruning is not None and state.get("pruning") is not None:
            self.pruning.load_state_dict(state["pruning"])


__all__ = ["JointPlugin", "format_table", "layer_table", "tau_at", "unique_mixtures"]
