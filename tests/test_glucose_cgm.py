"""The real CGM record loader, its time split, reference points, windows and the linear-calibration baseline."""
import importlib.util

import numpy as np
import pytest

from prunequant.apps.glucose.cgm import (
    CGMRecord,
    LinearCalibration,
    cgm_features,
    cgm_windows,
    load_cgm_record,
    prepare_cgm,
    read_cgm_csv,
    reference_points,
    time_split_indices,
)
from prunequant.errors import ConfigError, ShapeError, StorageError

needs_bokeh = pytest.mark.skipif(importlib.util.find_spec("bokeh_sampledata") is None,
                                 reason="bokeh-sampledata (the [glucose] extra) is not installed")


@pytest.fixture(scope="module")
def record():
    if importlib.util.find_spec("bokeh_sampledata") is None:
        pytest.skip("bokeh-sampledata not installed")
    return load_cgm_record()


@needs_bokeh
def test_real_record_rows_units_and_gaps(record):
    assert len(record) == 52_281
    assert int(record.nil.sum()) == 1_061                       # 'nil' isig readings
    assert str(record.start) == "2010-03-24T09:51:00" and str(record.end) == "2010-10-10T23:57:00"
    assert record.glucose.min() == 40 and record.glucose.max() == 400  # mg/dL, the device's reporting range
    ok = np.isfinite(record.isig)
    assert 3 < record.isig[ok].min() and record.isig[ok].max() < 100  # nA
    steps = np.diff(record.time_min)
    assert (steps >= 0).all() and int((steps == 0).sum()) == 3 and np.median(steps) == 5.0  # 3 repeated stamps
    seg = record.segments()
    assert seg[-1] + 1 == 1 + int((steps > 15).sum())           # one new segment per gap > 15 min
    assert "not laboratory" in record.provenance["glucose"].lower() or "NOT" in record.provenance["glucose"]
    assert np.corrcoef(record.isig[ok], record.glucose[ok])[0, 1] > 0.8


@needs_bokeh
def test_time_split_has_no_overlap_and_respects_order(record):
    parts = time_split_indices(record, test_fraction=0.3, val_fraction=0.1, boundary_gap_min=60)
    tm = record.time_min
    assert list(parts) == ["train", "val", "test"]
    assert tm[parts["train"][-1]] + 60 < tm[parts["val"][0]]
    assert tm[parts["val"][-1]] + 60 < tm[parts["test"][0]]
    for idx in parts.values():                                  # contiguous ranges
        assert (np.diff(idx) == 1).all()
    assert abs(len(parts["test"]) / len(record) - 0.3) < 0.01
    with pytest.raises(ConfigError):
        time_split_indices(record, test_fraction=0.7, val_fraction=0.4)


@needs_bokeh
def test_windows_stay_inside_one_segment_and_one_part(record):
    task = prepare_cgm(record, window=12, calibration=LinearCalibration(1))  # given: skips the mode search
    seg = record.segments()
    for name, w in task.windows.items():
        first = w.rows - 11
        assert (seg[first] == seg[w.rows]).all()
        assert first.min() >= task.parts[name][0] and w.rows.max() <= task.parts[name][-1]
        assert np.isfinite(w.x).all() and np.isfinite(record.isig[w.rows]).all()
        np.testing.assert_allclose(w.x[:, -1, 1], 0.0, atol=1e-6)      # isig relative to the last reading
        np.testing.assert_allclose(w.x[:, -1, 0], w.calibrated, rtol=1e-5)
    hours = (record.time[task.refs] - record.time[task.refs].astype("datetime64[D]")).astype(int) / 3600
    assert np.all(np.min(np.abs(hours[:, None] - np.array([7, 12, 18, 22])[None]), axis=1) <= 1.0)


def _hand_record():
    t = np.array(["2020-01-01T00:00", "2020-01-01T00:30", "2020-01-01T01:00", "2020-01-01T01:30"],
                 dtype="datetime64[s]")
    return CGMRecord(t, np.array([10.0, 12.0, 20.0, 16.0]), np.array([100.0, 111.0, 150.0, 133.0]))


def test_linear_calibration_hand_case():
    rec = _hand_record()
    refs = np.array([0, 2])                                      # finger sticks at 00:00 and 01:00
    line = LinearCalibration(n_refs=2, mode="line", min_spread=1.0)
    p = line.predict_record(rec, refs)
    # 00:00/00:30: one reference -> gain 100/10 = 10; 01:00/01:30: the line through (10,100),(20,150): 5x + 50
    np.testing.assert_allclose(p, [100.0, 120.0, 150.0, 130.0])
    off = LinearCalibration(n_refs=1, mode="offset", offset=2.0)
    # gain from the last reference only: 100/(10-2) = 12.5, then 150/(20-2)
    np.testing.assert_allclose(off.predict_record(rec, refs), [100.0, 125.0, 150.0, 150 / 18 * 14])
    a, b = line.params(rec.isig[refs], rec.glucose[refs])
    np.testing.assert_allclose([a[1], b[1]], [5.0, 50.0])
    # causal: a reading before a reference never uses it
    np.testing.assert_allclose(LinearCalibration(1).predict([59.0], [12.0], [0.0, 60.0], [10.0, 20.0],
                                                            [100.0, 150.0]), [120.0])
    with pytest.raises(ConfigError):
        LinearCalibration(mode="cubic")
    with pytest.raises(ShapeError):
        LinearCalibration().predict([0.0], [1.0], [], [], [])


def test_features_carry_isig_over_nil_within_a_segment():
    t = np.array(["2020-01-01T00:00", "2020-01-01T00:05", "2020-01-01T00:10", "2020-01-01T02:00",
                  "2020-01-01T02:05"], dtype="datetime64[s]")
    rec = CGMRecord(t, np.array([10.0, np.nan, 12.0, np.nan, 14.0]), np.array([100.0, 101, 120, 130, 140]))
    f = cgm_features(rec, np.array([0]), LinearCalibration(1))
    np.testing.assert_allclose(f[:, 0][:3], [10.0, 10.0, 12.0])  # carried forward inside segment 0
    assert f[3, 1] == 1.0 and f[1, 1] == 1.0                      # nil flags
    assert f[3, 0] == 10.0                       # not carried over the 110-minute gap: the reference's isig
    w = cgm_windows(rec, f, 2)
    assert w.rows.tolist() == [2, 4]                              # windows end at valid readings, inside segments
    with pytest.raises(ShapeError):
        cgm_windows(rec, f, 4)


def test_reference_points_pick_the_first_valid_reading_after_each_hour():
    t = np.arange(np.datetime64("2020-01-01T06:50"), np.datetime64("2020-01-01T20:00"), np.timedelta64(5, "m"))
    isig = np.full(len(t), 10.0)
    isig[2] = np.nan                                              # 07:00 is nil -> 07:05 is used
    rec = CGMRecord(t.astype("datetime64[s]"), isig, np.full(len(t), 100.0))
    idx = reference_points(rec, hours=(7.0, 19.0))
    assert [str(x)[11:16] for x in rec.time[idx]] == ["07:05", "19:00"]


def test_csv_reader_sorts_parses_nil_and_names_errors(tmp_path):
    p = tmp_path / "cgm.csv"
    p.write_text("glucose,datetime,isig\n120,2020-01-01 00:05:00,nil\n110,2020-01-01 00:00:00,11.5\n")
    rec = read_cgm_csv(p)
    assert rec.glucose.tolist() == [110.0, 120.0] and np.isnan(rec.isig[1]) and rec.isig[0] == 11.5
    bad = tmp_path / "bad.csv"
    bad.write_text("datetime,isig\n2020-01-01 00:00:00,1\n")
    with pytest.raises(ShapeError, match="glucose"):
        read_cgm_csv(bad)
    bad.write_text("datetime,isig,glucose\n2020-01-01 00:00:00,abc,100\n")
    with pytest.raises(ShapeError, match="row 1"):
        read_cgm_csv(bad)
    with pytest.raises(StorageError):
        read_cgm_csv(tmp_path / "missing.csv")
