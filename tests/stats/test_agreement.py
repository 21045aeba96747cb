"""Agreement statistics against published values. Sources: Fleiss (1971) and irr's kappam.fleiss/kappa2
printouts on the same `diagnoses` data; irr kappa2 on `anxiety`; psych::ICC on `anxiety` (printed to 7
digits); Shrout & Fleiss (1979) Table 2 as printed by DescTools::ICC; Krippendorff (2011) and irr's
kripp.alpha on the same 4 x 12 reliability data."""

import csv

import numpy as np
import pytest

from readerstudy.stats.agreement import cohen_kappa, fleiss_kappa, intraclass_correlations, krippendorff_alpha


@pytest.fixture(scope="module")
def diagnoses(reference):
    return np.loadtxt(reference / "fleiss1971_diagnoses_30x6.csv", delimiter=",", skiprows=1)


@pytest.fixture(scope="module")
def anxiety(reference):
    return np.loadtxt(reference / "irr_anxiety_20x3.csv", delimiter=",", skiprows=1)


def test_fleiss_kappa_fleiss_1971(diagnoses):
    result = fleiss_kappa(diagnoses)
    assert result.kappa == pytest.approx(0.4302445, abs=1e-7)
    assert result.z == pytest.approx(17.7, abs=0.05)  # irr: kappam.fleiss(diagnoses), z = 17.7
    assert (result.subjects, result.raters) == (30, 6)
    assert result.ci.lower < result.kappa < result.ci.upper


def test_fleiss_kappa_first_three_raters_matches_irr(diagnoses):
    # irr: kappam.fleiss(diagnoses[, 1:3]) -> Kappa = 0.534, z = 9.89.
    result = fleiss_kappa(diagnoses[:, :3])
    assert result.kappa == pytest.approx(0.534, abs=5e-4)
    assert result.z == pytest.approx(9.89, abs=5e-3)


def test_fleiss_jackknife_se_equals_naive_leave_one_out(diagnoses):
    result = fleiss_kappa(diagnoses)
    leave_out = np.array([fleiss_kappa(np.delete(diagnoses, i, axis=0)).kappa for i in range(30)])
    assert result.se == pytest.approx(np.sqrt(29 / 30 * np.sum((leave_out - leave_out.mean()) ** 2)))


def test_cohen_kappa_matches_irr_kappa2(diagnoses):
    # irr: kappa2(diagnoses[, c("rater1", "rater2")]) -> Kappa = 0.651, z = 7, p-value = 2.63e-12.
    result = cohen_kappa(diagnoses[:, 0], diagnoses[:, 1])
    assert result.kappa == pytest.approx(0.6512, abs=5e-5)
    assert result.observed_agreement == pytest.approx(0.7333, abs=5e-5)
    assert result.expected_agreement == pytest.approx(0.2356, abs=5e-5)
    assert result.z == pytest.approx(7.0, abs=0.005)
    assert result.p_value == pytest.approx(2.63e-12, rel=5e-3)


@pytest.mark.parametrize(("weights", "expected"), [("unweighted", 0.1195), ("linear", 0.1892), ("quadratic", 0.2968)])
def test_weighted_kappa_matches_irr_on_anxiety(anxiety, weights, expected):
    # irr: kappa2(anxiety[, 1:2], weight = "unweighted" / "equal" / "squared").
    assert cohen_kappa(anxiety[:, 0], anxiety[:, 1], weights=weights).kappa == pytest.approx(expected, abs=5e-5)


def test_intraclass_correlations_match_psych_on_anxiety(anxiety):
    expected = {  # psych::ICC(anxiety): ICC, lower bound, upper bound
        "ICC(1,1)": (0.1750225, -0.07744650, 0.4843362),
        "ICC(2,1)": (0.1979983, -0.03891068, 0.4935740),
        "ICC(3,1)": (0.2160493, -0.04625793, 0.5222590),
        "ICC(1,k)": (0.3889259, -0.27492318, 0.7380652),
        "ICC(2,k)": (0.4254988, -0.12658288, 0.7451493),
        "ICC(3,k)": (0.4525861, -0.15292145, 0.7663308),
    }
    for result in intraclass_correlations(anxiety):
        icc, low, high = expected[result.form]
        assert result.icc == pytest.approx(icc, abs=1e-6)
        assert result.ci.lower == pytest.approx(low, abs=1e-6)
        assert result.ci.upper == pytest.approx(high, abs=1e-6)


def test_intraclass_correlations_shrout_fleiss_1979(reference):
    ratings = np.loadtxt(reference / "shrout_fleiss1979_6targets_4judges.csv", delimiter=",", skiprows=1)
    expected = {  # Shrout & Fleiss (1979) Table 2, as printed by DescTools::ICC: estimate, F, df1, df2
        "ICC(1,1)": (0.166, 1.79, 5, 18),
        "ICC(2,1)": (0.290, 11.03, 5, 15),
        "ICC(3,1)": (0.715, 11.03, 5, 15),
        "ICC(1,k)": (0.443, 1.79, 5, 18),
        "ICC(2,k)": (0.620, 11.03, 5, 15),
        "ICC(3,k)": (0.909, 11.03, 5, 15),
    }
    for result in intraclass_correlations(ratings):
        icc, f_value, df1, df2 = expected[result.form]
        assert result.icc == pytest.approx(icc, abs=5e-4)
        assert result.f_value == pytest.approx(f_value, abs=5e-3)
        assert (result.df1, result.df2) == (df1, df2)


@pytest.fixture(scope="module")
def krippendorff(reference):
    with open(reference / "krippendorff2011_4coders_12units.csv") as handle:
        rows = list(csv.reader(handle))[1:]
    return np.array([[float(cell) if cell else np.nan for cell in row[1:]] for row in rows])


@pytest.mark.parametrize(
    ("level", "expected"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)]
)
def test_krippendorff_alpha_2011_example(krippendorff, level, expected):
    result = krippendorff_alpha(krippendorff, level=level)
    assert result.alpha == pytest.approx(expected, abs=5e-4)
    # Krippendorff (2011): unit 12 has one value and is not pairable; 40 pairable values remain.
    assert (result.units, result.pairable_values) == (11, 40)


def test_krippendorff_nominal_exact_value(krippendorff):
    # Krippendorff (2011), nominal: alpha = 1 - (40 - 1) * 4 / (sum of n_c n_k over c != k) = 0.743421...
    assert krippendorff_alpha(krippendorff, level="nominal").alpha == pytest.approx(1 - 0.2 / (0.7794871794871795))


def test_perfect_agreement():
    ratings = np.array([[1, 1, 1], [2, 2, 2], [3, 3, 3], [1, 1, 1]], dtype=float)
    assert fleiss_kappa(ratings).kappa == pytest.approx(1.0)
    assert krippendorff_alpha(ratings.T, level="ordinal").alpha == pytest.approx(1.0)
    assert cohen_kappa(ratings[:, 0], ratings[:, 1]).kappa == pytest.approx(1.0)
