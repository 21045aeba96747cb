"""Readers x cases for a multi-reader study from a pilot's OR variance components (Hillis, Obuchowski & Berbaum
2011). Published values are RJafroc's own tests of ``SsPowerGivenJK`` / ``SsSampleSizeKGivenJ`` on the Van Dyke
data (RJafroc tests/testthat/test-SsSampleSizeRoc.R, "after updating Ss routines from Hillis 2011 and 2018
papers"); the rest checks the method against the pilot's own analysis and a simulation of the F statistic."""

import math

import numpy as np
import pytest
from scipy import stats

from readerstudy.stats.formats import read_table
from readerstudy.stats.mrmc import mrmc_analysis
from readerstudy.stats.power import ORComponents, or_components, or_planned_design, or_study_plan

# The Van Dyke difference of reader-averaged AUCs, modality 0 minus 1, as RJafroc's tests type it.
VANDYKE_EFFECT = -0.043800322


@pytest.fixture(scope="module")
def vandyke_table(reference):
    return read_table(reference / "vandyke_long.csv")


@pytest.fixture(scope="module")
def vandyke(vandyke_table):
    return mrmc_analysis(vandyke_table)


@pytest.fixture(scope="module")
def vandyke_single(vandyke_table):
    """Each Van Dyke modality analysed alone: one-modality pilots like this project's studies."""
    return [mrmc_analysis(vandyke_table.select(vandyke_table.modality == m)) for m in vandyke_table.modalities]


def test_components_come_from_the_or_analysis(vandyke, vandyke_single):
    components = or_components(vandyke)
    assert components.n_cases == 114
    assert (components.var_modality_reader, components.cov1, components.cov2, components.cov3) == pytest.approx(
        (0.00020040, 0.00034661, 0.00034407, 0.00023903), abs=5e-9
    )
    assert components.var_error == pytest.approx(0.00080229, abs=5e-9)
    assert components.missing("modalities") == ()
    single = or_components(vandyke_single[0])
    # A one-modality pilot has no Cov1, Cov3 or sigma^2_TR: it can plan a test against chance only.
    assert single.missing("chance") == ()
    assert set(single.missing("modalities")) == {"var_modality_reader", "cov1", "cov3"}
    with pytest.raises(ValueError, match="no estimate of"):
        or_planned_design(single, 5, 100, effect=0.05, comparison="modalities")


def test_power_reproduces_rjafroc_for_the_van_dyke_components(vandyke):
    components = or_components(vandyke)
    # SsPowerGivenJK(dataset02, FOM = "Wilcoxon", method = "OR", effectSize = -0.043800322, J = 10, K = 165)
    design = or_planned_design(components, 10, 165, effect=VANDYKE_EFFECT, comparison="modalities")
    assert design.power == pytest.approx(0.80541995, abs=5e-8)
    # SsPowerGivenJK(dataset02, FOM = "Wilcoxon", J = 6, K = 111, method = "OR"): the observed effect size.
    observed = vandyke.modality_means[0] - vandyke.modality_means[1]
    assert or_planned_design(components, 6, 111, effect=observed, comparison="modalities").power == pytest.approx(
        0.5526116, abs=5e-8
    )


def test_cases_needed_reproduces_rjafrocs_sample_size(vandyke):
    components = or_components(vandyke)
    observed = vandyke.modality_means[0] - vandyke.modality_means[1]
    # SsSampleSizeKGivenJ(dataset02, J = 6, FOM = "Wilcoxon", method = "OR")$KRRRC == 251, and SsPowerTable's
    # row for 6 readers: 251 cases, power 0.801.
    plan = or_study_plan(components, [6, 10], [251], effect=observed, comparison="modalities")
    assert plan.cases_needed[0] == 251
    assert round(plan.designs[0][0].power, 3) == 0.801
    assert or_planned_design(components, 6, 250, effect=observed, comparison="modalities").power < 0.8
    assert plan.cases_needed[1] <= 165  # RJafroc: 10 readers x 165 cases reach 0.805


@pytest.mark.parametrize("modality", [0, 1])
def test_at_the_pilots_own_design_the_plan_is_the_pilots_analysis(vandyke_single, modality):
    pilot = vandyke_single[modality]
    estimate = pilot.random_readers_random_cases.modalities[0]
    design = or_planned_design(or_components(pilot), len(pilot.readers), pilot.n_cases, effect=0.1)
    assert design.se == pytest.approx(estimate.se, rel=1e-12)
    assert design.df == pytest.approx(estimate.df, rel=1e-12)
    assert design.half_width == pytest.approx(estimate.ci.upper - estimate.estimate, rel=1e-12)


def test_at_the_pilots_own_design_two_modalities_give_the_pilots_f_test(vandyke):
    analysis = vandyke.random_readers_random_cases
    design = or_planned_design(or_components(vandyke), 5, 114, effect=0.05, comparison="modalities")
    assert design.error_term == pytest.approx(analysis.test.error_term, rel=1e-12)
    assert design.df == pytest.approx(15.2596746, abs=1e-7)  # ddf_H of the Iowa printout
    (difference,) = analysis.differences
    assert design.se == pytest.approx(difference.se, rel=1e-12)
    assert design.half_width == pytest.approx(difference.difference - difference.ci.lower, rel=1e-12)


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.1])
@pytest.mark.parametrize("comparison", ["chance", "modalities"])
def test_power_is_alpha_when_there_is_no_effect(vandyke, alpha, comparison):
    components = or_components(vandyke)
    for readers, cases in [(2, 10), (5, 114), (12, 400)]:
        design = or_planned_design(components, readers, cases, effect=0.0, alpha=alpha, comparison=comparison)
        assert design.power == pytest.approx(alpha, abs=1e-12)


@pytest.mark.parametrize("modality", [0, 1])
def test_power_rises_and_the_interval_narrows_with_readers_and_with_cases(vandyke_single, modality):
    plan = or_study_plan(or_components(vandyke_single[modality]), range(2, 21), range(20, 820, 40), effect=0.04)
    power = np.array([[d.power for d in row] for row in plan.designs])
    half = np.array([[d.half_width for d in row] for row in plan.designs])
    # Every added reader helps.
    assert np.all(np.diff(power, axis=0) > 0) and np.all(np.diff(half, axis=0) < 0)
    # Every added case helps from 5 readers on (rows 3 onwards); with fewer, see the next test.
    assert np.all(np.diff(power[3:], axis=1) > 0) and np.all(np.diff(half[3:], axis=1) < 0)


def test_with_few_readers_more_cases_can_lower_the_power_and_widen_the_interval(vandyke_single):
    # ddf_H falls toward J - 1 as cases shrink the case variance next to the reader variance, and the critical
    # value grows faster than the noncentrality. Hence the exhaustive search for the cases needed.
    components = or_components(vandyke_single[0])
    two = [or_planned_design(components, 2, cases, effect=0.04) for cases in (100, 400)]
    assert two[1].power < two[0].power
    three = [or_planned_design(components, 3, cases, effect=0.04) for cases in (140, 400)]
    assert three[1].half_width > three[0].half_width


def test_components_scale_with_the_number_of_cases():
    pilot = ORComponents(n_cases=100, var_reader=0.002, var_error=0.001, cov2=0.0004)
    doubled = pilot.for_cases(200)
    assert (doubled.var_error, doubled.cov2, doubled.var_reader) == pytest.approx((0.0005, 0.0002, 0.002))
    # Planning 200 cases from the 100-case pilot is planning them from the components rescaled to 200 cases.
    assert or_planned_design(pilot, 6, 200, effect=0.05) == or_planned_design(doubled, 6, 200, effect=0.05)


def _simulated_rejection_rate(components, readers, cases, effect, *, df, runs=40_000, seed=0):
    """Share of simulated studies whose F = J (mean AUC - chance)^2 / [MS(R) + J Cov2] exceeds F_0.95(1, df):
    reader AUCs drawn from the one-modality OR model, chance + effect + reader effect + errors with
    Var and Cov2 for ``cases`` cases."""
    rng = np.random.default_rng(seed)
    scaled = components.for_cases(cases)
    reader_effects = rng.normal(0, math.sqrt(components.var_reader), (runs, readers))
    errors = rng.normal(0, math.sqrt(scaled.var_error - scaled.cov2), (runs, readers))
    errors += rng.normal(0, math.sqrt(scaled.cov2), (runs, 1))  # shared by the readers: the same cases
    figures = effect + reader_effects + errors
    mean_squares = figures.var(axis=1, ddof=1)
    statistic = readers * figures.mean(axis=1) ** 2 / (mean_squares + readers * scaled.cov2)
    rate = float(np.mean(statistic > stats.f.ppf(0.95, 1, df)))
    return rate, math.sqrt(rate * (1 - rate) / runs)


@pytest.mark.parametrize(("readers", "cases", "effect"), [(3, 50, 0.05), (5, 114, 0.03), (8, 200, 0.04)])
def test_power_is_exact_when_readers_share_no_case_covariance(readers, cases, effect):
    # With Cov2 = 0, J mean^2 / MS(R) is exactly noncentral F(1, J - 1): the formula has no approximation left.
    components = ORComponents(n_cases=100, var_reader=0.0025, var_error=0.001, cov2=0.0)
    design = or_planned_design(components, readers, cases, effect=effect)
    assert design.df == pytest.approx(readers - 1)
    rate, error = _simulated_rejection_rate(components, readers, cases, effect, df=design.df)
    assert abs(rate - design.power) < 4 * error


@pytest.mark.parametrize(("readers", "cases", "effect"), [(5, 114, 0.05), (8, 200, 0.04), (10, 100, 0.03)])
def test_power_matches_a_simulation_of_the_f_statistic(vandyke_single, readers, cases, effect):
    # With Cov2 > 0 the denominator is a sum of a scaled chi-square and a constant, and Hillis's ddf is its
    # Satterthwaite approximation: close, not exact, so 0.005 on top of the simulation's error.
    components = or_components(vandyke_single[0])
    design = or_planned_design(components, readers, cases, effect=effect)
    rate, error = _simulated_rejection_rate(components, readers, cases, effect, df=design.df)
    assert abs(rate - design.power) < 4 * error + 0.005


def test_cases_needed_is_the_fewest_and_none_when_readers_are_too_few(vandyke_single):
    components = or_components(vandyke_single[0])
    plan = or_study_plan(components, [2, 6, 12], [100], target="half_width", goal=0.06)
    two, six, twelve = plan.cases_needed
    # sigma^2_R does not shrink with cases: two readers never get the interval to +-0.06, however many cases.
    assert two is None
    assert or_planned_design(components, 2, plan.max_cases, effect=0).half_width > 0.06
    for readers, needed in [(6, six), (12, twelve)]:
        assert or_planned_design(components, readers, needed, effect=0).half_width <= 0.06
        assert or_planned_design(components, readers, needed - 1, effect=0).half_width > 0.06
    assert twelve < six


def test_smallest_design_has_the_fewest_readings_among_those_meeting_the_target(vandyke_single):
    components = or_components(vandyke_single[0])
    plan = or_study_plan(components, range(3, 17), range(50, 550, 50), effect=0.08, goal=0.8)
    meeting = [d for row in plan.designs for d in row if d.power >= 0.8]
    assert meeting and plan.smallest in meeting
    assert all(plan.smallest.readers * plan.smallest.cases <= d.readers * d.cases for d in meeting)
    assert plan.meets(plan.smallest)
    unreachable = or_study_plan(components, [3, 4], [50, 500], effect=0.08, goal=0.8)
    assert unreachable.smallest is None


def test_bad_inputs_are_refused():
    components = ORComponents(n_cases=100, var_reader=0.002, var_error=0.001, cov2=0.0004)
    with pytest.raises(ValueError, match="at least 2 readers"):
        or_planned_design(components, 1, 100, effect=0.05)
    with pytest.raises(ValueError, match="target"):
        or_study_plan(components, [4], [100], target="precision")
    with pytest.raises(ValueError, match="no estimate"):
        or_planned_design(ORComponents(100, math.nan, 0.001, 0.0004), 4, 100, effect=0.05)
