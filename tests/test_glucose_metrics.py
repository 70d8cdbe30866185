"""Glucose metrics on hand-computed cases; Clarke and Parkes zone boundaries on known points."""
import math

import numpy as np
import pytest

from prunequant.apps.glucose.metrics import (
    clarke_zones,
    evaluate_predictions,
    iso15197,
    mae,
    mard,
    parkes_zones,
    r2,
    rmse,
    zone_percentages,
)
from prunequant.errors import ShapeError


def test_regression_metrics_by_hand():
    y = [100.0, 200.0, 50.0, 150.0]
    p = [110.0, 180.0, 50.0, 165.0]
    # errors 10, -20, 0, 15
    assert rmse(y, p) == pytest.approx(math.sqrt((100 + 400 + 0 + 225) / 4))
    assert mae(y, p) == pytest.approx(45 / 4)
    assert mard(y, p) == pytest.approx((0.1 + 0.1 + 0.0 + 0.1) / 4 * 100)
    # mean 125; SS_tot = 625 + 5625 + 5625 + 625 = 12500; SS_res = 725
    assert r2(y, p) == pytest.approx(1 - 725 / 12500)


def test_r2_constant_reference_is_nan_and_perfect_is_one():
    assert math.isnan(r2([5, 5, 5], [4, 5, 6]))
    assert r2([1, 2, 3], [1, 2, 3]) == 1.0


@pytest.mark.parametrize("bad", [([1, 2], [1]), ([], []), ([1, np.nan], [1, 2]), ([1, 2], [1, np.inf])])
def test_bad_inputs_raise(bad):
    with pytest.raises(ShapeError):
        rmse(*bad)


def test_mard_needs_positive_reference():
    with pytest.raises(ShapeError, match="positive"):
        mard([0.0, 100.0], [1.0, 100.0])


@pytest.mark.parametrize("ref,pred,zone", [
    (100, 100, "A"), (100, 120, "A"), (100, 80, "A"), (50, 65, "A"),     # within 20%, or both < 70
    (100, 125, "B"), (300, 200, "B"), (200, 290, "B"),
    (100, 215, "C"), (150, 20, "C"),                                     # ≥ x + 110; ≤ 1.4x − 182
    (300, 150, "D"), (50, 100, "D"), (65, 80, "D"),                      # missed hyper / hypo
    (200, 50, "E"), (50, 200, "E"),                                      # opposite treatment
])
def test_clarke_known_points(ref, pred, zone):
    assert clarke_zones([ref], [pred])[0] == zone


@pytest.mark.parametrize("ref,pred,zone", [
    (100, 100, "A"), (100, 126, "A"),
    (100, 130, "B"), (200, 120, "B"), (60, 10, "B"),
    (100, 200, "C"), (300, 100, "C"),
    (100, 400, "D"), (500, 50, "D"),
    (20, 200, "E"),
])
def test_parkes_type1_known_points(ref, pred, zone):
    # e.g. (100, 130): the A|B line at x=100 is 50 + 70·120/110 = 126.4 < 130, the B|C line 179.5 > 130
    assert parkes_zones([ref], [pred])[0] == zone


def test_parkes_extends_past_last_vertex():
    # beyond x=430 the A|B upper line continues with slope 170/150
    x = 1000.0
    y_line = 550 + (x - 430) * 170 / 150
    assert parkes_zones([x], [y_line - 1])[0] == "A"
    assert parkes_zones([x], [y_line + 1])[0] == "B"


def test_zone_percentages_and_iso():
    z = np.array(["A", "A", "B", "E"])
    assert zone_percentages(z) == {"A": 50.0, "B": 25.0, "C": 0.0, "D": 0.0, "E": 25.0}
    # |d| = 14 (<100: ≤15 ok), 15 (ok), 29 (≥100: ≤30 ok), 46 (> 45: not ok)
    res = iso15197([50, 80, 200, 300], [64, 95, 229, 346])
    assert res["within_15"] == pytest.approx(75.0)
    assert res["passed"] is False
    assert iso15197([100, 150], [101, 149])["passed"] is True


def test_evaluate_predictions_clinical_switch():
    y, p = [100, 150, 200], [105, 140, 210]
    m = evaluate_predictions(y, p)
    assert m.clarke_a == 100.0 and m.clarke_ab == 100.0 and m.iso15197["passed"]
    g = evaluate_predictions([4.0, 10.0], [5.0, 9.0], clinical=False)
    assert g.clarke is None and g.parkes is None and g.mard == pytest.approx((25 + 10) / 2)
    assert set(g.to_dict()) >= {"rmse", "mae", "r2", "mard", "clarke_a", "clarke_ab"}
