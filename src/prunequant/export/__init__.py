"""Deployment: packed artifact (``export`` / ``load_compressed``), ONNX export, fast inference paths.

The compressed model file itself (quantizers attached on load, what ``report`` counts) is ``prunequant.save`` /
``prunequant.load`` (:mod:`.pqfile`); ``export`` / ``load_compressed`` write/read the deployment artifact (effective
weights). By role: :mod:`.kernels` (sparse, int8, PWLQ-int8, weight-only), :mod:`.select` (per-layer path selection:
``optimize``), :mod:`.artifact` (container, codec, API), :mod:`.onnx_export` (Q/DQ graphs from the quantizers'
integer forms).

    from prunequant.export import export, load_compressed, export_onnx, optimize
    res = export(model, "model.pq")              # bit-packed codes, sparse indices, safetensors + JSON
    model2 = load_compressed("model.pq")         # outputs equal the fake-quant model's exactly
    export_onnx(model, "model.onnx", x)          # QDQ for uniform, PWLQ dequantized or as int8 branches
    fast, choices = optimize(model, x)           # per-layer dense / sparse CSR / int8 / PWLQ-int8 path
    ort_int8(model, calibration_inputs)          # whole model in onnxruntime, its static int8 quantization
"""
from .artifact import ExportResult, export, load_compressed, read_artifact
from .bitpack import pack_bits, unpack_bits
from .kernels.weight_only import WeightOnlyLinear, pack_weight_only
from .onnx_export import check_onnx, export_onnx
from .ort_runtime import ORTModule, ort_fp32, ort_int8
from .plain import baked_copy
from .select import PATHS, PathChoice, build_path, optimize

__all__ = ["PATHS", "ExportResult", "ORTModule", "PathChoice", "WeightOnlyLinear", "baked_copy", "build_path",
           "check_onnx", "export", "export_onnx", "load_compressed", "optimize", "ort_fp32", "ort_int8", "pack_bits",
           "pack_weight_only", "read_artifact", "unpack_bits"]
