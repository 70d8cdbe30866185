"""Training through the shared Trainer beats the mean predictor; compression runs; data loading and augmentation."""
import numpy as np
import pytest
import torch

from prunequant.apps.glucose.data import (
    SpectralAugmentation,
    fermentation_set,
    read_recordings_csv,
    write_recordings_csv,
)
from prunequant.apps.glucose.model import GlucoseLSTM
from prunequant.apps.glucose.pipeline import (
    CompressSettings,
    TrainSettings,
    compress_glucose,
    evaluate_model,
    fit_glucose,
    predict,
    regression_loss,
    size_report,
)
from prunequant.apps.glucose.simulate import SimulatorConfig, simulate_cohort
from prunequant.errors import ConfigError, ShapeError, StorageError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def small_sim():
    cfg = SimulatorConfig(days=0.25, wl_step=40.0)
    tr = simulate_cohort(range(24), cfg, seed=0)
    te = simulate_cohort(range(500, 504), cfg, seed=0)
    xtr, ytr, _ = tr.windows(3)
    xte, yte, _ = te.windows(3)
    return xtr, ytr, xte, yte


@pytest.fixture(scope="module")
def trained(small_sim):
    xtr, ytr, xte, yte = small_sim
    torch.manual_seed(0)
    m = GlucoseLSTM("timeseries", in_channels=xtr.shape[-1], project=16, snv=True, hidden1=16, hidden2=8)
    hist = fit_glucose(m, xtr, ytr, xte, yte, TrainSettings(epochs=6, progress=False, seed=0))
    return m, hist


def test_training_beats_predicting_the_mean(small_sim, trained):
    _xtr, ytr, xte, yte = small_sim
    m, hist = trained
    mean_rmse = float(np.sqrt(np.mean((yte - ytr.mean()) ** 2)))
    got = evaluate_model(m, xte, yte)
    assert got.rmse < 0.7 * mean_rmse, (got.rmse, mean_rmse)
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] and "val_neg_rmse" in hist[-1]


def test_compression_prunes_and_quantizes(small_sim, trained):
    xtr, ytr, xte, _yte = small_sim
    m, _ = trained
    cs = CompressSettings(sparsity=0.5, prune_epochs=1, finetune_epochs=1, wbits=4, input_bits=12)
    small, out = compress_glucose(m, xtr, ytr, settings=cs, train=TrainSettings(progress=False))
    assert small is not m and out.prune.sparsity == pytest.approx(0.5, abs=0.05)
    assert small.lstm1.parametrizations.weight_ih_l0[0].bits == 4
    assert small.proj.parametrizations.weight[0].bits == 12
    assert int((small.proj.weight == 0).sum()) == 0  # the input layer is not pruned
    ex = m.example_input(steps=3)
    before, after = size_report(m, ex), size_report(small, ex)
    # the parameters (50 % sparsity, 4-bit PWLQ + region bit, 1-bit mask, fp32 biases, 12-bit input layer) as the
    # cost model prices them: > 4x smaller than dense, and a dense layer is never priced above its fp32 size
    assert before["tensor_bytes"] == before["bytes_dense"] - m.buffer_bytes()
    assert after["tensor_bytes"] < before["tensor_bytes"] / 4 and after["effective_macs"] < before["macs"]
    # the whole .pq files (the same ~1.5 kB of buffers, layout and header in both) of this 3.7k-parameter model
    assert after["bytes"] < before["bytes"] / 2.5
    assert np.isfinite(predict(small, xte)).all()


def test_regression_losses():
    p, y = torch.tensor([110.0, 90.0]), torch.tensor([100.0, 100.0])
    assert regression_loss("mse", 10.0)(p, y).item() == pytest.approx(1.0)
    assert regression_loss("relative", 1.0)(p, y).item() == pytest.approx(0.01)
    with pytest.raises(ConfigError):
        regression_loss("huber", 1.0)


def test_fermentation_set_skips_blank_spectra():
    d = fermentation_set()
    assert d.x_train.shape == (21, d.axis.size) and d.x_test.shape == (34, d.axis.size)
    assert (d.x_test.std(axis=1) > 0).all() and (d.x_stream.std(axis=1) > 0).all()
    assert d.axis.min() >= 950 and d.axis.max() <= 1550 and not d.clinical


def test_mixture_augmentation_is_linear():
    x = np.zeros((3, 8))
    x[:, :3] = np.eye(3)
    y = np.array([1.0, 2.0, 3.0])
    xa, ya = SpectralAugmentation(n=50, poly=0.0, broad=0.0, seed=1)(x, y)
    assert xa.shape == (53, 8)
    np.testing.assert_allclose(xa[:3], x)
    w = xa[3:, :3]
    np.testing.assert_allclose(w.sum(1), 1.0)
    np.testing.assert_allclose(ya[3:], w @ y)
    xb, _ = SpectralAugmentation(n=50, seed=1)(x, y)
    assert not np.allclose(xb[3:, 3:], 0.0)  # baselines added where the spectra were flat


def test_recordings_csv_roundtrip_and_errors(tmp_path):
    wl = np.array([1000.0, 1040.0, 1080.0])
    x = np.arange(12, dtype=float).reshape(4, 3) / 10
    p = write_recordings_csv(tmp_path / "r.csv", wl, x, y=[90, 100, 110, 120], subject=[0, 0, 1, 1],
                             time_min=[0, 5, 0, 5])
    r = read_recordings_csv(p)
    np.testing.assert_allclose(r.x, x)
    np.testing.assert_allclose(r.wavelengths, wl)
    xw, yw, rows = r.windows(2)
    assert xw.shape == (2, 2, 3) and yw.tolist() == [100, 120] and rows.tolist() == [1, 3]
    bad = tmp_path / "bad.csv"
    bad.write_text("glucose,1000,abc\n1,2,3\n")
    with pytest.raises(ShapeError, match="abc"):
        read_recordings_csv(bad)
    bad.write_text("glucose,1000,990\n1,2,3\n")
    with pytest.raises(ShapeError, match="ascending"):
        read_recordings_csv(bad)
    bad.write_text("glucose,1000,1010\n1,2,x\n")
    with pytest.raises(ShapeError, match="row 1"):
        read_recordings_csv(bad)
    with pytest.raises(StorageError, match="not found"):
        read_recordings_csv(tmp_path / "missing.csv")
