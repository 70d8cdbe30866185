"""One compressed model file (.pq): prunequant.save / prunequant.load rebuild the *quantized* model bit for bit for
every method, keep masks and activation quantizers, save again, fine-tune, export to ONNX with Q/DQ, bake on
request; report() counts the file's bytes with the code that writes it; bad files give clear errors."""
import copy

import pytest
import torch
from torch import nn

import prunequant
from conftest import make_cnn
from prunequant import finalize_, prune_, prune_quantize_, quantize_
from prunequant.analysis import report
from prunequant.core.chain import WeightChain
from prunequant.core.masks import FixedMask
from prunequant.errors import StorageError
from prunequant.quantization import Log2Config, PWLQConfig, UniformConfig

torch.set_num_threads(1)
X = torch.rand(16, 1, 8, 8)


def _roundtrip(model, x, tmp_path, name="m.pq"):
    """Save, load (rebuilt from the stored recipe), compare outputs bit for bit; returns (loaded, bytes)."""
    model.eval()
    res = prunequant.save(model, tmp_path / name)
    loaded = prunequant.load(tmp_path / name)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert res.file_bytes == (tmp_path / name).stat().st_size
    return loaded, res.file_bytes


def _quantized(cfg, seed=0):
    m = make_cnn(seed, random_bn_stats=True)
    quantize_(m, cfg, calibration_data=X)
    return m.eval()


@pytest.mark.parametrize("cfg", [
    PWLQConfig(wbits=4, abits=8), PWLQConfig(wbits=4, abits=8, n_breakpoints=2),
    PWLQConfig(wbits=3, abits=8, n_breakpoints=3), UniformConfig(wbits=4, abits=8),
    UniformConfig(wbits=8, abits=None, symmetric=False), Log2Config(wbits=4, abits=8)],
    ids=["pwlq1", "pwlq2", "pwlq3", "uniform", "uniform-affine", "log2"])
def test_quantized_round_trip_keeps_quantizers_and_counts_bytes(cfg, tmp_path):
    model = _quantized(cfg)
    loaded, nbytes = _roundtrip(model, X, tmp_path)
    for mod, ref in zip(loaded.modules(), model.modules()):
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            q, q_ref = WeightChain(mod, "weight").quantizer, WeightChain(ref, "weight").quantizer
            assert type(q) is type(q_ref) and q.bits == q_ref.bits  # attached again, not baked
            assert type(getattr(mod, "input_quant", None)) is type(getattr(ref, "input_quant", None))
    rep = report(model, X[:1])
    assert rep.total.bytes == nbytes  # the report measures the file with the code that writes it
    rows = rep.total.bytes - rep.file_overhead_bytes
    assert nbytes < 0.35 * rep.total.bytes_dense and rows < nbytes  # <= 8-bit codes + state + header
    _, again = _roundtrip(loaded, X, tmp_path, "again.pq")  # the loaded model saves again, to the same size
    assert abs(again - nbytes) <= 16


def test_pruned_models_round_trip(tmp_path):
    from prunequant.pruning import AnalyticThresholdConfig, MacBudgetConfig, MagnitudeConfig

    x1 = X[:1]
    mag = make_cnn(1)
    prune_(mag, MagnitudeConfig(sparsity=0.8, finalize=False), example_input=x1)
    loaded, nbytes = _roundtrip(mag, X, tmp_path, "mag.pq")
    assert any(isinstance(p, FixedMask) for m in loaded.modules() for p in
               getattr(getattr(m, "parametrizations", None), "weight", []))  # the masks come back
    assert report(mag, x1).total.bytes == nbytes
    mb = make_cnn(2)
    prune_(mb, MacBudgetConfig(mac_reduction=0.5, rounds=1), example_input=x1)
    finalize_(mb)
    _, nbytes = _roundtrip(mb, X, tmp_path, "mb.pq")
    assert nbytes < 0.8 * report(mb, x1).total.bytes_dense
    an = make_cnn(3)
    prune_(an, AnalyticThresholdConfig(beta_init=1.0, min_density=0.0))
    with pytest.raises(StorageError, match="soft"):  # a learned soft mask is training state
        prunequant.save(an, tmp_path / "soft.pq")
    finalize_(an)
    _roundtrip(an, X, tmp_path, "an.pq")


def test_prune_then_quantize_and_fine_tune_after_loading(tmp_path):
    from prunequant.pruning import MagnitudeConfig

    model = make_cnn(4, random_bn_stats=True)
    prune_(model, MagnitudeConfig(sparsity=0.7, finalize=True), example_input=X[:1])
    quantize_(model, PWLQConfig(wbits=4, abits=8, bias_correction=False), calibration_data=X)
    loaded, nbytes = _roundtrip(model, X, tmp_path)
    assert report(model, X[:1]).total.bytes == nbytes
    loaded.train()
    opt = torch.optim.SGD([p for p in loaded.parameters() if p.requires_grad], lr=1e-2)
    loss = loaded(X).square().mean()
    loss.backward()  # straight-through gradients reach the stored raw parameters
    grads = [p.grad for p in loaded.parameters() if p.grad is not None]
    assert grads and any(bool(g.abs().sum() > 0) for g in grads)
    opt.step()
    finalize_(loaded, bake_quantization=True)  # bake on request
    assert not any(hasattr(m, "parametrizations") for m in loaded.modules())


def test_joint_model_round_trip(tmp_path):
    from prunequant.joint import JointConfig
    from prunequant.joint.transform import harden_

    torch.manual_seed(0)
    model = make_cnn(5)
    prune_quantize_(model, JointConfig(weight_bits=(0, 2, 4, 8)), calibration=[(X,)], example_input=X[:1])
    with pytest.raises(StorageError, match="training state|soft"):
        prunequant.save(model, tmp_path / "soft.pq")
    harden_(model)
    finalize_(model)
    _, nbytes = _roundtrip(model, X, tmp_path)
    assert report(model, X[:1]).total.bytes == nbytes


def test_glucose_lstm_round_trip(tmp_path):
    from prunequant.apps.glucose.model import GlucoseLSTM

    torch.manual_seed(0)
    model = GlucoseLSTM("timeseries", in_channels=8, hidden1=16, hidden2=8).eval()
    x = torch.randn(6, 12, 8)
    quantize_(model, PWLQConfig(wbits=4, abits=8, bias_correction=False), calibration_data=x)
    _, nbytes = _roundtrip(model, x, tmp_path)
    assert report(model, x).total.bytes == nbytes


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models(dtype, tmp_path):
    model = make_cnn(6).to(dtype)
    x = X.to(dtype)
    _, plain = _roundtrip(model, x, tmp_path, "plain.pq")
    assert report(model, x[:1]).total.bytes == plain
    q = make_cnn(6).to(dtype)
    quantize_(q, UniformConfig(wbits=4, abits=None, bias_correction=False, fold_bn=False))
    _, nbytes = _roundtrip(q, x, tmp_path, "q.pq")
    assert nbytes < plain


def test_onnx_qdq_from_a_loaded_file(tmp_path):
    pytest.importorskip("onnxruntime")
    from prunequant.export.onnx_export import export_onnx

    model = _quantized(PWLQConfig(wbits=4, abits=8, bias_correction=False))
    prunequant.save(model, tmp_path / "m.pq")
    loaded = prunequant.load(tmp_path / "m.pq")
    info = export_onnx(loaded, tmp_path / "m.onnx", X[:4], pwlq="qdq", rtol=0.05)
    assert info["nodes"].get("DequantizeLinear", 0) > 4  # weights as int8 branches, not an fp32 graph


def test_model_without_recipe_loads_into_a_given_model(tmp_path):
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    quantize_(net, Log2Config(wbits=3, abits=None))
    prunequant.save(net, tmp_path / "n.pq")
    with pytest.raises(StorageError, match="pass model="):
        prunequant.load(tmp_path / "n.pq")
    fresh = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    loaded = prunequant.load(tmp_path / "n.pq", model=fresh)
    x = torch.randn(3, 6)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))


def test_bad_files_are_named(tmp_path):
    model = _quantized(UniformConfig(wbits=4, abits=None))
    p = tmp_path / "m.pq"
    prunequant.save(model, p)
    with pytest.raises(StorageError, match="not found|No such|does not exist"):
        prunequant.load(tmp_path / "missing.pq")
    data = bytearray(p.read_bytes())
    data[-10] ^= 0xFF  # flip a payload byte
    bad = tmp_path / "bad.pq"
    bad.write_bytes(bytes(data))
    with pytest.raises(StorageError, match="bad.pq"):
        prunequant.load(bad)
    (tmp_path / "trunc.pq").write_bytes(p.read_bytes()[: len(data) // 2])
    with pytest.raises(StorageError, match="trunc.pq"):
        prunequant.load(tmp_path / "trunc.pq")
    from prunequant.io import save as io_save

    io_save(copy.deepcopy(model), tmp_path / "io.safetensors")
    with pytest.raises(StorageError, match="not a compressed prunequant model"):
        prunequant.load(tmp_path / "io.safetensors")


def _file_layout(path):
    import json
    import zlib

    from prunequant.storage import load_state

    tensors, _ = load_state(path)
    return json.loads(zlib.decompress(tensors["layout"].numpy().tobytes()))


@pytest.mark.parametrize("quantized", [False, True], ids=["fp32", "pwlq4"])
def test_a_few_zeros_never_cost_more_than_dense(quantized, tmp_path):
    """A dense weight with a handful of exact zeros is priced at (at most) its dense cost, and the file stores it
    in the same layout the cost model picked (dense), so report bytes are still the file's bytes."""
    from prunequant.core.cost import cheapest_format, format_bits, quantizer_state_bits, quantizer_value_bits

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4))
    with torch.no_grad():
        model[0].weight.view(-1)[torch.tensor([3, 100, 777, 1500, 2047])] = 0.0  # 5 zeros out of 2048
    x = torch.randn(8, 32)
    if quantized:
        quantize_(model, PWLQConfig(wbits=4, abits=None), calibration_data=x)
    model.eval()
    w = model[0].weight.detach()
    assert int((w == 0).sum()) >= 5
    if quantized:
        form = WeightChain(model[0], "weight").quantizer.storage_form(WeightChain(model[0], "weight").quant_input())
        v, state = quantizer_value_bits(form), quantizer_state_bits(form)
    else:
        v, state = 32, 0
    dense_bits = format_bits("dense", tuple(w.shape), int(w.count_nonzero()), v) + state
    assert cheapest_format(tuple(w.shape), int(w.count_nonzero()), v)[0] == "dense"
    rep = report(model, x[:1])
    row = rep.row("0")
    assert row.bytes * 8 <= dense_bits + 64 * 32 + 7  # the weight at dense cost + fp32 bias, rounded up to bytes
    if not quantized:
        assert row.bytes == row.bytes_dense  # an fp32 layer with a few zeros: exactly its fp32 size
    res = prunequant.save(model, tmp_path / "m.pq")
    assert rep.total.bytes == res.file_bytes  # report bytes are the file's bytes
    layout = _file_layout(tmp_path / "m.pq")
    stored = layout["chains"]["0.weight"]["value"] if quantized else layout["entries"]["0.weight"]
    assert stored.get("format", "dense") == "dense" and stored["kind"] in ("raw", "quantized")
    loaded = prunequant.load(tmp_path / "m.pq", model=nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4)))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
