"""ONNX export: QDQ structure and onnxruntime parity for uniform, PWLQ (both modes), pruned and act-quant models."""
import pytest
import torch
from torch.nn.utils import parametrize

from prunequant.errors import ConfigError
from prunequant.export.onnx_export import export_onnx
from prunequant.models import build_model
from prunequant.pruning.base import apply_mask_, prunable_modules
from prunequant.quantization.base import ActFakeQuant, attach_input_quant
from prunequant.quantization.pwlq import PWLQWeightQuant
from prunequant.quantization.uniform import UniformWeightQuant

torch.set_num_threads(1)


def _model(scheme, name="digits_cnn"):
    torch.manual_seed(0)
    m = build_model(name).eval()
    x = torch.rand(6, 1, 8, 8)
    inputs = {}
    for lname, mod, _ in prunable_modules(m):
        w = mod.weight.detach()
        if "prune" in scheme:
            apply_mask_(mod, "weight", w.abs() > w.abs().flatten().quantile(0.7), layer_name=lname)
        w = mod.weight.detach()
        if "uniform" in scheme:
            parametrize.register_parametrization(mod, "weight", UniformWeightQuant.from_weight(w, 4))
        if "affine" in scheme:
            parametrize.register_parametrization(mod, "weight", UniformWeightQuant.from_weight(w, 8, symmetric=False))
        if "pwlq" in scheme:
            n = 2 if "pwlq2" in scheme else 1
            parametrize.register_parametrization(mod, "weight", PWLQWeightQuant.from_weight(w, 4, n_breakpoints=n))
        mod.register_forward_pre_hook(lambda mm, a, n=lname: inputs.__setitem__(n, a[0]))
    with torch.no_grad():
        m(x)
    for lname, mod, _ in prunable_modules(m):
        mod._forward_pre_hooks.clear()
        if "act" in scheme:
            bits = 4 if "act4" in scheme else 8
            attach_input_quant(mod, ActFakeQuant.from_range(float(inputs[lname].min()), float(inputs[lname].max()),
                                                            bits))
    return m, x


@pytest.mark.parametrize("scheme,mode", [
    ("none", "dequantized"), ("prune", "dequantized"), ("uniform", "dequantized"), ("affine+act4", "qdq"),
    ("pwlq", "dequantized"), ("pwlq", "qdq"), ("pwlq2", "qdq"), ("prune+pwlq+act", "qdq"),
    ("prune+uniform+act", "qdq")])
def test_onnx_parity(tmp_path, scheme, mode):
    m, x = _model(scheme)
    info = export_onnx(m, tmp_path / "m.onnx", x, pwlq=mode)  # raises if onnxruntime differs beyond tolerance
    assert info["rel_err"] <= 1e-4
    nodes = info["nodes"]
    n_layers = len(prunable_modules(m))
    if "uniform" in scheme or "affine" in scheme:
        assert nodes.get("DequantizeLinear", 0) >= n_layers
    if "pwlq" in scheme and mode == "qdq":
        branches = 5 if "pwlq2" in scheme else 3  # 2R-1 int8 branches per layer
        assert nodes.get("DequantizeLinear", 0) >= branches * n_layers
    if "pwlq" in scheme and mode == "dequantized" and "act" not in scheme:
        assert "DequantizeLinear" not in nodes
    act_layers = n_layers if "act" in scheme else 0
    assert nodes.get("QuantizeLinear", 0) == act_layers  # weight quantizers are folded into int8 initializers


def test_onnx_batch_dimension_is_dynamic(tmp_path):
    import onnxruntime as ort

    m, x = _model("uniform")
    export_onnx(m, tmp_path / "m.onnx", x)
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x1 = torch.rand(1, 1, 8, 8)
    out = sess.run(None, {"input": x1.numpy()})[0]
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(out), m(x1), rtol=1e-4, atol=1e-5)


def test_int8_storage_shrinks_file(tmp_path):
    m, _ = _model("uniform", "mlp")
    q = export_onnx(m, tmp_path / "q.onnx", torch.rand(2, 1, 8, 8))
    f, _ = _model("none", "mlp")
    d = export_onnx(f, tmp_path / "f.onnx", torch.rand(2, 1, 8, 8))
    assert q["bytes"] < 0.35 * d["bytes"]


def test_bad_mode(tmp_path):
    m, x = _model("pwlq")
    with pytest.raises(ConfigError, match="pwlq"):
        export_onnx(m, tmp_path / "m.onnx", x, pwlq="branches")


def test_onnxruntime_fp32_and_int8_modules():
    from prunequant.export.ort_runtime import ort_fp32, ort_int8

    m, x = _model("prune+pwlq+act", "mlp")
    g = torch.Generator().manual_seed(0)  # seeded calibration and evaluation batches: the test is deterministic
    calib = torch.rand(64, 1, 8, 8, generator=g)
    xb = torch.rand(512, 1, 8, 8, generator=g)
    f = ort_fp32(m, calib)
    q = ort_int8(m, calib)
    from prunequant.export.plain import baked_copy
    from prunequant.quantization.base import detach_input_quant

    plain = baked_copy(m)
    for mod in plain.modules():
        detach_input_quant(mod)
    with torch.no_grad():
        ref = plain(x)
        ref_b, fq_b = plain(xb), m(xb)
    assert torch.allclose(f(x), ref, rtol=1e-4, atol=1e-5)  # fp32 graph = effective weights, no act quant
    # The int8 module is onnxruntime's own static quantization of that fp32 graph, not prunequant's: it re-rounds
    # the 4-bit PWLQ weights onto a per-channel int8 grid (PWLQ's two regions are not one uniform grid) and puts an
    # 8-bit min/max QuantizeLinear on every tensor (hidden outputs and the logits too), where prunequant's
    # fake-quant model rounds only each layer's input. So it cannot match prunequant's numbers; what must hold is
    # that its error is of the same order as prunequant's own activation quantization (measured here: 0.050 vs
    # 0.020 relative L2; 2-5x over other seeds; a max-abs ratio, 0.085-0.13, is dominated by single near-tied logits
    # of this untrained MLP) and that it keeps the fp32 model's decisions (measured 96.9 % top-1 agreement).
    q_b = q(xb)

    def rel(a, b):
        return float((a - b).norm() / b.norm())

    fq_err, ort_err = rel(fq_b, ref_b), rel(q_b, fq_b)
    assert 0 < fq_err < 0.05 and ort_err < 10 * fq_err, (fq_err, ort_err)  # same order of magnitude
    assert rel(q_b, ref_b) < 0.1
    assert float((q_b.argmax(1) == ref_b.argmax(1)).float().mean()) >= 0.95  # top-1 agreement with fp32
    assert q.nbytes < 0.5 * f.nbytes  # int8 weight initializers
