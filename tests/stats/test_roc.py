"""ROC/AUC and DeLong; expected values from pROC's test suite on the aSAH data
(pROC tests/testthat: test-auc.R, test-var.R, test-ci.auc.R, test-roc.test.R)."""

import csv

import numpy as np
import pytest

from readerstudy.stats.roc import auc, auc_jackknife, delong_auc, delong_paired_test, placements, roc_curve
from readerstudy.stats.table import ordinal_score


@pytest.fixture(scope="module")
def asah(reference):
    with open(reference / "pROC_aSAH.csv") as handle:
        rows = list(csv.DictReader(handle))
    truth = np.array([row["outcome"] == "Poor" for row in rows])
    markers = {name: np.array([float(row[name]) for row in rows]) for name in ("wfns", "s100b", "ndka")}
    return truth, markers


@pytest.mark.parametrize(
    ("marker", "expected_auc", "expected_var"),
    [
        ("wfns", 0.823678861788618, 0.00146991470882363),
        ("s100b", 0.731368563685637, 0.00266868245717244),
        ("ndka", 0.611957994579946, 0.0031908105493913),
    ],
)
def test_auc_and_delong_variance_match_proc(asah, marker, expected_auc, expected_var):
    truth, markers = asah
    estimate = delong_auc(truth, markers[marker])
    assert estimate.auc == pytest.approx(expected_auc, abs=1e-12)
    assert estimate.se**2 == pytest.approx(expected_var, rel=1e-10)
    assert (estimate.n_positive, estimate.n_negative) == (41, 72)


def test_delong_ci_matches_proc_ci_auc(asah):
    # pROC test-ci.auc.R: ci.auc(r.ndka) = 0.501244999271703, 0.611957994579946, 0.722670989888189.
    truth, markers = asah
    estimate = delong_auc(truth, markers["ndka"])
    assert estimate.ci.lower == pytest.approx(0.501244999271703, abs=1e-9)
    assert estimate.ci.upper == pytest.approx(0.722670989888189, abs=1e-9)


@pytest.mark.parametrize(
    ("a", "b", "z", "p", "low", "high"),
    [
        ("wfns", "s100b", 2.20898359144091, 0.0271757822291882, 0.0104061769564846, 0.174214419249478),
        ("wfns", "ndka", 2.79777591868904, 0.00514557970691098, 0.0634011709339876, 0.3600405634833566),
        ("ndka", "s100b", -1.39077002573558, 0.164295175223054, -0.2876917446341914, 0.0488706064228094),
    ],
)
def test_paired_delong_test_matches_proc_roc_test(asah, a, b, z, p, low, high):
    truth, markers = asah
    test = delong_paired_test(truth, markers[a], markers[b])
    assert test.z == pytest.approx(z, abs=1e-9)
    assert test.p_value == pytest.approx(p, abs=1e-10)
    assert test.ci.lower == pytest.approx(low, abs=1e-9)
    assert test.ci.upper == pytest.approx(high, abs=1e-9)


def test_identical_curves_give_z_zero_p_one(asah):
    # pROC: roc.test(r.wfns, r.wfns) has Z = 0 and p = 1.
    truth, markers = asah
    test = delong_paired_test(truth, markers["wfns"], markers["wfns"])
    assert (test.z, test.p_value) == (0.0, 1.0)


def test_auc_equals_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(3)
    truth = rng.random(60) < 0.4
    rating = rng.integers(1, 6, 60).astype(float)
    pos, neg = rating[truth], rating[~truth]
    pairwise = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    assert auc(truth, rating) == pytest.approx(pairwise)


def test_fast_jackknife_equals_naive_leave_one_out():
    rng = np.random.default_rng(7)
    truth = rng.random(40) < 0.5
    ratings = rng.integers(1, 7, size=(2, 3, 40)).astype(float)  # ties on purpose
    _, fast = auc_jackknife(ratings, truth)
    for k in range(40):
        keep = np.arange(40) != k
        for i in range(2):
            for j in range(3):
                assert fast[i, j, k] == pytest.approx(auc(truth[keep], ratings[i, j, keep]), abs=1e-12)


def test_placements_average_to_the_auc_both_ways():
    rng = np.random.default_rng(1)
    p = placements(rng.normal(1, 1, 30), rng.normal(0, 1, 50))
    assert p.positive.mean() == pytest.approx(p.negative.mean())


def test_roc_curve_runs_from_origin_to_corner_through_each_threshold():
    truth = np.array([1, 1, 0, 1, 0, 0])
    rating = np.array([6, 4, 4, 3, 2, 1], dtype=float)
    curve = roc_curve(truth, rating)
    assert curve.false_positive_fraction == (0.0, 0.0, 1 / 3, 1 / 3, 2 / 3, 1.0)
    assert curve.true_positive_fraction == (0.0, 1 / 3, 2 / 3, 1.0, 1.0, 1.0)
    assert curve.thresholds[0] == float("inf") and curve.thresholds[1:] == (6.0, 4.0, 3.0, 2.0, 1.0)
    # The trapezoidal area under these points is the Wilcoxon AUC.
    assert np.trapezoid(curve.true_positive_fraction, curve.false_positive_fraction) == pytest.approx(
        auc(truth, rating)
    )


def test_ordinal_score_maps_call_and_confidence_onto_one_scale():
    label = np.array([0, 0, 0, 1, 1, 1])
    confidence = np.array([3, 2, 1, 1, 2, 3])
    assert ordinal_score(label, confidence, 3).tolist() == [1, 2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="confidence"):
        ordinal_score([1], [4], 3)
