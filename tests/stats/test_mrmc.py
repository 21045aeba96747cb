"""Obuchowski-Rockette MRMC analysis; expected values are the OR-DBM MRMC 2.51 printout of the Van Dyke
data (../shared/data/stats-reference/vandyke_iowa_or_dbm_output.txt), to the printed precision."""

import numpy as np
import pytest

from readerstudy.stats.formats import read_table
from readerstudy.stats.mrmc import figure_of_merit_jackknife, jackknife_covariance, mrmc_analysis
from readerstudy.stats.roc import auc
from readerstudy.stats.simulate import simulate_study


@pytest.fixture(scope="module")
def vandyke(reference):
    return mrmc_analysis(read_table(reference / "vandyke_long.csv"))


def test_reader_aucs(vandyke):
    expected = {
        "0": [0.91964573, 0.85877617, 0.90386473, 0.97310789, 0.82979066],
        "1": [0.94782609, 0.90531401, 0.92173913, 0.99935588, 0.92995169],
    }
    for modality, values in expected.items():
        found = [f.value for f in vandyke.reader_figures if f.modality == modality]
        assert found == pytest.approx(values, abs=5e-9)
    assert vandyke.modality_means == pytest.approx((0.89703704, 0.94083736), abs=5e-9)
    assert (vandyke.n_cases, vandyke.n_negative, vandyke.n_positive) == (114, 69, 45)


def test_anova_and_variance_components(vandyke):
    ms = vandyke.mean_squares
    assert (ms.modality, ms.reader, ms.modality_reader) == pytest.approx((0.00479617, 0.00383620, 0.00055103), abs=5e-9)
    assert ms.reader_per_modality == pytest.approx((0.00308263, 0.00130460), abs=5e-9)
    c = vandyke.covariance
    assert c.var_reader == pytest.approx(0.00153500, abs=5e-9)
    assert c.var_modality_reader == pytest.approx(0.00020040, abs=5e-9)
    assert (c.cov1, c.cov2, c.cov3, c.var_error) == pytest.approx(
        (0.00034661, 0.00034407, 0.00023903, 0.00080229), abs=5e-9
    )
    assert (c.corr1, c.corr2, c.corr3) == pytest.approx((0.43203138, 0.42886683, 0.29793328), abs=5e-9)
    assert c.var_error_per_modality == pytest.approx((0.00101410, 0.00059047), abs=5e-9)
    assert c.cov2_per_modality == pytest.approx((0.00048396, 0.00020419), abs=5e-9)


def test_random_readers_random_cases(vandyke):
    analysis = vandyke.random_readers_random_cases
    assert analysis.test.statistic == pytest.approx(4.456318693, abs=1e-9)
    assert analysis.test.df_denominator == pytest.approx(15.2596746, abs=1e-7)
    assert analysis.test.p_value == pytest.approx(0.0516656858, abs=1e-10)
    assert analysis.test.error_term == pytest.approx(0.00107626, abs=5e-9)
    (difference,) = analysis.differences
    assert difference.difference == pytest.approx(-0.0438003221, abs=1e-10)
    assert difference.ci.lower == pytest.approx(-0.0879594986, abs=1e-10)
    assert difference.ci.upper == pytest.approx(0.0003588544, abs=1e-10)
    assert difference.se == pytest.approx(0.02075, abs=5e-6)
    first, second = analysis.modalities
    assert first.se == pytest.approx(0.0331735970, abs=1e-10)
    assert first.df == pytest.approx(12.7446476, abs=1e-7)
    assert (first.ci.lower, first.ci.upper) == pytest.approx((0.82522360, 0.96885048), abs=5e-9)
    assert second.se == pytest.approx(0.02156637, abs=5e-9)
    assert second.df == pytest.approx(12.71, abs=5e-3)
    assert (second.ci.lower, second.ci.upper) == pytest.approx((0.89413783, 0.98753689), abs=5e-9)


def test_fixed_readers_random_cases(vandyke):
    analysis = vandyke.fixed_readers_random_cases
    assert analysis.test.statistic == pytest.approx(5.47595, abs=5e-6)
    assert analysis.test.p_value == pytest.approx(0.0193, abs=5e-5)
    (difference,) = analysis.differences
    assert difference.se == pytest.approx(0.01872, abs=5e-6)
    assert (difference.ci.lower, difference.ci.upper) == pytest.approx((-0.08049, -0.00711), abs=5e-6)
    first, second = analysis.modalities
    assert first.se == pytest.approx(0.02428971, abs=5e-9)
    assert (first.ci.lower, first.ci.upper) == pytest.approx((0.84943008, 0.94464399), abs=5e-9)
    assert second.se == pytest.approx(0.01677632, abs=5e-9)
    assert (second.ci.lower, second.ci.upper) == pytest.approx((0.90795637, 0.97371835), abs=5e-9)
    printed = [  # reader, difference, StdErr, p, CI
        (-0.02818, 0.02551, 0.2693, -0.07818, 0.02182),
        (-0.04654, 0.02630, 0.0768, -0.09809, 0.00501),
        (-0.01787, 0.03121, 0.5668, -0.07904, 0.04330),
        (-0.02625, 0.01729, 0.1290, -0.06014, 0.00764),
        (-0.10016, 0.04406, 0.0230, -0.18651, -0.01381),
    ]
    for found, (diff, se, p, low, high) in zip(analysis.reader_differences, printed, strict=True):
        assert (found.difference, found.se, found.ci.lower, found.ci.upper) == pytest.approx(
            (diff, se, low, high), abs=5e-6
        )
        assert found.p_value == pytest.approx(p, abs=5e-5)


def test_random_readers_fixed_cases(vandyke):
    analysis = vandyke.random_readers_fixed_cases
    assert analysis.test.statistic == pytest.approx(8.70, abs=5e-3)
    assert (analysis.test.df_numerator, analysis.test.df_denominator) == (1.0, 4.0)
    assert analysis.test.p_value == pytest.approx(0.0420, abs=5e-5)
    (difference,) = analysis.differences
    assert difference.se == pytest.approx(0.01485, abs=5e-6)
    assert (difference.ci.lower, difference.ci.upper) == pytest.approx((-0.08502, -0.00258), abs=5e-6)
    first, second = analysis.modalities
    assert (first.se, first.ci.lower, first.ci.upper) == pytest.approx((0.02482994, 0.82809808, 0.96597599), abs=5e-9)
    assert (second.se, second.ci.lower, second.ci.upper) == pytest.approx(
        (0.01615303, 0.89598936, 0.98568536), abs=5e-9
    )


def test_single_modality_tests_against_chance(vandyke):
    estimate = vandyke.random_readers_random_cases.modalities[0]
    assert estimate.null_value == 0.5
    assert estimate.statistic == pytest.approx((estimate.estimate - 0.5) / estimate.se)
    assert 0 < estimate.p_value < 1e-6


def test_jackknife_covariance_equals_naive_recomputation():
    rng = np.random.default_rng(11)
    truth = rng.random(30) < 0.4
    ratings = rng.integers(1, 6, size=(2, 3, 30)).astype(float)
    _, jackknife = figure_of_merit_jackknife("auc", ratings, None, truth)
    naive = np.array(
        [
            [[auc(np.delete(truth, k), np.delete(ratings[i, j], k)) for k in range(30)] for j in range(3)]
            for i in range(2)
        ]
    )
    assert jackknife == pytest.approx(naive, abs=1e-12)
    covariance = jackknife_covariance(jackknife)
    flat = naive.reshape(6, 30)
    expected = (30 - 1) / 30 * ((flat - flat.mean(1, keepdims=True)) @ (flat - flat.mean(1, keepdims=True)).T)
    assert covariance.reshape(6, 6) == pytest.approx(expected, abs=1e-14)


@pytest.mark.parametrize("figure", ["accuracy", "sensitivity", "specificity"])
def test_proportion_jackknife_runs_over_the_cases_the_figure_depends_on(figure):
    rng = np.random.default_rng(5)
    truth = rng.random(50) < 0.5
    labels = (rng.random((2, 4, 50)) < 0.7).astype(int)
    values, jackknife = figure_of_merit_jackknife(figure, np.zeros((2, 4, 50)), labels, truth)
    subset = {"accuracy": np.ones(50, bool), "sensitivity": truth, "specificity": ~truth}[figure]
    correct = (labels.astype(bool) == truth)[..., subset].astype(float)
    assert values == pytest.approx(correct.mean(-1))
    assert jackknife.shape[-1] == subset.sum()
    naive = np.stack([np.delete(correct, k, axis=-1).mean(-1) for k in range(subset.sum())], axis=-1)
    assert jackknife == pytest.approx(naive)
    # For a mean, the jackknife variance is the usual s^2 / n (Efron 1981).
    n = subset.sum()
    variance = np.diagonal(jackknife_covariance(jackknife).reshape(8, 8))
    assert variance == pytest.approx((correct.var(-1, ddof=1) / n).ravel())


def test_accuracy_mrmc_on_simulated_calls_is_consistent():
    table = simulate_study(readers=4, modalities=2, cases=80, seed=2)
    result = mrmc_analysis(table, "accuracy")
    first = table.first_readings()
    for figure in result.reader_figures:
        mask = (first.reader == figure.reader) & (first.modality == figure.modality)
        assert figure.value == pytest.approx(np.mean(first.label[mask] == first.truth[mask]))
    assert result.random_readers_random_cases.modalities[0].null_value == 0.5
    assert mrmc_analysis(table, "sensitivity").random_readers_random_cases.modalities[0].null_value is None


def test_one_reader_leaves_random_reader_analyses_undefined():
    table = simulate_study(readers=1, modalities=2, cases=60, seed=4)
    result = mrmc_analysis(table)
    assert any("one reader" in note for note in result.notes)
    assert np.isnan(result.random_readers_random_cases.test.statistic)
    assert result.fixed_readers_random_cases.test.p_value == pytest.approx(
        result.fixed_readers_random_cases.reader_differences[0].p_value
    )


def test_cases_not_read_everywhere_are_left_out_with_a_note():
    table = simulate_study(readers=3, modalities=2, cases=60, seed=8)
    dropped = table.select(~((table.case == "case-00001") & (table.reader == "reader-01")))
    result = mrmc_analysis(dropped)
    assert result.n_cases == 59
    assert any("1 of 60 cases" in note for note in result.notes)
