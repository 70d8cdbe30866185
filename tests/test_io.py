"""prunequant.storage (atomic, verified safetensors + JSON storage of tensors) and prunequant.io (models)."""
import json
import struct

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from prunequant.errors import StorageError, UnsupportedModuleError
from prunequant.io import layer_bits, load, save
from prunequant.models import build_model
from prunequant.pruning.base import FixedMask, apply_mask_
from prunequant.storage import (
    FORMAT_VERSION,
    atomic_save_safetensors,
    atomic_write_bytes,
    load_state,
    read_metadata,
    save_state,
)

torch.set_num_threads(1)


class _Round(nn.Module):
    """A quantizer-like parametrization (not reconstructible by io.load): rounds to a 0.05 grid."""

    bits = 6

    def forward(self, w):
        return torch.round(w / 0.05) * 0.05


def _tensors():
    base = torch.arange(12, dtype=torch.float32)
    return {"f": torch.randn(3, 4), "i": torch.arange(5), "b": torch.tensor([True, False]),
            "h": torch.randn(2, 2).to(torch.bfloat16), "empty": torch.zeros(0, 3),
            "view1": base[:6], "view2": base[6:]}  # two views of one storage


def test_state_roundtrip(tmp_path):
    t = _tensors()
    meta = {"step": 3, "nested": {"a": [1, 2.5, None, "x"]}}
    path = save_state(t, meta, tmp_path / "s.safetensors")
    back, m = load_state(path)
    assert m == meta
    assert set(back) == set(t)
    for k in t:
        assert back[k].dtype == t[k].dtype and torch.equal(back[k], t[k])
    info = read_metadata(path)
    assert info["format_version"] == FORMAT_VERSION and info["versions"]["torch"] == torch.__version__
    assert len(info["sha256"]) == 64


def test_file_is_plain_safetensors(tmp_path):
    path = save_state({"x": torch.ones(2)}, {}, tmp_path / "s.safetensors")
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    assert header["x"]["dtype"] == "F32" and "prunequant" in header["__metadata__"]


def test_atomic_writes_leave_no_temp_files_and_keep_old_file_on_failure(tmp_path):
    path = tmp_path / "s.safetensors"
    save_state({"x": torch.ones(2)}, {"v": 1}, path)
    save_state({"x": torch.zeros(2)}, {"v": 2}, path)  # overwrite
    assert load_state(path)[1] == {"v": 2}
    with pytest.raises(StorageError, match="JSON"):
        save_state({"x": torch.ones(2)}, {"v": object()}, path)
    with pytest.raises(StorageError, match="Tensor"):
        save_state({"x": [1, 2]}, {}, path)
    assert load_state(path)[1] == {"v": 2}  # old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.safetensors"]
    atomic_write_bytes(tmp_path / "a" / "b.txt", b"hello")
    assert (tmp_path / "a" / "b.txt").read_bytes() == b"hello"


def test_missing_file(tmp_path):
    with pytest.raises(StorageError, match="nope.safetensors"):
        load_state(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("cut", [0, 5, 100, -4])
def test_truncated_file(tmp_path, cut):
    path = save_state({"x": torch.randn(64)}, {"a": 1}, tmp_path / "t.safetensors")
    raw = path.read_bytes()
    path.write_bytes(raw[:cut])
    with pytest.raises(StorageError, match="t.safetensors"):
        load_state(path)


def test_tampered_data_detected(tmp_path):
    path = save_state({"x": torch.randn(64)}, {}, tmp_path / "t.safetensors")
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01  # flip one bit of the last weight
    path.write_bytes(bytes(raw))
    with pytest.raises(StorageError, match="sha256 mismatch.*|t.safetensors"):
        load_state(path)


def test_tampered_header_detected(tmp_path):
    path = save_state({"x": torch.randn(8)}, {}, tmp_path / "t.safetensors")
    raw = bytearray(path.read_bytes())
    raw[9] = ord("#")  # break the JSON header
    path.write_bytes(bytes(raw))
    with pytest.raises(StorageError, match="t.safetensors"):
        load_state(path)


def test_newer_version_and_foreign_files_rejected(tmp_path):
    newer = json.dumps({"format_version": FORMAT_VERSION + 1, "sha256": "", "meta": {}})
    atomic_save_safetensors({"x": torch.ones(1)}, tmp_path / "n.safetensors", {"prunequant": newer})
    with pytest.raises(StorageError, match="n.safetensors.*newer"):
        load_state(tmp_path / "n.safetensors")
    atomic_save_safetensors({"x": torch.ones(1)}, tmp_path / "f.safetensors")
    with pytest.raises(StorageError, match="f.safetensors.*not a prunequant file"):
        load_state(tmp_path / "f.safetensors")
    (tmp_path / "g.safetensors").write_bytes(b"\x00" * 3)
    with pytest.raises(StorageError, match="g.safetensors"):
        load_state(tmp_path / "g.safetensors")


def test_model_roundtrip_rebuilds_from_config(tmp_path):
    torch.manual_seed(0)
    model = build_model("digits_cnn").eval()
    with torch.no_grad():
        model.features[1].running_mean.uniform_()
    x = torch.randn(3, 1, 8, 8)
    path = save(model, tmp_path / "m.safetensors", metadata={"method": "none", "acc": 0.5})
    back = load(path).eval()
    assert type(back).__name__ == "DigitsCNN" and back.config == model.config
    assert torch.equal(back(x), model(x))
    assert back.prunequant_metadata == {"method": "none", "acc": 0.5}


def test_model_with_mask_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = build_model("mlp")
    keep = torch.rand_like(model.net[1].weight) > 0.7
    apply_mask_(model.net[1], "weight", keep)
    x = torch.randn(4, 1, 8, 8)
    back = load(save(model, tmp_path / "m.safetensors"))
    assert torch.equal(back(x), model(x))
    par = back.net[1].parametrizations.weight[0]
    assert isinstance(par, FixedMask) and torch.equal(par.mask, keep)
    assert torch.equal(back.net[1].parametrizations.weight.original, model.net[1].parametrizations.weight.original)


def test_model_with_other_parametrization_is_baked(tmp_path):
    torch.manual_seed(0)
    model = build_model("mlp")
    parametrize.register_parametrization(model.net[3], "weight", _Round())
    model.net[3].prunequant_abits = 8
    x = torch.randn(4, 1, 8, 8)
    path = save(model, tmp_path / "m.safetensors")
    back = load(path)
    assert not parametrize.is_parametrized(back.net[3])
    assert torch.equal(back.net[3].weight, model.net[3].weight)  # the effective (rounded) weight
    assert torch.equal(back(x), model(x))
    assert back.net[3].prunequant_wbits == 6 and back.net[3].prunequant_abits == 8
    assert read_metadata(path)["meta"]["parametrizations"] == {"net.3.weight": [f"{__name__}._Round"]}
    # a model carrying the same parametrization gets the raw state loaded as is
    target = build_model("mlp")
    parametrize.register_parametrization(target.net[3], "weight", _Round())
    load(path, model=target)
    assert torch.equal(target(x), model(x))


def test_model_without_config_needs_model_argument(tmp_path):
    seq = nn.Sequential(nn.Linear(3, 2))
    path = save(seq, tmp_path / "s.safetensors")
    with pytest.raises(StorageError, match="s.safetensors.*config"):
        load(path)
    other = nn.Sequential(nn.Linear(3, 2))
    assert torch.equal(load(path, model=other)[0].weight, seq[0].weight)
    with pytest.raises(StorageError, match="s.safetensors.*do not fit"):
        load(path, model=nn.Sequential(nn.Linear(4, 2)))


def test_model_load_rejects_state_files_and_non_modules(tmp_path):
    path = save_state({"x": torch.ones(1)}, {}, tmp_path / "s.safetensors")
    with pytest.raises(StorageError, match="not a prunequant model file"):
        load(path)
    with pytest.raises(UnsupportedModuleError):
        save({"w": torch.ones(1)}, tmp_path / "x.safetensors")


def test_load_rebuilds_activation_quantizers(tmp_path):
    """A PWLQ W4A8 model saved and loaded into a fresh model gives identical outputs (act quantizers restored)."""
    from prunequant import quantize_
    from prunequant.data import digits_splits
    from prunequant.models import build_model
    from prunequant.quantization import PWLQConfig

    torch.manual_seed(0)
    m = build_model("digits_cnn")
    x = digits_splits()["train"].tensors[0][:64]
    m.eval()
    quantize_(m, PWLQConfig(wbits=4, abits=8), calibration_data=[x])
    y = m(x)
    save(m, tmp_path / "q.safetensors")
    m2 = load(tmp_path / "q.safetensors").eval()
    assert any(hasattr(mod, "input_quant") for mod in m2.modules())
    assert torch.equal(m2(x), y)


def test_activation_quantizer_for_a_missing_layer_is_a_clear_error():
    from prunequant.io import restore_act_quants_

    with pytest.raises(StorageError, match="m.safetensors.*'nope'"):
        restore_act_quants_(nn.Linear(2, 2), {"nope": {"bits": 8, "signed": True}}, "m.safetensors")


def test_io_reexports_storage_and_layer_bits_is_public(tmp_path):
    import prunequant.io as pio
    import prunequant.storage as st

    assert pio.save_state is st.save_state and pio.load_state is st.load_state
    lin = nn.Linear(2, 2)
    lin.prunequant_abits = 8
    parametrize.register_parametrization(lin, "weight", _Round())
    assert layer_bits(nn.Sequential(lin)) == {"0": {"prunequant_abits": 8, "prunequant_wbits": 6}}


def test_files_naming_fixed_mask_by_its_old_module_still_restore_masks(tmp_path):
    model = build_model("mlp")
    keep = torch.rand_like(model.net[1].weight) > 0.5
    apply_mask_(model.net[1], "weight", keep)
    tensors, meta = load_state(save(model, tmp_path / "m.safetensors"))
    meta["parametrizations"] = {"net.1.weight": ["prunequant.pruning.base.FixedMask"]}
    save_state(tensors, meta, tmp_path / "old.safetensors", kind="model")
    back = load(tmp_path / "old.safetensors")
    assert torch.equal(back.net[1].parametrizations.weight[0].mask, keep)


def test_model_module_outside_the_package_is_never_imported(tmp_path):
    from prunequant.errors import ConfigError

    tensors, meta = load_state(save(build_model("mlp"), tmp_path / "m.safetensors"))
    meta["model_config"] = {"name": "not_registered"}
    meta["model_class"] = "some_unknown_pkg_xyz.models.Net"
    save_state(tensors, meta, tmp_path / "foreign.safetensors", kind="model")
    with pytest.raises(ConfigError, match="not_registered"):
        load(tmp_path / "foreign.safetensors")


def test_app_model_loads_in_a_fresh_process_without_importing_the_app_first(tmp_path):
    """The model registry knows no application: the file names the module that registers the model."""
    import subprocess
    import sys

    glucose = pytest.importorskip("prunequant.apps.glucose")
    m = glucose.GlucoseLSTM("spectrum", length=40, sg_window=5, pool=2, chunk=4, hidden1=6, hidden2=3)
    m.fit_normalization(torch.randn(20, 40, 1), torch.rand(20) + 1)
    path = save(m.eval(), tmp_path / "g.safetensors")
    torch.save(m(torch.ones(2, 40, 1)).detach(), tmp_path / "y.pt")
    code = f"""
import sys, torch
import prunequant.models.registry
assert "prunequant.apps.glucose" not in sys.modules
from prunequant.io import load
m = load({str(path)!r}).eval()
assert type(m).__name__ == "GlucoseLSTM"
torch.testing.assert_close(m(torch.ones(2, 40, 1)), torch.load({str(tmp_path / "y.pt")!r}, weights_only=True))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
