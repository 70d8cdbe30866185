"""Packed artifact: exact round trip for every scheme, size vs theoretical bits, bad files rejected."""
import struct

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from prunequant.errors import LayerError, StorageError
from prunequant.export.artifact import PQ_VERSION, export, load_compressed, read_artifact
from prunequant.io import load_state, save, save_state
from prunequant.models import build_model
from prunequant.pruning.base import apply_mask_, prunable_modules
from prunequant.quantization.base import ActFakeQuant, attach_input_quant
from prunequant.quantization.pwlq import PWLQWeightQuant
from prunequant.quantization.uniform import UniformWeightQuant

torch.set_num_threads(1)


def _pwlq(w, bits: int, n: int, variant: str = "b_center") -> PWLQWeightQuant:
    """PWLQ with fixed breakpoints at 0.2/0.4/0.6 of each channel's max (no search: these tests check storage)."""
    m = w.reshape(w.shape[0], -1).abs().amax(1)
    p = m[:, None] * torch.tensor([0.2, 0.4, 0.6][:n])
    return PWLQWeightQuant(bits, p, m, variant=variant)


def _compress(model, scheme: str, sparsity: float = 0.8):
    """Attach masks / quantizers as the methods do (mask first, quantizer after)."""
    for name, mod, pname in prunable_modules(model):
        w = getattr(mod, pname).detach()
        if "prune" in scheme:
            apply_mask_(mod, pname, w.abs() > w.abs().flatten().quantile(sparsity), layer_name=name)
        w = getattr(mod, pname).detach()
        q = None
        if "uniform4" in scheme:
            q = UniformWeightQuant.from_weight(w, 4)
        if "affine8" in scheme:
            q = UniformWeightQuant.from_weight(w, 8, symmetric=False)
        if "tensor3" in scheme:
            q = UniformWeightQuant.from_weight(w, 3, dim=None)
        if "pwlq1" in scheme:
            q = PWLQWeightQuant.from_weight(w, 4)  # the searched (empirical) breakpoint
        for n in (2, 3):
            if f"pwlq{n}" in scheme:
                q = _pwlq(w, 4, n)
        if "paper" in scheme:
            q = _pwlq(w, 3, 1, variant="paper")
        if q is not None:
            if "bc" in scheme:
                q.set_bias_correction(torch.full((w.shape[0],), 0.01), torch.full((w.shape[0],), 1.1))
            parametrize.register_parametrization(mod, pname, q)
    if "act" in scheme:
        for _name, mod, _ in prunable_modules(model):
            attach_input_quant(mod, ActFakeQuant(8, signed=True, scale=0.05))
    return model


SCHEMES = ["none", "uniform4", "affine8", "tensor3", "pwlq1", "pwlq2", "pwlq3", "paper", "prune",
           "prune+uniform4", "prune+pwlq1", "prune+pwlq2+act", "uniform4+bc", "pwlq1+act"]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("name", ["digits_cnn", "mlp"])
def test_roundtrip_exact(tmp_path, name, scheme):
    torch.manual_seed(0)
    model = _compress(build_model(name).eval(), scheme)
    x = torch.randn(7, 1, 8, 8)
    with torch.no_grad():
        ref = model(x)
    res = export(model, tmp_path / "m.pq")
    loaded = load_compressed(tmp_path / "m.pq")
    with torch.no_grad():
        out = loaded(x)
    assert torch.equal(out, ref)
    assert not any(parametrize.is_parametrized(m) for m in loaded.modules())
    assert res.file_bytes == (tmp_path / "m.pq").stat().st_size
    if "4" in scheme and "pwlq" not in scheme:
        assert any(getattr(m, "prunequant_wbits", None) == 4 for m in loaded.modules())


def test_roundtrip_resnet_and_mobilenet(tmp_path):
    torch.manual_seed(1)
    for name in ("resnet_small", "mobilenet_small"):
        model = _compress(build_model(name).eval(), "prune+pwlq2", sparsity=0.5)
        x = torch.randn(3, 1, 8, 8)
        export(model, tmp_path / f"{name}.pq")
        with torch.no_grad():
            assert torch.equal(load_compressed(tmp_path / f"{name}.pq")(x), model(x))


class _TinyLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(6, 12, batch_first=True)
        self.head = nn.Linear(12, 1)

    def forward(self, x):
        return self.head(self.lstm(x)[0][:, -1])


def test_lstm_with_skeleton(tmp_path):
    torch.manual_seed(2)
    model = _compress(_TinyLSTM().eval(), "prune+pwlq1", sparsity=0.6)
    x = torch.randn(2, 5, 6)
    export(model, tmp_path / "lstm.pq")
    with pytest.raises(StorageError, match="pass model="):
        load_compressed(tmp_path / "lstm.pq")
    loaded = load_compressed(tmp_path / "lstm.pq", model=_TinyLSTM())
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_sparse_format_choice_and_size(tmp_path):
    torch.manual_seed(3)
    dense = _compress(build_model("mlp", hidden=(512, 512)).eval(), "pwlq1")
    res = export(dense, tmp_path / "d.pq")
    layers = {e.name: e for e in res.entries if e.kind == "quantized"}
    assert all(e.format == "dense" and e.bits == 5 for e in layers.values())  # 4-bit code + 1 region bit
    assert res.overhead < 0.05  # file within 5% of the exact bit count of what it stores
    assert res.size_ratio < 0.17
    sparse = _compress(build_model("mlp", hidden=(512, 512)).eval(), "prune+pwlq1", sparsity=0.95)
    res95 = export(sparse, tmp_path / "s.pq")
    fmts = {e.format for e in res95.entries if e.kind == "quantized"}
    assert fmts <= {"csr", "bitmap"} and "csr" in fmts
    assert res95.file_bytes < res.file_bytes / 4


def test_nan_weight_rejected(tmp_path):
    model = build_model("mlp").eval()
    with torch.no_grad():
        model.net[1].weight[0, 0] = float("nan")
    with pytest.raises(LayerError, match="net.1.weight"):
        export(model, tmp_path / "nan.pq")


@pytest.fixture()
def artifact(tmp_path):
    torch.manual_seed(4)
    model = _compress(build_model("digits_cnn").eval(), "prune+pwlq1")
    path = tmp_path / "a.pq"
    export(model, path)
    return path


def test_truncated_file(artifact):
    data = artifact.read_bytes()
    for cut in (4, len(data) // 2, len(data) - 3):
        artifact.write_bytes(data[:cut])
        with pytest.raises(StorageError, match=str(artifact.name)):
            load_compressed(artifact)


def test_flipped_payload_byte(artifact):
    data = bytearray(artifact.read_bytes())
    data[-10] ^= 0xFF
    artifact.write_bytes(bytes(data))
    with pytest.raises(StorageError, match="sha256"):
        load_compressed(artifact)


def test_edited_header_and_newer_version(artifact):
    tensors, meta = load_state(artifact)
    edited = dict(meta, layers={k: [v[0], v[1], 8, v[3], v[4]] for k, v in meta["layers"].items()})
    save_state(tensors, edited, artifact, kind="pq-artifact")
    with pytest.raises(StorageError, match="modified"):
        read_artifact(artifact)
    save_state(tensors, dict(meta, pq=PQ_VERSION + 1), artifact, kind="pq-artifact")
    with pytest.raises(StorageError, match="newer"):
        load_compressed(artifact)


def test_container_newer_version(artifact):
    data = bytearray(artifact.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    header = data[8:8 + n].decode()
    assert '\\"format_version\\": 1' in header
    data[8:8 + n] = header.replace('\\"format_version\\": 1', '\\"format_version\\": 9').encode()
    artifact.write_bytes(bytes(data))
    with pytest.raises(StorageError, match="newer"):
        load_compressed(artifact)


def test_foreign_files(tmp_path):
    model = build_model("mlp")
    save(model, tmp_path / "plain.safetensors")
    with pytest.raises(StorageError, match="not a packed"):
        load_compressed(tmp_path / "plain.safetensors")
    with pytest.raises(StorageError, match="not found"):
        load_compressed(tmp_path / "missing.pq")
    (tmp_path / "junk.pq").write_bytes(b"\x00" * 64)
    with pytest.raises(StorageError):
        load_compressed(tmp_path / "junk.pq")


def test_wrong_skeleton(artifact):
    with pytest.raises(StorageError, match="do not fit"):
        load_compressed(artifact, model=build_model("mlp"))  # (channel counts alone are resized: structured)


def test_joint_mixed_precision_packs_each_channel_at_its_width(tmp_path):
    from prunequant.joint.quantizers import ChannelBitsWeightQuant

    torch.manual_seed(6)
    model = build_model("mlp").eval()
    for name, mod, pname in prunable_modules(model):
        w = mod.weight.detach()
        apply_mask_(mod, pname, w.abs() > w.abs().flatten().quantile(0.5), layer_name=name)
        bits = torch.tensor([0, 2, 3, 4, 5, 6, 8])[torch.randint(0, 7, (w.shape[0],))]
        parametrize.register_parametrization(mod, pname, ChannelBitsWeightQuant.from_weight(mod.weight.detach(),
                                                                                             bits))
    x = torch.randn(4, 1, 8, 8)
    res = export(model, tmp_path / "joint.pq")
    with torch.no_grad():
        assert torch.equal(load_compressed(tmp_path / "joint.pq")(x), model(x))
    for e in res.entries:
        if e.kind == "quantized":
            assert e.bits < 6  # mean over channels of mixed 0..8-bit codes, not the widest width


@pytest.mark.parametrize("scheme", ["pwlq", "uniform"])
def test_quantize_pipeline_roundtrip(tmp_path, scheme):
    """The real PTQ pipeline (BN folding, bias correction, 8-bit activation quantizers) round-trips exactly."""
    from prunequant.api import quantize_
    from prunequant.quantization import PWLQConfig

    torch.manual_seed(8)
    model = build_model("digits_cnn").eval()
    quantize_(model, PWLQConfig(wbits=4, abits=8, scheme=scheme),
              calibration_data=torch.rand(64, 1, 8, 8))
    x = torch.rand(5, 1, 8, 8)
    res = export(model, tmp_path / "q.pq")
    with torch.no_grad():
        assert torch.equal(load_compressed(tmp_path / "q.pq")(x), model(x))
    assert res.size_ratio < 0.25
