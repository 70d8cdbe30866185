"""ONNX export of attention models (MultiheadAttention, TransformerEncoderLayer, Hugging Face, joint-quantized
attention), the seeded task-aware parity check, check=False, and no file left behind by a failed export."""
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from prunequant.errors import LayerError, UnsupportedModuleError
from prunequant.export.onnx_export import check_onnx, export_onnx, seeded_input_like
from prunequant.quantization.uniform import UniformWeightQuant

pytest.importorskip("onnxruntime")
torch.set_num_threads(1)


class _MHAClassifier(nn.Module):
    def __init__(self, d=32, heads=4, classes=5):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        y, _ = self.attn(x, x, x, need_weights=False)
        return self.head(y.mean(1))


def _left_in(d):
    return sorted(p.name for p in d.iterdir())


def test_transformer_encoder_layer_exports_through_the_unfused_path(tmp_path):
    torch.manual_seed(0)
    enc = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, dropout=0.0).eval()
    x = torch.randn(3, 7, 32)
    info = export_onnx(enc, tmp_path / "enc.onnx", x)
    assert info["rel_err"] <= 1e-4 and info["check_inputs"] == ["example", "seed 0"]
    assert not any("transformer_encoder" in op.lower() for op in info["nodes"])
    assert torch.backends.mha.get_fastpath_enabled()  # restored after the export


def test_quantized_encoder_layer_and_multihead_attention(tmp_path):
    from prunequant import quantize_
    from prunequant.quantization import PWLQConfig

    torch.manual_seed(0)
    model = nn.Sequential(nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, dropout=0.0)).eval()
    x = torch.randn(4, 6, 32)
    quantize_(model, PWLQConfig(wbits=4, abits=None))
    info = export_onnx(model, tmp_path / "q.onnx", x)
    assert info["rel_err"] <= 1e-4

    m = _MHAClassifier().eval()
    for mod, pname in ((m.attn, "in_proj_weight"), (m.attn.out_proj, "weight"), (m.head, "weight")):
        parametrize.register_parametrization(mod, pname, UniformWeightQuant.from_weight(getattr(mod, pname), 4))
    xs = torch.randn(8, 5, 32)
    info = export_onnx(m, tmp_path / "mha.onnx", xs)
    # out_proj and head are written as int8 codes + DequantizeLinear (the MHA reads out_proj.weight directly)
    assert info["nodes"].get("DequantizeLinear", 0) >= 2
    assert info["top1_agreement"] == 1.0


def test_joint_quantized_attention_exports(tmp_path):
    from prunequant.joint.config import JointConfig
    from prunequant.joint.transform import attach_joint_, harden_

    torch.manual_seed(0)
    m = _MHAClassifier().eval()
    x = torch.randn(8, 5, 32)
    cfg = JointConfig(weight_bits=(4, 8), act_bits=(8,), prune=False)
    attach_joint_(m, cfg, [x], x)
    harden_(m)
    info = export_onnx(m, tmp_path / "joint.onnx", x)
    assert info["top1_agreement"] >= 0.99 and info["rel_err"] <= 0.05


def test_hugging_face_model_output_is_unpacked(tmp_path):
    transformers = pytest.importorskip("transformers")
    from prunequant import quantize_
    from prunequant.quantization import PWLQConfig

    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=32, num_labels=3)
    model = transformers.BertForSequenceClassification(cfg).eval()
    ids = torch.randint(0, 64, (4, 10))
    quantize_(model, PWLQConfig(wbits=4, abits=None))
    info = export_onnx(model, tmp_path / "bert.onnx", ids)
    assert info["top1_agreement"] == 1.0 and info["rel_err"] <= 1e-4
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "bert.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["output"]
    out = sess.run(None, {"input": ids[:1].numpy()})[0]
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(out), model(ids[:1]).logits, rtol=1e-4, atol=1e-5)


def test_check_can_be_skipped_and_failures_leave_no_file(tmp_path):
    torch.manual_seed(0)
    m = _MHAClassifier().eval()
    x = torch.randn(4, 5, 32)
    info = export_onnx(m, tmp_path / "nocheck.onnx", x, check=False)
    assert (tmp_path / "nocheck.onnx").exists() and "rel_err" not in info
    # a check that cannot pass: the file is not left behind, nor any temporary file
    with pytest.raises(LayerError, match="top-1"):
        export_onnx(m, tmp_path / "fail.onnx", x, min_top1=1.5)
    assert _left_in(tmp_path) == ["nocheck.onnx"]

    class Bad(nn.Module):
        def forward(self, x):
            return {"a": object()}

    with pytest.raises(UnsupportedModuleError):
        export_onnx(Bad(), tmp_path / "bad.onnx", x)
    assert _left_in(tmp_path) == ["nocheck.onnx"]


def test_check_is_seeded_and_relative_to_the_task(tmp_path):
    ids = torch.tensor([[3, 9, 4], [7, 5, 8]])
    a, b = seeded_input_like(ids, 0)[0], seeded_input_like(ids, 0)[0]
    assert torch.equal(a, b) and a.dtype == ids.dtype and int(a.min()) >= 3 and int(a.max()) <= 9
    assert not torch.equal(seeded_input_like(torch.randn(4, 3), 1)[0], seeded_input_like(torch.randn(4, 3), 2)[0])
    # a regression output is compared relative to its scale: a tiny rtol fails, the default passes
    torch.manual_seed(0)
    reg = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1)).eval()
    x = torch.randn(5, 8)
    export_onnx(reg, tmp_path / "reg.onnx", x, check=False)
    res = check_onnx(tmp_path / "reg.onnx", reg, x)
    assert res["rel_err"] <= 1e-4 and "top1_agreement" not in res
    with pytest.raises(LayerError, match="differs"):
        check_onnx(tmp_path / "reg.onnx", reg, x, rtol=-1.0, atol=0.0)
