"""Fashion-MNIST loader on tiny IDX files written in the test (plain and gzip), and its errors."""
import numpy as np
import pytest
import torch

from prunequant.data import fashion_mnist
from prunequant.data.fashion_mnist import ENV_VAR, FILES, MEAN, STD, read_idx, write_idx
from prunequant.errors import StorageError


def _write_set(root, n_train=12, n_test=5, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
              "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8)}
    for key, stem in FILES.items():
        write_idx(root / (stem + (".gz" if gz else "")), arrays[key])
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_reads_idx_files(tmp_path, gz):
    arrays = _write_set(tmp_path, gz=gz)
    ds = fashion_mnist(tmp_path)
    assert ds.x_train.shape == (12, 1, 28, 28) and ds.x_test.shape == (5, 1, 28, 28)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert torch.equal(ds.y_train, torch.from_numpy(arrays["train_labels"].astype(np.int64)))
    expect = (torch.from_numpy(arrays["test_images"][:, None].astype(np.float32)) / 255 - MEAN) / STD
    assert torch.allclose(ds.x_test, expect)
    raw = fashion_mnist(tmp_path, normalize=False)
    assert float(raw.x_train.min()) >= 0 and float(raw.x_train.max()) <= 1


def test_env_var_and_missing_directory(tmp_path, monkeypatch):
    _write_set(tmp_path)
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert fashion_mnist().x_train.shape[0] == 12
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(StorageError, match="not found.*dataset-fashion-mnist"):
        fashion_mnist()


def test_missing_file_and_corrupt_files(tmp_path):
    _write_set(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(StorageError, match="t10k-labels-idx1-ubyte.*make data"):
        fashion_mnist(tmp_path)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x05abc")
    with pytest.raises(StorageError, match="bad magic"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 5]) + b"abc")
    with pytest.raises(StorageError, match="header says 5 values"):
        read_idx(short)
    wrongtype = tmp_path / "float"
    wrongtype.write_bytes(bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + b"abcd")
    with pytest.raises(StorageError, match="not supported"):
        read_idx(wrongtype)
    with pytest.raises(StorageError, match="not found"):
        read_idx(tmp_path / "absent")


def test_mismatched_counts(tmp_path):
    _write_set(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(3, dtype=np.uint8))
    with pytest.raises(StorageError, match="do not match"):
        fashion_mnist(tmp_path)


def test_reference_models_are_registered_and_realistic():
    from prunequant.models import build_model

    for name in ("fashion_resnet", "fashion_mobilenetv2"):
        m = build_model(name)
        assert sum(p.numel() for p in m.parameters()) >= 1_000_000
        assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
        small = build_model(name, width=0.25)
        assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in m.parameters())
    mb = build_model("fashion_mobilenetv2")
    assert any(isinstance(x, torch.nn.Conv2d) and x.groups == x.in_channels > 1 for x in mb.modules())


def test_training_helper_caches_by_seed(tmp_path):
    from prunequant.models.fashion import train_fashion_reference

    _write_set(tmp_path, n_train=64, n_test=16)
    ds = fashion_mnist(tmp_path)
    m1, acc1 = train_fashion_reference("fashion_resnet", seed=3, width=0.25, train_size=32, epochs=1, data=ds,
                                       cache=tmp_path / "cache")
    files = list((tmp_path / "cache" / "fashion").glob("*.safetensors"))
    assert len(files) == 1 and "s3" in files[0].name
    m2, acc2 = train_fashion_reference("fashion_resnet", seed=3, width=0.25, train_size=32, epochs=1, data=ds,
                                       cache=tmp_path / "cache")
    assert acc1 == acc2
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
