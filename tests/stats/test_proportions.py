"""Proportions, intervals and exact tests; expected numbers from the seed reader study
(../shared/data/stats-reference/README.md: TP 43, FN 7, TN 38, FP 12)."""

import math

import pytest
from scipy import stats

from readerstudy.stats.proportions import (
    ConfusionMatrix,
    binary_metrics,
    binomial_test,
    clopper_pearson_interval,
    wilson_interval,
)

SEED = ConfusionMatrix(true_positive=43, false_negative=7, true_negative=38, false_positive=12)


def test_seed_study_wilson_intervals():
    metrics = binary_metrics(SEED)
    assert metrics.sensitivity.estimate == pytest.approx(0.86)
    assert metrics.specificity.estimate == pytest.approx(0.76)
    assert metrics.accuracy.estimate == pytest.approx(0.81)
    for proportion, (low, high) in (
        (metrics.sensitivity, (0.738138, 0.930492)),
        (metrics.specificity, (0.625873, 0.857026)),
        (metrics.accuracy, (0.722212, 0.874852)),
    ):
        assert proportion.wilson.lower == pytest.approx(low, abs=1e-6)
        assert proportion.wilson.upper == pytest.approx(high, abs=1e-6)


def test_seed_study_clopper_pearson_intervals():
    metrics = binary_metrics(SEED)
    for proportion, (low, high) in (
        (metrics.sensitivity, (0.732604, 0.941808)),
        (metrics.specificity, (0.618309, 0.869390)),
        (metrics.accuracy, (0.719302, 0.881557)),
    ):
        assert proportion.clopper_pearson.lower == pytest.approx(low, abs=1e-6)
        assert proportion.clopper_pearson.upper == pytest.approx(high, abs=1e-6)


def test_seed_study_binomial_test_against_chance():
    # README: exact binomial test of accuracy 81/100 against 0.5, two-sided p = 2.7028e-10.
    assert binary_metrics(SEED).accuracy_vs_chance.p_value == pytest.approx(2.7028e-10, rel=1e-4)


def test_predictive_values_balanced_accuracy_and_odds_ratio_follow_their_definitions():
    metrics = binary_metrics(SEED)
    assert metrics.ppv.successes == 43 and metrics.ppv.trials == 55
    assert metrics.npv.successes == 38 and metrics.npv.trials == 45
    assert metrics.balanced_accuracy == pytest.approx((0.86 + 0.76) / 2)
    assert metrics.fisher.odds_ratio == pytest.approx(43 * 38 / (7 * 12))
    assert metrics.fisher.p_value == pytest.approx(stats.fisher_exact([[43, 7], [12, 38]]).pvalue)
    assert metrics.balanced_accuracy_ci.lower < metrics.balanced_accuracy < metrics.balanced_accuracy_ci.upper


def test_intervals_at_the_boundaries():
    assert clopper_pearson_interval(0, 10).lower == 0.0
    assert clopper_pearson_interval(10, 10).upper == 1.0
    # Clopper-Pearson for 0/n has upper bound 1 - (alpha/2)^(1/n) (Clopper & Pearson 1934).
    assert clopper_pearson_interval(0, 10).upper == pytest.approx(1 - 0.025 ** (1 / 10))
    assert wilson_interval(0, 10).lower == 0.0
    assert math.isnan(wilson_interval(0, 0).lower)
    assert math.isnan(binomial_test(0, 0).p_value)


def test_empty_class_gives_nan_not_an_error():
    metrics = binary_metrics(ConfusionMatrix(5, 5, 0, 0))
    assert math.isnan(metrics.specificity.estimate)
    assert math.isnan(metrics.fisher.p_value)
