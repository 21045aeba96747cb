"""Planning formulas, quality-score comparisons and the realism model."""

import math

import numpy as np
import pytest
from scipy import stats

from readerstudy.stats.power import (
    auc_power,
    auc_sample_size,
    auc_variance_hanley_mcneil,
    auc_variance_obuchowski,
    binomial_power,
    binomial_rejection_region,
    binomial_sample_size,
)
from readerstudy.stats.quality import mann_whitney, score_distribution, share_at_least_median, time_summary
from readerstudy.stats.realism import fit_rasch
from readerstudy.stats.roc import auc


@pytest.mark.parametrize("n", [10, 25, 57, 100])
def test_rejection_region_agrees_with_scipys_exact_binomial_test(n):
    low, high = binomial_rejection_region(n)
    for k in range(n + 1):
        rejected = stats.binomtest(k, n, 0.5).pvalue <= 0.05
        assert rejected == (k <= low or k >= high), k


def test_binomial_sample_size_is_the_smallest_n_reaching_the_power():
    plan = binomial_sample_size(0.6)
    assert plan.power >= 0.8
    assert binomial_power(plan.n, 0.6) == pytest.approx(plan.power)
    assert all(binomial_power(n, 0.6) < 0.8 for n in range(plan.n - 20, plan.n))
    # The normal approximation (Fleiss, Levin & Paik 2003, eq. 2.5) gives about 194 readings.
    assert 185 <= plan.n <= 205


def test_hanley_mcneil_variance_at_chance_and_perfect_discrimination():
    # At A = 0.5, Q1 = 1/3 and Q2 = 1/3 (Hanley & McNeil 1982): Var = [1/4 + (n1 + n0 - 2)/12] / (n1 n0).
    assert auc_variance_hanley_mcneil(0.5, 30, 40) == pytest.approx((0.25 + 68 / 12) / 1200)
    assert auc_variance_hanley_mcneil(1.0, 30, 40) == pytest.approx(0.0)


def test_obuchowski_variance_at_chance_is_close_to_the_exact_null_variance():
    # Under H0 the exact variance of the Mann-Whitney AUC is (n1 + n0 + 1) / (12 n1 n0).
    n = 200
    exact = (2 * n + 1) / (12 * n * n)
    assert auc_variance_obuchowski(0.5, n, n) == pytest.approx(exact, rel=0.06)


@pytest.mark.parametrize("method", ["obuchowski", "hanley_mcneil"])
def test_auc_sample_size_is_minimal(method):
    plan = auc_sample_size(0.7, method=method)
    assert plan.power >= 0.8
    assert auc_power(0.7, plan.n_positive - 1, plan.n_negative - 1, method=method) < 0.8
    assert 20 < plan.n_positive < 80


def test_mann_whitney_common_language_equals_the_auc_of_the_scores():
    rng = np.random.default_rng(2)
    x, y = rng.integers(1, 6, 40).astype(float), rng.integers(1, 6, 50).astype(float)
    comparison = mann_whitney(x, y)
    truth = np.r_[np.ones(40), np.zeros(50)]
    assert comparison.common_language == pytest.approx(auc(truth, np.r_[x, y]))
    assert comparison.p_value == pytest.approx(stats.mannwhitneyu(x, y, method="asymptotic").pvalue)


def test_score_summaries():
    distribution = score_distribution(np.array([1, 2, 2, 5, np.nan]), levels=(1.0, 2.0, 3.0, 4.0, 5.0))
    assert distribution.counts == (1, 2, 0, 0, 1) and distribution.n == 4 and distribution.median == 2.0
    assert share_at_least_median(np.array([1.0, 3.0, 4.0]), np.array([2.0, 3.0, 5.0])) == pytest.approx(2 / 3)
    summary = time_summary(np.array([10.0, 20.0, 30.0, 40.0, np.nan]))
    assert (summary.n, summary.median, summary.q1, summary.q3) == (4, 25.0, 17.5, 32.5)
    assert math.isnan(time_summary(np.array([np.nan])).median)


def test_rasch_fit_solves_the_penalised_score_equations_and_recovers_image_order():
    rng = np.random.default_rng(4)
    n_images, n_readers = 60, 12
    realism = np.linspace(-2, 2, n_images)
    credulity = rng.normal(0, 0.7, n_readers)
    image, reader = np.meshgrid(np.arange(n_images), np.arange(n_readers), indexing="ij")
    image, reader = image.ravel(), reader.ravel()
    called_real = (rng.random(image.size) < 1 / (1 + np.exp(-(-0.5 + realism[image] + credulity[reader])))).astype(
        float
    )
    fit = fit_rasch(image, reader, called_real, n_images=n_images, n_readers=n_readers)
    assert fit.converged
    p = 1 / (1 + np.exp(-(fit.intercept + fit.image_effects[image] + fit.reader_effects[reader])))
    residual = called_real - p
    assert abs(residual.sum()) < 1e-8
    assert np.abs(np.bincount(image, residual, n_images) - fit.image_effects).max() < 1e-8
    assert np.abs(np.bincount(reader, residual, n_readers) - fit.reader_effects).max() < 1e-8
    assert stats.spearmanr(fit.image_effects, realism).statistic > 0.8
