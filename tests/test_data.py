"""Offline data: digits split, fermentation spectra, user CSV/NPZ loader and its errors."""
import numpy as np
import pytest
import torch

from prunequant.data import digits_splits, fermentation_data, load_tensors
from prunequant.errors import ShapeError, StorageError


def test_digits_split_is_fixed_and_disjoint():
    a, b = digits_splits(), digits_splits()
    assert [len(a[k]) for k in ("train", "val", "test")] == [1078, 359, 360]
    assert torch.equal(a["test"].tensors[0], b["test"].tensors[0])
    x = a["train"].tensors[0]
    assert x.shape[1:] == (1, 8, 8) and x.min() >= 0 and x.max() <= 1
    assert set(a["test"].tensors[1].tolist()) == set(range(10))


def test_fermentation_spectra_shapes_and_alignment():
    f = fermentation_data()
    assert f.x_train.shape == (21, 1047) and f.y_train.shape == (21,)
    assert f.x_test_all.shape == (1629, 1047) and f.x_test.shape == (34, 1047)
    assert np.all(np.diff(f.test_index) >= 0) and f.test_index[-1] <= 1628
    tr, te = f.datasets()
    assert len(tr) == 21 and len(te) == 34


def test_csv_loader_roundtrip_and_errors(tmp_path):
    p = tmp_path / "ok.csv"
    p.write_text("a,b,c,y\n1,2,3,0\n4,5,6,1\n")
    ds = load_tensors(p, target="y")
    assert ds.tensors[0].shape == (2, 3) and ds.tensors[1].tolist() == [0.0, 1.0]
    nan = tmp_path / "nan.csv"
    nan.write_text("1,2,3\n4,nan,6\n")
    with pytest.raises(ShapeError, match="nan.csv.*NaN"):
        load_tensors(nan)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("1,2,3\n4,5\n")
    with pytest.raises(ShapeError, match="ragged.csv.*line 2"):
        load_tensors(ragged)
    with pytest.raises(ShapeError, match="reshape"):
        load_tensors(p, target="y", feature_shape=(2, 2))
    with pytest.raises(StorageError, match="missing.csv"):
        load_tensors(tmp_path / "missing.csv")


def test_npz_loader_and_corrupt_file(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x=np.ones((4, 64)), y=np.arange(4))
    ds = load_tensors(p, feature_shape=(1, 8, 8), y_dtype=torch.long)
    assert ds.tensors[0].shape == (4, 1, 8, 8) and ds.tensors[1].dtype == torch.long
    bad = tmp_path / "bad.npz"
    bad.write_bytes(p.read_bytes()[:50])
    with pytest.raises(StorageError, match="bad.npz"):
        load_tensors(bad)


def test_fermentation_blank_rows_are_never_matched():
    f = fermentation_data()
    assert (~f.valid).sum() == 3 and f.valid[f.test_index].all()
    assert f.test_index[-1] == 1625  # 33.9 h lands on a blank row; moved to the last real spectrum
