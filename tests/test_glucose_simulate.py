"""NIR simulator: determinism, disjoint subjects, physical sanity, physiology ranges, channel modes."""
import numpy as np
import pytest

from prunequant.apps.glucose.simulate import (
    GLUCOSE_BANDS,
    SimulatorConfig,
    Tissue,
    channel_weights,
    simulate_cohort,
    simulate_splits,
    simulate_subject,
    tissue_absorbance,
)
from prunequant.errors import ConfigError

SMALL = SimulatorConfig(days=0.25, wl_step=40.0)
TISSUE = Tissue(water=0.66, fat=0.12, protein=0.17, ecf_share=0.5, path_mm=1.0, scatter_amp=0.4,
                scatter_power=1.2, offset=0.02)


def test_same_seed_same_data_other_seed_differs():
    a = simulate_cohort([0, 1], SMALL, seed=3)
    b = simulate_cohort([0, 1], SMALL, seed=3)
    c = simulate_cohort([0, 1], SMALL, seed=4)
    np.testing.assert_array_equal(a.absorbance, b.absorbance)
    np.testing.assert_array_equal(a.glucose, b.glucose)
    assert not np.allclose(a.glucose, c.glucose)


def test_subject_data_do_not_depend_on_split_and_splits_are_disjoint():
    sp = simulate_splits(3, 2, 2, SMALL, seed=0)
    ids = [set(sp[k].subject_ids.tolist()) for k in ("train", "val", "test")]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    alone = simulate_subject(4, SMALL, seed=0)  # ids 0-2 train, 3-4 val, 5-6 test
    np.testing.assert_array_equal(alone["absorbance"], sp["val"].absorbance[1])


def test_absorbance_rises_with_glucose_at_its_bands_not_at_water_only_wavelengths():
    wl = np.array([1450.0, 1940.0, 1611.0, 1689.0, 2273.0, 2320.0])
    a = tissue_absorbance(wl, np.array([80.0, 300.0]), TISSUE)
    d = a[1] - a[0]
    assert (d[2:] > 0).all()                      # glucose bands
    assert np.abs(d[:2]).max() < 1e-3 * d[2:].min()  # water-only wavelengths: no response
    # the response is linear in glucose (Beer–Lambert) and follows the band strengths
    a3 = tissue_absorbance(wl, np.array([80.0, 190.0, 300.0]), TISSUE)
    np.testing.assert_allclose(a3[1] - a3[0], a3[2] - a3[1], rtol=1e-9, atol=1e-12)
    strong = {c: s for c, s, _ in GLUCOSE_BANDS}
    assert d[4] > d[2] * strong[2273] / strong[1611] * 0.5


def test_water_band_dominates_and_temperature_shifts_it():
    wl = np.arange(1300.0, 1601.0, 2.0)
    cold = tissue_absorbance(wl, np.array(100.0), TISSUE, temperature_c=30.0)
    warm = tissue_absorbance(wl, np.array(100.0), TISSUE, temperature_c=38.0)
    assert abs(wl[np.argmax(cold)] - 1450) <= 10
    assert wl[np.argmax(warm)] < wl[np.argmax(cold)]  # the OH band moves to shorter wavelengths when warm


def test_glucose_traces_are_physiological():
    c = simulate_cohort(range(6), SimulatorConfig(days=1.0, wl_step=40.0), seed=0)
    g = c.glucose
    assert g.min() >= 40 and g.max() <= 400
    assert np.diff(c.time_min)[0] == 5.0 and g.shape == (6, 288)
    assert g.max() > 180 and np.percentile(g, 50) < 200      # meals push above range, median in range
    assert (np.abs(np.diff(g, axis=1)) / 5.0).max() < 10      # no jumps faster than 10 mg/dL/min
    # interstitial glucose lags blood glucose: best alignment at a positive shift
    s = 0
    lags = [np.corrcoef(c.glucose[s, : 288 - k], c.isf_glucose[s, k:])[0, 1] for k in range(6)]
    assert int(np.argmax(lags)) >= 1


def test_channel_modes_and_weights():
    led = SimulatorConfig(grid="led", days=0.1)
    c = simulate_cohort([0], led, seed=0)
    assert c.absorbance.shape[-1] == len(led.led_nm)
    w = channel_weights(SimulatorConfig(wl_step=40.0))
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert w.shape[0] == 39


def test_windows_target_last_step():
    c = simulate_cohort([0, 1], SMALL, seed=0)
    x, y, subj = c.windows(4)
    t = c.absorbance.shape[1]
    assert x.shape == (2 * (t - 3), 4, c.absorbance.shape[2])
    np.testing.assert_array_equal(x[0, -1], c.absorbance[0, 3])
    assert y[0] == c.glucose[0, 3] and subj[-1] == 1


@pytest.mark.parametrize("kw", [{"grid": "xyz"}, {"wl_step": -1.0}, {"days": 0}, {"noise_au": -1.0}])
def test_bad_config(kw):
    with pytest.raises(ConfigError):
        SimulatorConfig(**kw)


def test_duplicate_subject_ids_rejected():
    with pytest.raises(ConfigError, match="unique"):
        simulate_cohort([1, 1], SMALL)
