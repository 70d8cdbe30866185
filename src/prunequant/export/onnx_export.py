"""ONNX export of pruned / quantized models with QuantizeLinear/DequantizeLinear, validated in onnxruntime.

How each compressed tensor is written:

* **uniform weights** (<= 8 bits, per output channel or per tensor): the weight becomes an int8 (symmetric) or
  uint8 (affine) initializer holding the quantizer's exact codes, followed by ``DequantizeLinear`` (per-axis scale
  and zero point). Codes of fewer than 8 bits use the 8-bit container (their values stay in the b-bit range).
* **PWLQ weights**, ``pwlq="dequantized"`` (default): the dequantized fp32 weight is stored, bit-identical to the
  fake-quant weight. Every runtime accepts it; the file is fp32-sized.
* **PWLQ weights**, ``pwlq="qdq"``: ``W = sum_b DequantizeLinear(codes_b, scale_b)`` over the 2R-1 int8 branches of
  :func:`~prunequant.export.kernels.pwlq_int8.int8_branches` (per region ``sign*k`` scaled by its step, plus the sign of
  the outer regions scaled by their lower bound p_r), summed with ``Add`` before the Conv/Gemm. This is the
  paper's accumulator split; int8-sized but 2R-1 times the int8 weight count.
* **pruned weights**: stored dense (ONNX has no sparse-weight execution in onnxruntime's CPU provider); zeros are
  exact. Use :func:`prunequant.export.export` for the compact file.
* **activation quantizers** (``ActFakeQuant``): ``QuantizeLinear -> DequantizeLinear`` on the layer input (8-bit
  container; fewer bits are expressed by clamping to the b-bit range first).

The graph comes from the TorchScript exporter (``dynamo=False``); afterwards every ``QuantizeLinear`` on a constant
weight is folded into the integer initializer it would produce (:func:`_fold_weight_quantize`), so the file holds
int8/uint8 codes and only ``DequantizeLinear`` runs on weights. :func:`check_onnx` runs the file in onnxruntime
and compares with the PyTorch model: tolerance ``max|y_ort - y_torch| <= rtol * max|y_torch| + atol`` with
defaults rtol = 1e-4, atol = 1e-5 (float summation order; an activation code that lands on a rounding tie can flip one step, which the
tolerance absorbs on our models - measured errors are reported by the tests and benchmark).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from ..core.chain import WeightChain
from ..core.targets import set_submodule
from ..errors import ConfigError, LayerError, StorageError, UnsupportedModuleError
from .kernels.pwlq_int8 import int8_branches

__all__ = ["PWLQ_MODES", "check_onnx", "export_onnx", "onnx_node_counts"]

PWLQ_MODES = ("dequantized", "qdq")


class _QDQWeight(nn.Module):
    """Parametrization-free stand-in: returns sum over branches of fake_quantize(codes_b * scale_b) (exported as
    QuantizeLinear/DequantizeLinear per branch, folded to integer initializers)."""

    def __init__(self, codes: Tensor, scales: Tensor, zero_points: Tensor, qmin: int, qmax: int):
        super().__init__()
        # codes (B, out, ...), scales/zero_points (B, out)
        shape = [codes.shape[0], codes.shape[1]] + [1] * (codes.dim() - 2)
        self.register_buffer("values", (codes.float() - zero_points.float().reshape(shape))
                             * scales.float().reshape(shape))
        self.register_buffer("scales", scales.float())
        self.register_buffer("zero_points", zero_points.to(torch.int32))
        self.qmin, self.qmax = qmin, qmax

    def forward(self) -> Tensor:
        out = None
        for b in range(self.values.shape[0]):  # 1 (uniform) or 2R-1 (PWLQ) branches
            w = torch.fake_quantize_per_channel_affine(self.values[b], self.scales[b], self.zero_points[b], 0,
                                                       self.qmin, self.qmax)
            out = w if out is None else out + w
        return out


class _QDQLinear(nn.Module):
    def __init__(self, layer: nn.Linear, weight: _QDQWeight):
        super().__init__()
        self.weight_q = weight
        self.bias = layer.bias

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.weight_q(), self.bias)


class _QDQConv2d(nn.Module):
    def __init__(self, layer: nn.Conv2d, weight: _QDQWeight):
        super().__init__()
        self.weight_q = weight
        self.bias = layer.bias
        self.stride, self.padding, self.dilation, self.groups = layer.stride, layer.padding, layer.dilation, \
            layer.groups

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.conv2d(x, self.weight_q(), self.bias, self.stride, self.padding, self.dilation,
                                    self.groups)


class _QDQAct(nn.Module):
    """Activation quantizer as QuantizeLinear/DequantizeLinear (8-bit container, b-bit range by clamping)."""

    def __init__(self, quant):
        super().__init__()
        self.register_buffer("scale", quant.scale.detach().float().clone())
        self.zp = int(quant.zero_point)
        self.bits, self.signed = int(quant.bits), bool(quant.signed)
        self.lo = (quant.qmin - self.zp) * float(quant.scale)
        self.hi = (quant.qmax - self.zp) * float(quant.scale)
        if self.bits > 8:
            raise UnsupportedModuleError(f"{self.bits}-bit activations cannot be written as 8-bit QDQ")

    def forward(self, x: Tensor) -> Tensor:
        if self.bits < 8:
            x = torch.clamp(x, self.lo, self.hi)
        if self.signed:
            return torch.fake_quantize_per_tensor_affine(x, float(self.scale), self.zp, -128, 127)
        return torch.fake_quantize_per_tensor_affine(x, float(self.scale), self.zp, 0, 255)


def _qdq_weight(module: nn.Module, pwlq_mode: str) -> _QDQWeight | None:
    """The QDQ weight for a quantized Linear/Conv2d, or None to keep the dequantized fp32 weight.

    A quantizer with a single integer form (:meth:`~prunequant.core.quantizer.WeightFakeQuant.int8_form`) is
    written as one Q/DQ branch; one with a multi-branch form (PWLQ) only with ``pwlq="qdq"``; anything else
    (bias correction, > 8 bits) as its dequantized weight."""
    q = WeightChain(module, "weight").quantizer
    if q is None:
        return None
    try:
        codes, scales, zps, signed = int8_branches(module)
    except UnsupportedModuleError:
        return None  # no exact int8 form; the dequantized weight is exported
    if codes.shape[0] > 1 and pwlq_mode == "dequantized":
        return None
    qmin, qmax = (-128, 127) if signed else (0, 255)
    return _QDQWeight(codes, scales, zps, qmin, qmax)


def _onnx_ready(model: nn.Module, pwlq_mode: str) -> nn.Module:
    from ..core.quantizer import ActFakeQuant
    from .plain import baked_copy

    replacements: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            wq = _qdq_weight(module, pwlq_mode)
            if wq is not None:
                replacements[name] = wq
    m = baked_copy(model)
    for name, wq in replacements.items():
        layer = m.get_submodule(name)
        new = _QDQLinear(layer, wq) if isinstance(layer, nn.Linear) else _QDQConv2d(layer, wq)
        quant = layer._modules.get("input_quant")
        if name:
            set_submodule(m, name, new)
        else:  # the model is the layer itself
            m = new
        if quant is not None:
            new.input_quant = quant
            new.register_forward_pre_hook(lambda mod, args: (mod.input_quant(args[0]),) + tuple(args[1:]))
    for module in m.modules():
        q = module._modules.get("input_quant")
        if isinstance(q, ActFakeQuant):
            module.input_quant = _QDQAct(q)
    return m.eval()


def export_onnx(model: nn.Module, path: str | Path, example_input: Tensor, *, pwlq: str = "dequantized",
                opset: int = 17, check: bool = True, rtol: float = 1e-4, atol: float = 1e-5) -> dict:
    """Write ``model`` as ONNX to ``path`` (see module docstring); with ``check`` validate it in onnxruntime
    (:func:`check_onnx`). Returns ``{"path", "bytes", "max_abs_err", "rel_err", "nodes"}``."""
    if pwlq not in PWLQ_MODES:
        raise ConfigError(f"pwlq must be one of {PWLQ_MODES}, got {pwlq!r}")
    if not isinstance(model, nn.Module):
        raise UnsupportedModuleError(f"export_onnx expects an nn.Module, got {type(model).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ready = _onnx_ready(model.eval(), pwlq)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(ready, (example_input,), str(path), dynamo=False, opset_version=opset,
                          do_constant_folding=True, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    _fold_weight_quantize(path)
    info = {"path": str(path), "bytes": path.stat().st_size, "nodes": onnx_node_counts(path)}
    if check:
        info.update(check_onnx(path, model, example_input, rtol=rtol, atol=atol))
    return info


def _fold_weight_quantize(path: Path) -> None:
    """Replace every ``QuantizeLinear`` whose input is a constant (a weight) by the integer initializer it
    produces, so the file stores int8/uint8 codes and only ``DequantizeLinear`` remains; drop unused tensors."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    g = model.graph
    const = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for node in g.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    const[node.output[0]] = numpy_helper.to_array(a.t)
    alias = {}
    for node in g.node:
        if node.op_type == "Identity" and node.input[0] in const:
            alias[node.output[0]] = node.input[0]

    def value(name):
        return const.get(alias.get(name, name))

    keep_nodes, new_inits = [], []
    for node in g.node:
        if node.op_type == "QuantizeLinear" and value(node.input[0]) is not None and value(node.input[1]) is not None:
            w = value(node.input[0]).astype(np.float32)
            scale = value(node.input[1]).astype(np.float32)
            zp = value(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros((), np.uint8)
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            if scale.ndim == 1 and scale.size > 1:
                shape = [1] * w.ndim
                shape[axis] = -1
                scale, zpb = scale.reshape(shape), zp.reshape(shape)
            else:
                zpb = zp
            info = np.iinfo(zp.dtype)
            q = np.clip(np.rint(w / scale) + zpb.astype(np.int64), info.min, info.max).astype(zp.dtype)
            new_inits.append(numpy_helper.from_array(q, node.output[0]))
            continue
        keep_nodes.append(node)
    if not new_inits:
        return
    del g.node[:]
    g.node.extend(keep_nodes)
    g.initializer.extend(new_inits)
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    live = [n for n in g.node if n.op_type != "Identity" or n.output[0] in used]
    used = {i for n in live for i in n.input} | {o.name for o in g.output}
    live = [n for n in live if n.op_type != "Constant" or n.output[0] in used]
    del g.node[:]
    g.node.extend(live)
    used = {i for n in g.node for i in n.input}
    inits = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(inits)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def onnx_node_counts(path: str | Path) -> dict[str, int]:
    """``{op_type: count}`` of an ONNX file's graph."""
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def check_onnx(path: str | Path, model: nn.Module, example_input: Tensor, *, rtol: float = 1e-4,
               atol: float = 1e-5) -> dict:
    """Run ``path`` in onnxruntime on ``example_input`` and compare with ``model``; raises :class:`LayerError`
    if ``max|y_ort - y_torch| > rtol * max|y_torch| + atol``. Returns the measured errors."""
    import onnxruntime as ort

    path = Path(path)
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise StorageError(f"{path}: onnxruntime cannot load the model: {e}") from e
    with torch.no_grad():
        ref = model.eval()(example_input).detach().float()
    got = torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: example_input.detach().cpu().numpy()})[0])
    err = float((got - ref).abs().max())
    scale = float(ref.abs().max())
    if err > rtol * scale + atol:
        raise LayerError(f"{path}: onnxruntime output differs from PyTorch by {err:.3g} (max|y| = {scale:.3g}, "
                         f"tolerance rtol={rtol}, atol={atol})")
    return {"max_abs_err": err, "rel_err": err / scale if scale else err}
