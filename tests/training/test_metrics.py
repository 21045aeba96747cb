"""Tests for training.metrics against closed forms, simulated data with known answers and brute-force loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import linalg

from training.metrics import (
    PRDC,
    FidEstimate,
    FidInfinity,
    _polynomial_kernel,
    default_fid_infinity_sizes,
    extrapolate_fid_infinity,
    fid_bootstrap,
    fid_from_features,
    fid_infinity,
    frechet_distance,
    kid,
    prdc,
)


def random_orthogonal(d: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def random_spd(d: int, seed: int) -> np.ndarray:
    m = np.random.default_rng(seed).normal(size=(d, d))
    return m @ m.T / d + 0.1 * np.eye(d)


# --- Fréchet distance -------------------------------------------------------------------------------------------


def test_frechet_identical_gaussians_is_zero():
    # d(N, N) = 0 exactly: Tr(S + S - 2 (S S)^{1/2}) = Tr(2S - 2S).
    mu, sigma = np.arange(8.0), random_spd(8, seed=1)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("d", [1, 5, 64])
def test_frechet_unit_covariances_means_zero_and_one(d):
    # Equal covariances cancel in the trace term, leaving ||0 - 1||^2 = d.
    eye = np.eye(d)
    assert frechet_distance(np.zeros(d), eye, np.ones(d), eye) == pytest.approx(d, rel=1e-9)


def test_frechet_diagonal_covariances_hand_derived():
    # For diagonal S1 = diag(a), S2 = diag(b): Tr(S1 + S2 - 2 (S1 S2)^{1/2}) = sum(a + b - 2 sqrt(ab))
    # = sum (sqrt a - sqrt b)^2. With a = (1, 4, 9), b = (4, 1, 16): (1-2)^2 + (2-1)^2 + (3-4)^2 = 3.
    # Means (0, 0, 0) and (1, 2, 0): ||.||^2 = 1 + 4 = 5. Total 8.
    value = frechet_distance(
        np.zeros(3), np.diag([1.0, 4.0, 9.0]), np.array([1.0, 2.0, 0.0]), np.diag([4.0, 1.0, 16.0])
    )
    assert value == pytest.approx(8.0, rel=1e-12)


def test_frechet_rotation_invariance_matches_diagonal_case():
    # Rotating both Gaussians by the same orthogonal Q (mu -> Q mu, S -> Q S Q^T) keeps the distance: the same
    # hand-derived 8 as above, now with dense, non-diagonal covariances.
    q = random_orthogonal(3, seed=7)
    s1, s2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 16.0])
    value = frechet_distance(q @ np.zeros(3), q @ s1 @ q.T, q @ np.array([1.0, 2.0, 0.0]), q @ s2 @ q.T)
    assert np.abs(q @ s1 @ q.T - np.diag(np.diag(q @ s1 @ q.T))).max() > 0.1  # really non-diagonal
    assert value == pytest.approx(8.0, rel=1e-9)


def test_frechet_non_commuting_covariances_match_sqrtm():
    # Independent check for S1, S2 that do not commute: the trace of scipy's general matrix square root of S1 S2.
    d = 6
    s1, s2 = random_spd(d, seed=2), random_spd(d, seed=3)
    mu1, mu2 = np.zeros(d), np.linspace(-1, 1, d)
    expected = mu2 @ mu2 + np.trace(s1) + np.trace(s2) - 2 * np.trace(linalg.sqrtm(s1 @ s2)).real
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_frechet_singular_covariances_stay_finite_and_non_negative():
    # Fewer samples than dimensions: rank-deficient covariances, the usual case for small sets of 2048-d features.
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(5, 10)), rng.normal(size=(6, 10))
    value = fid_from_features(a, b)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    diff = a.mean(0) - b.mean(0)
    expected = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(linalg.sqrtm(s1 @ s2)).real
    assert math.isfinite(value) and value >= 0
    assert value == pytest.approx(expected, rel=1e-6)


def test_fid_from_features_uses_sample_mean_and_unbiased_covariance():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(200, 4)), rng.normal(loc=0.5, size=(150, 4))
    expected = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert fid_from_features(a, b) == expected


def test_frechet_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="Shapes"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="dimensions"):
        fid_from_features(np.zeros((4, 2)), np.zeros((4, 3)))


# --- KID --------------------------------------------------------------------------------------------------------


def brute_force_mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Binkowski et al. 2018, eq. 2, with explicit loops and k(x, y) = (x.y / d + 1)^3."""
    d = x.shape[1]

    def k(u, v):
        return (sum(ui * vi for ui, vi in zip(u, v, strict=True)) / d + 1) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_single_full_subset_matches_brute_force():
    # A subset of all rows is a permutation, which leaves MMD^2 unchanged: compare with the loop version.
    rng = np.random.default_rng(10)
    a, b = rng.normal(size=(20, 3)), rng.normal(loc=0.3, size=(20, 3))
    estimate = kid(a, b, subsets=1, subset_size=20)
    assert estimate.value == pytest.approx(brute_force_mmd2_unbiased(a, b), rel=1e-10)
    assert (estimate.se, estimate.n_subsets, estimate.subset_size) == (0.0, 1, 20)


def test_kid_is_unbiased_for_samples_of_one_distribution():
    # Two samples of N(0, I_4) per seed: the true MMD^2 is 0, so the mean estimate over 300 simulated data sets
    # must lie within 3 standard errors (of that mean) of 0. The biased V-statistic (diagonal terms kept), by
    # contrast, is positive by about E k(x,x) - E k(x,y) per set over m, and the same test rejects it: the test
    # can tell unbiased from biased.
    estimates, biased = [], []
    for seed in range(300):
        rng = np.random.default_rng(1000 + seed)
        a, b = rng.normal(size=(40, 4)), rng.normal(size=(40, 4))
        estimates.append(kid(a, b, subsets=3, subset_size=30, seed=seed).value)
        k_aa, k_bb, k_ab = _polynomial_kernel(a, a), _polynomial_kernel(b, b), _polynomial_kernel(a, b)
        biased.append(k_aa.mean() + k_bb.mean() - 2 * k_ab.mean())
    estimates, biased = np.array(estimates), np.array(biased)
    se = estimates.std(ddof=1) / np.sqrt(len(estimates))
    assert abs(estimates.mean()) < 3 * se
    assert biased.mean() > 3 * biased.std(ddof=1) / np.sqrt(len(biased))


def test_kid_positive_for_different_distributions():
    rng = np.random.default_rng(11)
    a, b = rng.normal(size=(300, 8)), rng.normal(loc=0.5, size=(300, 8))
    estimate = kid(a, b, subsets=20, subset_size=100, seed=0)
    assert estimate.value > 0 and estimate.value > 3 * estimate.se
    assert estimate.n_subsets == 20 and estimate.subset_size == 100


def test_kid_caps_subset_size_and_is_seeded():
    rng = np.random.default_rng(12)
    a, b = rng.normal(size=(30, 3)), rng.normal(size=(25, 3))
    first = kid(a, b, subsets=5, subset_size=1000, seed=3)
    assert first.subset_size == 25
    assert kid(a, b, subsets=5, subset_size=1000, seed=3) == first
    assert kid(a, b, subsets=5, subset_size=20, seed=4) != kid(a, b, subsets=5, subset_size=20, seed=5)
    with pytest.raises(ValueError):
        kid(a, b, subsets=0)


# --- FID bootstrap ----------------------------------------------------------------------------------------------


def test_fid_bootstrap_interval_brackets_value_and_truth():
    # N(0, I_3) against N(e1, I_3): the population FID is ||e1||^2 = 1.
    rng = np.random.default_rng(20)
    a, b = rng.normal(size=(300, 3)), rng.normal(size=(300, 3)) + np.array([1.0, 0.0, 0.0])
    estimate = fid_bootstrap(a, b, resamples=100, seed=0)
    assert isinstance(estimate, FidEstimate)
    assert estimate.value == fid_from_features(a, b)
    assert (estimate.n_a, estimate.n_b) == (300, 300)
    assert estimate.ci_low < estimate.value < estimate.ci_high
    assert estimate.ci_low < 1.0 < estimate.ci_high
    assert estimate.ci_high - estimate.ci_low < 1.0
    assert fid_bootstrap(a, b, resamples=100, seed=0) == estimate
    narrower = fid_bootstrap(a, b, resamples=100, seed=0, alpha=0.5)
    assert estimate.ci_low < narrower.ci_low < narrower.ci_high < estimate.ci_high


def test_fid_bootstrap_rejects_bad_arguments():
    a = np.zeros((5, 2))
    with pytest.raises(ValueError):
        fid_bootstrap(a, a, resamples=1)
    with pytest.raises(ValueError):
        fid_bootstrap(a, a, alpha=1.0)


# --- FID-infinity -----------------------------------------------------------------------------------------------


def test_extrapolation_recovers_exact_line():
    # FID_N = 3 + 50 / N by construction: intercept 3, slope 50 (to round-off).
    sizes = [200, 400, 600, 800, 1000]
    intercept, slope = extrapolate_fid_infinity(sizes, [3 + 50 / n for n in sizes])
    assert intercept == pytest.approx(3.0, abs=1e-9)
    assert slope == pytest.approx(50.0, rel=1e-7)
    with pytest.raises(ValueError):
        extrapolate_fid_infinity([100, 100], [1.0, 1.0])


def test_default_sizes():
    # Chong & Forsyth's setting for 50,000 images: 15 points from 5,000 to 50,000.
    large = default_fid_infinity_sizes(50_000)
    assert len(large) == 15 and large[0] == 5000 and large[-1] == 50_000
    small = default_fid_infinity_sizes(1000)
    assert len(small) == 15 and small[0] == 200 and small[-1] == 1000


def test_fid_infinity_recovers_population_fid_of_gaussians():
    # N(0, I_32) against N(0.5 e1, I_32): the population FID is exactly 0.5^2 = 0.25. At N samples FID_N is biased
    # upward, roughly 2d/N from the means plus a d^2/N-order part from the covariance trace term: with all
    # n = 2,000 rows, FID is about 0.54 (measured), more than twice the truth. Averaged over 20 independent data
    # sets, FID-infinity's intercept lands within 0.06 of 0.25 (0.239 +- 0.021 over 10 sets when written; the
    # tolerance is about 4 standard errors of the 20-set mean), while plain FID stays more than 0.2 above.
    d, n = 32, 2000
    extrapolated, plain = [], []
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        a = rng.normal(size=(n, d))
        b = rng.normal(size=(n, d))
        b[:, 0] += 0.5
        result = fid_infinity(a, b, seed=seed)
        assert result.sizes == default_fid_infinity_sizes(n)
        assert len(result.fids) == len(result.sizes) == 15
        assert result.slope > 0
        extrapolated.append(result.value)
        plain.append(result.fids[-1])
    assert isinstance(result, FidInfinity)
    assert abs(np.mean(extrapolated) - 0.25) < 0.06
    assert np.mean(plain) - 0.25 > 0.2


def test_fid_infinity_custom_sizes_and_validation():
    rng = np.random.default_rng(31)
    a, b = rng.normal(size=(100, 2)), rng.normal(size=(80, 2))
    result = fid_infinity(a, b, sizes=[20, 40, 80], seed=1)
    assert result.sizes == (20, 40, 80)
    assert result == fid_infinity(a, b, sizes=[20, 40, 80], seed=1)
    with pytest.raises(ValueError, match="between 2 and 80"):
        fid_infinity(a, b, sizes=[20, 100])


# --- PRDC -------------------------------------------------------------------------------------------------------


def brute_force_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> PRDC:
    """Naeem et al. 2020, eqs. 1-4, written out with all pairwise distances and explicit loops."""
    real, fake = [list(r) for r in real], [list(f) for f in fake]

    def radius(points, i):
        # k-th nearest other point = (k+1)-th smallest distance counting the point itself (distance 0).
        return sorted(math.dist(points[i], points[j]) for j in range(len(points)))[k]

    real_r = [radius(real, i) for i in range(len(real))]
    fake_r = [radius(fake, j) for j in range(len(fake))]
    dist = [[math.dist(r, f) for f in fake] for r in real]
    n, m = len(real), len(fake)
    precision = sum(any(dist[i][j] < real_r[i] for i in range(n)) for j in range(m)) / m
    recall = sum(any(dist[i][j] < fake_r[j] for j in range(m)) for i in range(n)) / n
    density = sum(dist[i][j] < real_r[i] for i in range(n) for j in range(m)) / (k * m)
    coverage = sum(min(dist[i]) < real_r[i] for i in range(n)) / n
    return PRDC(precision, recall, density, coverage)


@pytest.mark.parametrize("chunk_rows", [1000, 7])
def test_prdc_matches_brute_force(chunk_rows):
    # Seeded small case, fake slightly shifted and narrower so that no metric is trivially 0 or 1.
    rng = np.random.default_rng(40)
    real = rng.normal(size=(60, 5))
    fake = 1.3 * rng.normal(size=(50, 5)) + 0.5
    result = prdc(real, fake, k=3, chunk_rows=chunk_rows)
    expected = brute_force_prdc(real, fake, k=3)
    assert result.precision == pytest.approx(expected.precision)
    assert result.recall == pytest.approx(expected.recall)
    assert result.density == pytest.approx(expected.density)
    assert result.coverage == pytest.approx(expected.coverage)
    assert 0 < result.precision < 1 and 0 < result.recall < 1 and 0 < result.coverage < 1


def test_prdc_reference_readme_setting_scaled_down():
    """The prdc README example: two independent N(0, I) sets of 10,000 in 1,000 dimensions, k = 5, gives
    precision 0.4772, recall 0.4705, density 1.0555, coverage 0.9735 (github.com/clovaai/generative-evaluation-prdc).

    training.metrics.prdc at that full size (numpy default_rng seeds 0, 1, 2; about 16 s each on a 2-core machine,
    too slow for the test budget) gave precision 0.4563 / 0.4730 / 0.4968, recall 0.4858 / 0.4744 / 0.4756,
    density 0.9125 / 0.9880 / 1.0699, coverage 0.9563 / 0.9662 / 0.9743: the README's single (unseeded) run lies
    inside that seed-to-seed spread. (For identical distributions E[density] = 1 exactly, by exchangeability.)

    In the test budget, a 1,000 x 100 version of the same setting checks the qualitative picture (density near 1,
    coverage near 1, precision and recall well below 1 from the high-dimensional k-NN balls) and the brute force
    above checks exactness.
    """
    rng = np.random.default_rng(41)
    real, fake = rng.normal(size=(1000, 100)), rng.normal(size=(1000, 100))
    result = prdc(real, fake, k=5)
    assert 0.2 < result.precision < 0.9 and 0.2 < result.recall < 0.9
    assert 0.8 < result.density < 1.2
    assert result.coverage > 0.9


def test_prdc_identical_sets():
    # Each fake sample coincides with a real one (distance 0 < its positive radius), and vice versa.
    points = np.random.default_rng(42).normal(size=(30, 4))
    result = prdc(points, points.copy(), k=3)
    assert (result.precision, result.recall, result.coverage) == (1.0, 1.0, 1.0)


def test_prdc_needs_more_than_k_samples():
    with pytest.raises(ValueError, match="at least 6 rows"):
        prdc(np.zeros((5, 2)), np.zeros((10, 2)), k=5)
