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
  container; fewer bits are expressed by clamping to the b-bit range first). Per-channel activation scales are
  written as float ``Div -> Round -> Clip -> Mul`` and that layer's weight as its dequantized fp32 value (exact;
  onnxruntime fuses a Q/DQ weight or a per-axis Q/DQ activation in front of a MatMul into integer kernels that
  quantize the activation per tensor or per block and lose the per-channel scales: measured 9% output error vs
  < 1e-7 this way, onnxruntime 1.32); dynamic per-token scales are refused with an error naming the layer.

The graph comes from the TorchScript exporter (``dynamo=False``); afterwards every ``QuantizeLinear`` on a constant
weight is folded into the integer initializer it would produce (:func:`_fold_weight_quantize`), so the file holds
int8/uint8 codes and only ``DequantizeLinear`` runs on weights. :func:`check_onnx` runs the file in onnxruntime
on the example input and on a seeded input drawn like it, and compares with the PyTorch model relative to the
output scale (``rtol`` 1e-4, or 2e-2 with activation quantizers, whose codes onnxruntime's fused kernels may round
the other way on a tie) and, for classifier logits, by top-1 agreement (``min_top1``). ``check=False`` skips it.

Attention models (``nn.MultiheadAttention``, ``nn.TransformerEncoderLayer``, Hugging Face models) export through
PyTorch's non-fused attention path; a ``ModelOutput`` is unpacked into plain outputs. The file appears only once it
is complete and validated; a failed export leaves no file behind.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor, nn

from ..core.chain import WeightChain
from ..core.targets import set_submodule
from ..errors import ConfigError, LayerError, ShapeError, StorageError, UnsupportedModuleError
from .kernels.pwlq_int8 import int8_branches

__all__ = ["PWLQ_MODES", "check_onnx", "export_onnx", "onnx_node_counts", "seeded_input_like"]

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

    @property
    def weight(self) -> Tensor:  # nn.MultiheadAttention reads out_proj.weight / .bias directly
        return self.weight_q()

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
    """Activation quantizer as QuantizeLinear/DequantizeLinear (8-bit container, b-bit range by clamping); a
    per-channel one as float Div/Round/Clip/Mul (see ``forward``). Dynamic per-token scales are refused."""

    def __init__(self, quant, layer: str = ""):
        super().__init__()
        where = f"layer '{layer}'" if layer else "the model"
        if quant.granularity == "token":
            raise UnsupportedModuleError(
                f"{where}: dynamic per-token activation scales (act_granularity='token') have no static "
                "QuantizeLinear/DequantizeLinear form in ONNX; quantize that layer with act_granularity='channel' "
                "or 'tensor' to export it")
        self.register_buffer("scale", quant.scale.detach().float().clone())
        self.zp = int(quant.zero_point)
        self.bits, self.signed = int(quant.bits), bool(quant.signed)
        self.per_channel, self.channel_dim = quant.granularity == "channel", int(quant.channel_dim)
        self.qmin, self.qmax = int(quant.qmin), int(quant.qmax)
        self.lo = (quant.qmin - self.zp) * float(quant.scale) if not self.per_channel else None
        self.hi = (quant.qmax - self.zp) * float(quant.scale) if not self.per_channel else None
        if self.bits > 8:
            raise UnsupportedModuleError(f"{where}: {self.bits}-bit activations cannot be written as 8-bit QDQ")

    def forward(self, x: Tensor) -> Tensor:
        qmin, qmax = (-128, 127) if self.signed else (0, 255)
        if not self.per_channel:
            if self.bits < 8:
                x = torch.clamp(x, self.lo, self.hi)
            return torch.fake_quantize_per_tensor_affine(x, float(self.scale), self.zp, qmin, qmax)
        # per-channel scales lie along the next layer's reduction dimension: no integer matmul can take them
        # (onnxruntime fuses a per-axis Q/DQ before MatMul into MatMulIntegerToFloat and fails), so they are
        # written as the same float arithmetic as ActFakeQuant (Div, Round, Clip, Mul): exact values, float matmul
        axis = self.channel_dim if self.channel_dim >= 0 else x.dim() + self.channel_dim
        shape = [1] * x.dim()
        shape[axis] = -1
        s = self.scale.reshape(shape)
        q = torch.clamp(torch.round(x / s) + self.zp, self.qmin, self.qmax)
        return (q - self.zp) * s


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
            if getattr(module._modules.get("input_quant"), "granularity", "tensor") == "channel":
                continue  # a Q/DQ weight lets onnxruntime fuse an int8-activation MatMul that drops those scales
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
    for mname, module in m.named_modules():
        q = module._modules.get("input_quant")
        if isinstance(q, ActFakeQuant):
            module.input_quant = _QDQAct(q, mname)
    return m.eval()


def _flatten_outputs(out) -> tuple[Tensor, ...]:
    """Tensors of a model output: a Tensor, a tuple/list/dict of them (nested) or a Hugging Face ``ModelOutput``
    (its ``to_tuple()``: the fields that are set, in order)."""
    if isinstance(out, Tensor):
        return (out,)
    if hasattr(out, "to_tuple") and callable(out.to_tuple):  # transformers.utils.ModelOutput
        out = out.to_tuple()
    elif isinstance(out, dict):
        out = tuple(out.values())
    if isinstance(out, (tuple, list)):
        flat: list[Tensor] = []
        for o in out:
            if o is not None:
                flat.extend(_flatten_outputs(o))
        return tuple(flat)
    raise UnsupportedModuleError(f"model output of type {type(out).__name__} cannot be written to ONNX (expected a "
                                 "Tensor, a tuple/list/dict of Tensors or a transformers ModelOutput)")


class _Exportable(nn.Module):
    """Calls the model with positional inputs and returns its outputs as plain tensors (ModelOutput unpacked).

    Wrapping also keeps the traced top-level call to ``model(*inputs)`` (``nn.TransformerEncoderLayer`` traced as
    the top-level module turns its default ``is_causal=False`` into a tensor and fails)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *inputs):
        out = _flatten_outputs(self.model(*inputs))
        return out[0] if len(out) == 1 else out


@contextmanager
def _unfused_attention():
    """Disable PyTorch's fused attention fast path (``aten::_transformer_encoder_layer_fwd``,
    ``aten::_native_multi_head_attention`` have no ONNX symbolic) for the duration of an export."""
    mha = getattr(torch.backends, "mha", None)
    prev = mha.get_fastpath_enabled() if mha is not None else None
    if mha is not None:
        mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        if mha is not None:
            mha.set_fastpath_enabled(prev)


def _as_inputs(example_input) -> tuple[Tensor, ...]:
    inputs = tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)
    if not inputs or not all(isinstance(x, Tensor) for x in inputs):
        raise ConfigError("example_input must be a Tensor or a tuple of Tensors (positional model inputs)")
    return inputs


def export_onnx(model: nn.Module, path: str | Path, example_input, *, pwlq: str = "dequantized",
                opset: int = 17, check: bool = True, rtol: float | None = None, atol: float = 1e-5,
                min_top1: float = 0.99, seed: int = 0) -> dict:
    """Write ``model`` as ONNX to ``path`` (see module docstring) and, with ``check``, validate it in
    onnxruntime (:func:`check_onnx`, on ``example_input`` and on a seeded input drawn like it).

    Attention models export through PyTorch's non-fused path (``nn.MultiheadAttention``,
    ``nn.TransformerEncoderLayer``); Hugging Face models' ``ModelOutput`` is unpacked into plain outputs
    (``output`` or ``output_0``, ``output_1``, ...). The file is written under a temporary name and moved into
    place only once it is complete and (with ``check``) validated: a failed export leaves no file behind.

    Args:
        model: the (compressed) model; not changed.
        path: the ``.onnx`` file to write.
        example_input: a Tensor or a tuple of Tensors (positional inputs, e.g. token ids); batch axis 0 is dynamic.
        pwlq: ``"dequantized"`` or ``"qdq"`` (PWLQ weights as int8 branches).
        opset: ONNX opset.
        check: run the parity check (``False``: skip it, e.g. CLI ``--no-check``).
        rtol, atol, min_top1, seed: tolerances and input seed of :func:`check_onnx`.

    Returns:
        ``{"path", "bytes", "nodes"}`` plus the check's measurements when ``check``.

    Example:
        >>> import tempfile, torch
        >>> from torch import nn
        >>> enc = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
        >>> d = tempfile.mkdtemp()
        >>> info = export_onnx(enc, d + "/enc.onnx", torch.randn(2, 5, 16))
        >>> info["rel_err"] < 1e-4
        True
    """
    import os

    if pwlq not in PWLQ_MODES:
        raise ConfigError(f"pwlq must be one of {PWLQ_MODES}, got {pwlq!r}")
    if not isinstance(model, nn.Module):
        raise UnsupportedModuleError(f"export_onnx expects an nn.Module, got {type(model).__name__}")
    inputs = _as_inputs(example_input)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with _unfused_attention():
            ready = _Exportable(_onnx_ready(model.eval(), pwlq)).eval()
            with torch.no_grad():
                n_out = len(_flatten_outputs(ready.model(*inputs)))
            in_names = ["input"] if len(inputs) == 1 else [f"input_{i}" for i in range(len(inputs))]
            out_names = ["output"] if n_out == 1 else [f"output_{i}" for i in range(n_out)]
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(ready, inputs, str(tmp), dynamo=False, opset_version=opset,
                                  do_constant_folding=True, input_names=in_names, output_names=out_names,
                                  dynamic_axes={n: {0: "batch"} for n in in_names + out_names})
        _fold_weight_quantize(tmp)
        info = {"path": str(path), "bytes": tmp.stat().st_size, "nodes": onnx_node_counts(tmp)}
        if check:
            info.update(check_onnx(tmp, model, inputs, rtol=rtol, atol=atol, min_top1=min_top1, seed=seed))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
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


def seeded_input_like(example, seed: int = 0) -> tuple[Tensor, ...]:
    """Inputs of the same shapes and dtypes as ``example`` (Tensor or tuple), drawn with a fixed seed: floats
    ~ N(mean, std) of the example's values, integers uniform in the example's [min, max] (token ids stay valid)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for x in _as_inputs(example):
        x = x.detach().cpu()
        if x.is_floating_point():
            std = float(x.float().std()) if x.numel() > 1 else 1.0
            mean = float(x.float().mean())
            out.append((torch.randn(x.shape, generator=g) * (std if std > 0 else 1.0) + mean).to(x.dtype))
        elif x.dtype == torch.bool:
            out.append(torch.randint(0, 2, x.shape, generator=g).bool())
        else:
            lo, hi = int(x.min()), int(x.max())
            out.append(torch.randint(lo, hi + 1, x.shape, generator=g).to(x.dtype))
    return tuple(out)


def _has_act_quant(model: nn.Module) -> bool:
    from ..core.quantizer import ActFakeQuant

    return any(isinstance(m, ActFakeQuant) for m in model.modules())


def _is_classifier_output(y: Tensor) -> bool:
    return y.is_floating_point() and y.dim() == 2 and y.shape[1] >= 2


def check_onnx(path: str | Path, model: nn.Module, example_input, *, rtol: float | None = None,
               atol: float = 1e-5, min_top1: float = 0.99, seed: int = 0) -> dict:
    """Run ``path`` in onnxruntime and compare with ``model`` on ``example_input`` and on a seeded input drawn
    like it (:func:`seeded_input_like`); raises :class:`LayerError` naming the file when they disagree.

    The comparison is relative to the output scale and the task:

    * every output: ``max|y_ort - y_torch| <= rtol * max|y_torch| + atol``; ``rtol`` defaults to 1e-4, or 2e-2
      when the model quantizes activations (onnxruntime's fused Q/DQ kernels may round an activation that sits on
      a rounding tie one step the other way);
    * classifier logits (a 2-D float output with >= 2 columns): the top-1 class must agree on at least
      ``min_top1`` of the rows, and the error bound is the looser ``max(rtol, 0.05)`` relative - a changed
      prediction fails, a tie-rounded logit does not.

    Returns ``{"max_abs_err", "rel_err", "rtol", "top1_agreement" (classifiers), "check_inputs"}``.
    """
    import onnxruntime as ort

    path = Path(path)
    if rtol is None:
        rtol = 2e-2 if _has_act_quant(model) else 1e-4
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise StorageError(f"{path}: onnxruntime cannot load the model: {e}") from e
    names = [i.name for i in sess.get_inputs()]
    worst_rel, worst_abs, agree, classifier = 0.0, 0.0, None, False
    runs = [("example", _as_inputs(example_input)), (f"seed {seed}", seeded_input_like(example_input, seed))]
    for label, inputs in runs:
        if len(inputs) != len(names):
            raise ShapeError(f"{path}: the model takes {len(names)} inputs, got {len(inputs)}")
        with torch.no_grad(), _unfused_attention():
            refs = _flatten_outputs(model.eval()(*inputs))
        gots = sess.run(None, {n: x.detach().cpu().numpy() for n, x in zip(names, inputs)})
        for k, (ref, got) in enumerate(zip(refs, gots)):
            ref = ref.detach().float().cpu()
            got = torch.from_numpy(got).float()
            err = float((got - ref).abs().max()) if ref.numel() else 0.0
            scale = float(ref.abs().max()) if ref.numel() else 0.0
            tol = rtol
            if k == 0 and _is_classifier_output(ref):
                classifier = True
                tol = max(rtol, 0.05)
                a = float((got.argmax(1) == ref.argmax(1)).float().mean())
                agree = a if agree is None else min(agree, a)
                if a < min_top1:
                    raise LayerError(f"{path}: onnxruntime and PyTorch agree on the top-1 class of only {a:.1%} "
                                     f"of the {ref.shape[0]} rows ({label} input; required {min_top1:.0%})")
            if err > tol * scale + atol:
                raise LayerError(f"{path}: onnxruntime output {k} differs from PyTorch by {err:.3g} ({label} input; "
                                 f"max|y| = {scale:.3g}, tolerance rtol={tol:g}, atol={atol:g})")
            rel = err / scale if scale else err
            worst_rel, worst_abs = max(worst_rel, rel), max(worst_abs, err)
    out = {"max_abs_err": worst_abs, "rel_err": worst_rel, "rtol": rtol, "check_inputs": [r[0] for r in runs]}
    if classifier:
        out["top1_agreement"] = agree
    return out
