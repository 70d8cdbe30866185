"""Each temporal effect of the CGM-driven NIR simulator, switched on alone."""
import importlib.util

import numpy as np
import pytest

from prunequant.apps.glucose.cgm_sim import EFFECTS, TemporalEffects, isf_lag, simulate_chunk
from prunequant.apps.glucose.simulate import SimulatorConfig
from prunequant.errors import ConfigError

CFG = SimulatorConfig(wl_step=100.0, noise_au=0.0, sample_min=1.0)  # 16 channels, no detector noise, 1-min grid
N = 1440


def _sine(period_min=360.0, n=N):
    return 140.0 + 60.0 * np.sin(2 * np.pi * np.arange(n) / period_min)


def _glucose_channel(wl):
    return int(np.argmin(np.abs(wl - 1700.0)))


def _peak_lag(ref, sig, max_lag=40):
    a, b = ref - ref.mean(), sig - sig.mean()
    c = [np.dot(a[: len(a) - k], b[k:]) / np.sqrt(np.dot(a[: len(a) - k], a[: len(a) - k]) * np.dot(b[k:], b[k:]))
         for k in range(max_lag)]
    return int(np.argmax(c))


@pytest.mark.parametrize("lag", [0.0, 10.0, 15.0])
def test_lag_shifts_the_cross_correlation_peak_by_the_set_minutes(lag):
    g = _sine()
    e = TemporalEffects.only("lag", lag_min=(lag, lag), blood_frac=(0.0, 0.0)) if lag else TemporalEffects.none()
    d = simulate_chunk(g, 0, e, CFG)
    ch = d["absorbance"][:, _glucose_channel(CFG.wavelengths())]
    # a first-order lag of tau delays a slow sine by atan(w tau)/w = tau within 1 %
    assert abs(_peak_lag(g, ch) - lag) <= 1
    assert abs(_peak_lag(g, d["isf"]) - lag) <= 1


def test_isf_lag_is_a_unit_gain_first_order_filter():
    y = isf_lag(np.r_[np.full(5, 100.0), np.full(200, 200.0)], tau_min=10.0, dt_min=1.0)
    assert y[4] == pytest.approx(100.0) and y[-1] == pytest.approx(200.0, rel=1e-6)
    assert y[4 + 10] == pytest.approx(100 + 100 * (1 - np.exp(-1.0)), rel=0.02)  # 63 % after one tau


def _flat(effects, subject=0):
    return simulate_chunk(np.full(N, 120.0), subject, effects, CFG)


def test_no_effect_gives_constant_spectra_for_constant_glucose():
    a = _flat(TemporalEffects.none())["absorbance"]
    assert np.ptp(a, axis=0).max() < 1e-5


def test_drift_is_slow_and_broadband():
    a = _flat(TemporalEffects.only("drift", drift_au=2e-3))["absorbance"].astype(np.float64)
    dev = a - a.mean(0)
    assert dev.std() > 5e-4                                   # present
    assert np.abs(np.diff(a, axis=0)).mean() < 0.2 * dev.std()  # hours-scale (white noise: ~1.1 x std)
    assert np.corrcoef(dev[:, 0], dev[:, -1])[0, 1] != pytest.approx(1.0)     # offset + tilt + curvature


def test_temperature_moves_the_water_band_with_the_skin_temperature():
    d = _flat(TemporalEffects.only("temperature", temp_c=1.0))
    wl = CFG.wavelengths()
    water = d["absorbance"][:, int(np.argmin(np.abs(wl - 1400.0)))]
    assert np.ptp(d["temperature_c"]) > 1.0
    assert abs(np.corrcoef(water, d["temperature_c"])[0, 1]) > 0.9


def test_hydration_scales_the_water_bands():
    on = _flat(TemporalEffects.only("hydration", hydration_rel=0.03))["absorbance"]
    wl = CFG.wavelengths()
    water = on[:, int(np.argmin(np.abs(wl - 1900.0)))]
    fat_free = on[:, int(np.argmin(np.abs(wl - 1100.0)))]
    assert np.ptp(water) > 5 * np.ptp(fat_free) > 0


def test_pressure_events_and_motion_spikes():
    d = _flat(TemporalEffects.only("pressure", events_per_day=8.0))
    spikes = d["spikes"]
    assert 2 <= spikes.sum() <= 60
    assert (d["path_scale"] != 1.0).any()
    a = d["absorbance"].astype(np.float64)
    jump = np.abs(np.diff(a, axis=0)).max(axis=1)
    onsets = np.flatnonzero(np.diff(spikes.astype(int)) == 1)
    assert jump[onsets].mean() > 20 * np.median(jump)          # a spike stands out of its neighbours


def test_optics_differ_between_subjects_only_when_on():
    off = TemporalEffects.none()
    np.testing.assert_array_equal(_flat(off, 0)["absorbance"], _flat(off, 1)["absorbance"])
    on = TemporalEffects.only("optics")
    assert np.abs(_flat(on, 0)["absorbance"] - _flat(on, 1)["absorbance"]).max() > 0.01


def test_switches_and_errors():
    assert TemporalEffects.all().active() == list(EFFECTS)
    assert TemporalEffects.none().active() == []
    assert TemporalEffects.only("drift").active() == ["drift"]
    with pytest.raises(ConfigError):
        TemporalEffects.only("humidity")


@pytest.mark.skipif(importlib.util.find_spec("bokeh_sampledata") is None, reason="bokeh-sampledata not installed")
def test_cgm_driven_subjects_follow_the_real_glucose_and_the_time_split():
    from prunequant.apps.glucose.cgm import load_cgm_record
    from prunequant.apps.glucose.cgm_sim import simulate_cgm_nir

    rec = load_cgm_record()
    sets = simulate_cgm_nir(rec, TemporalEffects.all(), SimulatorConfig(wl_step=100.0), chunk_days=0.5,
                            max_subjects={"train": 2, "val": 1, "test": 2})
    assert max(sets["train"].start) < min(sets["val"].start) < min(sets["test"].start)
    assert not set(sets["train"].subject_ids) & set(sets["test"].subject_ids)
    g = sets["test"].glucose[0]
    assert 40 <= g.min() and g.max() <= 400 and len(g) == 144  # half a day of real 5-minute glucose
    x, y, s = sets["test"].windows(6)
    assert x.shape[1:] == (6, len(sets["test"].wavelengths)) and len(x) == len(y) == len(s)
