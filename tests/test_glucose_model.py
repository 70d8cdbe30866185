"""Two-LSTM glucose model: shapes in both modes, front end equal to the NumPy/SciPy preprocessing, errors, PLS."""
import numpy as np
import pytest
import torch
from scipy.signal import savgol_filter
from sklearn.cross_decomposition import PLSRegression

from prunequant.apps.glucose.model import SNV, GlucoseLSTM, LinearCorrection, SavitzkyGolayConv1d
from prunequant.apps.glucose.pls import PLSBaseline
from prunequant.apps.glucose.preprocess import SpectralPreprocessing, snv
from prunequant.errors import ConfigError, ShapeError

torch.set_num_threads(1)


def test_timeseries_mode_shapes():
    m = GlucoseLSTM("timeseries", in_channels=8, hidden1=16, hidden2=8)
    assert m(torch.randn(5, 12, 8)).shape == (5,)
    assert isinstance(m.lstm1, torch.nn.LSTM) and isinstance(m.lstm2, torch.nn.LSTM)
    assert m.lstm2.input_size == m.lstm1.hidden_size == 16 and m.head.in_features == 8


def test_spectrum_mode_shapes_and_chunking():
    m = GlucoseLSTM("spectrum", length=100, pool=2, chunk=5, hidden1=8, hidden2=4)
    assert m.steps == 10 and m.lstm1.input_size == 5
    assert m(torch.randn(3, 100, 1)).shape == (3,)
    assert m(torch.randn(3, 100)).shape == (3,)  # (B, L) accepted too
    assert m.front_end(torch.randn(3, 100, 1)).shape == (3, 10, 5)


@pytest.mark.parametrize("shape", [(2, 12, 7), (2, 12), (12, 8)])
def test_timeseries_wrong_shapes(shape):
    m = GlucoseLSTM("timeseries", in_channels=8)
    with pytest.raises(ShapeError):
        m(torch.randn(*shape))


def test_spectrum_wrong_length_and_dtype():
    m = GlucoseLSTM("spectrum", length=50)
    with pytest.raises(ShapeError, match="50"):
        m(torch.randn(2, 49, 1))
    with pytest.raises(ShapeError, match="float"):
        m(torch.zeros(2, 50, 1, dtype=torch.long))


@pytest.mark.parametrize("kw", [{"mode": "x"}, {"mode": "spectrum"}, {"hidden1": 0},
                                {"mode": "timeseries", "pool": 2}, {"mode": "timeseries", "project": 99},
                                {"mode": "spectrum", "length": 10, "project": 2}, {"sg_window": 4}])
def test_bad_configs(kw):
    with pytest.raises(ConfigError):
        GlucoseLSTM(**kw)


@pytest.mark.parametrize("window,poly,deriv", [(5, 2, 0), (15, 2, 1), (11, 3, 2)])
def test_savgol_conv_equals_scipy(window, poly, deriv):
    x = np.random.default_rng(0).normal(size=(4, 60)).cumsum(1)
    ref = savgol_filter(x, window, poly, deriv=deriv, mode="mirror", axis=-1)
    out = SavitzkyGolayConv1d(window, poly, deriv)(torch.tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)  # the kernel buffer is float32
    sg = SavitzkyGolayConv1d(window, poly, deriv)
    assert not list(sg.parameters())  # a fixed filter: nothing to train, prune or quantize


def test_front_end_matches_numpy_preprocessing():
    """The in-model front end equals the PLS preprocessing (linear correction, SNV, SG derivative, pooling)."""
    pre = SpectralPreprocessing(linear_correction=True, snv=True, sg_window=9, sg_polyorder=2, sg_deriv=1, pool=3)
    x = np.random.default_rng(1).normal(size=(5, 90)).cumsum(1) + 3.0
    m = GlucoseLSTM("spectrum", length=90, linear_correction=True, snv=True, sg_window=9, sg_deriv=1, pool=3,
                    chunk=3)
    z = m.front_end(torch.tensor(x, dtype=torch.float64)[..., None]).reshape(5, -1).numpy()
    np.testing.assert_allclose(z, pre(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(LinearCorrection()(torch.tensor(x))[:, [0, -1]].numpy(), 0.0, atol=1e-12)
    np.testing.assert_allclose(SNV()(torch.tensor(x)).numpy(), snv(x), atol=1e-7)


def test_snv_flat_spectrum_is_an_error():
    with pytest.raises(ShapeError, match="zero variance"):
        snv(np.ones((2, 10)))


def test_normalisation_and_projection_whitening():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 6, 10, generator=g) @ torch.randn(10, 10, generator=g) + 5.0
    y = torch.rand(400, generator=g) * 200 + 50
    m = GlucoseLSTM("timeseries", in_channels=10, project=4).fit_normalization(x, y)
    z = m.proj((m.front_end(x) - m.x_mean) / m.x_std).reshape(-1, 4).detach()
    np.testing.assert_allclose(z.mean(0).numpy(), 0.0, atol=1e-4)
    np.testing.assert_allclose(torch.cov(z.T).numpy(), np.eye(4), atol=1e-2)  # whitened
    assert float(m.y_mean) == pytest.approx(float(y.mean()), rel=1e-5)
    assert m.buffer_bytes() == (2 * 10 + 2) * 4


def test_save_load_roundtrip(tmp_path):
    from prunequant.io import load, save

    m = GlucoseLSTM("spectrum", length=40, sg_window=5, pool=2, chunk=4, hidden1=6, hidden2=3)
    m.fit_normalization(torch.randn(20, 40, 1), torch.rand(20) + 1)
    x = torch.randn(3, 40, 1)
    save(m, tmp_path / "g.safetensors")
    m2 = load(tmp_path / "g.safetensors")
    assert isinstance(m2, GlucoseLSTM)
    torch.testing.assert_close(m2(x), m(x))


def test_pls_cv_truncation_matches_sklearn_and_picks_a_k():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 30))
    y = x[:, :3] @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=60)
    p = PLSBaseline(max_components=8, folds=4).fit(x, y)
    assert 1 <= p.n_components <= 8 and len(p.cv_rmse) == 8
    ref = PLSRegression(n_components=p.n_components, scale=False).fit(x, y)
    np.testing.assert_allclose(p.predict(x), ref.predict(x).ravel(), atol=1e-8)
    # the per-k CV predictions come from one k_max fit, truncated: check against a direct k fit on one split
    full = PLSRegression(n_components=8, scale=False).fit(x[:45], y[:45])
    k = 3
    coef = full.x_rotations_[:, :k] @ full.y_loadings_[:, :k].T
    direct = PLSRegression(n_components=k, scale=False).fit(x[:45], y[:45]).predict(x[45:]).ravel()
    np.testing.assert_allclose((x[45:] - x[:45].mean(0)) @ coef.ravel() + y[:45].mean(), direct, atol=1e-8)
    assert p.size_bytes == (30 + 30 + 1) * 4


def test_pls_grouped_cv_and_errors():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 5, 3))  # windows are flattened
    y = x[:, -1, 0] * 3 + 10
    p = PLSBaseline(max_components=5).fit(x, y, groups=np.repeat(np.arange(8), 5))
    assert p.predict(x).shape == (40,)
    with pytest.raises(ShapeError):
        PLSBaseline().fit(x, y[:10])
    with pytest.raises(ConfigError):
        PLSBaseline().predict(x)


def test_base_channel_mode_starts_as_the_identity_and_reloads(tmp_path):
    from prunequant.io import load, save

    m = GlucoseLSTM("timeseries", in_channels=4, hidden1=6, hidden2=3, base_channel=0)
    x = torch.rand(5, 7, 4) + 1.0
    m.fit_normalization(x, torch.rand(5) * 100 + 50)
    torch.testing.assert_close(m(x), x[:, -1, 0])           # zero-initialised head: output = base channel
    assert m.lstm1.input_size == 3                           # the base channel is not fed to the LSTMs
    with torch.no_grad():
        m.head.bias.fill_(0.5)
    torch.testing.assert_close(m(x), x[:, -1, 0] * 1.05)      # weights still zero: base x (1 + 0.1 x bias)
    save(m, tmp_path / "b.safetensors")
    torch.testing.assert_close(load(tmp_path / "b.safetensors")(x), m(x))
    with pytest.raises(ConfigError):
        GlucoseLSTM("timeseries", in_channels=4, base_channel=4)
    with pytest.raises(ConfigError):
        GlucoseLSTM("timeseries", in_channels=4, base_channel=0, snv=True)


def test_a_fresh_process_rebuilds_the_glucose_model_from_the_file(tmp_path):
    """io.load finds the model class from the file alone (the registry imports no application)."""
    import subprocess
    import sys

    from prunequant.io import save

    m = GlucoseLSTM("timeseries", in_channels=3, hidden1=4, hidden2=2)
    save(m, tmp_path / "g.safetensors")
    code = ("import sys, prunequant.io as io; m = io.load(sys.argv[1]); "
            "print(type(m).__name__)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "g.safetensors")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "GlucoseLSTM"
