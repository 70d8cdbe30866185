"""Whole-model inference in onnxruntime: fp32 and int8 (onnxruntime's static QDQ quantization).

* :func:`ort_fp32` - the model's effective weights (parametrizations baked, activation fake-quantizers removed)
  as a float ONNX graph in an ``InferenceSession``.
* :func:`ort_int8` - the same graph quantized by ``onnxruntime.quantization.quantize_static`` (QDQ format,
  per-channel int8 weights, uint8 activations calibrated on the given inputs with min/max); onnxruntime fuses the
  QDQ pairs into integer kernels (QLinearConv / QGemm / MatMulInteger). The int8 grid is onnxruntime's own
  (max|w|/127 per channel), not the model's quantizer codes, so it is an approximation of the model.

Both return :class:`ORTModule`, an ``nn.Module`` whose forward takes and returns CPU tensors, so they slot into
the same timing code as the PyTorch paths.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import ShapeError

__all__ = ["ORTModule", "ort_fp32", "ort_int8"]


class ORTModule(nn.Module):
    """Runs a serialized ONNX model in onnxruntime (CPU); ``forward(x)`` -> tensor."""

    def __init__(self, onnx_bytes: bytes, threads: int = 1):
        super().__init__()
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.nbytes = len(onnx_bytes)

    def forward(self, x: Tensor) -> Tensor:
        if x.is_cuda:
            raise ShapeError("ORTModule runs on CPU tensors")
        return torch.from_numpy(self.session.run(None, {self.input_name: x.detach().float().numpy()})[0])


def _float_graph(model: nn.Module, example_input: Tensor, path: Path) -> None:
    from ..core.quantizer import ActFakeQuant, detach_input_quant
    from .onnx_export import export_onnx
    from .plain import baked_copy

    plain = baked_copy(model).eval()
    for module in plain.modules():
        if isinstance(module._modules.get("input_quant"), ActFakeQuant):
            detach_input_quant(module)
    export_onnx(plain, path, example_input[:1], check=False)


def ort_fp32(model: nn.Module, example_input: Tensor, threads: int = 1) -> ORTModule:
    """``model`` (effective fp32 weights, no activation quantization) in onnxruntime."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fp32.onnx"
        _float_graph(model, example_input, path)
        return ORTModule(path.read_bytes(), threads)


def ort_int8(model: nn.Module, calibration: Tensor, threads: int = 1, batch_size: int = 16) -> ORTModule:
    """``model`` quantized to int8 by onnxruntime's ``quantize_static`` (QDQ, per-channel weights), activation
    ranges calibrated (min/max) on ``calibration`` inputs."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": calibration[i:i + batch_size].detach().float().numpy()}
                                 for i in range(0, calibration.shape[0], batch_size)])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "fp32.onnx", Path(d) / "int8.onnx"
        _float_graph(model, calibration, src)
        quantize_static(str(src), str(dst), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return ORTModule(dst.read_bytes(), threads)
