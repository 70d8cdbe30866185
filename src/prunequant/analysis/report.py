"""Per-layer model report: parameters, non-zeros, sparsity, bit widths, dense and effective MACs, storage bytes.

One forward pass of the example input with forward hooks records what each layer computes (see
:mod:`prunequant.analysis.macs` for the MAC rules); the same pass runs under ``torch.utils.flop_counter``, which
supplies the MACs of layer types without an exact rule (matmuls/convolutions inside custom modules) and a
cross-check for the others. Weights are read through their parametrizations (``module.weight`` is the effective,
masked and fake-quantized weight).

Storage formula (``bytes``), per layer, summed in bits and rounded up to whole bytes:

* a *weight* tensor (one that takes part in MACs, or carries a weight quantizer) costs what
  :mod:`prunequant.core.cost` (the one storage cost model, shared with the artifact writer and the joint
  optimiser) says: its values at the quantizer's code bits (PWLQ's region id included) in the cheapest of dense /
  bitmap / CSR layout (``min(n*b, n + k*b, (rows+1)*bits_needed(k) + k*bits_needed(cols-1) + k*b)``), plus every
  tensor of the quantizer's spec (scales, zero points, breakpoints, bias correction); a weight with only a bit
  width (``prunequant_wbits`` < 32) pays one fp32 scale per output channel;
* every other tensor (biases, norm parameters) is stored dense at 32 bits; a layer's input activation quantizer
  adds its scale(s) and zero point (:func:`prunequant.core.cost.act_quantizer_state_bits`: C scales when per
  channel);
* ``total.bytes`` adds ``Report.file_overhead_bytes``, measured by writing the compressed ``.pq`` file
  (:func:`prunequant.save`, in a temporary folder): buffers, activation quantizers, layout and header, so the total
  is the file's size exactly (``report(..., file_bytes=False)``: rows only).

``bytes_dense`` is ``params * 4`` (fp32). Bit widths: a weight's parametrization ``bits`` attribute, else the
module's ``prunequant_wbits``, else 32; activation bits: ``prunequant_abits``, else 32.
"""
from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..core import macs as _macs
from ..core.chain import WeightChain
from ..core.cost import act_quantizer_state_bits, csr_view_shape, tensor_storage_bits, weight_storage_bits
from ..core.tracing import describe_input, trace_layers
from ..errors import ConfigError, LayerError, ShapeError, StorageError, UnsupportedModuleError
from ..storage import atomic_write_bytes

__all__ = ["LayerStats", "Report", "report", "storage_bits"]

_ROOT = "(model)"


@dataclass
class LayerStats:
    """One row of a :class:`Report` (MACs for the example input as given, batch included)."""

    name: str
    type: str
    params: int
    nonzeros: int
    sparsity: float
    weight_bits: float
    act_bits: float
    macs: int
    effective_macs: int
    bytes_dense: int
    bytes: int


@dataclass
class Report:
    """Per-layer statistics of one model for one example input."""

    model: str
    input_shape: Any
    rows: list[LayerStats]
    torch_flop_counter_macs: int = 0
    notes: list[str] = field(default_factory=list)
    # bytes of the compressed .pq file beyond the rows' tensors (buffers, activation quantizers, layout, header),
    # measured by writing the file with prunequant.save: total.bytes is then the file's size
    file_overhead_bytes: int = 0

    @property
    def total(self) -> LayerStats:
        """Sums over rows; sparsity over all parameters; bits are averages (weights: per weight element,
        activations: per MAC)."""
        params = sum(r.params for r in self.rows)
        nnz = sum(r.nonzeros for r in self.rows)
        macs = sum(r.macs for r in self.rows)
        wb_num = sum(r.weight_bits * r.params for r in self.rows)
        ab_num = sum(r.act_bits * r.macs for r in self.rows)
        return LayerStats(
            name="total", type="", params=params, nonzeros=nnz,
            sparsity=1.0 - nnz / params if params else 0.0,
            weight_bits=round(wb_num / params, 3) if params else 32,
            act_bits=round(ab_num / macs, 3) if macs else 32,
            macs=macs, effective_macs=sum(r.effective_macs for r in self.rows),
            bytes_dense=sum(r.bytes_dense for r in self.rows),
            bytes=sum(r.bytes for r in self.rows) + self.file_overhead_bytes)

    @property
    def compression_ratio(self) -> float:
        """Dense fp32 bytes / compressed bytes."""
        t = self.total
        return t.bytes_dense / t.bytes if t.bytes else float("inf")

    def row(self, name: str) -> LayerStats:
        """The row of layer ``name``."""
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no layer {name!r} in report of {self.model}; layers: {[r.name for r in self.rows]}")

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "input_shape": self.input_shape, "rows": [asdict(r) for r in self.rows],
                "total": asdict(self.total), "compression_ratio": self.compression_ratio,
                "torch_flop_counter_macs": self.torch_flop_counter_macs, "notes": self.notes,
                "file_overhead_bytes": self.file_overhead_bytes}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        return cls(model=d["model"], input_shape=d["input_shape"], rows=[LayerStats(**r) for r in d["rows"]],
                   torch_flop_counter_macs=d.get("torch_flop_counter_macs", 0), notes=d.get("notes", []),
                   file_overhead_bytes=d.get("file_overhead_bytes", 0))

    def to_json(self, path: str | Path | None = None) -> str:
        """The report as JSON text; written to ``path`` too when given."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            atomic_write_bytes(path, text.encode())
        return text

    def to_csv(self, path: str | Path | None = None) -> str:
        """One CSV line per layer plus a ``total`` line; written to ``path`` too when given."""
        buf = io.StringIO()
        names = [f.name for f in fields(LayerStats)]
        w = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
        w.writeheader()
        for r in [*self.rows, self.total]:
            w.writerow(asdict(r))
        text = buf.getvalue()
        if path is not None:
            atomic_write_bytes(path, text.encode())
        return text

    def table(self):
        """A ``rich.table.Table`` of the report."""
        from rich.table import Table

        t = Table(title=f"{self.model}  input {self.input_shape}", show_footer=False)
        for col, just in [("layer", "left"), ("type", "left"), ("params", "right"), ("non-zeros", "right"),
                          ("sparsity", "right"), ("w bits", "right"), ("a bits", "right"), ("MACs", "right"),
                          ("eff. MACs", "right"), ("bytes fp32", "right"), ("bytes", "right")]:
            t.add_column(col, justify=just)
        rows = self.rows + [self.total]
        for i, r in enumerate(rows):
            t.add_row(r.name, r.type, f"{r.params:,}", f"{r.nonzeros:,}", f"{r.sparsity:.1%}", _bits(r.weight_bits),
                      _bits(r.act_bits), f"{r.macs:,}", f"{r.effective_macs:,}", f"{r.bytes_dense:,}",
                      f"{r.bytes:,}", end_section=i == len(rows) - 2, style="bold" if i == len(rows) - 1 else None)
        t.caption = f"compression {self.compression_ratio:.2f}x"
        return t

    def print(self, console=None) -> None:
        """Print the table with rich."""
        from rich.console import Console

        console = console or Console()
        old = console.width
        if not console.is_terminal:  # pipes and logs: do not squeeze the table into the default 80 columns
            console.width = max(old, 140)
        try:
            console.print(self.table())
        finally:
            console.width = old
        for n in self.notes:
            console.print(f"[yellow]note:[/yellow] {n}")


def _bits(b: float) -> str:
    return str(int(b)) if float(b).is_integer() else f"{b:.2f}"


# --------------------------------------------------------------------------------------------- storage
def storage_bits(t: Tensor, bits: int, scale_bits: int | None = None) -> int:
    """Bits to store weight ``t`` at ``bits`` per value in the cheapest of dense / bitmap / CSR layout
    (:mod:`prunequant.core.cost`, the model the artifact writer uses too).

    ``scale_bits``: quantizer overhead; ``None`` means one fp32 scale per output channel when ``bits < 32``.
    """
    if scale_bits is None:
        scale_bits = csr_view_shape(tuple(t.shape))[0] * 32 if bits < 32 else 0
    return tensor_storage_bits(t, bits, scale_bits) if t.numel() else 0


def _check_bits(bits: Any, where: str) -> int:
    if isinstance(bits, Tensor):
        bits = bits.item()
    if isinstance(bits, float) and bits.is_integer():
        bits = int(bits)
    if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= 32:
        raise ConfigError(f"layer '{where}': bit width {bits!r} is not an integer in [1, 32]")
    return bits


def _quantizers(module: nn.Module, tname: str) -> list[nn.Module]:
    if not parametrize.is_parametrized(module, tname):
        return []
    q = WeightChain(module, tname).quantizer
    return [] if q is None else [q]


def _weight_bits(module: nn.Module, tname: str, where: str) -> int:
    """Bit width of weight ``module.<tname>``: its quantizer's, else ``prunequant_wbits``, else 32."""
    qs = _quantizers(module, tname)
    if qs:
        return _check_bits(qs[0].bits, where)
    wb = getattr(module, "prunequant_wbits", None)
    return _check_bits(wb, where) if wb is not None else 32


def _direct_tensors(module: nn.Module) -> list[str]:
    """Names of the parameters a module owns itself, parametrized ones included (read as effective tensors)."""
    names = [n for n, _ in module.named_parameters(recurse=False)]
    if parametrize.is_parametrized(module):
        names += [n for n in module.parametrizations if n not in names]
    return names


# --------------------------------------------------------------------------------------------- report
def _layers(model: nn.Module) -> dict[str, nn.Module]:
    """Modules of ``model`` excluding parametrization containers (they belong to the weight they transform)."""
    return {n: m for n, m in model.named_modules() if "parametrizations" not in n.split(".")}


def report(model: nn.Module, example_input: Any, *, file_bytes: bool = True) -> Report:
    """Per-layer statistics of ``model`` for one forward of ``example_input``.

    One traced forward (:func:`prunequant.core.tracing.trace_layers`) gives each layer's weight uses, from which
    dense MACs (every weight) and effective MACs (non-zero weights only) follow; weights are read through their
    parametrizations (masked, fake-quantized); storage follows the formula in the module docstring.

    Args:
        model: any ``nn.Module`` (pruned, quantized, or plain).
        example_input: a Tensor, a ``PackedSequence``, a tuple of positional inputs or a dict of keyword inputs;
            MACs are for this input as given (batch included).
        file_bytes: measure the compressed ``.pq`` file :func:`prunequant.save` writes (in a temporary folder), so
            that ``total.bytes`` is its size: the rows' tensors as :mod:`prunequant.core.cost` counts them plus
            ``file_overhead_bytes`` (buffers, activation quantizers, layout, header). ``False``: rows only.

    Returns:
        A :class:`Report` (``rows``, ``total``, ``to_json`` / ``to_csv``).

    Raises:
        UnsupportedModuleError: ``model`` is not a Module.
        ShapeError: the input does not fit (message names the model and the input shape).
        LayerError: a weight holds NaN/Inf (message names the layer).
        ConfigError: a bit width out of range (names the layer).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> r = report(nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2)), torch.zeros(1, 8))
        >>> r.total.macs, r.row("0").params
        (40, 36)
    """
    if not isinstance(model, nn.Module):
        raise UnsupportedModuleError(f"report() expects a torch.nn.Module, got {type(model).__name__}")
    model_name = type(model).__name__
    layers = _layers(model)
    # out_proj of an attention block is applied functionally by its parent; the parent counts it.
    attn_children = {f"{n}.out_proj" if n else "out_proj" for n, m in layers.items()
                     if isinstance(m, nn.MultiheadAttention)}
    trace = trace_layers(model, example_input, count_flops=True)
    shape = describe_input(example_input)
    fc = trace.flop_macs
    uses: dict[str, dict[tuple[str, tuple[int, int] | None], int]] = defaultdict(lambda: defaultdict(int))
    for (owner, tname), per_rows in trace.weight_uses().items():
        for rows, n in per_rows.items():
            uses[owner][(tname, rows)] += n
    act_macs = {n: lt.activation_macs for n, lt in trace.layers.items()}

    known_roots = {n for n, m in layers.items() if _macs.is_known(m)}

    def under_known(name: str) -> bool:
        return name in attn_children or any(k != name and (k == "" or name.startswith(k + ".")) for k in known_roots)

    rows: list[LayerStats] = []
    for name, m in layers.items():
        known = _macs.is_known(m) or name in attn_children
        tensors = _direct_tensors(m)
        extra = act_macs.get(name, 0)
        if not known:
            if under_known(name):
                continue
            own = fc.get(name, 0) - sum(fc.get(f"{name}.{c}" if name else c, 0) for c, _ in m.named_children())
            extra += max(own, 0)
            if not tensors and extra == 0:
                continue
        elif not tensors and not uses.get(name) and extra == 0 and not isinstance(m, _macs.ZERO_MAC_TYPES):
            continue
        rows.append(_layer_row(name or _ROOT, m, tensors, uses.get(name, {}), extra))

    notes = []
    for r in rows:
        m = layers["" if r.name == _ROOT else r.name]
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and r.name not in attn_children:
            ref = fc.get("" if r.name == _ROOT else r.name, 0)
            if ref and ref != r.macs:
                notes.append(f"layer '{r.name}': {r.macs} MACs here vs {ref} from torch.utils.flop_counter")
    overhead = 0
    if file_bytes:
        try:  # the same code that writes the compressed file measures it
            from ..export.pqfile import file_bytes as _file_bytes

            overhead = _file_bytes(model) - sum(r.bytes for r in rows)
        except (StorageError, UnsupportedModuleError, LayerError, ConfigError, ShapeError, NotImplementedError) as e:
            notes.append(f"bytes: the .pq file size was not measured ({e}); rows only")
    return Report(model=model_name, input_shape=shape, rows=rows, torch_flop_counter_macs=fc.get("", 0),
                  notes=notes, file_overhead_bytes=overhead)


@torch.no_grad()
def _layer_row(name: str, m: nn.Module, tensors: list[str], uses: dict, extra_macs: int) -> LayerStats:
    values = {t: getattr(m, t).detach() for t in tensors}
    for t, v in values.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            bad = int((~torch.isfinite(v)).sum())
            raise LayerError(f"layer '{name}': tensor '{t}' has {bad} NaN/Inf value(s)")
    params = sum(v.numel() for v in values.values())
    nnz = sum(int(torch.count_nonzero(v)) for v in values.values())

    macs = eff = extra_macs
    for (tname, rows), n_uses in uses.items():
        w = values.get(tname)
        if w is None:  # weight not owned directly (should not happen for known types)
            w = getattr(m, tname).detach()
        numel, k = _macs.weight_nonzeros(w, rows)
        macs += numel * n_uses
        eff += k * n_uses

    weight_names = {t for t, _ in uses} | {t for t in tensors if _quantizers(m, t)}
    total_bits = 0
    wbits: list[int] = []
    for t, v in values.items():
        if t in weight_names:
            b = _weight_bits(m, t, f"{name}.{t}")
            qs = _quantizers(m, t)
            total_bits += weight_storage_bits(v, qs[0] if qs else None, bits=b if b < 32 else None)
            wbits.append(b)
        else:
            total_bits += v.numel() * 32
    weight_bits = max(wbits, default=32)
    total_bits += act_quantizer_state_bits(m._modules.get("input_quant"))  # per-tensor / per-channel act scales
    ab = getattr(m, "prunequant_abits", None)
    act_bits = _check_bits(ab, name) if ab is not None else 32
    cls = type(m).__bases__[0] if parametrize.is_parametrized(m) else type(m)  # not "ParametrizedLinear"
    return LayerStats(name=name, type=cls.__name__, params=params, nonzeros=nnz,
                      sparsity=1.0 - nnz / params if params else 0.0, weight_bits=weight_bits, act_bits=act_bits,
                      macs=int(macs), effective_macs=int(eff), bytes_dense=params * 4,
                      bytes=math.ceil(total_bits / 8))
