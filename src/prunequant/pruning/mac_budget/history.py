"""Per-round records of MAC-budget pruning: a plain-text table per round (for ``logging``) and a JSON history."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class LayerRound:
    """One prunable tensor in one round. ``pruned_fraction`` is cumulative over the whole tensor."""

    layer: str
    kind: str
    numel: int
    alive_before: int
    pruned_new: int
    pruned_fraction: float
    sigma: float
    q: float
    threshold: float
    error: float
    allowance: float
    allowance_factor: float
    macs: float              # dense MACs of the tensor (report's count for the example input)
    effective_macs: float    # after this round's pruning
    bound: str = ""          # "min"/"max": the pruned-fraction bound was applied; "skip": layer left alone
    note: str = ""


@dataclass
class RoundRecord:
    round: int
    target: float | None         # effective-MAC reduction this round aims at (None: fixed eps0 mode)
    eps0: float
    reduction_planned: float
    reduction: float             # as prunequant.analysis.report counts it
    dense_macs: float
    effective_macs: float
    sparsity: float
    val_metric_pruned: float | None = None
    val_metric_retrained: float | None = None
    seconds: float = 0.0
    layers: list[LayerRound] = field(default_factory=list)


@dataclass
class MacBudgetResult:
    """What ``prune_(model, MacBudgetConfig(...))`` returns: config, every round, and the final numbers."""

    config: dict[str, Any]
    rounds: list[RoundRecord] = field(default_factory=list)
    target: float | None = None
    reduction: float | None = None
    sparsity: float | None = None
    val_metric: float | None = None

    @property
    def met_target(self) -> bool | None:
        if self.target is None or self.reduction is None:
            return None
        return self.reduction >= self.target - float(self.config.get("tolerance", 0.005))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["met_target"] = self.met_target
        return d

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> MacBudgetResult:
        d = json.loads(Path(path).read_text())
        d.pop("met_target", None)
        rounds = [RoundRecord(**{**r, "layers": [LayerRound(**x) for x in r["layers"]]}) for r in d.pop("rounds")]
        return cls(rounds=rounds, **d)


def format_round(rec: RoundRecord) -> str:
    """Plain-text table of one round (title line, then per layer q, threshold, pruned fraction, error vs
    allowance, MACs), for ``logging``."""
    target = f"target {rec.target:.1%}, " if rec.target is not None else ""
    title = (f"MAC-budget round {rec.round}: {target}eps0={rec.eps0:.4g}, effective-MAC reduction "
             f"{rec.reduction:.2%} ({rec.effective_macs:,.0f}/{rec.dense_macs:,.0f}), sparsity {rec.sparsity:.1%}")
    if rec.val_metric_pruned is not None:
        title += f", val {rec.val_metric_pruned:.4f}"
        if rec.val_metric_retrained is not None:
            title += f" -> {rec.val_metric_retrained:.4f} retrained"
    head = ("layer", "kind", "weights", "q", "threshold", "new", "pruned", "err/weight", "allowance", "MACs",
            "eff. MACs", "note")
    rows = []
    for r in rec.layers:
        note = {"min": "min bound", "max": "max bound", "skip": "skipped"}.get(r.bound, "")
        note = "; ".join(x for x in (note, r.note) if x)
        rows.append((r.layer, r.kind, f"{r.numel:,}", f"{r.q:.3f}", f"{r.threshold:.3g}", f"{r.pruned_new:,}",
                     f"{r.pruned_fraction:.1%}", f"{r.error:.3g}", f"{r.allowance:.3g}", f"{r.macs:,.0f}",
                     f"{r.effective_macs:,.0f}", note))
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    left = {0, 1, 11}

    def line(cells):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([title, line(head)] + [line(r) for r in rows]).rstrip()
